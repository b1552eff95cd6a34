"""Tests of availability: the node's last will, its announce, and staleness."""

from __future__ import annotations

from datetime import timedelta
import logging

from cryptography.hazmat.primitives.asymmetric import rsa
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from .envelope import encrypt, telemetry
from .helpers import READING_ENTITIES, publish, setup_entry

# Acceptance is told by the reading entities' states: each reading is shown as it comes.
pytestmark = pytest.mark.usefixtures(
    "mqtt_mock", "every_reading_shown", "entity_registry_enabled_by_default"
)

DATA_TOPIC = "iotshield/kitchen/sensors/data"
STATUS_TOPIC = "iotshield/kitchen/status"
NODE_ENTITIES = READING_ENTITIES[:-1]
HA_SIDE_ENTITIES = ("sensor.kitchen_last_reading", "sensor.kitchen_rejected_payloads")


def _unavailable(hass: HomeAssistant) -> set[str]:
    """Return which of the node's entities are unavailable."""
    return {
        entity_id
        for entity_id in (*NODE_ENTITIES, *HA_SIDE_ENTITIES)
        if hass.states.get(entity_id).state == STATE_UNAVAILABLE
    }


async def test_last_will_and_return(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`offline` makes the node's entities unavailable; `online` brings them back with values."""
    await setup_entry(hass, mock_config_entry)
    await publish(hass, STATUS_TOPIC, b"online")
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=20.5)))
    assert _unavailable(hass) == set()

    with caplog.at_level(logging.INFO):
        await publish(hass, STATUS_TOPIC, b"offline")
        assert _unavailable(hass) == set(NODE_ENTITIES)
        await publish(hass, STATUS_TOPIC, b"offline")
        await publish(hass, STATUS_TOPIC, b'{"state":"online","node":"kitchen","interval":5}')
        assert _unavailable(hass) == set()
        assert hass.states.get("sensor.kitchen_temperature").state == "20.5"
    lost = [r for r in caplog.records if "is unavailable: it reported offline" in r.getMessage()]
    back = [r for r in caplog.records if "is available again" in r.getMessage()]
    assert (len(lost), len(back)) == (1, 1)


async def test_stale_node_becomes_unavailable(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a valid reading for three intervals the node is unavailable until one arrives."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(t=20.0)))

    freezer.tick(timedelta(seconds=14))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _unavailable(hass) == set()

    # Rejected payloads do not count as signs of life.
    await publish(hass, DATA_TOPIC, b"junk")
    with caplog.at_level(logging.INFO):
        freezer.tick(timedelta(seconds=2))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert _unavailable(hass) == set(NODE_ENTITIES)
        freezer.tick(timedelta(seconds=60))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()

        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, t=21.0)))
        assert _unavailable(hass) == set()
        assert hass.states.get("sensor.kitchen_temperature").state == "21.0"
    lost = [r for r in caplog.records if "no valid reading for 15 seconds" in r.getMessage()]
    back = [r for r in caplog.records if "is available again" in r.getMessage()]
    assert (len(lost), len(back)) == (1, 1)


async def test_never_heard_node_goes_stale(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    """A node that never sends anything after a restart does not look alive forever."""
    await setup_entry(hass, mock_config_entry)
    assert _unavailable(hass) == set()
    freezer.tick(timedelta(seconds=16))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _unavailable(hass) == set(NODE_ENTITIES)


async def test_announced_interval_never_lengthens_staleness(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A node announcing 60 s still goes unavailable after three configured 5 s intervals.

    The status topic is unsigned (PROTOCOL.md §5): its interval must not hide a silent node.
    """
    await setup_entry(hass, mock_config_entry)
    await publish(hass, STATUS_TOPIC, b'{"state":"online","node":"kitchen","interval":60}')
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry()))
    freezer.tick(timedelta(seconds=14))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _unavailable(hass) == set()
    freezer.tick(timedelta(seconds=2))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert _unavailable(hass) == set(NODE_ENTITIES)
