"""A healthy node's first reading is never a rejection: after pairing, after a broker restart."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import replace
from datetime import timedelta
import json
import logging
from pathlib import Path
import shutil
import socket
import subprocess
import threading

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components import mqtt
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER, ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.util import dt as dt_util
from iotshield_node.privacy import PrivacyConfig
from iotshield_node.telemetry import announce
from iotshield_node.v2 import V2Sender, node_key_b64
import paho.mqtt.client as paho
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.iotshield.const import (
    CONF_KEY_SOURCE,
    CONF_NODE_ID,
    CONF_PRIVATE_KEY,
    CONF_TOPIC_PREFIX,
    DOMAIN,
    SESSION_REQUEST_INTERVAL,
)
from custom_components.iotshield.coordinator import IoTShieldCoordinator
from custom_components.iotshield.keys import private_key_pem, public_key_pem
from custom_components.iotshield.protocol import Rejection
from custom_components.iotshield.protocol_v2 import (
    DataMessage,
    SessionMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
)

from .broker import (  # noqa: F401
    Broker,
    Observer,
    StartNode,
    connect_home_assistant,
    mosquitto,
    mqtt_node,
    start_broker,
    start_node,
    stop_broker,
    wait_until,
)
from .helpers import (
    flush_rejection_count,
    latest_challenge,
    paired_v2_entry,
    publish,
    running_v2_node,
    sent_commands,
    setup_entry,
    v2_reading,
)

DATA_TOPIC = "iotshield/kitchen/sensors/data"
STATUS_TOPIC = "iotshield/kitchen/status"
TEMPERATURE = "sensor.kitchen_temperature"
REJECTED = "sensor.kitchen_rejected_payloads"


def _announce(node: V2Sender) -> str:
    """Return the retained announce a running revision-1 node publishes."""
    doc = announce("kitchen", "1.0.0", 5, PrivacyConfig(), node.ha_key, node_key_b64(node.identity))
    return json.dumps(doc)


def _rejection_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the warnings the integration logged about rejected payloads."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("custom_components.iotshield")
        and record.levelno >= logging.WARNING
        and "Rejected a payload" in record.getMessage()
    ]


def _forged_data(sid: int) -> bytes:
    """Return a data message of session `sid` that nobody holds a key for."""
    doc = {"v": 2, "type": "data", "sid": sid, "ctr": 1, "ct": base64.b64encode(bytes(48)).decode()}
    return json.dumps(doc).encode()


def _session_requests(mqtt_mock: MqttMockHAClient) -> int:
    """Return how many open_session commands Home Assistant has sent."""
    return sum(1 for body in sent_commands(mqtt_mock) if body["cmd"] == "open_session")


def _lose_the_broker(hass: HomeAssistant) -> None:
    """Tell the integration what Home Assistant's MQTT client says when the broker goes away."""
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, False)


def _regain_the_broker(hass: HomeAssistant) -> None:
    """Tell the integration what Home Assistant's MQTT client says when it is connected again."""
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, True)


async def _let_time_pass(hass: HomeAssistant, seconds: float) -> None:
    """Run the timers due within `seconds` (a postponed session request among them)."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done(wait_background_tasks=True)


async def _pair_discovered_node(
    hass: HomeAssistant, node: V2Sender, private_key: rsa.RSAPrivateKey
) -> ConfigEntry:
    """Pair the announced node through the wizard, pinning the identity it announced."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=MqttServiceInfo(
            topic=STATUS_TOPIC,
            payload=_announce(node),
            qos=1,
            retain=True,
            subscribed_topic="iotshield/+/status",
            timestamp=0.0,
        ),
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY_SOURCE: "import"}
    )
    # The node was flashed with this key before it was paired.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRIVATE_KEY: private_key_pem(private_key)}
    )
    assert result["step_id"] == "show_key"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"pairing": "pin"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done(wait_background_tasks=True)
    entry: ConfigEntry = result["result"]
    return entry


async def test_pairing_a_running_node_rejects_nothing(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node that ran before it was paired: its own session's reading is no rejection."""
    # Before pairing the node opened a session without a challenge and published to nobody.
    node.open_session()
    node.seal(v2_reading(1))
    entry = await _pair_discovered_node(hass, node, private_key)
    # A reading under the node's own session reaches Home Assistant before it asked for one.
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(2)))
    # The broker hands the new subscription the retained announce: Home Assistant asks.
    async_fire_mqtt_message(hass, STATUS_TOPIC, _announce(node), retain=True)
    await hass.async_block_till_done(wait_background_tasks=True)
    node.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(3, t=22.5)))
    await flush_rejection_count(hass)
    assert hass.states.get(TEMPERATURE).state == "22.5"
    assert hass.states.get(REJECTED).state == "0"
    assert entry.runtime_data.rejections.total == 0
    assert _rejection_warnings(caplog) == []


