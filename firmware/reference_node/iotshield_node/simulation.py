"""A simulated home and the scenarios the reference node plays, with labelled ground truth.

Deterministic for a given seed: the same arguments always give the same readings and labels.
Signals follow daily and weekly cycles and the routine of two residents (work days away from
08:00 to 17:30, sleep from about 23:00 to 06:30, weekends at home), light follows daylight and
occupancy, humidity follows showers and cooking, and gas rises a little while cooking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
import json
import math
from pathlib import Path
import random
from typing import Any

from .readings import Readings

SCENARIOS = (
    "normal",
    "fire",
    "gas_leak",
    "intrusion",
    "stuck",
    "drift",
    "flatline",
    "pir_false",
)
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class Sample:
    """One raw reading of the simulated node (before the privacy layer)."""

    seq: int
    timestamp: int
    readings: Readings


@dataclass(frozen=True)
class Label:
    """Ground truth: an injected event, the samples it covers and the sensors it touches."""

    scenario: str
    kind: str
    start: int
    end: int
    start_seq: int
    end_seq: int
    sensors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the label as written to the ground-truth file."""
        doc = asdict(self)
        doc["start_iso"] = datetime.fromtimestamp(self.start, UTC).isoformat()
        doc["end_iso"] = datetime.fromtimestamp(self.end, UTC).isoformat()
        return doc


@dataclass(frozen=True)
class DayPlan:
    """When the residents get up, leave, come back, cook, shower and go to bed (hours)."""

    wake: float
    leave: float | None
    back: float | None
    cook: float
    shower: float
    sleep: float


class Home:
    """The physical home: routines and the raw signals the sensors would read."""

    def __init__(self, seed: int) -> None:
        """Seed the routine and the sensors' own measurement noise."""
        self._seed = seed
        self._plans: dict[int, DayPlan] = {}

    def plan(self, day: int, weekday: int) -> DayPlan:
        """Return the routine of one day, jittered but fixed for a seed and a day."""
        if day not in self._plans:
            rng = random.Random(self._seed * 1_000_003 + day)  # noqa: S311 - simulation only
            workday = weekday < 5  # noqa: PLR2004 - Monday..Friday
            self._plans[day] = DayPlan(
                wake=rng.gauss(6.5 if workday else 8.5, 0.25),
                leave=rng.gauss(8.0, 0.2) if workday else None,
                back=rng.gauss(17.5, 0.4) if workday else None,
                cook=rng.gauss(18.75, 0.3),
                shower=rng.gauss(6.75 if workday else 9.0, 0.2),
                sleep=rng.gauss(23.0, 0.3),
            )
        return self._plans[day]

    @staticmethod
    def _bump(hour: float, at: float, width: float) -> float:
        """Return a smooth 0..1 bump centred at `at` (hours) with the given half-width."""
        distance = abs(hour - at)
        return 0.0 if distance >= width else 0.5 * (1 + math.cos(math.pi * distance / width))

    def raw(self, when: datetime, rng: random.Random) -> tuple[Readings, bool]:
        """Return what the sensors read at `when` and whether someone is up and at home."""
        day = (when.date() - DEFAULT_START.date()).days
        plan = self.plan(day, when.weekday())
        hour = when.hour + when.minute / 60 + when.second / 3600
        away = plan.leave is not None and plan.back is not None and plan.leave <= hour < plan.back
        awake = plan.wake <= hour < plan.sleep
        active = awake and not away
        cooking = self._bump(hour, plan.cook, 0.5)
        shower = self._bump(hour, plan.shower + 0.15, 0.6)
        # Daylight indoors: a sine between sunrise at 07:00 and sunset at 17:00 (winter).
        daylight = max(0.0, math.sin(math.pi * (hour - 7) / 10)) if 7 <= hour <= 17 else 0.0  # noqa: PLR2004
        lamps = 280.0 if active and daylight < 0.3 else 0.0  # noqa: PLR2004
        temperature = (
            20.5
            + 1.2 * math.sin(2 * math.pi * (hour - 9) / 24)
            + (0.8 if active else -0.4)
            + 1.5 * cooking
            + 0.2 * math.sin(2 * math.pi * day / 7)
            + rng.gauss(0, 0.1)
        )
        humidity = 42 + 18 * shower + 8 * cooking + 3 * math.sin(2 * math.pi * day / 7)
        light = 550 * daylight + lamps + rng.gauss(0, 4)
        gas = 0.04 + 0.06 * cooking + abs(rng.gauss(0, 0.005))
        motion = active and rng.random() < (0.55 if cooking < 0.5 else 0.85)  # noqa: PLR2004
        readings = Readings(
            t=temperature,
            h=humidity + rng.gauss(0, 0.4),
            g=min(gas, 1.0),
            l=max(light, 0.0),
            f=False,
            m=motion,
        )
        return readings, active


