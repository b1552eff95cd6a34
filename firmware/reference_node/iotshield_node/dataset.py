"""Labelled anomaly datasets: weeks of a simulated home's telemetry with injected sensor faults.

Reuses the reference node's home model (routines, daylight, cooking, showers) and privacy layer.
The faults are the seeds' kinds: spikes, drift, stuck and flatlined sensors, humidity surges
outside the routine, motion false triggers, motion stuck on, and activity at odd hours. Each is
injected into the raw reading (as a real fault would be) before the privacy noise, and labelled
with its time window and the sensors it affects. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
import random
from typing import Any

from .privacy import NoiseSource, PrivacyConfig, privatize
from .readings import Readings
from .simulation import DEFAULT_START, Home

# Kind → sensors it may affect (one is chosen for single-sensor kinds).
KINDS: dict[str, tuple[str, ...]] = {
    "spike": ("t", "h"),
    "drift": ("t", "h"),
    "stuck": ("t", "h"),
    "surge": ("h",),
    "flatline": ("t", "h", "g", "l", "m"),
    "false_trigger": ("m",),
    "stuck_binary": ("m",),
    "odd_hours": ("m",),
}
CONTINUOUS_KINDS = ("spike", "drift", "stuck", "surge", "flatline")
BINARY_KINDS = ("false_trigger", "stuck_binary", "odd_hours")


@dataclass(frozen=True)
class Anomaly:
    """One injected fault: what, where and when (minutes from the start of the data)."""

    kind: str
    sensors: tuple[str, ...]
    start: int
    end: int
    magnitude: float = 0.0

    def covers(self, minute: int) -> bool:
        """Say whether the fault is active at a minute."""
        return self.start <= minute < self.end


@dataclass(frozen=True)
class Sample:
    """One reading as sent (after the privacy layer) and when."""

    minute: int
    when: datetime
    sent: Readings


def _next_hour(minute: int, start: datetime, hours: tuple[float, float], workday: bool) -> int:
    """Return the first minute at or after `minute` whose hour lies in `hours`."""
    for m in range(minute, minute + 8 * 24 * 60):
        when = start + timedelta(minutes=m)
        hour = when.hour + when.minute / 60
        if hours[0] <= hour < hours[1] and (not workday or when.weekday() < 5):  # noqa: PLR2004
            return m
    return minute


def plan_anomalies(
    seed: int, minutes: int, warmup_minutes: int, start: datetime = DEFAULT_START
) -> list[Anomaly]:
    """Place faults one after another, every kind in turn, 8–30 hours apart."""
    rng = random.Random(seed ^ 0xA11)  # noqa: S311 - simulation only
    kinds = list(KINDS)
    rng.shuffle(kinds)
    anomalies: list[Anomaly] = []
    cursor = warmup_minutes + rng.randint(60, 600)
    index = 0
    while True:
        kind = kinds[index % len(kinds)]
        index += 1
        begin = cursor
        if kind == "surge":
            begin = _next_hour(cursor, start, (1.0, 4.0), workday=False)
        elif kind == "flatline":
            begin = _next_hour(cursor, start, (9.0, 12.0), workday=False)
        elif kind == "false_trigger":
            begin = _next_hour(cursor, start, (9.5, 15.0), workday=True)
        elif kind == "odd_hours":
            begin = _next_hour(cursor, start, (1.5, 4.0), workday=False)
        length = {
            "spike": rng.randint(3, 10),
            "drift": rng.randint(6 * 60, 12 * 60),
            "stuck": rng.randint(4 * 60, 8 * 60),
            "surge": rng.randint(30, 60),
            "flatline": rng.randint(3 * 60, 6 * 60),
            "false_trigger": 60,
            "stuck_binary": rng.randint(3 * 60, 6 * 60),
            "odd_hours": rng.randint(15, 40),
        }[kind]
        if begin + length >= minutes:
            return anomalies
        sensors = KINDS[kind]
        if len(sensors) == 2:  # noqa: PLR2004 - a single-sensor fault on t or h
            sensors = (rng.choice(sensors),)
        magnitude = {
            "spike": rng.uniform(8, 14) if sensors == ("t",) else rng.uniform(25, 35),
            "drift": rng.uniform(5, 8) if sensors == ("t",) else rng.uniform(18, 25),
            "surge": rng.uniform(25, 35),
        }.get(kind, 0.0)
        anomalies.append(Anomaly(kind, sensors, begin, begin + length, magnitude))
        cursor = begin + length + rng.randint(8 * 60, 30 * 60)


def _inject(
    anomaly: Anomaly, raw: Readings, minute: int, frozen: Readings, rng: random.Random
) -> Readings:
    """Change one raw reading as the fault does."""
    progress = (minute - anomaly.start) / max(1, anomaly.end - anomaly.start)
    kind, sensor = anomaly.kind, anomaly.sensors[0]
    value = getattr(raw, sensor)
    changes: dict[str, Any]
    if kind == "spike":
        changes = {sensor: _bounded(sensor, value + anomaly.magnitude)}
    elif kind == "drift":
        changes = {sensor: _bounded(sensor, value + anomaly.magnitude * progress)}
    elif kind == "stuck":
        changes = {sensor: getattr(frozen, sensor)}
    elif kind == "surge":
        rise = min(1.0, (minute - anomaly.start) / 10)
        changes = {"h": _bounded("h", (raw.h or 0.0) + anomaly.magnitude * rise)}
    elif kind == "flatline":
        changes = {"t": frozen.t, "h": frozen.h, "g": frozen.g, "l": 0.0, "m": False}
    elif kind == "false_trigger":
        changes = {"m": rng.random() < 0.3}  # noqa: PLR2004
    elif kind == "stuck_binary":
        changes = {"m": True}
    else:
        # odd_hours: someone moves about while the household sleeps.
        changes = {"m": rng.random() < 0.6}  # noqa: PLR2004
    return replace(raw, **changes)


def _bounded(sensor: str, value: float | None) -> float | None:
    """Keep a faulty value within what the sensor can report."""
    if value is None:
        return None
    return min(value, 100.0) if sensor == "h" else value


def generate(
    seed: int,
    *,
    weeks: float,
    epsilon: float = 0.5,
    anomalies: bool = True,
    warmup_days: float = 7.0,
    start: datetime = DEFAULT_START,
    per_minute: int = 1,
) -> tuple[Iterator[Sample], list[Anomaly]]:
    """Return one home's telemetry as sent, and the faults injected into it.

    `per_minute` readings are sent each minute (12 is the node's default five seconds), each
    with its own privacy noise; the home itself is modelled minute by minute.
    """
    minutes = int(weeks * 7 * 24 * 60)
    planned = plan_anomalies(seed, minutes, int(warmup_days * 24 * 60), start) if anomalies else []

    def samples() -> Iterator[Sample]:
        home = Home(seed)
        rng = random.Random(seed)  # noqa: S311 - simulation only
        fault_rng = random.Random(seed ^ 0xFA17)  # noqa: S311 - simulation only
        noise = NoiseSource(seed + 7919)
        privacy = PrivacyConfig(epsilon=epsilon, motion_epsilon=2.0 if epsilon > 0 else 0.0)
        pending = list(planned)
        active: Anomaly | None = None
        frozen: Readings | None = None
        for minute in range(minutes):
            when = start + timedelta(minutes=minute)
            raw, _ = home.raw(when, rng)
            if active is not None and minute >= active.end:
                active, frozen = None, None
            if active is None and pending and pending[0].start == minute:
                active, frozen = pending.pop(0), raw
            if active is not None and frozen is not None:
                raw = _inject(active, raw, minute, frozen, fault_rng)
            for k in range(per_minute):
                at = when + timedelta(seconds=k * 60 / per_minute)
                yield Sample(minute, at, privatize(raw, privacy, noise))

    return samples(), planned
