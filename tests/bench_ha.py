"""Benchmarks inside Home Assistant (run by scripts/bench, not part of the test suite).

Each benchmark writes its figures as JSON into IOTSHIELD_BENCH_OUT; IOTSHIELD_BENCH_QUICK=1
makes every one a few seconds long (the smoke run in tests/test_bench_smoke.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
import contextlib
from datetime import UTC, datetime, timedelta
from functools import partial
import gc
import json
import logging
import math
import os
from pathlib import Path
import sqlite3
import statistics
import sys
import time
from typing import Any
from unittest.mock import PropertyMock, patch

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import persistent_notification
from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.components.recorder.tasks import StatisticsTask
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util import dt as dt_util
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize
from iotshield_node.readings import Readings
from iotshield_node.telemetry import OAEP, encode_telemetry, seal_v1
from iotshield_node.v2 import StoredCounters, V2Sender, node_key_b64
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.iotshield import coordinator as coordinator_module, display
from custom_components.iotshield.anomaly import AnomalyDetector
from custom_components.iotshield.const import (
    CONF_HOLD_TIME,
    CONF_LLM_COOLDOWN,
    CONF_LLM_ENABLED,
    CONF_LLM_TIMEOUT,
    CONF_LLM_URL,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from custom_components.iotshield.coordinator import IoTShieldCoordinator
from custom_components.iotshield.keys import private_key_pem
from custom_components.iotshield.protocol import Telemetry, V1Decoder
from custom_components.iotshield.protocol_v2 import (
    DataMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
)
from custom_components.iotshield.severity import SeverityEngine

from .broker import Broker, connect_home_assistant, mosquitto  # noqa: F401
from .helpers import setup_home_llm
from .ollama_server import FakeOllama, free_port, ollama_server  # noqa: F401

QUICK = os.environ.get("IOTSHIELD_BENCH_QUICK") == "1"
OUT = Path(os.environ.get("IOTSHIELD_BENCH_OUT", "artifacts/bench"))
PUBLISHER = Path(__file__).with_name("bench_publisher.py")
ATTACKER = Path(__file__).with_name("bench_attacker.py")


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Patch the recorder's test hooks in before Home Assistant starts (test_recorder records)."""


@pytest.fixture(autouse=True)
def production_loop(hass: HomeAssistant) -> None:
    """Run the event loop as in production, not in the test harness's asyncio debug mode.

    Debug mode records a stack trace for every callback, which costs more than the work measured.
    """
    hass.loop.set_debug(False)


def write(name: str, figures: dict[str, Any]) -> None:
    """Keep one benchmark's figures for the report."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(figures, indent=2))


def percentiles(values: list[float]) -> dict[str, float]:
    """Return p50, p95, p99 and the maximum."""
    ordered = sorted(values)

    def at(q: float) -> float:
        # Nearest rank: the smallest value with at least q of all values at or below it.
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def plaintext(node_id: str, seq: int) -> bytes:
    """Return a calm reading whose humidity tells its sequence number (30.00 + seq/100 %).

    30–50 % stays inside the normal band, so that no reading changes a severity or opens an
    incident: every message costs the same.
    """
    readings = Readings(21.5, 30.0 + (seq % 2000) / 100, 0.05, 300.0, False, False)
    return encode_telemetry(node_id, seq, 1763900000 + seq, readings, None)


def node_entry(
    node_id: str,
    key: rsa.RSAPrivateKey,
    identity: ec.EllipticCurvePrivateKey | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """Return a config entry of a node: v2 when its identity key is given, else v1."""
    data = {
        CONF_NODE_ID: node_id,
        CONF_TOPIC_PREFIX: "iotshield",
        CONF_PRIVATE_KEY: private_key_pem(key),
    }
    if identity is not None:
        data |= {CONF_PROTOCOL: 2, CONF_NODE_KEY: node_key_b64(identity)}
    return MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title=node_id,
        unique_id=node_id,
        data=data,
        options={"publish_interval": 1, "stale_intervals": 30, "legacy_topic": False}
        | (options or {}),
    )


async def add(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Load one entry."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)


def answering(hass: HomeAssistant, sender: V2Sender) -> V2Sender:
    """Give a node the challenge its entry issues, as if it had received its open_session."""
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.data[CONF_NODE_ID] == sender.node_id:
            receiver = entry.runtime_data.receiver
            assert receiver is not None
            sender.challenge = receiver.issue_challenge()
            return sender
    raise AssertionError(f"no entry for {sender.node_id}")


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Return calls per second of an operation run for about `seconds` on this core."""
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            operation()
        calls += 20
    return calls / (time.perf_counter() - start)


