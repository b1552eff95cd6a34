"""Tests of loading, unloading, reloading and not-ready handling of an entry."""

from __future__ import annotations

from unittest.mock import patch

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import CONF_PRIVATE_KEY, DOMAIN

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry

DATA_TOPIC = "iotshield/kitchen/sensors/data"


@pytest.mark.usefixtures("mqtt_mock")
async def test_load_unload_leaves_no_subscription(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """After unloading, nothing listens to the node's topics any more."""
    await setup_entry(hass, mock_config_entry)
    assert mock_config_entry.state is ConfigEntryState.LOADED
    coordinator = mock_config_entry.runtime_data
    await publish(hass, DATA_TOPIC, b"junk")
    assert coordinator.rejections.total == 1

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get("sensor.kitchen_temperature").state == STATE_UNAVAILABLE

    await publish(hass, DATA_TOPIC, b"junk")
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=40.0)))
    await publish(hass, "iotshield/kitchen/status", b"offline")
    assert coordinator.rejections.total == 1
    assert coordinator.data.telemetry is None
    assert hass.states.get("sensor.kitchen_temperature").state == STATE_UNAVAILABLE


@pytest.mark.usefixtures("mqtt_mock")
async def test_reload_subscribes_once(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A reload replaces the subscriptions instead of adding a second set."""
    await setup_entry(hass, mock_config_entry)
    assert await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    coordinator = mock_config_entry.runtime_data
    await publish(hass, DATA_TOPIC, b"junk")
    # One subscription, one rejection: a leftover subscription would count it twice.
    assert coordinator.rejections.total == 1
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=22.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "22.0"


async def test_not_ready_without_mqtt(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Without a connected MQTT client the entry retries later."""
    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.iotshield.mqtt.async_wait_for_mqtt_client", return_value=False):
        await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


@pytest.mark.usefixtures("mqtt_mock")
async def test_unreadable_stored_key_is_an_error(hass: HomeAssistant) -> None:
    """A damaged stored key stops the entry with an error instead of crashing later."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title="kitchen",
        unique_id="kitchen",
        data={"node_id": "kitchen", "topic_prefix": "iotshield", CONF_PRIVATE_KEY: "damaged"},
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR


@pytest.mark.usefixtures("mqtt_mock")
async def test_removing_entry_removes_repair_issue(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    other_private_key: rsa.RSAPrivateKey,
) -> None:
    """A key-mismatch repair of a node goes away with the node."""
    await setup_entry(hass, mock_config_entry)
    foreign = encrypt(other_private_key.public_key(), telemetry())
    for _ in range(5):
        await publish(hass, DATA_TOPIC, foreign)
    registry = ir.async_get(hass)
    assert registry.async_get_issue(DOMAIN, "key_mismatch_kitchen") is not None
    assert await hass.config_entries.async_remove(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert registry.async_get_issue(DOMAIN, "key_mismatch_kitchen") is None