def _next_at(start: datetime, hour: int) -> datetime:
    """Return the first moment at `hour`:00 after `start`."""
    candidate = start.replace(hour=hour, minute=0, second=0, microsecond=0)
    return candidate if candidate > start else candidate + timedelta(days=1)


def _event_window(
    scenario: str, start: datetime, interval: int, count: int, event_at: float | None
) -> tuple[datetime, timedelta]:
    """Return when a scenario's event starts and how long it lasts."""
    durations = {
        "fire": timedelta(minutes=20),
        "gas_leak": timedelta(minutes=40),
        "intrusion": timedelta(minutes=6),
        "stuck": timedelta(hours=3),
        "drift": timedelta(hours=6),
        "flatline": timedelta(hours=2),
        "pir_false": timedelta(hours=1),
    }
    duration = durations[scenario]
    if event_at is not None:
        begin = start + timedelta(seconds=event_at)
    elif scenario == "intrusion":
        begin = _next_at(start, 3)  # at night, while everybody sleeps
    elif scenario == "pir_false":
        begin = _next_at(start, 10)  # when the house is empty on a work day
    else:
        # In the middle of the run, so that normal data surrounds the event.
        span = timedelta(seconds=interval * count)
        begin = start + (span - duration) / 2
    return begin, duration


class ScenarioRun:
    """Plays one scenario over time: raw readings on demand, and the labels of what it injected."""

    def __init__(
        self, scenario: str, *, seed: int, begin: datetime | None, duration: timedelta
    ) -> None:
        """Prepare the home; the event (if any) covers [begin, begin + duration)."""
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self._home = Home(seed)
        self._rng = random.Random(seed)  # noqa: S311 - simulation only
        # The event draws from its own generator, so readings outside it match a normal run.
        self._event_rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - simulation only
        self._begin = begin if scenario != "normal" else None
        self._end = begin + duration if begin is not None else None
        self._frozen: Readings | None = None
        self._seqs: list[int] = []

    def reading(self, seq: int, when: datetime) -> Readings:
        """Return the raw readings at `when`, with the scenario's event injected."""
        readings, _active = self._home.raw(when, self._rng)
        if self._begin is not None and self._end is not None and self._begin <= when < self._end:
            progress = (when - self._begin) / (self._end - self._begin)
            readings, self._frozen = _inject(
                self.scenario, readings, progress, self._frozen, self._event_rng
            )
            self._seqs.append(seq)
        return readings

    @property
    def labels(self) -> list[Label]:
        """Return the ground truth for the samples produced so far."""
        if self._begin is None or self._end is None or not self._seqs:
            return []
        return [
            Label(
                scenario=self.scenario,
                kind=self.scenario,
                start=int(self._begin.timestamp()),
                end=int(self._end.timestamp()),
                start_seq=self._seqs[0],
                end_seq=self._seqs[-1],
                sensors=list(AFFECTED[self.scenario]),
            )
        ]


def scenario_run(
    scenario: str,
    *,
    seed: int,
    start: datetime,
    interval: int,
    count: int | None,
    event_at: float | None,
) -> ScenarioRun:
    """Place the scenario's event in time and return a run of it."""
    if scenario == "normal":
        return ScenarioRun(scenario, seed=seed, begin=None, duration=timedelta(0))
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if event_at is None and count is None:
        event_at = 30.0  # a live node shows the event half a minute after it starts
    begin, duration = _event_window(scenario, start, interval, count or 0, event_at)
    return ScenarioRun(scenario, seed=seed, begin=begin, duration=duration)