class StallMonitor:
    """Measures how late the event loop runs a 1 ms timer: the longest stretch it was busy.

    Python's garbage collector pauses the whole process now and then (a full collection of
    Home Assistant's heap takes a few hundred milliseconds, whatever code allocated last);
    those pauses are measured apart, so that the stall left is the one code on the loop caused.
    """

    def __init__(self) -> None:
        """Start idle."""
        self.lateness: list[float] = []
        self.gc_pauses: list[float] = []
        self._gc_started = 0.0
        self.gc_total = 0.0
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        """Time each collection."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self.gc_pauses.append(pause)
            self.gc_total += pause

    async def _run(self) -> None:
        """Sleep 1 ms again and again, recording how much later than asked it wakes up."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            collected = self.gc_total
            await asyncio.sleep(0.001)
            late = loop.time() - asked - 0.001 - (self.gc_total - collected)
            self.lateness.append(max(late, 0.0))

    def __enter__(self) -> StallMonitor:
        """Start measuring."""
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        """Stop measuring."""
        gc.callbacks.remove(self._on_gc)
        assert self._task is not None
        self._task.cancel()

    @property
    def longest_ms(self) -> float:
        """Return the longest stall seen, garbage collection aside, in milliseconds."""
        return max(self.lateness, default=0.0) * 1000

    @property
    def longest_gc_ms(self) -> float:
        """Return the longest garbage-collection pause, in milliseconds."""
        return max(self.gc_pauses, default=0.0) * 1000


class OnLoopTimer:
    """Times the integration's work per message on the event loop: decoding and applying it.

    `_accept` applies a reading (severity, anomaly detector, incident, every entity's state);
    v2 data is decoded on the loop too (`open_data`, AES-GCM). Garbage collection is left out.
    """

    def __init__(self, monitor: StallMonitor) -> None:
        """Use the monitor's garbage-collection clock."""
        self.monitor = monitor
        self.per_message: list[float] = []
        self._decode = 0.0
        self._patches: list[tuple[type, str, Any]] = []

    def _timed(self, cls: type, name: str, *, decode: bool) -> None:
        """Wrap one method."""
        original = getattr(cls, name)

        def wrapper(obj: Any, *args: Any) -> Any:
            collected = self.monitor.gc_total
            started = time.perf_counter()
            try:
                return original(obj, *args)
            finally:
                spent = time.perf_counter() - started - (self.monitor.gc_total - collected)
                if decode:
                    self._decode = spent
                else:
                    self.per_message.append(self._decode + spent)
                    self._decode = 0.0

        setattr(cls, name, wrapper)
        self._patches.append((cls, name, original))

    def __enter__(self) -> OnLoopTimer:
        """Start timing."""
        self._timed(V2Receiver, "open_data", decode=True)
        self._timed(IoTShieldCoordinator, "_accept", decode=False)
        return self

    def __exit__(self, *_: object) -> None:
        """Stop timing."""
        for cls, name, original in self._patches:
            setattr(cls, name, original)

    def figures(self) -> dict[str, float]:
        """Return p50, p95, p99 and the maximum, in milliseconds."""
        return percentiles([value * 1000 for value in self.per_message])


