"""How often a healthy home is not *normal*, before and after context semantics; hazards unchanged.

    .venv/oldest/bin/python scripts/eval_severity.py               (about 4 minutes)
    .venv/oldest/bin/python scripts/eval_severity.py --real-interval 5    (the real house at 5 s)

Three severity engines judge the same readings, sent through the node's privacy layer at its
defaults (ε = 0.5, ε_m = 2):
- *before*: Table 3.3 read literally, as the integration did until now: every LOW band raises
  the severity (cold, warm, dry, damp, dark, bright) and so does each motion reading on its own;
- *after*: the integration's default: below MEDIUM only gas raises the severity; comfort, light
  and motion are context;
- *after, motion counts while armed*: the option that makes motion count, switched on while
  nobody is up at home (an alarm armed away while the residents are out, armed night while
  they sleep).

Ordinary weeks of the simulated homes (no faults, readings every five seconds): the share of
readings that are not *normal*. The real house (`data/real-home/`): each room's recorded
temperature and humidity (each 10-minute value held until the next), with light, gas and motion
from the simulated home's ordinary day at the same hour (the recording has none). Hazard and
fault scenarios of the reference node (fire, gas leak, intrusion, sensor faults): the highest
level each engine reaches during the event, when it first reaches MEDIUM, and whether MEDIUM and
up (what opens incidents and turns the problem sensors on) and the gas level (whose LOW band
counts, also in the `fire` rule) are the same at every reading.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
import random
import sys

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "firmware" / "reference_node"), str(ROOT / "scripts")]

from eval_anomaly import REAL_HOME, ROOMS, load_real_home  # noqa: E402
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize  # noqa: E402
from iotshield_node.readings import Readings  # noqa: E402
from iotshield_node.simulation import DEFAULT_START, SCENARIOS, Home, scenario_run  # noqa: E402

from custom_components.iotshield.severity import (  # noqa: E402
    SENSOR_NAMES,
    Assessment,
    Level,
    SeverityEngine,
)

INTERVAL = 5  # seconds between readings, the node's default
REAL_STEP = 10 * 60  # seconds between the recording's rows
TARGET = 0.01
ENGINES = ("before", "after", "after, motion counts while armed")
# The hour each scenario's event starts (when it means most); the run starts an hour before it
# and ends an hour after it.
EVENT_HOURS: dict[str, int] = {
    "fire": 12,
    "gas_leak": 12,
    "intrusion": 3,
    "stuck": 12,
    "drift": 12,
    "flatline": 10,
    "pir_false": 10,
}
LONGEST_EVENT = timedelta(hours=6)
# Counted as part of the event: alarms up to five minutes after it ends.
AFTER_EVENT = timedelta(minutes=5)


def engine(kind: str, privacy: PrivacyConfig) -> SeverityEngine:
    """Return one of the compared engines, told the node's noise as its announce tells."""
    sigma = {key: privacy.sigma(key) for key in "thgl"}
    if kind == "before":
        judge = SeverityEngine(noise=sigma, low_counts=SENSOR_NAMES, motion_window=1)
    else:
        judge = SeverityEngine(noise=sigma)
    judge.set_noise({}, privacy.motion_flip)
    return judge


def as_dict(readings: Readings) -> dict[str, float | bool | None]:
    """Return readings keyed as the severity engine reads them."""
    return {
        "t": readings.t,
        "h": readings.h,
        "g": readings.g,
        "l": readings.l,
        "f": readings.f,
        "m": readings.m,
    }


def empty(home: Home, when: datetime) -> bool:
    """Say whether nobody is up at home (out at work or asleep): when the alarm is armed."""
    day = (when.date() - DEFAULT_START.date()).days
    plan = home.plan(day, when.weekday())
    hour = when.hour + when.minute / 60 + when.second / 3600
    out = plan.leave is not None and plan.back is not None and plan.leave <= hour < plan.back
    return out or not plan.wake <= hour < plan.sleep


@dataclass
class Share:
    """Readings judged by one engine, and those that were not normal (by rule)."""

    readings: int = 0
    raised: int = 0
    rules: Counter[str] = field(default_factory=Counter)

    def add(self, assessment: Assessment) -> None:
        """Count one assessment."""
        self.readings += 1
        if assessment.level > Level.NORMAL:
            self.raised += 1
            self.rules.update(rule.rule_id for rule in assessment.rules)

    @property
    def share(self) -> float:
        """Return the share of readings that were not normal."""
        return self.raised / self.readings if self.readings else 0.0

    def causes(self) -> str:
        """Name the rules behind the raised readings, most frequent first."""
        if not self.readings:
            return "–"
        parts = [f"{rule} {count / self.readings:.1%}" for rule, count in self.rules.most_common(4)]
        return ", ".join(parts) or "–"


