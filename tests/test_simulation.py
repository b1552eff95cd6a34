"""The reference node's simulated home and scenarios: realistic, labelled and reproducible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import itertools
import json
from pathlib import Path
import statistics

from iotshield_node.__main__ import main
from iotshield_node.simulation import (
    AFFECTED,
    DEFAULT_START,
    SCENARIOS,
    Recording,
    Sample,
    ScenarioCycle,
    parse_cycle,
    simulate,
)
import pytest

DAY = 24 * 3600 // 60  # one day of readings at one a minute
FIELDS = ("t", "h", "g", "l", "f", "m")


def _hour(sample: Sample) -> float:
    when = datetime.fromtimestamp(sample.timestamp, UTC)
    return when.hour + when.minute / 60


def test_same_seed_same_output_and_seed_matters() -> None:
    """A seed fixes every reading and label; another seed gives another home."""
    first = simulate("fire", seed=3, count=2000, interval=30)
    again = simulate("fire", seed=3, count=2000, interval=30)
    other = simulate("fire", seed=4, count=2000, interval=30)
    assert first == again
    assert first[0] != other[0]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "normal"])
def test_labels_line_up_with_injected_events(scenario: str) -> None:
    """Inside its label a scenario changes only its sensors; outside it equals a normal day."""
    count = 3 * DAY
    normal, no_labels = simulate("normal", seed=9, count=count, interval=60)
    samples, labels = simulate(scenario, seed=9, count=count, interval=60)
    assert no_labels == []
    (label,) = labels
    assert label.scenario == scenario
    assert 0 < label.start_seq <= label.end_seq < count - 1
    assert samples[label.start_seq].timestamp >= label.start
    assert samples[label.end_seq].timestamp < label.end
    assert samples[label.end_seq + 1].timestamp >= label.end
    affected = set(AFFECTED[scenario])
    changed: set[str] = set()
    for seq, (event, calm) in enumerate(zip(samples, normal, strict=True)):
        inside = label.start_seq <= seq <= label.end_seq
        for key in FIELDS:
            differs = getattr(event.readings, key) != getattr(calm.readings, key)
            if not inside:
                assert not differs, (scenario, seq, key)
            elif differs:
                changed.add(key)
    assert changed, scenario
    assert changed <= affected, (scenario, changed)


def test_fire_and_gas_leak_cross_the_hazard_thresholds() -> None:
    """The hazards the product must catch are really in the data."""
    samples, (label,) = simulate("fire", seed=2, count=4000, interval=5)
    window = samples[label.start_seq : label.end_seq + 1]
    assert max(s.readings.t or 0 for s in window) > 45
    assert any(s.readings.f for s in window)
    assert max(s.readings.g or 0 for s in window) > 0.6
    assert not any(s.readings.f for s in samples[: label.start_seq])
    samples, (label,) = simulate("gas_leak", seed=2, count=4000, interval=5)
    gas = [s.readings.g or 0 for s in samples[label.start_seq : label.end_seq + 1]]
    assert gas[0] < 0.2
    assert gas[-1] > 0.6
    assert all(b >= a - 0.02 for a, b in itertools.pairwise(gas))


def test_intrusion_happens_at_three_at_night() -> None:
    """The intrusion starts at 03:00 when nobody is up."""
    samples, (label,) = simulate("intrusion", seed=5, count=2 * DAY, interval=60)
    start = samples[label.start_seq]
    assert _hour(start) == 3.0
    before = samples[label.start_seq - 60 : label.start_seq]
    assert not any(s.readings.m for s in before)
    assert (
        statistics.fmean(bool(s.readings.m) for s in samples[label.start_seq : label.end_seq]) > 0.5
    )


def test_daily_and_weekly_routine() -> None:
    """Nights are dark and still, work days are empty, evenings warm and lit."""
    samples, _ = simulate("normal", seed=1, count=7 * DAY, interval=60)
    monday = samples[:DAY]
    night = [s for s in monday if 1 <= _hour(s) < 5]
    workday_away = [s for s in monday if 9 <= _hour(s) < 16]
    evening = [s for s in monday if 19.5 <= _hour(s) < 22]
    assert not any(s.readings.m for s in night)
    assert not any(s.readings.m for s in workday_away)
    assert statistics.fmean(bool(s.readings.m) for s in evening) > 0.4
    assert max(s.readings.l or 0 for s in night) < 20
    assert min(s.readings.l or 0 for s in evening) > 200
    saturday = samples[5 * DAY : 6 * DAY]
    assert statistics.fmean(bool(s.readings.m) for s in saturday if 11 <= _hour(s) < 16) > 0.4
    showers = [s.readings.h or 0 for s in monday if 6.5 <= _hour(s) < 7.5]
    assert max(showers) > statistics.fmean(s.readings.h or 0 for s in night) + 10


def test_cli_simulate_writes_readings_and_truth(tmp_path: Path) -> None:
    """The command line writes the same files for the same seed, with noised readings."""
    outputs = []
    for run in ("a", "b"):
        out, truth = tmp_path / f"{run}.jsonl", tmp_path / f"{run}-truth.jsonl"
        assert (
            main(
                [
                    "simulate",
                    "--scenario",
                    "gas_leak",
                    "--seed",
                    "4",
                    "--count",
                    "600",
                    "--out",
                    str(out),
                    "--truth",
                    str(truth),
                    "--node-id",
                    "kitchen",
                ]
            )
            == 0
        )
        outputs.append((out.read_bytes(), truth.read_bytes()))
    assert outputs[0] == outputs[1]
    rows = [json.loads(line) for line in outputs[0][0].splitlines()]
    assert len(rows) == 600
    assert any(row["raw"]["t"] != row["sent"]["t"] for row in rows)
    assert all(row["raw"]["f"] == row["sent"]["f"] for row in rows)
    (label,) = [json.loads(line) for line in outputs[0][1].splitlines()]
    assert label["node"] == "kitchen"
    assert label["kind"] == "gas_leak"
    assert label["start_seq"] < label["end_seq"]


def test_cycle_plays_scenarios_in_turn_and_starts_over() -> None:
    """A demo cycle: normal, then a gas leak that builds up, then normal again, for ever."""
    steps = parse_cycle("normal:60, gas_leak:60,normal:30")
    assert steps == [("normal", 60.0), ("gas_leak", 60.0), ("normal", 30.0)]
    start = DEFAULT_START
    cycle = ScenarioCycle(steps, seed=4, start=start)
    at = [start + timedelta(seconds=s) for s in (10, 65, 115, 130, 160, 225)]
    assert [cycle.scenario_at(when) for when in at] == [
        "normal",
        "gas_leak",
        "gas_leak",
        "normal",
        "normal",
        "gas_leak",
    ]
    gas = [cycle.reading(n, when).g for n, when in enumerate(at)]
    assert gas[2] is not None
    assert gas[0] is not None
    # Late in the leak the gas is far above where it started, and gone after it.
    assert gas[2] > gas[0] + 0.5
    assert gas[3] is not None
    assert gas[3] < 0.3
    assert [label.scenario for label in cycle.labels] == ["gas_leak", "gas_leak"]


@pytest.mark.parametrize("text", ["", "normal", "normal:0", "volcano:10", "fire:-5"])
def test_bad_cycles_are_refused(text: str) -> None:
    """A cycle with unknown scenarios or non-positive lengths is refused."""
    with pytest.raises(ValueError, match=r"scenario|seconds|step"):
        parse_cycle(text)


def test_simulate_plays_a_cycle_and_a_recording_replays_it(tmp_path: Path) -> None:
    """`simulate --cycle` writes the cycle; a Recording plays its raw readings, then holds."""
    out = tmp_path / "fire.jsonl"
    args = ["simulate", "--cycle", "normal:3,fire:10,normal:2", "--interval", "1"]
    assert main([*args, "--count", "15", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["raw"]["f"] for row in rows[:3]] == [False] * 3
    assert any(row["raw"]["f"] for row in rows[3:13])
    recording = Recording.load(out)
    played = [recording.reading(0, DEFAULT_START) for _ in range(17)]
    assert [p.t for p in played[:15]] == [row["raw"]["t"] for row in rows]
    assert [p.f for p in played[:15]] == [row["raw"]["f"] for row in rows]
    # Played to the end: the last reading again, however long the node runs.
    assert played[15] == played[16] == played[14]
    assert recording.labels == []


def test_a_recording_takes_bare_readings_and_missing_sensors(tmp_path: Path) -> None:
    """A line may be a bare reading; absent or null sensors are unread sensors."""
    path = tmp_path / "bare.jsonl"
    path.write_text('{"t": 21, "h": 40.5, "f": true}\n\n{"t": null, "m": false}\n')
    recording = Recording.load(path)
    first, second = (recording.reading(n, DEFAULT_START) for n in range(2))
    assert (first.t, first.h, first.g, first.l, first.f, first.m) == (
        21.0,
        40.5,
        None,
        None,
        True,
        None,
    )
    assert (second.t, second.m) == (None, False)


@pytest.mark.parametrize(
    "line",
    ['{"t": "hot"}', '{"t": NaN}', '{"f": 1}', '{"m": "yes"}', "[1, 2]", "{", '{"h": true}'],
)
def test_a_bad_recording_is_refused_naming_the_line(tmp_path: Path, line: str) -> None:
    """A recording with a bad reading is refused with its line number; so is an empty one."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 20}\n' + line + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: "):
        Recording.load(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="at least one"):
        Recording.load(path)