@pytest.mark.usefixtures("every_reading_shown")
async def test_a_session_sent_while_the_broker_was_away_is_no_rejection(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The node reconnected first after a broker restart: its new session never reached us."""
    await running_v2_node(hass, v2_entry, node, mqtt_mock)
    asked = _session_requests(mqtt_mock)
    _lose_the_broker(hass)
    node.open_session()  # sent while Home Assistant was not connected: lost
    _regain_the_broker(hass)
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(2)))
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(3)))
    # Home Assistant asks for a session it can read, once the rate limit lets it.
    await _let_time_pass(hass, SESSION_REQUEST_INTERVAL + 1)
    assert _session_requests(mqtt_mock) == asked + 1
    node.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(4, t=23.5)))
    await flush_rejection_count(hass)
    assert hass.states.get(TEMPERATURE).state == "23.5"
    assert hass.states.get(REJECTED).state == "0"
    assert v2_entry.runtime_data.rejections.total == 0
    assert _rejection_warnings(caplog) == []


@pytest.mark.usefixtures("every_reading_shown")
async def test_after_a_reconnect_only_the_missed_session_is_explained(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forged data of any other unknown session is counted, and asks no more than before."""
    # A still clock: every request after the first falls within the rate limit.
    monkeypatch.setattr("custom_components.iotshield.coordinator.time.monotonic", lambda: 1000.0)
    await running_v2_node(hass, v2_entry, node, mqtt_mock)
    coordinator: IoTShieldCoordinator = v2_entry.runtime_data
    first_sid = node.sid
    # The node rotates twice: Home Assistant holds neither the first session nor its key.
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.open_session())
    asked = _session_requests(mqtt_mock)
    _lose_the_broker(hass)
    missed = node.open_session()
    _regain_the_broker(hass)
    # A session id not above every accepted one is never a missed session: a replay.
    await publish(hass, DATA_TOPIC, _forged_data(first_sid))
    assert coordinator.rejections.count(Rejection.UNKNOWN_SESSION) == 1
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(2)))
    assert coordinator.rejections.count(Rejection.UNKNOWN_SESSION) == 1
    # The node opens one session when it reconnects: any other new id is forged.
    for sid in range(node.sid + 1, node.sid + 21):
        await publish(hass, DATA_TOPIC, _forged_data(sid))
    assert coordinator.rejections.count(Rejection.UNKNOWN_SESSION) == 21
    # Within the rate limit: nothing sent yet, and one request when the limit allows.
    assert _session_requests(mqtt_mock) == asked
    await _let_time_pass(hass, SESSION_REQUEST_INTERVAL + 1)
    assert _session_requests(mqtt_mock) == asked + 1
    # The node answers; from then on data of every unknown session is counted.
    node.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(3, t=24.5)))
    assert hass.states.get(TEMPERATURE).state == "24.5"
    await publish(hass, DATA_TOPIC, _forged_data(node.sid + 1))
    assert coordinator.rejections.count(Rejection.UNKNOWN_SESSION) == 22
    # The session that was missed stays refused (and counted) when it comes late.
    await publish(hass, DATA_TOPIC, missed)
    assert coordinator.rejections.count(Rejection.REPLAYED) == 1


def test_a_reading_in_a_held_session_ends_the_allowance(
    node: V2Sender, private_key: rsa.RSAPrivateKey
) -> None:
    """Heard again in a session it holds, Home Assistant missed nothing: new ids are forged."""
    identity = load_node_key(node_key_b64(node.identity))
    receiver = V2Receiver("kitchen", identity, [private_key], V2State(), revision=1)
    node.challenge = receiver.issue_challenge()
    session = parse_v2_envelope(node.open_session())
    assert isinstance(session, SessionMessage)
    receiver.accept_session(session, receiver.verify_session(session))
    receiver.listening_interrupted()
    reading = parse_v2_envelope(node.seal(v2_reading(1)))
    assert isinstance(reading, DataMessage)
    receiver.open_data(reading)
    assert not receiver.missed_while_away(node.sid + 1)
    # Interrupted again: the first newer id is taken for the missed session, and only it.
    receiver.listening_interrupted()
    assert receiver.missed_while_away(node.sid + 2)
    assert receiver.missed_while_away(node.sid + 2)
    assert not receiver.missed_while_away(node.sid + 1)
    assert not receiver.missed_while_away(node.sid)