def judge(
    stream: Iterator[tuple[datetime, Readings, bool]], privacy: PrivacyConfig, seed: int
) -> dict[str, Share]:
    """Send raw readings through the privacy layer and every engine; count what is not normal."""
    noise = NoiseSource(seed)
    engines = {kind: engine(kind, privacy) for kind in ENGINES}
    shares = {kind: Share() for kind in ENGINES}
    armed = engines[ENGINES[2]]
    for _, raw, nobody_up in stream:
        reading = as_dict(privatize(raw, privacy, noise))
        armed.motion_counts = nobody_up
        for kind, judged in engines.items():
            shares[kind].add(judged.assess(reading))
    return shares


def simulated_home(seed: int, weeks: float) -> Iterator[tuple[datetime, Readings, bool]]:
    """Yield an ordinary simulated home's readings every five seconds and whether it is empty."""
    home = Home(seed)
    rng = random.Random(seed)  # noqa: S311 - simulation only
    for i in range(int(weeks * 7 * 24 * 3600 / INTERVAL)):
        when = DEFAULT_START + timedelta(seconds=i * INTERVAL)
        raw, _ = home.raw(when, rng)
        yield when, raw, empty(home, when)


def real_room(
    start: datetime, rows: list[tuple[float, float]], seed: int, interval: int
) -> Iterator[tuple[datetime, Readings, bool]]:
    """Yield a real room's recorded °C and %RH with a simulated home's light, gas and motion."""
    home = Home(seed)
    rng = random.Random(seed)  # noqa: S311 - simulation only
    for i in range(len(rows) * REAL_STEP // interval):
        when = start + timedelta(seconds=i * interval)
        t, h = rows[i * interval // REAL_STEP]
        simulated, _ = home.raw(when, rng)
        raw = Readings(t=t, h=h, g=simulated.g, l=simulated.l, f=False, m=simulated.m)
        yield when, raw, empty(home, when)


def merge(into: dict[str, Share], shares: dict[str, Share]) -> None:
    """Add one home's or room's counts to a total."""
    for kind, share in shares.items():
        total = into.setdefault(kind, Share())
        total.readings += share.readings
        total.raised += share.raised
        total.rules.update(share.rules)


def share_table(rows: dict[str, dict[str, Share]]) -> str:
    """Return the shares of readings not normal, per home or room, as a Markdown table."""
    lines = [
        "| | readings | before | after | after, motion counts while armed | before: why "
        "| after: why |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, shares in rows.items():
        before, after, armed = (shares[kind] for kind in ENGINES)
        lines.append(
            f"| {name} | {after.readings:,} | {before.share:.2%} | {after.share:.2%} "
            f"| {armed.share:.2%} | {before.causes()} | {after.causes()} |"
        )
    return "\n".join(lines)


@dataclass
class Outcome:
    """How one engine judged one scenario run."""

    peak: Level = Level.NORMAL
    first_raised: float | None = None
    first_medium: float | None = None
    # Per reading: the level from MEDIUM up (else normal) and the gas sensor's level.
    hazards: list[tuple[Level, Level]] = field(default_factory=list)


def scenario(name: str, seed: int, privacy: PrivacyConfig) -> dict[str, Outcome]:
    """Run one scenario of the reference node through every engine."""
    start = DEFAULT_START + timedelta(hours=EVENT_HOURS[name] - 1)
    count = int((LONGEST_EVENT + timedelta(hours=2)).total_seconds() // INTERVAL)
    run = scenario_run(name, seed=seed, start=start, interval=INTERVAL, count=count, event_at=3600)
    noise = NoiseSource(seed + 101)
    engines = {kind: engine(kind, privacy) for kind in ENGINES}
    # The option's case: the alarm is armed whenever nobody is up at home.
    home = Home(seed)
    armed = engines[ENGINES[2]]
    levels: list[tuple[datetime, dict[str, Assessment]]] = []
    for seq in range(count):
        when = start + timedelta(seconds=seq * INTERVAL)
        reading = as_dict(privatize(run.reading(seq, when), privacy, noise))
        armed.motion_counts = empty(home, when)
        levels.append((when, {kind: judged.assess(reading) for kind, judged in engines.items()}))
    (label,) = run.labels
    begin = datetime.fromtimestamp(label.start, DEFAULT_START.tzinfo)
    end = datetime.fromtimestamp(label.end, DEFAULT_START.tzinfo) + AFTER_EVENT
    outcomes = {kind: Outcome() for kind in ENGINES}
    for when, judged in levels:
        for kind, assessment in judged.items():
            outcome, level = outcomes[kind], assessment.level
            alert = level if level >= Level.MEDIUM else Level.NORMAL
            outcome.hazards.append((alert, assessment.sensors["g"]))
            if begin <= when <= end:
                outcome.peak = max(outcome.peak, level)
                if level > Level.NORMAL and outcome.first_raised is None:
                    outcome.first_raised = (when - begin).total_seconds()
                if level >= Level.MEDIUM and outcome.first_medium is None:
                    outcome.first_medium = (when - begin).total_seconds()
    return outcomes


def median(times: list[float]) -> str:
    """Return the median of some seconds and how many runs had one, or a dash."""
    found = sorted(times)
    return f"{found[len(found) // 2]:.0f} (×{len(found)})" if found else "–"


def scenario_table(seeds: int, privacy: PrivacyConfig) -> tuple[str, bool]:
    """Return every scenario's detection by each engine, and whether MEDIUM and up is unchanged."""
    lines = [
        "| scenario | seeds | highest level: before | after | after, armed "
        "| first above normal (s): before | after | after, armed "
        "| first MEDIUM (s): before | after | MEDIUM and up, and gas, identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    unchanged = True
    for name in (s for s in SCENARIOS if s != "normal"):
        peaks: dict[str, Counter[str]] = {kind: Counter() for kind in ENGINES}
        raised: dict[str, list[float]] = {kind: [] for kind in ENGINES}
        firsts: dict[str, list[float]] = {kind: [] for kind in ENGINES}
        same = 0
        for seed in range(seeds):
            outcomes = scenario(name, seed, privacy)
            for kind, outcome in outcomes.items():
                peaks[kind][outcome.peak.label] += 1
                if outcome.first_raised is not None:
                    raised[kind].append(outcome.first_raised)
                if outcome.first_medium is not None:
                    firsts[kind].append(outcome.first_medium)
            same += outcomes["before"].hazards == outcomes["after"].hazards
        unchanged &= same == seeds

        def peak(kind: str, counts: dict[str, Counter[str]] = peaks) -> str:
            return ", ".join(f"{label} ×{n}" for label, n in counts[kind].most_common())

        lines.append(
            f"| {name} | {seeds} | {peak('before')} | {peak('after')} | {peak(ENGINES[2])} "
            f"| {median(raised['before'])} | {median(raised['after'])} "
            f"| {median(raised[ENGINES[2]])} | {median(firsts['before'])} "
            f"| {median(firsts['after'])} | {same}/{seeds} |"
        )
    return "\n".join(lines), unchanged


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print Markdown tables; 1 when a hazard's detection changed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--homes", type=int, default=4, help="simulated homes")
    parser.add_argument("--weeks", type=float, default=2.0, help="of each simulated home")
    parser.add_argument("--real-home", type=Path, default=REAL_HOME, help="the recording (CSV)")
    parser.add_argument("--rooms", type=int, default=len(ROOMS), help="of the real house")
    parser.add_argument(
        "--real-interval", type=int, default=60, help="seconds between a real room's readings"
    )
    parser.add_argument("--seeds", type=int, default=10, help="runs of each scenario")
    args = parser.parse_args(argv)
    privacy = PrivacyConfig()
    report: Callable[[str], None] = print

    simulated: dict[str, dict[str, Share]] = {}
    total: dict[str, Share] = {}
    for seed in range(1001, 1001 + args.homes):
        shares = judge(simulated_home(seed, args.weeks), privacy, seed + 7)
        simulated[f"home {seed}"] = shares
        merge(total, shares)
    simulated["**all**"] = total
    report(
        f"Simulated homes, ordinary weeks ({args.homes} × {args.weeks:g} weeks, readings every "
        f"{INTERVAL} s, ε = 0.5, ε_m = 2): share of readings not normal (target under "
        f"{TARGET:.0%})"
    )
    report("")
    report(share_table(simulated))
    report("")

    start, recorded = load_real_home(args.real_home)
    real: dict[str, dict[str, Share]] = {}
    total = {}
    for number, (room, rows) in enumerate(list(recorded.items())[: args.rooms], start=1):
        shares = judge(real_room(start, rows, 2000 + number, args.real_interval), privacy, number)
        real[room] = shares
        merge(total, shares)
    real["**all**"] = total
    days = len(next(iter(recorded.values()))) * REAL_STEP // 86400
    report(
        f"Real house ({args.rooms} rooms, {days:.0f} days, a reading every {args.real_interval} s, "
        "ε = 0.5, ε_m = 2): recorded temperature and humidity; light, gas and motion simulated "
        "(an ordinary day of the simulated home at the same hour)"
    )
    report("")
    report(share_table(real))
    report("")

    table, unchanged = scenario_table(args.seeds, privacy)
    report(
        "Scenarios of the reference node (readings every 5 s, ε = 0.5, ε_m = 2; the event and "
        "five minutes after it; *armed*: motion counts while nobody is up at home)"
    )
    report("")
    report(table)
    report("")
    report(
        "Hazards unchanged: MEDIUM and up, and the gas level, identical at every reading of "
        "every run."
        if unchanged
        else "CHANGED: MEDIUM and up, or the gas level, differ in some run."
    )
    return 0 if unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
