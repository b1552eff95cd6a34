"""The privacy–utility trade-off: what each ε costs in detection and what it buys in privacy.

    .venv/oldest/bin/python scripts/bench_privacy.py [--quick] [--json FILE]

For ε ∈ {0.1, 0.25, 0.5, 1, 2, off} (the node's continuous noise; motion keeps its default
randomized response, ε_m = 2, except in the occupancy row, where ε_m takes the same values):
- hazards: the reference node's fire and gas-leak scenarios at five-second readings, through the
  node's privacy layer and the integration's severity engine: recall and median time from the
  event's start to the hazard's own alarm (fire: HIGH or worse; gas leak: gas at MEDIUM or worse);
- false alarms: incidents opened per node-week of an ordinary home (normal scenario), from
  thresholds and from the anomaly detector (after a week of learning the home), as Home
  Assistant opens them by default;
- anomaly detection: event-level F1 of the anomaly detector (continuous and binary sensors) at
  five-second readings, as scripts/eval_anomaly.py measures it, on fewer homes;
- what the noise buys: how well an observer who sees the noised motion stream and knows the
  mechanism reconstructs when somebody is at home and up (per quarter hour), against always
  guessing the likelier state.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
import json
from pathlib import Path
import random
import statistics
import sys
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "firmware" / "reference_node"), str(ROOT / "scripts")]

from bench_report import privacy_table  # noqa: E402
from eval_anomaly import evaluate, scores  # noqa: E402
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize  # noqa: E402
from iotshield_node.simulation import DEFAULT_START, Home, simulate  # noqa: E402

from custom_components.iotshield.anomaly import AnomalyDetector, with_anomalies  # noqa: E402
from custom_components.iotshield.incidents import IncidentTracker, Transition  # noqa: E402
from custom_components.iotshield.severity import Assessment, Level, SeverityEngine  # noqa: E402

EPSILONS: tuple[float | None, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, None)
INTERVAL = 5  # seconds between readings, the node's default
HOLD = 300.0  # the integration's default hold time
# A hazard counts as detected when its incident opens before this long after the event ends.
TOLERANCE = 300


def label(epsilon: float | None) -> str:
    """Return how an ε is shown."""
    return "off" if epsilon is None else f"{epsilon:g}"


def _config(epsilon: float | None, motion_epsilon: float = 2.0) -> PrivacyConfig:
    """Return the node's privacy layer at an ε (None: no noise at all)."""
    if epsilon is None:
        return PrivacyConfig(epsilon=0.0, motion_epsilon=0.0)
    return PrivacyConfig(epsilon=epsilon, motion_epsilon=motion_epsilon)


def _engine(config: PrivacyConfig) -> SeverityEngine:
    """Return a severity engine told the node's noise, as the announce tells Home Assistant."""
    sigma = {key: config.sigma(key) for key in "thgl"} if config.enabled else {}
    return SeverityEngine(noise=sigma)


def _sent(config: PrivacyConfig, noise: NoiseSource, raw: Any) -> dict[str, Any]:
    """Return one reading as the node sends it, keyed as the severity engine reads it."""
    sent = privatize(raw, config, noise)
    return {"t": sent.t, "h": sent.h, "g": sent.g, "l": sent.l, "f": sent.f, "m": sent.m}


def _alarmed(scenario: str, assessment: Assessment) -> bool:
    """Say whether a reading raises the hazard's own alarm.

    A fire is HIGH or worse (flame, heat with gas); a gas leak is the gas sensor at MEDIUM or
    worse. Judged per hazard, so that an incident a noisy temperature opened earlier neither
    hides the hazard nor counts as having found it.
    """
    if scenario == "fire":
        return assessment.hazard_level >= Level.HIGH
    return assessment.sensors["g"] >= Level.MEDIUM


def hazards(epsilon: float | None, seeds: int) -> dict[str, dict[str, float | None]]:
    """Return recall and median seconds to the alarm for the fire and gas-leak scenarios."""
    out: dict[str, dict[str, float | None]] = {}
    for scenario in ("fire", "gas_leak"):
        delays: list[float] = []
        for seed in range(seeds):
            # Two hours of readings with the event in the middle.
            samples, labels = simulate(scenario, seed=seed, count=1440, interval=INTERVAL)
            (event,) = labels
            config = _config(epsilon)
            noise = NoiseSource(seed + 101)
            engine = _engine(config)
            for sample in samples:
                assessment = engine.assess(_sent(config, noise, sample.readings))
                inside = event.start <= sample.timestamp <= event.end + TOLERANCE
                if inside and _alarmed(scenario, assessment):
                    delays.append(sample.timestamp - event.start)
                    break
        out[scenario] = {
            "recall": len(delays) / seeds,
            "median_seconds": statistics.median(delays) if delays else None,
        }
    return out


