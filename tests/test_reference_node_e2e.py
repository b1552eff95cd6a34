"""The Python reference node, as a separate process, through a real broker into Home Assistant."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.const import STATE_OFF, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import DOMAIN
from custom_components.iotshield.keys import public_key_pem
from custom_components.iotshield.protocol import Rejection

from .broker import (  # noqa: F401
    Broker,
    Observer,
    StartNode,
    connect_home_assistant,
    mosquitto,
    mqtt_node,
    start_broker,
    start_node,
    start_reference_node,
    stop_broker,
    wait_until,
)
from .helpers import paired_v2_entry, setup_entry

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled", "mock_hass_config")]


async def _setup_paired_entry(
    hass: HomeAssistant, template: MockConfigEntry, state_dir: Path
) -> MockConfigEntry:
    """Pair node `kitchen` as v2 with the identity its state folder holds, and load it."""
    entry = paired_v2_entry(template, state_dir)
    await setup_entry(hass, entry)
    return entry


async def test_reference_node_feeds_the_six_entities(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Announce, v2 readings, a signed command from Home Assistant, and `offline` at exit.

    Run with the Python reference node and with the firmware's node built for the host.
    """
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    entry = await _setup_paired_entry(hass, mock_config_entry, tmp_path)
    coordinator = entry.runtime_data
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    # A long interval: after its first reading the node only speaks when told to.
    node = start_node(
        mosquitto, key, "--interval", "600", "--seed", "3", "--state-dir", str(tmp_path)
    )
    try:
        await wait_until(
            hass,
            lambda: coordinator.announce is not None and coordinator.announce.interval == 600,
            "the node's retained announce",
        )
        before = coordinator.data.telemetry.seq if coordinator.data.telemetry else -1
        # Ask for a reading now, with a signed command through the service.
        (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device.id, "command": "publish_now"},
            blocking=True,
        )
        await wait_until(
            hass,
            lambda: coordinator.data.telemetry is not None
            and coordinator.data.telemetry.seq > before,
            "a reading after publish_now",
        )
        states = {
            key: hass.states.get(f"{domain}.kitchen_{key}").state
            for domain, key in (
                ("sensor", "temperature"),
                ("sensor", "humidity"),
                ("sensor", "gas_level"),
                ("sensor", "illuminance"),
                ("binary_sensor", "flame"),
                ("binary_sensor", "motion"),
            )
        }
        assert 0 <= float(states["temperature"]) <= 50
        assert 20 <= float(states["humidity"]) <= 90
        assert 0 <= float(states["gas_level"]) <= 1
        assert 0 <= float(states["illuminance"]) <= 20000
        assert states["flame"] == STATE_OFF
        assert states["motion"] in ("on", "off")
        # The node's first session was not challenged by Home Assistant: its reading was taken
        # for what it is (expected, not an attack), Home Assistant asked for a new session and
        # got it. Nothing the genuine node sent is counted as rejected.
        counts = coordinator.rejections.as_dict()
        assert {k: v for k, v in counts.items() if v} == {}
        telemetry = coordinator.data.telemetry
        assert telemetry is not None
        assert telemetry.privacy is not None
        assert telemetry.privacy.epsilon == 0.5

        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=15) == 0
        await wait_until(
            hass,
            lambda: hass.states.get("sensor.kitchen_temperature").state == STATE_UNAVAILABLE,
            "the node's offline status",
        )
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()


async def test_replay_after_broker_restart_is_refused(
    hass: HomeAssistant,
    start_node: StartNode,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reading captured before the broker restarted is refused when replayed afterwards."""
    # Home Assistant retries a lost broker every 10 s; the test need not wait that long.
    monkeypatch.setattr("homeassistant.components.mqtt.client.RECONNECT_INTERVAL_SECONDS", 1)
    brokers = [start_broker()]
    node: subprocess.Popen[bytes] | None = None
    observer: Observer | None = None
    attacker: Observer | None = None
    try:
        broker = brokers[0]
        mqtt_entry = await connect_home_assistant(hass, broker)
        entry = await _setup_paired_entry(hass, mock_config_entry, tmp_path)
        coordinator = entry.runtime_data
        key = tmp_path / "ha_public.pem"
        key.write_text(public_key_pem(private_key))
        observer = await hass.async_add_executor_job(Observer, broker)
        node = start_node(broker, key, "--interval", "1", "--state-dir", str(tmp_path))
        await wait_until(hass, lambda: coordinator.data.telemetry is not None, "a first reading")
        # Capture a reading Home Assistant accepts, as an eavesdropper on the broker would.
        while not observer.messages.empty():
            observer.messages.get_nowait()
        captured = await hass.async_add_executor_job(
            observer.wait_for,
            lambda m: m.topic == "iotshield/kitchen/sensors/data" and b'"type":"data"' in m.payload,
        )
        ctr = json.loads(captured.payload)["ctr"]
        await wait_until(
            hass,
            lambda: coordinator._decoder.state.current.max_ctr >= ctr,  # type: ignore[union-attr]
            "Home Assistant to accept the captured reading",
        )
        first_sid = coordinator._decoder.state.current.sid  # type: ignore[union-attr]

        await hass.async_add_executor_job(stop_broker, broker)
        brokers.append(
            await hass.async_add_executor_job(start_broker, broker.directory, broker.port)
        )
        # Home Assistant and the node reconnect; the node opens a new session.
        await wait_until(
            hass,
            lambda: coordinator._decoder.state.current.sid > first_sid  # type: ignore[union-attr]
            and coordinator.data.telemetry is not None,
            "the node's new session after the broker restart",
            seconds=60,
        )
        refused = coordinator.rejections.count(Rejection.REPLAYED)
        attacker = await hass.async_add_executor_job(Observer, broker)
        await hass.async_add_executor_job(
            attacker.publish, captured.topic, captured.payload.decode()
        )
        await wait_until(
            hass,
            lambda: coordinator.rejections.count(Rejection.REPLAYED) == refused + 1,
            "the replay to be refused",
        )
        # Nothing else was refused: the node's own readings all got in.
        assert coordinator.rejections.total == coordinator.rejections.count(
            Rejection.REPLAYED
        ) + coordinator.rejections.count(Rejection.UNKNOWN_SESSION)
        node.terminate()
        node.wait(timeout=15)
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait()
        for client in (observer, attacker):
            if client is not None:
                client.close()
        for running in brokers:
            stop_broker(running)
