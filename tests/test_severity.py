"""The severity engine alone: band edges, compound rules, no flapping, hazards at once, context."""

from __future__ import annotations

import itertools
import random

import pytest

from custom_components.iotshield.severity import (
    DEFAULT_MOTION_FLIP,
    MOTION_WINDOW,
    SENSOR_NAMES,
    Bands,
    Level,
    SeverityEngine,
    ThresholdError,
    ThresholdProblem,
    Thresholds,
    context,
    motion_counts_in,
    motion_votes,
)

CALM = {"t": 22.0, "h": 45.0, "g": 0.05, "l": 400.0, "f": False, "m": False}
# The node's announced noise at its defaults (ε = 0.5, ε_m = 2).
NODE_NOISE = {"t": 0.969, "h": 2.42, "g": 0.0194, "l": 48.4}


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
    bands: Bands = getattr(Thresholds(), SENSOR_NAMES[sensor])
    assert bands.level(value) is level


@pytest.mark.parametrize(
    ("sensor", "value", "level"),
    [
        ("t", 35.1, Level.MEDIUM),
        ("t", 45.1, Level.HIGH),
        ("h", 75.1, Level.MEDIUM),
        ("h", 85.1, Level.HIGH),
        ("g", 0.21, Level.LOW),
        ("g", 0.41, Level.MEDIUM),
        ("g", 0.61, Level.HIGH),
    ],
)
def test_hazard_bands_raise_the_severity(sensor: str, value: float, level: Level) -> None:
    """Heat and humidity from MEDIUM up, and gas from LOW up, are the severity at once."""
    overall, sensors, rules = _assess(**{sensor: value})
    assert sensors[sensor] is level
    assert overall is level
    assert rules == {f"{SENSOR_NAMES[sensor]}_{level.label}"}


@pytest.mark.parametrize(
    ("readings", "noticed"),
    [
        ({"l": 0.0}, ("dark",)),
        ({"l": 5000.0}, ("bright",)),
        ({"t": 16.0}, ("cold",)),
        ({"t": 31.0}, ("warm",)),
        ({"h": 25.0}, ("dry",)),
        ({"h": 70.0}, ("damp",)),
        ({"t": 16.0, "h": 70.0, "l": 0.0}, ("cold", "damp", "dark")),
    ],
)
def test_a_healthy_home_is_normal_at_any_hour(
    readings: dict[str, float], noticed: tuple[str, ...]
) -> None:
    """A dark night, a sunny afternoon, a cool bedroom, a steamy bathroom: context, not severity."""
    engine = SeverityEngine()
    assessment = engine.assess({**CALM, **readings})
    assert assessment.level is Level.NORMAL
    assert assessment.rules == ()
    assert context(assessment, {**CALM, **readings}, engine.thresholds) == noticed
    assert set(assessment.counted.values()) == {Level.NORMAL}


def test_noise_alone_does_not_make_a_room_cold() -> None:
    """A 19.5 °C room read with the node's noise is not called cold for a stray reading."""
    engine = SeverityEngine(noise=NODE_NOISE)
    rng = random.Random(3)
    cold = 0
    for _ in range(2000):
        reading = {**CALM, "t": 19.5 + rng.gauss(0, NODE_NOISE["t"])}
        cold += context(engine.assess(reading), reading, engine.thresholds) == ("cold",)
    assert cold < 20
    # A room that really is cold is called so.
    reading = {**CALM, "t": 13.0 + rng.gauss(0, NODE_NOISE["t"])}
    assert context(engine.assess(reading), reading, engine.thresholds) == ("cold",)


def test_flame_is_high_and_motion_is_context() -> None:
    """Flame alone is HIGH at once; people moving about are noticed, not a severity."""
    assert _assess(f=True)[0] is Level.HIGH
    assert _assess()[0] is Level.NORMAL
    engine = SeverityEngine()
    for _ in range(MOTION_WINDOW):
        assessment = engine.assess({**CALM, "m": True})
        assert assessment.level is Level.NORMAL
    assert context(assessment, CALM, engine.thresholds) == ("motion",)