def false_alarms(epsilon: float | None, weeks: float, learn_weeks: float) -> float:
    """Return incidents opened per node-week in an ordinary home without any event.

    As Home Assistant opens them by default: threshold severities and the anomaly detector's
    findings (at most MEDIUM), minimum severity MEDIUM. The detector first learns the home for
    `learn_weeks`; incidents are counted in the `weeks` after.
    """
    learn = int(learn_weeks * 7 * 24 * 3600 / INTERVAL)
    count = learn + int(weeks * 7 * 24 * 3600 / INTERVAL)
    home = Home(5)
    rng = random.Random(5)  # noqa: S311 - simulation only
    config = _config(epsilon)
    noise = NoiseSource(55)
    engine = _engine(config)
    sigma = {key: config.sigma(key) for key in "thgl"} if config.enabled else {}
    detector = AnomalyDetector(sigma, config.motion_flip if epsilon is not None else 0.0)
    tracker = IncidentTracker(min_level=Level.MEDIUM, hold_seconds=HOLD)
    opened = 0
    for i in range(count):
        when = DEFAULT_START + timedelta(seconds=i * INTERVAL)
        raw, _ = home.raw(when, rng)
        reading = _sent(config, noise, raw)
        detector.add(when, reading)
        assessment = with_anomalies(engine.assess(reading), detector.latest)
        change = tracker.observe(assessment.level, [], when.timestamp())
        if i >= learn and change is not None and change.transition is Transition.OPENED:
            opened += 1
    return opened / weeks


def anomaly_f1(epsilon: float | None, homes: int, clean: int, weeks: float) -> dict[str, float]:
    """Return the anomaly detector's F1 on continuous and binary sensors at an ε."""
    # At the node's default five-second readings, as Home Assistant receives them.
    tally = evaluate(homes, clean, weeks, 0.0 if epsilon is None else epsilon, per_minute=12)
    return scores(tally)


def occupancy_truth(homes: int, days: int) -> list[tuple[list[bool], list[bool]]]:
    """Return, per home, each reading's true motion and whether somebody was up and at home."""
    runs = []
    for seed in range(homes):
        home = Home(seed + 31)
        rng = random.Random(seed + 31)  # noqa: S311 - simulation only
        motion: list[bool] = []
        present: list[bool] = []
        for i in range(days * 24 * 3600 // INTERVAL):
            raw, active = home.raw(DEFAULT_START + timedelta(seconds=i * INTERVAL), rng)
            motion.append(bool(raw.m))
            present.append(active)
        runs.append((motion, present))
    return runs


def occupancy(
    motion_epsilon: float | None, truth: list[tuple[list[bool], list[bool]]]
) -> dict[str, float]:
    """Return how often an observer of the noised motion gets each quarter hour's presence right.

    The observer knows the flip rate p and how often a present person triggers the sensor (q,
    learned from the truth: a generous observer), and guesses "present" when the quarter hour's
    rate of motion readings is nearer q·(1 - p) + (1 - q)·p than p.
    """
    config = _config(1.0, motion_epsilon or 0.0)
    p = config.motion_flip if motion_epsilon is not None else 0.0
    noise = NoiseSource(977)
    cell = 15 * 60 // INTERVAL
    right = total = present_cells = 0
    for motion, present in truth:
        active = [m for m, a in zip(motion, present, strict=True) if a]
        q = sum(active) / len(active)
        expect_present = q * (1 - p) + (1 - q) * p
        for start in range(0, len(motion) - cell + 1, cell):
            seen = 0
            for bit in motion[start : start + cell]:
                flipped = p > 0 and noise.uniform() <= p
                seen += bit != flipped
            rate = seen / cell
            guess = abs(rate - expect_present) < abs(rate - p)
            truly = sum(present[start : start + cell]) * 2 > cell
            right += guess == truly
            present_cells += truly
            total += 1
    chance = max(present_cells, total - present_cells) / total
    return {"accuracy": right / total, "chance": chance, "flip": p}


def run(quick: bool) -> dict[str, Any]:
    """Measure every trade-off and return the figures by ε."""
    seeds, weeks, learn_weeks = (2, 0.05, 0.0) if quick else (10, 1.0, 1.0)
    homes, clean, anomaly_weeks = (1, 1, 1.5) if quick else (4, 2, 3.0)
    truth = occupancy_truth(1 if quick else 3, 1 if quick else 7)
    rows = []
    for epsilon in EPSILONS:
        config = _config(epsilon)
        rows.append(
            {
                "epsilon": label(epsilon),
                "sigma_t": round(config.sigma("t"), 3) if config.enabled else 0.0,
                "hazards": hazards(epsilon, seeds),
                "false_alarms_per_week": false_alarms(epsilon, weeks, learn_weeks),
                "anomaly_f1": anomaly_f1(epsilon, homes, clean, anomaly_weeks),
                "occupancy": occupancy(epsilon, truth),
            }
        )
    return {"quick": quick, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and optionally write the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print("\n".join(privacy_table(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