def _is_data(msg: paho.MQTTMessage) -> bool:
    """Say whether a message is a v2 data message of node kitchen."""
    return msg.topic == DATA_TOPIC and b'"type":"data"' in msg.payload


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
async def test_a_running_node_paired_in_the_wizard_rejects_nothing(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a real broker, a node publishing before it is paired: no reading is a rejection."""
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    observer = await hass.async_add_executor_job(Observer, mosquitto)
    node = start_node(mosquitto, key, "--interval", "1", "--state-dir", str(tmp_path))
    try:
        # Running and unpaired: it announced and publishes readings under its own session.
        await hass.async_add_executor_job(observer.wait_for, _is_data)
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {CONF_NODE_ID: "kitchen", CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "import"},
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_PRIVATE_KEY: private_key_pem(private_key)}
        )
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert result["step_id"] == "pair_confirm"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"pairing": "pin"}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        entry: ConfigEntry = result["result"]
        coordinator: IoTShieldCoordinator = entry.runtime_data
        await wait_until(hass, lambda: coordinator.data.telemetry is not None, "a first reading")
        first = coordinator.data.telemetry
        assert first is not None
        # Readings that were on their way when Home Assistant asked have arrived by now.
        await wait_until(
            hass,
            lambda: coordinator.data.telemetry is not None
            and coordinator.data.telemetry.seq > first.seq + 1,
            "two more readings",
        )
        await flush_rejection_count(hass)
        assert hass.states.get(REJECTED).state == "0"
        assert coordinator.rejections.total == 0
        assert _rejection_warnings(caplog) == []
    finally:
        node.terminate()
        node.wait(timeout=15)
        observer.close()
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()


class Gate:
    """A TCP door between Home Assistant and the broker, which the test opens and closes."""

    def __init__(self, broker: Broker) -> None:
        """Listen on a free loopback port and forward every connection to the broker."""
        self._target = (broker.host, broker.port)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._serve()

    def _serve(self) -> None:
        """Accept connections in a thread until closed."""
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def open(self) -> None:
        """Let Home Assistant reach the broker again (on the same port)."""
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._serve()

    def close(self) -> None:
        """Refuse new connections and cut the open ones: the broker is out of reach."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        """Pair each accepted connection with one to the broker."""
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until the source closes, then end that way to the target too."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
async def test_the_first_reading_after_a_broker_restart_is_no_rejection(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The node is back on the restarted broker before Home Assistant: nothing is rejected."""
    # Home Assistant retries a lost broker every 10 s; the test need not wait that long.
    monkeypatch.setattr("homeassistant.components.mqtt.client.RECONNECT_INTERVAL_SECONDS", 1)
    brokers = [start_broker()]
    gate = Gate(brokers[0])
    node: subprocess.Popen[bytes] | None = None
    observer: Observer | None = None
    try:
        mqtt_entry = await connect_home_assistant(hass, replace(brokers[0], port=gate.port))
        entry = paired_v2_entry(mock_config_entry, tmp_path)
        await setup_entry(hass, entry)
        coordinator: IoTShieldCoordinator = entry.runtime_data
        receiver = coordinator.receiver
        assert receiver is not None
        key = tmp_path / "ha_public.pem"
        key.write_text(public_key_pem(private_key))
        node = start_node(brokers[0], key, "--interval", "1", "--state-dir", str(tmp_path))
        await wait_until(hass, lambda: coordinator.data.telemetry is not None, "a first reading")
        before = receiver.state.highest_sid

        # The broker restarts; the node is back on it before Home Assistant is.
        await hass.async_add_executor_job(stop_broker, brokers[0])
        await hass.async_add_executor_job(gate.close)
        brokers.append(
            await hass.async_add_executor_job(start_broker, brokers[0].directory, brokers[0].port)
        )
        observer = await hass.async_add_executor_job(Observer, brokers[1])
        reading = await hass.async_add_executor_job(
            observer.wait_for, lambda m: _is_data(m) and json.loads(m.payload)["sid"] > before
        )
        missed = json.loads(reading.payload)["sid"]
        await hass.async_add_executor_job(gate.open)
        await wait_until(
            hass,
            lambda: receiver.state.highest_sid > missed
            and receiver.state.current is not None
            and receiver.state.current.max_ctr > 0,
            "a reading in the session Home Assistant asked for",
        )
        await flush_rejection_count(hass)
        assert hass.states.get(REJECTED).state == "0"
        assert coordinator.rejections.total == 0
        assert _rejection_warnings(caplog) == []
        node.terminate()
        node.wait(timeout=15)
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait()
        if observer is not None:
            observer.close()
        gate.close()
        for broker in brokers:
            stop_broker(broker)
        shutil.rmtree(brokers[0].directory, ignore_errors=True)