MAX_CYCLE_RUNS = 16


def parse_cycle(text: str) -> list[tuple[str, float]]:
    """Parse `normal:60,gas_leak:90,...` into (scenario, seconds) steps; raises ValueError."""
    steps: list[tuple[str, float]] = []
    for part in text.split(","):
        name, _, seconds = part.strip().partition(":")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        try:
            duration = float(seconds)
        except ValueError:
            raise ValueError(f"step {part!r} needs seconds, as in normal:60") from None
        if duration <= 0:
            raise ValueError(f"step {part!r} needs a positive number of seconds")
        steps.append((name, duration))
    if not steps:
        raise ValueError("a cycle needs at least one step")
    return steps


class ScenarioCycle:
    """Plays scenarios one after another and starts over, as the demo's normal → leak → fire."""

    def __init__(self, steps: list[tuple[str, float]], *, seed: int, start: datetime) -> None:
        """Each step's event covers the whole step; the home's routine runs on underneath."""
        self._steps = steps
        self._seed = seed
        self._start = start
        self._period = sum(seconds for _, seconds in steps)
        self._runs: dict[tuple[int, int], ScenarioRun] = {}

    def scenario_at(self, when: datetime) -> str:
        """Return the scenario playing at `when`."""
        return self._locate(when)[2]

    def _locate(self, when: datetime) -> tuple[tuple[int, int], datetime, str, float]:
        """Return the step at `when`: its key (round, index), start, scenario and length."""
        elapsed = max(0.0, (when - self._start).total_seconds())
        round_no, into = divmod(elapsed, self._period)
        begin = self._start + timedelta(seconds=round_no * self._period)
        for index, (scenario, seconds) in enumerate(self._steps):
            if into < seconds:
                return (int(round_no), index), begin, scenario, seconds
            into -= seconds
            begin += timedelta(seconds=seconds)
        # Rounding at the very end of a round: the last step.
        scenario, seconds = self._steps[-1]
        return (int(round_no), len(self._steps) - 1), begin, scenario, seconds

    def reading(self, seq: int, when: datetime) -> Readings:
        """Return the raw readings at `when` from the step playing then."""
        key, begin, scenario, seconds = self._locate(when)
        run = self._runs.get(key)
        if run is None:
            run = ScenarioRun(
                scenario, seed=self._seed, begin=begin, duration=timedelta(seconds=seconds)
            )
            self._runs[key] = run
            # A demo runs for hours: keep the labels of the latest steps only.
            while len(self._runs) > MAX_CYCLE_RUNS:
                del self._runs[min(self._runs)]
        return run.reading(seq, when)

    @property
    def labels(self) -> list[Label]:
        """Return the ground truth of the steps played so far."""
        return [label for run in self._runs.values() for label in run.labels]


# A recording is a local file the user chose, but it is still read with bounds.
MAX_RECORDING_LINES = 1_000_000
_NUMBER_KEYS = ("t", "h", "g", "l")
_FLAG_KEYS = ("f", "m")


