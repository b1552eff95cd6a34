"""Severity engine: thresholds (thesis Table 3.3), compound rules, and noise-aware hysteresis.

Plain Python with no Home Assistant import. Readings carry deliberate privacy noise, so a value
hovering at a threshold must not make the severity flap: a band is entered at once when its
threshold is crossed (a hazard is never delayed) but left only after several readings clearly
below it, by a margin of three times the announced noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
import itertools
from typing import Final


class Level(IntEnum):
    """Severity levels, ordered."""

    NORMAL = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """Return the lowercase name used in states, events and translations."""
        return self.name.lower()


class ThresholdProblem(StrEnum):
    """Why a set of thresholds is refused (values are translation keys)."""

    NOT_ORDERED = "thresholds_not_ordered"
    OUT_OF_RANGE = "thresholds_out_of_range"


class ThresholdError(ValueError):
    """Thresholds that cannot work."""

    def __init__(self, problem: ThresholdProblem, sensor: str) -> None:
        """Keep what is wrong and where, for a translated message."""
        super().__init__(f"{problem.value}: {sensor}")
        self.problem = problem
        self.sensor = sensor


@dataclass(frozen=True, slots=True)
class Bands:
    """Where a reading enters LOW, MEDIUM and HIGH going up, and LOW below `low_under`."""

    low: float
    medium: float
    high: float
    low_under: float | None = None

    def level(self, value: float) -> Level:
        """Return the band a value is in, without hysteresis."""
        if value > self.high:
            return Level.HIGH
        if value > self.medium:
            return Level.MEDIUM
        if value > self.low:
            return Level.LOW
        if self.low_under is not None and value < self.low_under:
            return Level.LOW
        return Level.NORMAL


@dataclass(frozen=True, slots=True)
class Thresholds:
    """All thresholds; the defaults are thesis Table 3.3 (see the README for the deviations)."""

    temperature: Bands = field(default_factory=lambda: Bands(28.0, 35.0, 45.0, low_under=18.0))
    humidity: Bands = field(default_factory=lambda: Bands(60.0, 75.0, 85.0, low_under=30.0))
    gas: Bands = field(default_factory=lambda: Bands(0.20, 0.40, 0.60))
    # Light outside 200–800 lx is unusual, never a hazard by itself (Table 3.3 says HIGH for
    # > 800 lx, which would raise an alert every sunny afternoon).
    light: Bands = field(default_factory=lambda: Bands(800.0, 1e12, 1e12, low_under=200.0))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Return the JSON form kept in the entry's options."""
        out: dict[str, dict[str, float]] = {}
        for name in BAND_FIELDS:
            bands: Bands = getattr(self, name)
            out[name] = {f: getattr(bands, f) for f in BAND_FIELDS[name]}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]] | None) -> Thresholds:
        """Build thresholds from their JSON form; missing values keep their defaults."""
        defaults = cls()
        if not data:
            return defaults
        changed: dict[str, Bands] = {}
        for name, fields in BAND_FIELDS.items():
            given = data.get(name) or {}
            bands: Bands = getattr(defaults, name)
            changed[name] = replace(
                bands, **{f: float(given[f]) for f in fields if given.get(f) is not None}
            )
        return cls(**changed)

    def validate(self) -> None:
        """Refuse bands that are not ordered or lie outside the sensors' ranges."""
        limits = {
            "temperature": (-40.0, 125.0),
            "humidity": (0.0, 100.0),
            "gas": (0.0, 1.0),
            "light": (0.0, 1e12),
        }
        for name, (low, high) in limits.items():
            bands: Bands = getattr(self, name)
            values = [bands.low, bands.medium, bands.high]
            if bands.low_under is not None:
                values.insert(0, bands.low_under)
            if any(not low <= v <= high for v in values):
                raise ThresholdError(ThresholdProblem.OUT_OF_RANGE, name)
            # Light's upper bands sit at "never": only its LOW band applies.
            ordered = values if name != "light" else values[:2]
            if any(b <= a for a, b in itertools.pairwise(ordered)):
                raise ThresholdError(ThresholdProblem.NOT_ORDERED, name)


