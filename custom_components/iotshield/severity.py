"""Severity engine: thresholds (thesis Table 3.3), compound rules, and noise-aware hysteresis.

Plain Python with no Home Assistant import. Readings carry deliberate privacy noise, so a value
hovering at a threshold must not make the severity flap: a band is entered at once when its
threshold is crossed (a hazard is never delayed) but left only after several readings clearly
below it, by a margin of three times the announced noise.

A healthy home is normal at any hour: below MEDIUM only gas raises the severity. A room that
leaves its comfort range (cold, warm, dry, damp), darkness, bright light and people moving about
are context, named by `context()`, unless the user makes motion count (while the home is empty).
Such a LOW band is entered only when the reading is beyond it by the noise margin too, so that
the context does not say "cold" of a 20 °C room for one noisy reading. Motion is noised by
randomized response: it is seen only when several recent readings show it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
import itertools
import math
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

# Below MEDIUM, only these sensors raise the severity: any rise of gas is a hazard's first sign,
# while the other LOW bands (Table 3.3's comfort ranges, light, motion) are every day's life.
LOW_COUNTS: Final = frozenset({"g"})
# The names of what is outside its usual range without raising the severity (translated in the
# Severity sensor's `context` attribute): below and above the normal band of each sensor.
CONTEXT_SIDES: Final[Mapping[str, tuple[str, str]]] = {
    "t": ("cold", "warm"),
    "h": ("dry", "damp"),
    "l": ("dark", "bright"),
}
MOTION_CONTEXT: Final = "motion"
CONTEXT_LABELS: Final = (*itertools.chain(*CONTEXT_SIDES.values()), MOTION_CONTEXT)
# Motion is judged over this many readings (a minute at the node's default five seconds).
MOTION_WINDOW: Final = 12
# How often randomized response alone may make a window look like motion.
MOTION_CHANCE: Final = 1e-6
# The node's default randomized response (ε_m = 2): assumed unless the node announces more.
DEFAULT_MOTION_FLIP: Final = 1 / (1 + math.exp(2.0))
# The option naming an entity while which motion counts (an alarm armed away, a switch).
MOTION_COUNTS_OPTION: Final = "motion_counts_while"
# The kinds of entity that can say so, and their states in which the home is taken to be empty.
MOTION_COUNTS_DOMAINS: Final = ("alarm_control_panel", "binary_sensor", "input_boolean")
MOTION_COUNTS_STATES: Final = frozenset({"on", "armed_away", "armed_night", "armed_vacation"})


def motion_counts_in(state: str | None) -> bool:
    """Say whether the chosen entity's state means that motion in the home counts."""
    return state in MOTION_COUNTS_STATES


def motion_votes(window: int, flip: float) -> int:
    """Return how many of `window` readings must show motion for it to be taken as real.

    The fewest that randomized response with this flip rate reaches by chance in no more than
    MOTION_CHANCE of the windows; a whole window when even that is too likely.
    """
    for votes in range(1, window + 1):
        chance = sum(
            math.comb(window, k) * flip**k * (1 - flip) ** (window - k)
            for k in range(votes, window + 1)
        )
        if chance <= MOTION_CHANCE:
            return votes
    return window


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

    @property
    def counted(self) -> dict[str, Level]:
        """Return each sensor's level as it counts towards the severity (context is normal)."""
        levels = dict.fromkeys(self.sensors, Level.NORMAL)
        for rule in self.rules:
            if len(rule.sensors) == 1 and not rule.anomaly:
                key = rule.sensors[0]
                levels[key] = max(levels.get(key, Level.NORMAL), rule.level)
        return levels


@dataclass(slots=True)
class _Track:
    """Hysteresis state of one continuous sensor."""

    level: Level = Level.NORMAL
    calm: int = 0


