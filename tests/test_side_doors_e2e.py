"""No reading lost at the seams, through a real broker, with a node that answers at once.

Each test runs with the Python reference node and with the firmware's node built for the host
(the same C++ that runs on the ESP32). Both react to `set_ha_key` and `open_session` at once (a
session and a reading within milliseconds), so Home Assistant must already hold the new key and
be subscribed before it asks.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import paho.mqtt.client as paho
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import DOMAIN
from custom_components.iotshield.keys import public_key_pem

from .broker import (  # noqa: F401
    Broker,
    Observer,
    StartNode,
    connect_home_assistant,
    mosquitto,
    mqtt_node,
    start_node,
    wait_until,
)
from .helpers import paired_v2_entry, setup_entry

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled", "mock_hass_config")]

DATA_TOPIC = "iotshield/kitchen/sensors/data"


def _is_data(msg: paho.MQTTMessage) -> bool:
    """Say whether a message is a v2 data message on the node's topic."""
    return msg.topic == DATA_TOPIC and b'"type":"data"' in msg.payload


def _drain(observer: Observer) -> list[paho.MQTTMessage]:
    """Return and forget what the observer saw so far."""
    seen = []
    while not observer.messages.empty():
        seen.append(observer.messages.get_nowait())
    return seen


async def test_key_rotation_loses_no_reading(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """The node's first session and reading under the new key are accepted; it obeys the key."""
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    entry = paired_v2_entry(mock_config_entry, tmp_path)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    observer = await hass.async_add_executor_job(Observer, mosquitto)
    # A long interval: after its first readings the node only speaks when told to.
    node = start_node(mosquitto, key, "--interval", "600", "--state-dir", str(tmp_path))
    try:
        await wait_until(hass, lambda: coordinator.data.telemetry is not None, "a first reading")
        await hass.async_block_till_done(wait_background_tasks=True)
        _drain(observer)
        refused_before = coordinator.rejections.total
        (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        await hass.services.async_call(
            DOMAIN, "rotate_key", {"device_id": device.id}, blocking=True, return_response=True
        )
        # What the node sent after set_ha_key: its new session and a reading.
        reading = await hass.async_add_executor_job(observer.wait_for, _is_data)
        seq = json.loads(reading.payload)["sid"], json.loads(reading.payload)["ctr"]
        await wait_until(
            hass,
            lambda: coordinator.receiver is not None
            and coordinator.receiver.state.current is not None
            and (coordinator.receiver.state.current.sid, coordinator.receiver.state.current.max_ctr)
            == seq,
            "the reading sent at once under the new key",
        )
        assert coordinator.rejections.total == refused_before
        assert entry.runtime_data is coordinator  # rotated in place, never unsubscribed
        # A command signed with the new key is obeyed: the node publishes a reading at once.
        before = coordinator.data.telemetry.seq
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device.id, "command": "publish_now"},
            blocking=True,
        )
        await wait_until(
            hass,
            lambda: coordinator.data.telemetry.seq > before,
            "a reading after publish_now signed with the new key",
        )
        assert coordinator.rejections.total == refused_before
    finally:
        node.terminate()
        node.wait(timeout=15)
        observer.close()
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()


async def test_pairing_a_running_node_loses_no_reading(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Paired while it runs, the node answers the first open_session at once: nothing lost.

    Home Assistant asks only once the broker has its subscriptions, so the session and the
    reading the node sends in reply reach it, and nothing is counted as rejected.
    """
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    entry = paired_v2_entry(mock_config_entry, tmp_path)
    observer = await hass.async_add_executor_job(Observer, mosquitto)
    node: subprocess.Popen[bytes] = start_node(
        mosquitto, key, "--interval", "600", "--state-dir", str(tmp_path)
    )
    try:
        # The node is up: it announced (retained) and sent its first session and reading.
        await hass.async_add_executor_job(observer.wait_for, _is_data)
        _drain(observer)
        await setup_entry(hass, entry)
        coordinator = entry.runtime_data
        await hass.async_add_executor_job(observer.wait_for, _is_data)
        # On a slow machine Home Assistant may ask more than once before the first answer
        # arrives (every two seconds); each answer is a session and a reading, all accepted.
        await wait_until(
            hass, lambda: coordinator.data.telemetry is not None, "the reading sent in answer"
        )
        await hass.async_block_till_done(wait_background_tasks=True)
        assert coordinator.data.telemetry is not None
        assert coordinator.rejections.total == 0
    finally:
        node.terminate()
        node.wait(timeout=15)
        observer.close()
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()