# The editable values of each sensor's bands (light's upper bands mean "never").
BAND_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "temperature": ("low_under", "low", "medium", "high"),
    "humidity": ("low_under", "low", "medium", "high"),
    "gas": ("low", "medium", "high"),
    "light": ("low_under", "low"),
}
CONTINUOUS: Final = {"t": "temperature", "h": "humidity", "g": "gas", "l": "light"}
SENSOR_NAMES: Final = {**CONTINUOUS, "f": "flame", "m": "motion"}
# Noise assumed when a node announces none: the sensors' own jitter.
DEFAULT_NOISE: Final[Mapping[str, float]] = {"t": 0.2, "h": 1.0, "g": 0.005, "l": 10.0}
HYSTERESIS_SIGMAS: Final = 3.0
CLEAR_AFTER_READINGS: Final = 3


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule that tripped: which one, on which sensors, at what level."""

    rule_id: str
    sensors: tuple[str, ...]
    level: Level
    # Found by the anomaly detector (unusual for this home), not by a threshold.
    anomaly: bool = False


@dataclass(frozen=True, slots=True)
class Assessment:
    """The overall severity of one reading and why."""

    level: Level
    sensors: dict[str, Level]
    rules: tuple[Rule, ...]

    @property
    def hazard_level(self) -> Level:
        """Return the level of the threshold rules alone: anomalies never make a hazard."""
        return max((rule.level for rule in self.rules if not rule.anomaly), default=Level.NORMAL)


@dataclass(slots=True)
class _Track:
    """Hysteresis state of one continuous sensor."""

    level: Level = Level.NORMAL
    calm: int = 0


class SeverityEngine:
    """Classifies readings into severities without flapping on noisy values."""

    def __init__(
        self, thresholds: Thresholds | None = None, noise: Mapping[str, float] | None = None
    ) -> None:
        """Use the given thresholds and the node's announced noise σ per sensor."""
        self.thresholds = thresholds or Thresholds()
        self.thresholds.validate()
        self._noise = dict(DEFAULT_NOISE)
        self.set_noise(noise or {})
        self._tracks = {key: _Track() for key in CONTINUOUS}

    def set_noise(self, noise: Mapping[str, float]) -> None:
        """Take the noise a node announces; hysteresis grows with it."""
        for key, sigma in noise.items():
            if key in self._noise and sigma > 0:
                self._noise[key] = max(DEFAULT_NOISE[key], sigma)

    def _continuous(self, key: str, value: float | None) -> Level:
        """Return a sensor's level with hysteresis: up at once, down only when clearly back."""
        track = self._tracks[key]
        if value is None:
            return track.level
        bands: Bands = getattr(self.thresholds, CONTINUOUS[key])
        raw = bands.level(value)
        if raw >= track.level:
            track.level, track.calm = raw, 0
            return track.level
        # The worst band the true value could be in, given the noise: only when even that is
        # below the held level does the reading count towards calming down.
        margin = HYSTERESIS_SIGMAS * self._noise[key]
        pessimistic = max(bands.level(value + margin), bands.level(value - margin))
        track.calm = track.calm + 1 if pessimistic < track.level else 0
        if track.calm >= CLEAR_AFTER_READINGS:
            track.level, track.calm = pessimistic, 0
        return track.level

    def assess(self, readings: Mapping[str, float | bool | None]) -> Assessment:
        """Classify one reading (keys t, h, g, l, f, m as in the wire format)."""
        levels: dict[str, Level] = {}
        for key in CONTINUOUS:
            value = readings.get(key)
            levels[key] = self._continuous(key, None if value is None else float(value))
        flame = readings.get("f") is True
        motion = readings.get("m") is True
        # Flame is never delayed or smoothed: an IR flame sensor seeing fire is HIGH at once.
        levels["f"] = Level.HIGH if flame else Level.NORMAL
        levels["m"] = Level.LOW if motion else Level.NORMAL
        rules = [
            Rule(f"{SENSOR_NAMES[key]}_{level.label}", (key,), level)
            for key, level in levels.items()
            if level > Level.NORMAL
        ]
        rules.extend(_compound(levels))
        level = max((rule.level for rule in rules), default=Level.NORMAL)
        return Assessment(level, levels, tuple(rules))


def _compound(levels: Mapping[str, Level]) -> list[Rule]:
    """Escalate combinations that single thresholds underrate (documented in the README)."""
    t, g, f = levels["t"], levels["g"], levels["f"]
    rules = []
    if f >= Level.HIGH and (t >= Level.MEDIUM or g >= Level.LOW):
        rules.append(Rule("fire", ("f", "t", "g"), Level.CRITICAL))
    elif t >= Level.HIGH and g >= Level.MEDIUM:
        rules.append(Rule("fire_suspected", ("t", "g"), Level.CRITICAL))
    if g >= Level.HIGH and f >= Level.HIGH:
        rules.append(Rule("explosion_risk", ("g", "f"), Level.CRITICAL))
    if t >= Level.MEDIUM and g >= Level.MEDIUM and not rules:
        rules.append(Rule("combustion", ("t", "g"), Level.HIGH))
    return rules