class SeverityEngine:
    """Classifies readings into severities without flapping on noisy values."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        noise: Mapping[str, float] | None = None,
        *,
        low_counts: Collection[str] = LOW_COUNTS,
        motion_window: int = MOTION_WINDOW,
    ) -> None:
        """Use the given thresholds and the node's announced noise σ per sensor.

        `low_counts` and `motion_window` exist to measure other semantics (every LOW band
        counting and each motion reading on its own was Table 3.3 read literally).
        """
        self.thresholds = thresholds or Thresholds()
        self.thresholds.validate()
        self._noise = dict(DEFAULT_NOISE)
        self._low_counts = frozenset(low_counts)
        self._motion_counts = False
        self._motion: deque[bool] = deque(maxlen=motion_window)
        self._motion_flip = DEFAULT_MOTION_FLIP
        self._motion_level = Level.NORMAL
        self._set_motion_votes()
        self.set_noise(noise or {})
        self._tracks = {key: _Track() for key in CONTINUOUS}

    @property
    def motion_counts(self) -> bool:
        """Return whether motion raises the severity (the user's entity says nobody is home)."""
        return self._motion_counts

    @motion_counts.setter
    def motion_counts(self, counts: bool) -> None:
        """Make motion count or not; only motion seen after the home was set empty counts."""
        if counts and not self._motion_counts:
            # Whoever armed the alarm and left was still moving about a moment ago.
            self._motion.clear()
            self._motion_level = Level.NORMAL
        self._motion_counts = counts

    @property
    def motion_flip(self) -> float:
        """Return the randomized-response flip rate the motion vote allows for."""
        return self._motion_flip

    def set_noise(self, noise: Mapping[str, float], motion_flip: float | None = None) -> None:
        """Take the noise a node announces; hysteresis and the motion vote grow with it."""
        for key, sigma in noise.items():
            if key in self._noise and sigma > 0:
                self._noise[key] = max(DEFAULT_NOISE[key], sigma)
        if motion_flip is not None and 0 <= motion_flip < 0.5:  # noqa: PLR2004 - a coin toss
            self._motion_flip = max(DEFAULT_MOTION_FLIP, motion_flip)
            self._set_motion_votes()

    def _set_motion_votes(self) -> None:
        """Work out how much motion counts as real and how little lets it go again."""
        window = self._motion.maxlen or 1
        self._votes = motion_votes(window, self._motion_flip)
        # Held until the window shows no more motion than chance alone would.
        self._release = min(self._votes - 1, math.ceil(window * self._motion_flip))

    def _motion_seen(self, motion: bool | None) -> Level:
        """Return LOW while enough recent readings show motion to be more than noise."""
        if motion is not None:
            self._motion.append(motion)
        count = sum(self._motion)
        if count >= self._votes:
            self._motion_level = Level.LOW
        elif count <= self._release:
            self._motion_level = Level.NORMAL
        return self._motion_level

    def _continuous(self, key: str, value: float | None) -> Level:
        """Return a sensor's level with hysteresis: up at once, down only when clearly back."""
        track = self._tracks[key]
        if value is None:
            return track.level
        bands: Bands = getattr(self.thresholds, CONTINUOUS[key])
        raw = bands.level(value)
        margin = HYSTERESIS_SIGMAS * self._noise[key]
        if raw == Level.LOW > track.level and key not in self._low_counts:
            # A LOW band that is only context is entered when the reading is beyond it by the
            # noise margin too: one noisy reading must not make a 20 °C room "cold" for hours.
            optimistic = min(bands.level(value + margin), bands.level(value - margin))
            if optimistic < Level.LOW:
                return track.level
        if raw >= track.level:
            track.level, track.calm = raw, 0
            return track.level
        # The worst band the true value could be in, given the noise: only when even that is
        # below the held level does the reading count towards calming down.
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
        motion = readings.get("m")
        # Flame is never delayed or smoothed: an IR flame sensor seeing fire is HIGH at once.
        levels["f"] = Level.HIGH if flame else Level.NORMAL
        levels["m"] = self._motion_seen(motion if isinstance(motion, bool) else None)
        counts = self._low_counts | ({"m"} if self.motion_counts else set())
        rules = [
            Rule(f"{SENSOR_NAMES[key]}_{level.label}", (key,), level)
            for key, level in levels.items()
            if level >= Level.MEDIUM or (level > Level.NORMAL and key in counts)
        ]
        rules.extend(_compound(levels))
        level = max((rule.level for rule in rules), default=Level.NORMAL)
        return Assessment(level, levels, tuple(rules))


def context(
    assessment: Assessment, readings: Mapping[str, float | bool | None], thresholds: Thresholds
) -> tuple[str, ...]:
    """Name what is outside its usual range but raises no severity: cold, damp, dark, motion."""
    counted = assessment.counted
    labels: list[str] = []
    for key, (below, above) in CONTEXT_SIDES.items():
        value = readings.get(key)
        if assessment.sensors.get(key, Level.NORMAL) is Level.NORMAL or counted.get(key):
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        bands: Bands = getattr(thresholds, CONTINUOUS[key])
        bottom = bands.low if bands.low_under is None else bands.low_under
        # A level held by hysteresis may come with a value back inside the band: the side
        # nearer to it is where the reading came from.
        labels.append(below if value < (bottom + bands.low) / 2 else above)
    if assessment.sensors.get("m", Level.NORMAL) > Level.NORMAL and not counted.get("m"):
        labels.append(MOTION_CONTEXT)
    return tuple(labels)


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