def lift_v1_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a v1 entry decrypt as fast as the benchmark feeds it.

    A node's budget (a few RSA decryptions a second) is what a flood meets, measured in
    test_under_attack; a benchmark feeding one node hundreds a second measures the pipeline.
    """
    monkeypatch.setattr(coordinator_module, "V1_DECRYPTION_BURST", 1e9)


async def feed(hass: HomeAssistant, topic: str, payloads: list[bytes]) -> float:
    """Deliver payloads as the MQTT client does, one per loop turn; return seconds until done.

    In chunks below the integration's decryption queue (256), which sheds a larger flood.
    """
    start = time.perf_counter()
    for first in range(0, len(payloads), 200):
        for payload in payloads[first : first + 200]:
            async_fire_mqtt_message(hass, topic, payload)
            # The MQTT client hands over one message per socket read; others run in between.
            await asyncio.sleep(0)
        await hass.async_block_till_done(wait_background_tasks=True)
    return time.perf_counter() - start


@pytest.mark.usefixtures("mqtt_mock")
async def test_ingestion(
    hass: HomeAssistant, private_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages per second fully processed in Home Assistant, next to the raw cryptography."""
    seconds = 0.3 if QUICK else 3.0
    count_v2, count_v1 = (200, 50) if QUICK else (4000, 1500)
    lift_v1_budget(monkeypatch)
    identity = ec.generate_private_key(ec.SECP256R1())
    public = private_key.public_key()

    # Raw operations, measured in the same run on the same core.
    raw = public.encrypt(b"k" * 32, OAEP)
    rsa_rate = rate(lambda: private_key.decrypt(raw, OAEP), seconds)
    aes = AESGCM(b"k" * 32)
    sealed = aes.encrypt(b"\0" * 12, plaintext("kitchen", 1), b"aad")
    aes_rate = rate(lambda: aes.decrypt(b"\0" * 12, sealed, b"aad"), seconds)

    # The integration's own work per v2 message, without Home Assistant: parse, counter,
    # AES-GCM, validate, severity, anomaly detector.
    sender = V2Sender("plain", identity, public, StoredCounters(None))
    receiver = V2Receiver("plain", load_node_key(node_key_b64(identity)), [private_key], V2State())
    sender.challenge = receiver.issue_challenge()
    session = parse_v2_envelope(sender.open_session())
    receiver.accept_session(session, receiver.verify_session(session))  # type: ignore[arg-type]
    messages = [sender.seal(plaintext("plain", i)) for i in range(1, 20001 if not QUICK else 2001)]
    engine, detector = SeverityEngine(), AnomalyDetector()
    started = time.perf_counter()
    for index, payload in enumerate(messages):
        msg = parse_v2_envelope(payload)
        assert isinstance(msg, DataMessage)
        t = receiver.open_data(msg)
        engine.assess({"t": t.temperature, "h": t.humidity, "g": t.gas, "l": t.light})
        detector.add(
            # Five-second readings: one minute closes every twelfth message.
            datetime_at(index * 5),
            {"t": t.temperature, "h": t.humidity, "g": t.gas, "l": t.light, "m": t.motion},
        )
    own_us = (time.perf_counter() - started) / len(messages) * 1e6
    v1_decoder = V1Decoder(private_key, "plain")
    v1_payloads = [seal_v1(plaintext("plain", i), public) for i in range(1, 201)]
    v1_started = time.perf_counter()
    for payload in v1_payloads:
        v1_decoder.decode(payload)
    own_v1_us = (time.perf_counter() - v1_started) / len(v1_payloads) * 1e6

    # Through Home Assistant: MQTT message in, every entity of the node updated.
    await add(hass, node_entry("benchv2", private_key, identity))
    await add(hass, node_entry("benchv1", private_key))
    await hass.async_block_till_done()
    node = answering(hass, V2Sender("benchv2", identity, public, StoredCounters(None)))
    await feed(hass, "iotshield/benchv2/sensors/data", [node.open_session()])
    v2_payloads = [node.seal(plaintext("benchv2", i)) for i in range(1, count_v2 + 1)]
    v1_in = [seal_v1(plaintext("benchv1", i), public) for i in range(1, count_v1 + 1)]
    writes: list[Event] = []
    hass.bus.async_listen(EVENT_STATE_CHANGED, callback(lambda event: writes.append(event)))
    with StallMonitor() as v2_stalls, OnLoopTimer(v2_stalls) as v2_on_loop:
        v2_seconds = await feed(hass, "iotshield/benchv2/sensors/data", v2_payloads)
    v2_writes = len(writes)
    with StallMonitor() as v1_stalls, OnLoopTimer(v1_stalls) as v1_on_loop:
        v1_seconds = await feed(hass, "iotshield/benchv1/sensors/data", v1_in)
    for node_id, count in (("benchv2", count_v2), ("benchv1", count_v1)):
        telemetry = latest_telemetry(hass, node_id)
        assert telemetry is not None
        assert telemetry.seq == count
    assert hass.states.get("sensor.benchv2_rejected_payloads").state == "0"
    assert hass.states.get("sensor.benchv1_rejected_payloads").state == "0"
    write(
        "ingestion",
        {
            "raw_rsa_oaep_per_s": rsa_rate,
            "raw_aes_gcm_per_s": aes_rate,
            "v1_per_s": count_v1 / v1_seconds,
            "v2_per_s": count_v2 / v2_seconds,
            "v1_ratio": count_v1 / v1_seconds / rsa_rate,
            "own_v2_us": own_us,
            "own_v1_us": own_v1_us,
            "state_changes_per_v2_message": v2_writes / count_v2,
            "v2_on_loop_ms": v2_on_loop.figures(),
            "v1_on_loop_ms": v1_on_loop.figures(),
            "v2_longest_stall_ms": v2_stalls.longest_ms,
            "v1_longest_stall_ms": v1_stalls.longest_ms,
            "longest_gc_pause_ms": max(v2_stalls.longest_gc_ms, v1_stalls.longest_gc_ms),
        },
    )


