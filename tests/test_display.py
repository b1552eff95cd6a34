"""The throttled mean a reading entity shows (display.py), without Home Assistant."""

from __future__ import annotations

import random
import statistics

import pytest

from custom_components.iotshield.display import HEARTBEAT, WINDOW, ReadingMean, WriteThrottle

# The node's temperature noise at ε = 0.5, δ = 1e-5 (σ of its Gaussian mechanism).
SIGMA_T = 0.969
CALM = ("available", "normal")


def temperature() -> ReadingMean:
    """Return the mean a temperature entity keeps (displayed to 0.1 °C)."""
    return ReadingMean(step=0.1, digits=2)


def test_first_reading_is_written_at_once() -> None:
    """Nothing is shown yet: the first reading is written as it comes."""
    mean = temperature()
    decision = mean.add(0.0, 21.53, CALM)
    assert decision.write
    assert decision.value == 21.53


def test_at_most_one_routine_write_a_minute_with_the_mean() -> None:
    """A changing room writes the last minute's mean once a minute, not a state per reading."""
    mean = temperature()
    mean.add(0.0, 20.0, CALM)
    writes = []
    for tick in range(1, 37):  # three minutes of readings every 5 s, 0.1 °C warmer each
        decision = mean.add(tick * 5.0, 20.0 + tick * 0.1, CALM)
        if decision.write:
            writes.append((tick * 5.0, decision.value))
    assert [at for at, _ in writes] == [60.0, 120.0, 180.0]
    # The mean of the readings of the minute before each write (values 20.1 … 21.2 for the first).
    assert writes[0][1] == pytest.approx(statistics.fmean(20.0 + t * 0.1 for t in range(1, 13)))
    assert writes[1][1] == pytest.approx(statistics.fmean(20.0 + t * 0.1 for t in range(13, 25)))


def test_steady_noisy_room_writes_every_few_minutes_and_hardly_jitters() -> None:
    """A steady noisy room writes about every HEARTBEAT, a mean far calmer than a reading."""
    rng = random.Random(7)
    mean = temperature()
    shown: list[float] = []
    writes = 0
    day = 24 * 3600
    for tick in range(day // 5):
        decision = mean.add(tick * 5.0, 21.5 + rng.gauss(0, SIGMA_T), CALM)
        if decision.write:
            writes += 1
        assert mean.shown is not None
        shown.append(mean.shown)
    # Noise alone rarely looks like a change (about one minute in twenty).
    assert day / HEARTBEAT * 0.9 <= writes <= day / HEARTBEAT * 1.5
    assert statistics.fmean(shown) == pytest.approx(21.5, abs=0.05)
    assert statistics.pstdev(shown) < 0.3


def test_hazard_is_written_at_once_without_the_calm_minute_before() -> None:
    """A change of severity writes at once, showing the new situation, not a diluted mean."""
    mean = temperature()
    mean.add(0.0, 21.5, CALM)
    assert not mean.add(5.0, 21.6, CALM).write
    decision = mean.add(10.0, 58.0, ("available", "critical"))
    assert decision.write
    assert decision.value == 58.0
    # Within the minute after, the hazard's readings are averaged among themselves.
    assert not mean.add(15.0, 60.0, ("available", "critical")).write
    decision = mean.add(20.0, 22.0, CALM)
    assert decision.write
    assert decision.value == 22.0


def test_a_change_without_a_reading_is_written_and_restarts_the_mean() -> None:
    """Unavailability is written at once; the first reading after it too, not averaged with old."""
    mean = temperature()
    mean.add(0.0, 21.5, CALM)
    assert not mean.change(CALM)
    assert mean.change(("unavailable", "normal"))
    assert not mean.change(("unavailable", "normal"))
    # Back: the first reading is shown as it is, not averaged with the readings before.
    decision = mean.add(30.0, 25.0, CALM)
    assert decision.write
    assert decision.value == 25.0


def test_a_real_change_shows_within_a_minute() -> None:
    """A step well beyond the noise is written at the first minute, not at the next heartbeat."""
    rng = random.Random(3)
    mean = temperature()
    for tick in range(120):  # ten calm minutes
        mean.add(tick * 5.0, 21.5 + rng.gauss(0, SIGMA_T), CALM)
    written_at = None
    for tick in range(120, 160):  # the heating comes on: 3 °C warmer
        decision = mean.add(tick * 5.0, 24.5 + rng.gauss(0, SIGMA_T), CALM)
        if decision.write and written_at is None:
            written_at = tick * 5.0
    assert written_at is not None
    assert written_at - 600.0 <= WINDOW + 5.0
    assert mean.shown == pytest.approx(24.5, abs=1.0)


def test_a_failed_sensor_is_shown_at_once() -> None:
    """A reading without this value (the sensor failed) is written as unknown at once."""
    mean = temperature()
    mean.add(0.0, 21.5, CALM)
    decision = mean.add(5.0, None, CALM)
    assert decision.write
    assert decision.value is None
    assert not mean.add(10.0, None, CALM).write
    decision = mean.add(15.0, 21.7, CALM)
    assert decision.write
    assert decision.value == 21.7


def test_slow_node_writes_each_reading_that_changes_the_display() -> None:
    """A node publishing once a minute has one reading a minute: each change is written."""
    mean = temperature()
    mean.add(0.0, 21.5, CALM)
    assert mean.add(60.0, 22.0, CALM).write
    assert not mean.add(120.0, 22.05, CALM).write


def test_write_throttle() -> None:
    """A value changing with every reading is written once a minute, and at once when it matters."""
    throttle = WriteThrottle()
    assert throttle.due(0.0, True)
    assert not throttle.due(5.0, True)
    assert not throttle.due(59.0, True)
    assert throttle.due(60.0, True)
    assert throttle.due(61.0, False)
    assert throttle.due(62.0, True)


def test_without_a_window_every_reading_is_written() -> None:
    """A zero window and heartbeat (as the tests that probe acceptance use) write each reading."""
    mean = ReadingMean(step=0.1, digits=2, window=0.0, heartbeat=0.0)
    assert [
        mean.add(at, value, CALM).value for at, value in ((0, 21.5), (5, 21.52), (10, 24.0))
    ] == [
        21.5,
        21.52,
        24.0,
    ]
