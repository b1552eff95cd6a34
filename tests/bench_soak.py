"""The soak (scripts/bench --soak MINUTES): many nodes for a long time, recorder on.

50 v2 nodes publish noised readings every 5 s through a real Mosquitto to Home Assistant with
its real recorder on SQLite, while scenarios cycle: a fire at one node (an incident that must
resolve), a node restarting (silent, then a new session), and a broker restart. Resident memory,
the database's size and the longest event-loop stall are sampled over time into soak.json in
IOTSHIELD_BENCH_OUT (rewritten at every sample, so that a run still going can be read). The run
fails if memory keeps growing, a reading sent while the broker was up did not arrive, or an
incident is still open at the end.

IOTSHIELD_SOAK_MINUTES, IOTSHIELD_SOAK_NODES and IOTSHIELD_SOAK_CYCLE (seconds) size the run;
tests/test_bench_smoke.py runs a short one. IOTSHIELD_SOAK_TRACEMALLOC=1 traces Python's
allocations (slower) and names, at every sample, the source lines whose memory grew most since
the first sample after warm-up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import sqlite3
import statistics
import sys
import time
import tracemalloc
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import storage
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import StoredCounters, V2Sender
import pytest

from custom_components.iotshield.const import CONF_HOLD_TIME, DOMAIN

from .bench_ha import OUT, PUBLISHER, StallMonitor, add, answering, node_entry, rss_bytes
from .broker import Broker, connect_home_assistant, mosquitto, start_broker  # noqa: F401

MINUTES = float(os.environ.get("IOTSHIELD_SOAK_MINUTES", "60"))
NODES = int(os.environ.get("IOTSHIELD_SOAK_NODES", "50"))
# One round of scenarios: a fire, a node restart, a broker restart.
CYCLE = float(os.environ.get("IOTSHIELD_SOAK_CYCLE", "600"))
# The default publish interval.
INTERVAL = 5.0
# Seconds between two samples of memory, database size and stalls.
SAMPLE = min(60.0, CYCLE / 6)
# Seconds of readings planned ahead of the publisher.
LEAD = 10.0
# A fire lasts this long; the incident then resolves after the hold time of calm readings.
FIRE_SECONDS = min(30.0, CYCLE / 6)
HOLD_SECONDS = min(60, int(CYCLE / 6))
# A restarting node is silent this long (beyond the stale time of 3 intervals).
RESTART_SILENCE = 20.0
# Nodes cannot publish from shortly before a broker restart until Home Assistant's MQTT client
# is back (it retries every 10 s) and has subscribed again.
BROKER_BEFORE, BROKER_AFTER = 3.0, 25.0
# Memory may grow by this much from the middle third of the run to the last, and no more.
MEMORY_SLACK = 1.05
MEMORY_SLACK_BYTES = 16 * 2**20
TRACE = os.environ.get("IOTSHIELD_SOAK_TRACEMALLOC") == "1"
STEADY = Readings(21.5, 45.0, 0.05, 300.0, False, False)
FIRE = Readings(55.0, 30.0, 0.7, 300.0, True, False)


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Patch the recorder's test hooks in before Home Assistant starts (it records for real)."""


@pytest.fixture(autouse=True)
def production_loop(hass: HomeAssistant) -> None:
    """Run the event loop as in production, not in the test harness's asyncio debug mode."""
    hass.loop.set_debug(False)


class IntervalStalls(StallMonitor):
    """A StallMonitor that keeps only the longest stall since it was last read: bounded for hours.

    Wakes every 5 ms (not 1 ms) to cost little over a long run.
    """

    PERIOD = 0.005

    def __init__(self) -> None:
        """Start idle."""
        super().__init__()
        self.longest = 0.0
        self.longest_gc = 0.0

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        """Time each collection, keeping the longest."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_total += pause
            self.longest_gc = max(self.longest_gc, pause)

    async def _run(self) -> None:
        """Sleep again and again, keeping how much later than asked it woke up at most."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            collected = self.gc_total
            await asyncio.sleep(self.PERIOD)
            late = loop.time() - asked - self.PERIOD - (self.gc_total - collected)
            self.longest = max(self.longest, late)

    def take(self) -> tuple[float, float]:
        """Return the longest stall and garbage-collection pause (ms) since the last call."""
        taken = (self.longest * 1000, self.longest_gc * 1000)
        self.longest = self.longest_gc = 0.0
        return taken