def latest_telemetry(hass: HomeAssistant, node_id: str) -> Telemetry | None:
    """Return the latest reading Home Assistant applied for a node."""
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.data[CONF_NODE_ID] == node_id:
            telemetry: Telemetry | None = entry.runtime_data.data.telemetry
            return telemetry
    return None


def datetime_at(seconds: int) -> datetime:
    """Return a moment `seconds` after a Monday midnight."""
    return datetime(2026, 6, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def cpu_mark() -> tuple[float, float, int, int]:
    """Return now, this process's CPU time, and the machine's busy and total CPU ticks."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return time.monotonic(), time.process_time(), sum(fields) - idle, sum(fields)


def cpu_since(mark: tuple[float, float, int, int]) -> dict[str, float]:
    """Return this process's CPU (% of one core) and the machine's (% of all) since a mark."""
    now = cpu_mark()
    return {
        "ha_cpu_percent": (now[1] - mark[1]) / (now[0] - mark[0]) * 100,
        "machine_busy_percent": (now[2] - mark[2]) / (now[3] - mark[3]) * 100,
    }


def rss_bytes() -> int:
    """Return this process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def spawn(
    script: Path, broker: Broker, plan: object, out: Path, *extra: str
) -> asyncio.subprocess.Process:
    """Start a publishing process on a plan; it writes what it sent to `out`."""
    plan_file = out.with_suffix(".plan.json")
    plan_file.write_text(json.dumps(plan))
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), broker.host, str(broker.port), broker.username,
        broker.password, str(plan_file), str(out), *extra,
    )  # fmt: skip


async def run_publisher(
    hass: HomeAssistant, broker: Broker, schedule: list[dict[str, Any]], out: Path
) -> list[dict[str, Any]]:
    """Run the node-side publisher process over a schedule; return what it sent and when."""
    process = await spawn(PUBLISHER, broker, schedule, out)
    # Home Assistant keeps running while the publisher works.
    assert await asyncio.wait_for(process.wait(), 600) == 0
    # The last messages are still on their way through the broker.
    await asyncio.sleep(1.0)
    await hass.async_block_till_done(wait_background_tasks=True)
    sent: list[dict[str, Any]] = json.loads(out.read_text())
    return sent