def test_motion_counts_when_the_user_opts_in() -> None:
    """While the home is set to away, motion is LOW; when the user is back, it is context again."""
    engine = SeverityEngine()
    engine.motion_counts = True
    seen = [engine.assess({**CALM, "m": True}).level for _ in range(MOTION_WINDOW)]
    # Several readings, not one: a single one may be the privacy layer's flip.
    assert seen[0] is Level.NORMAL
    assert seen[-1] is Level.LOW
    assessment = engine.assess({**CALM, "m": True})
    assert [rule.rule_id for rule in assessment.rules] == ["motion_low"]
    assert context(assessment, CALM, engine.thresholds) == ()
    engine.motion_counts = False
    assert engine.assess({**CALM, "m": True}).level is Level.NORMAL


def test_randomized_response_alone_never_counts_as_motion() -> None:
    """An empty home's readings, flipped at the node's rate, stay normal; a person does not."""
    engine = SeverityEngine()
    engine.motion_counts = True
    rng = random.Random(11)
    levels = [
        engine.assess({**CALM, "m": rng.random() < DEFAULT_MOTION_FLIP}).level
        for _ in range(20_000)
    ]
    assert set(levels) == {Level.NORMAL}
    # Someone walking about, seen through the same noise, within a few windows.
    present = 0.8 * (1 - DEFAULT_MOTION_FLIP) + 0.2 * DEFAULT_MOTION_FLIP
    levels = [
        engine.assess({**CALM, "m": rng.random() < present}).level for _ in range(4 * MOTION_WINDOW)
    ]
    assert Level.LOW in levels


def test_motion_before_the_home_was_set_empty_does_not_count() -> None:
    """Whoever armed the alarm and left was moving a moment ago: only later motion counts."""
    engine = SeverityEngine()
    for _ in range(MOTION_WINDOW):
        engine.assess({**CALM, "m": True})
    engine.motion_counts = True
    assert engine.assess({**CALM, "m": False}).level is Level.NORMAL


def test_announced_motion_noise_asks_for_more_votes() -> None:
    """The vote follows the flip rate the node announces, never assuming less than its default."""
    assert motion_votes(MOTION_WINDOW, DEFAULT_MOTION_FLIP) == 9
    assert motion_votes(MOTION_WINDOW, 0.0) == 1
    assert motion_votes(1, DEFAULT_MOTION_FLIP) == 1
    engine = SeverityEngine()
    engine.motion_counts = True
    engine.set_noise({}, motion_flip=0.27)
    levels = [engine.assess({**CALM, "m": True}).level for _ in range(MOTION_WINDOW)]
    assert levels.index(Level.LOW) == motion_votes(MOTION_WINDOW, 0.27) - 1


@pytest.mark.parametrize(
    ("state", "counts"),
    [
        ("on", True),
        ("armed_away", True),
        ("armed_night", True),
        ("armed_vacation", True),
        ("armed_home", False),
        ("disarmed", False),
        ("off", False),
        ("unavailable", False),
        (None, False),
    ],
)
def test_which_states_make_motion_count(state: str | None, counts: bool) -> None:
    """A helper that is on or an alarm armed while nobody is up make motion count."""
    assert motion_counts_in(state) is counts


def test_table_3_3_read_literally_is_still_measurable() -> None:
    """The evaluation's "before": every LOW band counts and each motion reading on its own."""
    engine = SeverityEngine(low_counts=SENSOR_NAMES, motion_window=1)
    assert engine.assess({**CALM, "l": 0.0}).level is Level.LOW
    assert engine.assess({**CALM, "l": 0.0, "m": True}).level is Level.LOW
    assert {rule.rule_id for rule in engine.assess({**CALM, "m": True}).rules} == {
        "light_low",
        "motion_low",
    }


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