def parse_recorded_line(line: str) -> Readings:
    """Return the raw readings of one `simulate` output line (or a bare reading object)."""
    doc = json.loads(line)
    if isinstance(doc, dict) and isinstance(doc.get("raw"), dict):
        doc = doc["raw"]
    if not isinstance(doc, dict):
        raise ValueError("a recorded line must be a JSON object")  # noqa: TRY004 - bad file content
    values: dict[str, Any] = {}
    for key in _NUMBER_KEYS:
        value = doc.get(key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (is_number and math.isfinite(value)):
            raise ValueError(f"{key} must be a finite number or null, not {value!r}")
        values[key] = None if value is None else float(value)
    for key in _FLAG_KEYS:
        value = doc.get(key)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{key} must be true, false or null, not {value!r}")
        values[key] = value
    return Readings(**values)


class Recording:
    """Plays recorded raw readings in order, one per reading, then holds the last one.

    The file is what `simulate` writes (its `raw` readings are used) or one reading object per
    line. Both nodes, Python and C++, play such files the same way, so one scenario file drives
    either in the end-to-end tests.
    """

    def __init__(self, lines: list[Readings]) -> None:
        """Keep the readings; at least one is needed."""
        if not lines:
            raise ValueError("a recording needs at least one reading")
        self._lines = lines
        self._next = 0

    @classmethod
    def load(cls, path: Path) -> Recording:
        """Read a recording; raises ValueError naming the bad line."""
        lines: list[Readings] = []
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                if len(lines) >= MAX_RECORDING_LINES:
                    raise ValueError(f"{path}: more than {MAX_RECORDING_LINES} readings")
                try:
                    lines.append(parse_recorded_line(line))
                except ValueError as err:
                    raise ValueError(f"{path}:{number}: {err}") from None
        return cls(lines)

    def reading(self, seq: int, when: datetime) -> Readings:
        """Return the next recorded reading (the last one again once the file is played)."""
        reading = self._lines[min(self._next, len(self._lines) - 1)]
        self._next += 1
        return reading

    @property
    def labels(self) -> list[Label]:
        """Return no labels: a recording carries no ground truth."""
        return []


def simulate(
    scenario: str,
    *,
    seed: int,
    count: int,
    interval: int = 5,
    start: datetime = DEFAULT_START,
    event_at: float | None = None,
    cycle: list[tuple[str, float]] | None = None,
) -> tuple[list[Sample], list[Label]]:
    """Return `count` raw samples of a scenario (or a cycle of them) and the injected labels."""
    run: ScenarioRun | ScenarioCycle
    if cycle:
        run = ScenarioCycle(cycle, seed=seed, start=start)
    else:
        run = scenario_run(
            scenario, seed=seed, start=start, interval=interval, count=count, event_at=event_at
        )
    samples = []
    for seq in range(count):
        when = start + timedelta(seconds=seq * interval)
        samples.append(Sample(seq, int(when.timestamp()), run.reading(seq, when)))
    return samples, run.labels


AFFECTED: dict[str, tuple[str, ...]] = {
    "fire": ("t", "h", "f", "g", "l"),
    "gas_leak": ("g",),
    "intrusion": ("m", "l"),
    "stuck": ("t",),
    "drift": ("h",),
    "flatline": ("t", "h", "g", "l", "m"),
    "pir_false": ("m",),
}


def _inject(
    scenario: str,
    readings: Readings,
    progress: float,
    frozen: Readings | None,
    rng: random.Random,
) -> tuple[Readings, Readings | None]:
    """Change one raw reading as the scenario's event does at `progress` (0..1) through it."""
    r = readings
    if scenario == "fire":
        # The room heats by ~1.5 °C a minute over 20 minutes; flame and smoke follow.
        heat = min(progress * 30.0, 30.0)
        r = Readings(
            t=r.t + heat if r.t is not None else None,
            h=max(20.0, (r.h or 40.0) - heat / 2),
            g=min(1.0, 0.05 + progress * 2.0),
            l=(r.l or 0.0) + 400 * min(1.0, progress * 4),
            f=progress >= 0.1,  # noqa: PLR2004 - the flame sensor sees it after two minutes
            m=r.m,
        )
    elif scenario == "gas_leak":
        r = Readings(t=r.t, h=r.h, g=min(1.0, (r.g or 0.0) + 0.7 * progress), l=r.l, f=r.f, m=r.m)
    elif scenario == "intrusion":
        # A door opens onto the street light and someone moves about.
        r = Readings(t=r.t, h=r.h, g=r.g, l=(r.l or 0.0) + 150.0, f=r.f, m=rng.random() < 0.9)  # noqa: PLR2004
    elif scenario == "stuck":
        frozen = frozen or r
        r = Readings(t=frozen.t, h=r.h, g=r.g, l=r.l, f=r.f, m=r.m)
    elif scenario == "drift":
        r = Readings(t=r.t, h=min(90.0, (r.h or 0.0) + 15.0 * progress), g=r.g, l=r.l, f=r.f, m=r.m)
    elif scenario == "flatline":
        frozen = frozen or r
        r = Readings(t=frozen.t, h=frozen.h, g=frozen.g, l=0.0, f=False, m=False)
    elif scenario == "pir_false":
        r = Readings(t=r.t, h=r.h, g=r.g, l=r.l, f=r.f, m=rng.random() < 0.08)  # noqa: PLR2004
    return r, frozen