@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
async def test_end_to_end_latency(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publish → reading applied through a real broker: 1, 10 and 50 nodes at 1 Hz, a burst."""
    await connect_home_assistant(hass, mosquitto)
    sizes = (1, 3) if QUICK else (1, 10, 50)
    seconds = 3 if QUICK else 30
    public = private_key.public_key()
    received = reading_arrivals(monkeypatch)
    nodes: dict[str, V2Sender] = {}
    results: dict[str, Any] = {"sizes": {}}
    rss: dict[int, int] = {}
    for size in sizes:
        while len(nodes) < size:
            node_id = f"n{len(nodes):02d}"
            identity = ec.generate_private_key(ec.SECP256R1())
            await add(hass, node_entry(node_id, private_key, identity))
            nodes[node_id] = answering(
                hass, V2Sender(node_id, identity, public, StoredCounters(None))
            )
        await hass.async_block_till_done()
        # Home Assistant's MQTT client sends new subscriptions after a short cooldown.
        await asyncio.sleep(2)
        # Sessions first (not timed), then one reading a second per node, phases spread.
        schedule = [
            {
                "due": 0.0,
                "topic": f"iotshield/{n}/sensors/data",
                "payload": sender.open_session().decode(),
                "node": n,
                "seq": -1,
            }
            for n, sender in nodes.items()
        ]
        sequence = dict.fromkeys(nodes, 0)
        for tick in range(seconds):
            for index, (node_id, sender) in enumerate(nodes.items()):
                sequence[node_id] += 1
                # Below 2000: the humidity tells the sequence number.
                seq = 600 * sizes.index(size) + sequence[node_id]
                schedule.append(
                    {
                        "due": 2.0 + tick + index / len(nodes),
                        "topic": f"iotshield/{node_id}/sensors/data",
                        "payload": sender.seal(plaintext(node_id, seq)).decode(),
                        "node": node_id,
                        "seq": seq,
                    }
                )
        sent = await run_publisher(hass, mosquitto, schedule, tmp_path / f"sent-{size}.json")
        latencies = match(sent, received)
        results["sizes"][str(size)] = {
            "sent": sum(1 for s in sent if s["seq"] >= 0),
            "messages": len(latencies),
            **percentiles(latencies),
        }
        del schedule, sent
        gc.collect()
        rss[size] = rss_bytes()
    # What each node beyond the first adds: imports and platforms are paid once.
    results["rss_per_node_kib"] = (rss[sizes[-1]] - rss[sizes[0]]) / (sizes[-1] - sizes[0]) / 1024

    # A burst: every node publishes 20 readings at once.
    burst = [
        {"due": 0.0, "topic": f"iotshield/{n}/sensors/data",
         "payload": s.seal(plaintext(n, 1900 + i)).decode(), "node": n, "seq": 1900 + i}
        for i in range(5 if QUICK else 20)
        for n, s in nodes.items()
    ]  # fmt: skip
    sent = await run_publisher(hass, mosquitto, burst, tmp_path / "sent-burst.json")
    started = min(s["at"] for s in sent)
    latencies = match(sent, received)
    drained = max(
        received[(s["node"], s["seq"])] for s in sent if (s["node"], s["seq"]) in received
    )
    results["burst"] = {
        "messages": len(burst),
        "delivered": len(latencies),
        "seconds_to_drain": drained - started,
        **percentiles(latencies),
    }
    write("latency", results)


def reading_arrivals(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], float]:
    """Record when each node's reading has been applied, keyed (node, seq).

    Applied: severity, incident and anomaly detector updated, and every entity that writes at
    once written (the reading entities show a throttled mean, so their states tell no sequence).
    """
    received: dict[tuple[str, int], float] = {}
    accept = IoTShieldCoordinator._accept

    def timed(coordinator: IoTShieldCoordinator, telemetry: Telemetry) -> None:
        accept(coordinator, telemetry)
        received[(coordinator.node_id, telemetry.seq)] = time.monotonic()

    monkeypatch.setattr(IoTShieldCoordinator, "_accept", timed)
    return received


def match(sent: list[dict[str, Any]], received: dict[tuple[str, int], float]) -> list[float]:
    """Return the milliseconds from each publish until its reading was applied (no sessions)."""
    return [
        (received[(s["node"], s["seq"])] - s["at"]) * 1000
        for s in sent
        if s["seq"] >= 0 and (s["node"], s["seq"]) in received
    ]


# The flood of the benchmark issue: messages a second of each kind.
ATTACK_RATE = 1000
ATTACK_NODES = 10
# Seconds from the common start: sessions at 0, attack and readings from ATTACK_START on.
ATTACK_START = 2.0
# Time for both processes to start and connect before the common start.
ATTACK_LEAD = 3.0


@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
@pytest.mark.parametrize("qos", [0, 1])
async def test_under_attack(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    qos: int,
) -> None:
    """10 v2 nodes at 1 Hz through Mosquitto while forged v1 envelopes and garbage flood in."""
    await connect_home_assistant(hass, mosquitto)
    seconds = 3 if QUICK else 30
    public = private_key.public_key()
    received = reading_arrivals(monkeypatch)
    rejected_writes: list[str] = []

    @callback
    def on_rejected_state(event: Event[EventStateChangedData]) -> None:
        if event.data["entity_id"].endswith("_rejected_payloads"):
            rejected_writes.append(event.data["entity_id"])

    hass.bus.async_listen(EVENT_STATE_CHANGED, on_rejected_state)
    nodes: dict[str, V2Sender] = {}
    for index in range(ATTACK_NODES):
        node_id = f"a{index:02d}"
        identity = ec.generate_private_key(ec.SECP256R1())
        await add(hass, node_entry(node_id, private_key, identity))
        nodes[node_id] = answering(hass, V2Sender(node_id, identity, public, StoredCounters(None)))
    # An eleventh node still on v1: its envelopes cost an RSA decryption each.
    await add(hass, node_entry("legacy", private_key))
    await hass.async_block_till_done()
    # Home Assistant's MQTT client sends new subscriptions after a short cooldown.
    await asyncio.sleep(2)

    # Sessions first, then one reading a second per node, phases spread inside the attack.
    schedule = [
        {"due": 0.0, "topic": f"iotshield/{n}/sensors/data",
         "payload": sender.open_session().decode(), "node": n, "seq": -1}
        for n, sender in nodes.items()
    ]  # fmt: skip
    for tick in range(seconds):
        for index, (node_id, sender) in enumerate(nodes.items()):
            seq = tick + 1
            schedule.append(
                {
                    "due": ATTACK_START + tick + (index + 0.5) / len(nodes),
                    "topic": f"iotshield/{node_id}/sensors/data",
                    "payload": sender.seal(plaintext(node_id, seq)).decode(),
                    "node": node_id,
                    "seq": seq,
                }
            )
    data_topics = [f"iotshield/{n}/sensors/data" for n in nodes]
    status_topics = [f"iotshield/{n}/status" for n in nodes]
    legacy_topic = "iotshield/legacy/sensors/data"
    start = time.monotonic() + ATTACK_LEAD
    attack = {
        "start": start + ATTACK_START,
        "seconds": seconds,
        "qos": qos,
        "seed": 1,
        "streams": [
            # Half to the v1 node, half spread over the v2 nodes (a downgrade for them).
            {"kind": "forged_v1", "rate": ATTACK_RATE,
             "topics": [t for topic in data_topics for t in (legacy_topic, topic)]},
            {"kind": "garbage", "rate": ATTACK_RATE,
             "topics": [t for pair in zip(data_topics, status_topics, strict=True) for t in pair]},
        ],
    }  # fmt: skip
    # Only the writes the attack causes.
    rejected_writes.clear()
    with StallMonitor() as stalls:
        publisher = await spawn(PUBLISHER, mosquitto, schedule, tmp_path / "sent.json", repr(start))
        attacker = await spawn(ATTACKER, mosquitto, attack, tmp_path / "attack.json")
        # Home Assistant keeps running while both processes work.
        await asyncio.sleep(max(0.0, start + ATTACK_START - time.monotonic()))
        # How busy the machine was tells how far the figures are Home Assistant's own.
        mark = cpu_mark()
        assert await asyncio.wait_for(publisher.wait(), 600) == 0
        assert await asyncio.wait_for(attacker.wait(), 600) == 0
        cpu = cpu_since(mark)
        # The last messages are still on their way through the broker.
        await asyncio.sleep(1.0)
        await hass.async_block_till_done(wait_background_tasks=True)
    sent: list[dict[str, Any]] = json.loads((tmp_path / "sent.json").read_text())
    flood: dict[str, Any] = json.loads((tmp_path / "attack.json").read_text())
    latencies = match(sent, received)
    readings = [s for s in sent if s["seq"] >= 0]
    # Summed over the entries: every v2 node, and the v1 node.
    rejections: Counter[str] = Counter()
    for entry in hass.config_entries.async_entries(DOMAIN):
        rejections.update(entry.runtime_data.rejections.as_dict())
    write(
        f"attack_qos{qos}",
        {
            "qos": qos,
            "nodes": len(nodes),
            "seconds": seconds,
            "rate_per_s": {kind: row["rate"] for kind, row in flood["streams"].items()},
            "sent": len(readings),
            "delivered": len(latencies),
            "sent_during_attack": sum(
                1 for s in readings if flood["first_at"] <= s["at"] <= flood["last_at"]
            ),
            "latency_ms": percentiles(latencies),
            "longest_stall_ms": stalls.longest_ms,
            "longest_gc_pause_ms": stalls.longest_gc_ms,
            "attack_seconds": flood["last_at"] - flood["first_at"],
            "attacker": flood["streams"],
            "acknowledged": flood["acknowledged"],
            "attacker_cpu_percent": flood["cpu_percent"],
            "rejections": dict(rejections),
            "rejected": rejections.total(),
            "rejected_entity_writes": len(rejected_writes),
            # Mosquitto says so when its queue to a slow subscriber overflows (and drops).
            "broker_drop_notices": (mosquitto.directory / "broker.log")
            .read_text(errors="replace")
            .count("Outgoing messages are being dropped"),
            **cpu,
            "load_average": os.getloadavg()[0],
        },
    )


@pytest.mark.usefixtures("mqtt_mock")
@pytest.mark.parametrize("llm", ["offline", "slow"])
async def test_alert_latency(
    hass: HomeAssistant,
    private_key: rsa.RSAPrivateKey,
    ollama_server: FakeOllama,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    llm: str,
) -> None:
    """Threshold crossing → event and notification, with the LLM offline or slow."""
    rounds = 3 if QUICK else 20
    # Five readings a round, faster than a node publishes.
    lift_v1_budget(monkeypatch)
    ollama_server.delay = 0.5 if QUICK else 2.0
    url = ollama_server.url if llm == "slow" else f"http://127.0.0.1:{free_port()}"
    await setup_home_llm(hass, {CONF_LLM_URL: url, CONF_LLM_TIMEOUT: 10})
    await add(
        hass,
        node_entry(
            "alarm",
            private_key,
            options={
                CONF_HOLD_TIME: 0,
                CONF_LLM_ENABLED: True,
                # Every incident is explained, not only the first of its severity.
                CONF_LLM_COOLDOWN: 0,
            },
        ),
    )
    await hass.async_block_till_done()
    public = private_key.public_key()
    marks: dict[str, float] = {}
    # Callbacks run on the event loop at once; plain functions would go to the thread pool.
    hass.bus.async_listen(
        "iotshield_incident_opened",
        callback(lambda _e: marks.setdefault("event", time.perf_counter())),
    )
    hass.bus.async_listen(
        "iotshield_incident_explained",
        callback(lambda _e: marks.setdefault("explained", time.perf_counter())),
    )
    async_dispatcher_connect(
        hass,
        persistent_notification.SIGNAL_PERSISTENT_NOTIFICATIONS_UPDATED,
        callback(lambda *_: marks.setdefault("notification", time.perf_counter())),
    )
    event_ms: list[float] = []
    notification_ms: list[float] = []
    explained_ms: list[float] = []
    seq = 0
    for _ in range(rounds):
        marks.clear()
        seq += 1
        payload = seal_v1(encode_fire("alarm", seq), public)
        started = time.perf_counter()
        async_fire_mqtt_message(hass, "iotshield/alarm/sensors/data", payload)
        deadline = time.monotonic() + 30
        wanted = ("event", "notification", "explained") if llm == "slow" else ("event",)
        # Three listeners fill `marks`; there is no single event to await.
        while not all(k in marks for k in wanted) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        assert "event" in marks
        event_ms.append((marks["event"] - started) * 1000)
        notification_ms.append((marks["notification"] - started) * 1000)
        if "explained" in marks:
            explained_ms.append((marks["explained"] - started) * 1000)
        for _ in range(4):  # calm readings: the severity drops and the incident resolves
            seq += 1
            async_fire_mqtt_message(
                hass,
                "iotshield/alarm/sensors/data",
                seal_v1(plaintext("alarm", seq), public),
            )
            await hass.async_block_till_done(wait_background_tasks=True)
    write(
        f"alert_{llm}",
        {
            "rounds": rounds,
            "llm_delay_s": ollama_server.delay if llm == "slow" else None,
            "event_ms": percentiles(event_ms),
            "notification_ms": percentiles(notification_ms),
            "explained_ms": percentiles(explained_ms) if explained_ms else None,
        },
    )


def encode_fire(node_id: str, seq: int) -> bytes:
    """Return a reading of a fire."""
    readings = Readings(55.0, 30.0, 0.7, 300.0, True, False)
    return encode_telemetry(node_id, seq, 1763900000 + seq, readings, None)


# What the recorder row simulates: one node at the default interval in a steady room.
RECORDER_INTERVAL = 5
RECORDER_HOURS = 1.0 if QUICK else 24.0
STEADY_ROOM = Readings(21.5, 45.0, 0.05, 300.0, False, False)


@pytest.mark.usefixtures("mqtt_mock")
@pytest.mark.parametrize("persistent_database", [True])
@pytest.mark.parametrize("recorder_config", [{"commit_interval": 5}])
@pytest.mark.parametrize("mode", ["before", "after"])
async def test_recorder(
    hass: HomeAssistant,
    recorder_mock: Recorder,
    private_key: rsa.RSAPrivateKey,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """State rows and database bytes a node adds per day, and how much its temperature jitters.

    Home Assistant's real recorder on SQLite, in simulated time (readings every 5 s of a steady
    room, noised as the node does at ε = 0.5). `before` shows every reading as it comes, with
    Last reading enabled (as before the throttled mean); `after` is the integration as shipped.
    """
    # The test harness logs every SQL statement; a simulated day would pile them up.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    if mode == "before":
        monkeypatch.setattr(display, "WINDOW", 0.0)
        monkeypatch.setattr(display, "HEARTBEAT", 0.0)
        enabled = patch(
            "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
            return_value=True,
            new_callable=PropertyMock,
        )
    else:
        enabled = contextlib.nullcontext()
    identity = ec.generate_private_key(ec.SECP256R1())
    public = private_key.public_key()
    with enabled:
        await add(hass, node_entry("room", private_key, identity, {"publish_interval": 5}))
        await hass.async_block_till_done()
    node = answering(hass, V2Sender("room", identity, public, StoredCounters(None)))
    privacy = PrivacyConfig()
    noise = NoiseSource(seed=20)
    topic = "iotshield/room/sensors/data"
    async_fire_mqtt_message(hass, topic, node.open_session(interval=5, privacy=privacy.announce()))
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)
    rows_at_start, bytes_at_start = recorded(recorder_mock)
    start = dt_util.utcnow()
    shown: list[float] = []
    readings = int(RECORDER_HOURS * 3600 / RECORDER_INTERVAL)
    for seq in range(1, readings + 1):
        freezer.tick(timedelta(seconds=RECORDER_INTERVAL))
        values = privatize(STEADY_ROOM, privacy, noise)
        body = encode_telemetry("room", seq, 1763900000 + seq * 5, values, privacy)
        async_fire_mqtt_message(hass, topic, node.seal(body))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        # Sampled at every reading: what a dashboard shows, weighted by time.
        shown.append(float(hass.states.get("sensor.room_temperature").state))
    await async_wait_recording_done(hass)
    rows, size = recorded(recorder_mock)
    per_day = 24 / RECORDER_HOURS
    stats = await hourly_statistics(hass, recorder_mock, start, dt_util.utcnow())
    by_entity = rows_by_entity(recorder_mock)
    fire_written = await fire_written_after(hass, node, freezer, readings + 1)
    write(
        f"recorder_{mode}",
        {
            "interval_s": RECORDER_INTERVAL,
            "hours": RECORDER_HOURS,
            "epsilon": privacy.epsilon,
            "rows_per_day": (rows - rows_at_start) * per_day,
            "bytes_per_day": (size - bytes_at_start) * per_day,
            "rows_by_entity_per_day": {k: v * per_day for k, v in by_entity.items()},
            "sigma_t": statistics.pstdev(shown),
            "mean_t": statistics.fmean(shown),
            "stats_t": stats,
            "fire_written_s": fire_written,
        },
    )


def recorded(recorder: Recorder) -> tuple[int, int]:
    """Return the recorder's state rows and the bytes its SQLite database uses.

    The write-ahead log is checkpointed first (the recorder is idle then), so that the bytes are
    the database's own, not how full the log happens to be.
    """
    path = recorder.db_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows: int = db.execute("SELECT COUNT(*) FROM states").fetchone()[0]
        pages: int = db.execute("PRAGMA page_count").fetchone()[0]
        free: int = db.execute("PRAGMA freelist_count").fetchone()[0]
        page_size: int = db.execute("PRAGMA page_size").fetchone()[0]
    return rows, (pages - free) * page_size


def rows_by_entity(recorder: Recorder) -> dict[str, int]:
    """Return the state rows of each entity."""
    path = recorder.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return dict(
            db.execute(
                "SELECT states_meta.entity_id, COUNT(*) FROM states "
                "JOIN states_meta USING (metadata_id) GROUP BY states_meta.entity_id"
            ).fetchall()
        )


async def hourly_statistics(
    hass: HomeAssistant, recorder: Recorder, start: datetime, end: datetime
) -> dict[str, float]:
    """Compile the long-term statistics of the temperature and return their mean, min and max."""
    period = start.replace(minute=start.minute - start.minute % 5, second=0, microsecond=0)
    while period + timedelta(minutes=5) <= end:
        recorder.queue_task(StatisticsTask(period, False))
        period += timedelta(minutes=5)
    await async_wait_recording_done(hass)
    rows = await recorder.async_add_executor_job(
        partial(
            statistics_during_period,
            hass,
            start - timedelta(hours=1),
            end,
            {"sensor.room_temperature"},
            "5minute",
            None,
            {"mean", "min", "max"},
        )
    )
    periods = rows["sensor.room_temperature"]
    return {
        "mean": statistics.fmean(row["mean"] for row in periods),
        "min": min(row["min"] for row in periods),
        "max": max(row["max"] for row in periods),
        "periods": len(periods),
    }


async def fire_written_after(
    hass: HomeAssistant, node: V2Sender, freezer: FrozenDateTimeFactory, seq: int
) -> float:
    """Return the seconds from a fire's first reading until the temperature shows it."""
    freezer.tick(timedelta(seconds=RECORDER_INTERVAL))
    body = encode_telemetry("room", seq, 1763900000 + seq * 5, FIRE_READING, None)
    sent = dt_util.utcnow()
    async_fire_mqtt_message(hass, "iotshield/room/sensors/data", node.seal(body))
    await hass.async_block_till_done(wait_background_tasks=True)
    state = hass.states.get("sensor.room_temperature")
    assert float(state.state) == FIRE_READING.t
    return (state.last_updated - sent).total_seconds()


FIRE_READING = Readings(55.0, 30.0, 0.7, 300.0, True, False)
