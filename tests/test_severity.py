"""The severity engine alone: band edges, compound rules, no flapping, immediate hazards."""

from __future__ import annotations

import itertools
import random

import pytest

from custom_components.iotshield.severity import (
    Bands,
    Level,
    SeverityEngine,
    ThresholdError,
    ThresholdProblem,
    Thresholds,
)

CALM = {"t": 22.0, "h": 45.0, "g": 0.05, "l": 400.0, "f": False, "m": False}


def _assess(**readings: float | bool | None) -> tuple[Level, dict[str, Level], set[str]]:
    """Classify one reading on a fresh engine."""
    result = SeverityEngine().assess({**CALM, **readings})
    return result.level, result.sensors, {rule.rule_id for rule in result.rules}


@pytest.mark.parametrize(
    ("sensor", "value", "level"),
    [
        ("t", 28.0, Level.NORMAL),
        ("t", 28.1, Level.LOW),
        ("t", 35.0, Level.LOW),
        ("t", 35.1, Level.MEDIUM),
        ("t", 45.0, Level.MEDIUM),
        ("t", 45.1, Level.HIGH),
        ("t", 18.0, Level.NORMAL),
        ("t", 17.9, Level.LOW),
        ("h", 60.0, Level.NORMAL),
        ("h", 60.1, Level.LOW),
        ("h", 75.1, Level.MEDIUM),
        ("h", 85.1, Level.HIGH),
        ("h", 29.9, Level.LOW),
        ("g", 0.20, Level.NORMAL),
        ("g", 0.21, Level.LOW),
        ("g", 0.40, Level.LOW),
        ("g", 0.41, Level.MEDIUM),
        ("g", 0.60, Level.MEDIUM),
        ("g", 0.61, Level.HIGH),
        ("l", 200.0, Level.NORMAL),
        ("l", 199.0, Level.LOW),
        ("l", 800.0, Level.NORMAL),
        ("l", 801.0, Level.LOW),
        ("l", 100000.0, Level.LOW),
    ],
)
def test_band_edges(sensor: str, value: float, level: Level) -> None:
    """Each edge of Table 3.3 lands in the documented band."""
    overall, sensors, _ = _assess(**{sensor: value})
    assert sensors[sensor] is level
    assert overall is level


def test_binary_sensors() -> None:
    """Flame alone is HIGH at once, motion alone LOW."""
    assert _assess(f=True)[0] is Level.HIGH
    assert _assess(m=True)[0] is Level.LOW
    assert _assess()[0] is Level.NORMAL


@pytest.mark.parametrize(
    ("readings", "rule", "level"),
    [
        ({"f": True, "t": 36.0}, "fire", Level.CRITICAL),
        ({"f": True, "g": 0.25}, "fire", Level.CRITICAL),
        ({"t": 46.0, "g": 0.45}, "fire_suspected", Level.CRITICAL),
        ({"g": 0.65, "f": True}, "explosion_risk", Level.CRITICAL),
        ({"t": 36.0, "g": 0.45}, "combustion", Level.HIGH),
    ],
)
def test_compound_rules(readings: dict[str, float | bool], rule: str, level: Level) -> None:
    """Combinations escalate beyond their parts."""
    overall, _, rules = _assess(**readings)
    assert rule in rules
    assert overall is level


def test_compound_rules_need_both_parts() -> None:
    """One part alone stays at its own level."""
    assert _assess(t=46.0)[0] is Level.HIGH
    assert _assess(g=0.45)[0] is Level.MEDIUM
    assert _assess(t=36.0, g=0.25)[0] is Level.MEDIUM
    assert "combustion" not in _assess(t=36.0, g=0.25)[2]


def test_no_flapping_at_a_threshold_with_announced_noise() -> None:
    """1,000 noisy readings centred on a threshold cause only a few transitions."""
    sigma = 0.969  # the node's announced temperature noise at ε = 0.5
    engine = SeverityEngine(noise={"t": sigma})
    rng = random.Random(7)
    levels = [
        engine.assess({**CALM, "t": 35.0 + rng.gauss(0, sigma)}).sensors["t"] for _ in range(1000)
    ]
    transitions = sum(a != b for a, b in itertools.pairwise(levels))
    assert transitions <= 4
    # A naive classifier would flip about every other reading.
    naive = [Bands(28.0, 35.0, 45.0).level(35.0 + rng.gauss(0, sigma)) for _ in range(1000)]
    assert sum(a != b for a, b in itertools.pairwise(naive)) > 300


def test_escalation_is_immediate_and_recovery_is_deliberate() -> None:
    """A hazard shows at the first reading; calm needs several clearly-calm readings."""
    engine = SeverityEngine(noise={"g": 0.0194})
    assert engine.assess({**CALM, "g": 0.65}).level is Level.HIGH
    # Just under the threshold, within the noise: still HIGH.
    for _ in range(10):
        assert engine.assess({**CALM, "g": 0.58}).sensors["g"] is Level.HIGH
    # Clearly below: HIGH holds for two readings, then steps down.
    seen = [engine.assess({**CALM, "g": 0.10}).sensors["g"] for _ in range(3)]
    assert seen == [Level.HIGH, Level.HIGH, Level.NORMAL]


def test_flame_is_never_delayed_or_held() -> None:
    """Flame shows on its first reading and clears with the reading."""
    engine = SeverityEngine()
    assert engine.assess({**CALM, "f": True}).level is Level.HIGH
    assert engine.assess({**CALM, "f": False}).level is Level.NORMAL


def test_unread_sensor_keeps_its_level() -> None:
    """A sensor that could not be read does not count as calm."""
    engine = SeverityEngine()
    engine.assess({**CALM, "t": 50.0})
    assert engine.assess({**CALM, "t": None}).sensors["t"] is Level.HIGH


@pytest.mark.parametrize(
    ("thresholds", "problem", "sensor"),
    [
        (
            Thresholds(temperature=Bands(35.0, 28.0, 45.0)),
            ThresholdProblem.NOT_ORDERED,
            "temperature",
        ),
        (Thresholds(gas=Bands(0.2, 0.4, 1.5)), ThresholdProblem.OUT_OF_RANGE, "gas"),
        (
            Thresholds(humidity=Bands(60.0, 75.0, 85.0, low_under=65.0)),
            ThresholdProblem.NOT_ORDERED,
            "humidity",
        ),
    ],
)
def test_threshold_validation(
    thresholds: Thresholds, problem: ThresholdProblem, sensor: str
) -> None:
    """Bands out of order or outside the sensor range are refused with a translatable reason."""
    with pytest.raises(ThresholdError) as info:
        SeverityEngine(thresholds)
    assert (info.value.problem, info.value.sensor) == (problem, sensor)


def test_thresholds_round_trip_through_options() -> None:
    """Thresholds stored as JSON come back equal; missing values keep their defaults."""
    edited = Thresholds.from_dict({"gas": {"low": 0.1, "medium": 0.3, "high": 0.5}})
    assert edited.gas == Bands(0.1, 0.3, 0.5)
    assert edited.temperature == Thresholds().temperature
    assert Thresholds.from_dict(edited.as_dict()) == edited
    assert Thresholds.from_dict(None) == Thresholds()
    assert set(edited.as_dict()["light"]) == {"low_under", "low"}