@dataclass
class Node:
    """One simulated node: its keys, counters, noise and where its sequence stands."""

    node_id: str
    identity: ec.EllipticCurvePrivateKey
    sender: V2Sender
    noise: NoiseSource
    seq: int = 0
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


def phase(seconds: float) -> tuple[int, float]:
    """Return the cycle and the seconds into it."""
    cycle = int(seconds // CYCLE)
    return cycle, seconds - cycle * CYCLE


def broker_down(seconds: float) -> bool:
    """Say whether nodes cannot reach Home Assistant then (around a broker restart)."""
    _, into = phase(seconds)
    restart = 0.6 * CYCLE
    return restart - BROKER_BEFORE <= into < restart + BROKER_AFTER


def fire_at(index: int, nodes: int, due: float, duration: float) -> bool:
    """Say whether node `index` reads a fire then: one node a cycle, if it can resolve in time."""
    cycle, into = phase(due)
    start = 0.1 * CYCLE
    if index != cycle % nodes or not start <= into < start + FIRE_SECONDS:
        return False
    return cycle * CYCLE + start + FIRE_SECONDS + HOLD_SECONDS + 4 * INTERVAL < duration


def plan(
    hass: HomeAssistant,
    nodes: list[Node],
    first: float,
    last: float,
    scenarios: Counter[str],
) -> list[dict[str, Any]]:
    """Return the messages due in [first, last): readings, fires, restarts' new sessions."""
    duration = MINUTES * 60
    items: list[dict[str, Any]] = []
    tick = int(first // INTERVAL)
    while tick * INTERVAL < last:
        for index, node in enumerate(nodes):
            due = tick * INTERVAL + index * INTERVAL / len(nodes)
            if not first <= due < last or broker_down(due):
                continue
            cycle, into = phase(due)
            restart = 0.3 * CYCLE
            if index == (cycle + len(nodes) // 2) % len(nodes) and (
                restart <= into < restart + RESTART_SILENCE
            ):
                continue
            if index == (cycle + len(nodes) // 2) % len(nodes) and (
                restart + RESTART_SILENCE <= into < restart + RESTART_SILENCE + INTERVAL
            ):
                # The node is back: a new session first (its counters survive, as in flash).
                sender = V2Sender(
                    node.node_id, node.identity, node.sender.ha_key, node.sender.counters
                )
                node.sender = answering(hass, sender)
                scenarios["node_restarts"] += 1
                session = node.sender.open_session(
                    interval=int(INTERVAL), privacy=node.privacy.announce()
                )
                items.append(message(node, due - 0.5, session, -1))
            fire = fire_at(index, len(nodes), due, duration)
            scenarios["fire_readings"] += fire
            node.seq += 1
            readings = privatize(FIRE if fire else STEADY, node.privacy, node.noise)
            body = encode_telemetry(node.node_id, node.seq, 1763900000 + int(due), readings, None)
            items.append(message(node, due, node.sender.seal(body), node.seq))
        tick += 1
    return sorted(items, key=lambda item: item["due"])


def message(node: Node, due: float, payload: bytes, seq: int) -> dict[str, Any]:
    """Return one line of the publisher's plan."""
    topic = f"iotshield/{node.node_id}/sensors/data"
    return {"due": due, "topic": topic, "payload": payload.decode(), "node": node.node_id,
            "seq": seq}  # fmt: skip


def database_bytes(recorder: Recorder) -> int:
    """Return the size of the recorder's SQLite database with its write-ahead log."""
    path = Path(recorder.db_url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def state_rows(recorder: Recorder) -> int:
    """Return how many state rows the recorder holds."""
    path = recorder.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows: int = db.execute("SELECT COUNT(*) FROM states").fetchone()[0]
    return rows


def memory_verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare resident memory of the run's last third with its middle third (warm-up aside)."""
    rss = [sample["rss_mib"] for sample in samples]
    third = max(1, len(rss) // 3)
    middle = statistics.fmean(rss[third : 2 * third] or rss)
    last = statistics.fmean(rss[2 * third :] or rss)
    allowed = middle * MEMORY_SLACK + MEMORY_SLACK_BYTES / 2**20
    hours = (samples[-1]["minutes"] - samples[third]["minutes"]) / 60 if len(samples) > third else 0
    slope = (rss[-1] - rss[third]) / hours if hours > 0 else 0.0
    return {"middle_mib": middle, "last_mib": last, "allowed_mib": allowed,
            "mib_per_hour_after_warmup": slope, "bounded": last <= allowed}  # fmt: skip


@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
@pytest.mark.parametrize("persistent_database", [True])
@pytest.mark.parametrize("recorder_config", [{"commit_interval": 5}])
async def test_soak(
    hass: HomeAssistant,
    recorder_mock: Recorder,
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Many nodes for MINUTES through Mosquitto, Home Assistant and its recorder; nothing lost."""
    # The test harness logs every SQL statement, which a long run would pile up in memory.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    await connect_home_assistant(hass, mosquitto)
    public = private_key.public_key()
    options = {"publish_interval": int(INTERVAL), "stale_intervals": 3}
    options[CONF_HOLD_TIME] = HOLD_SECONDS
    nodes: list[Node] = []
    for index in range(NODES):
        node_id = f"s{index:02d}"
        identity = ec.generate_private_key(ec.SECP256R1())
        await add(hass, node_entry(node_id, private_key, identity, options))
        sender = answering(hass, V2Sender(node_id, identity, public, StoredCounters(None)))
        nodes.append(Node(node_id, identity, sender, NoiseSource(seed=index)))
    await hass.async_block_till_done()
    # Home Assistant's MQTT client sends new subscriptions after a short cooldown.
    await asyncio.sleep(2)

    received: Counter[str] = Counter()
    incidents: Counter[str] = Counter()
    for entry in hass.config_entries.async_entries(DOMAIN):
        entry.async_on_unload(entry.runtime_data.async_add_listener(counting(entry, received)))
    for transition in ("opened", "resolved"):
        hass.bus.async_listen(
            f"iotshield_incident_{transition}",
            callback(lambda _e, t=transition: incidents.update([t])),
        )

    sent_file = tmp_path / "sent.jsonl"
    start = time.monotonic() + 2.0
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, str(PUBLISHER), mosquitto.host, str(mosquitto.port), mosquitto.username,
        mosquitto.password, "-", str(sent_file), repr(start), stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert publisher.stdin is not None
    sessions = [message(n, 0.0, n.sender.open_session(interval=int(INTERVAL),
                privacy=n.privacy.announce()), -1) for n in nodes]  # fmt: skip
    await feed_publisher(publisher.stdin, sessions)
    duration = MINUTES * 60
    planned = 0.5
    samples: list[dict[str, Any]] = []
    broker_restarts = 0
    scenarios: Counter[str] = Counter()
    figures: dict[str, Any] = {"nodes": NODES, "minutes": MINUTES, "cycle_s": CYCLE,
                               "interval_s": INTERVAL, "samples": samples}  # fmt: skip
    if TRACE:
        tracemalloc.start(8)
    baseline: tracemalloc.Snapshot | None = None
    with IntervalStalls() as stalls:
        next_sample = 0.0
        while (now := time.monotonic() - start) < duration:
            if planned < duration and planned < now + LEAD:
                last = min(duration, planned + LEAD)
                await feed_publisher(publisher.stdin, plan(hass, nodes, planned, last, scenarios))
                planned = last
            cycle, into = phase(now)
            if into >= 0.6 * CYCLE and broker_restarts <= cycle:
                broker_restarts += 1
                await restart_broker(mosquitto)
            if now >= next_sample:
                stall_ms, gc_ms = stalls.take()
                samples.append({
                    "minutes": now / 60,
                    "rss_mib": rss_bytes() / 2**20,
                    "db_mib": database_bytes(recorder_mock) / 2**20,
                    "longest_stall_ms": stall_ms,
                    "longest_gc_pause_ms": gc_ms,
                    "readings": received.total(),
                    "incidents_opened": incidents["opened"],
                    "incidents_resolved": incidents["resolved"],
                })  # fmt: skip
                forget_storage_writes()
                baseline = trace(figures, baseline)
                write_soak(figures)
                next_sample += SAMPLE
            await asyncio.sleep(1.0)
        publisher.stdin.close()
        assert await asyncio.wait_for(publisher.wait(), 60) == 0
        # The last readings are still on their way; the last fire's incident may still hold.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and incidents["resolved"] < incidents["opened"]:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        await hass.async_block_till_done(wait_background_tasks=True)
        stall_ms, gc_ms = stalls.take()

    sent: Counter[str] = Counter()
    for line in sent_file.read_text().splitlines():
        item = json.loads(line)
        if item["seq"] >= 0:
            sent[item["node"]] += 1
    open_incidents = [
        entry.title
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.runtime_data.alerts.incident is not None
    ]
    figures |= {
        "readings_sent": sent.total(),
        "readings_received": received.total(),
        "lost": {node: sent[node] - received[node] for node in sent if sent[node] > received[node]},
        "broker_restarts": broker_restarts,
        **scenarios,
        "incidents_opened": incidents["opened"],
        "incidents_resolved": incidents["resolved"],
        "open_incidents": open_incidents,
        "state_rows": state_rows(recorder_mock),
        "db_mib": database_bytes(recorder_mock) / 2**20,
        "longest_stall_ms": max([s["longest_stall_ms"] for s in samples] + [stall_ms]),
        "longest_gc_pause_ms": max([s["longest_gc_pause_ms"] for s in samples] + [gc_ms]),
        "memory": memory_verdict(samples),
    }
    write_soak(figures)
    assert not figures["lost"], figures["lost"]
    assert incidents["opened"] >= 1
    assert not open_incidents
    assert incidents["resolved"] == incidents["opened"]
    assert figures["memory"]["bounded"], figures["memory"]


def forget_storage_writes() -> None:
    """Drop the test harness's record of every storage write, which would grow without end.

    The harness replaces Home Assistant's file writes with a mock that keeps each call (and the
    data written) to inspect; Home Assistant writes the files and keeps nothing.
    """
    reset = getattr(storage.Store._async_write_data, "reset_mock", None)
    if reset is not None:
        reset()


def trace(
    figures: dict[str, Any], baseline: tracemalloc.Snapshot | None
) -> tracemalloc.Snapshot | None:
    """With tracing on, note what grew since warm-up; return the baseline snapshot."""
    if not TRACE:
        return None
    snapshot = tracemalloc.take_snapshot()
    if baseline is None or len(figures["samples"]) <= 2:
        return snapshot
    figures["grown_since_warmup"] = grown(snapshot, baseline)
    return baseline


def grown(snapshot: tracemalloc.Snapshot, baseline: tracemalloc.Snapshot) -> list[str]:
    """Name the allocation sites that grew most between two snapshots (with their callers)."""
    stats = snapshot.compare_to(baseline, "traceback")[:15]
    return [
        f"{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks: "
        + " <- ".join(f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
                      for frame in stat.traceback)
        for stat in stats
    ]  # fmt: skip


def counting(entry: Any, received: Counter[str]) -> Any:
    """Return a coordinator listener that counts each accepted reading of the entry's node."""
    coordinator = entry.runtime_data
    seen: list[object] = [None]

    @callback
    def on_update() -> None:
        data = coordinator.data
        if data.telemetry is not None and data.received_at is not seen[0]:
            seen[0] = data.received_at
            received[coordinator.node_id] += 1

    return on_update


async def feed_publisher(stdin: asyncio.StreamWriter, items: list[dict[str, Any]]) -> None:
    """Hand the publisher its next messages."""
    stdin.write("".join(json.dumps(item) + "\n" for item in items).encode())
    await stdin.drain()


async def restart_broker(broker: Broker) -> None:
    """Stop Mosquitto and start it again on the same port, as after an update or a crash."""
    broker.process.terminate()
    await asyncio.to_thread(broker.process.wait, 10)
    await asyncio.sleep(1.0)
    restarted = await asyncio.to_thread(start_broker, broker.directory, broker.port)
    # The fixture stops whatever process the broker has at the end.
    object.__setattr__(broker, "process", restarted.process)


def write_soak(figures: dict[str, Any]) -> None:
    """Keep the soak's figures so far for the report."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(figures, indent=2))
