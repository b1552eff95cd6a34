"""The node's Incident event entity records each transition of its incident."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import CONF_HOLD_TIME, DOMAIN

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")
DATA_TOPIC = "iotshield/kitchen/sensors/data"
INCIDENT = "event.kitchen_incident"


@pytest.fixture
def entry_options(entry_options: dict[str, Any]) -> dict[str, Any]:
    """Resolve an incident at the first calm reading, so the test needs no clock."""
    return {**entry_options, CONF_HOLD_TIME: 0}


async def test_the_incident_entity_follows_the_incident(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """Opened, acknowledged, resolved: each one the entity's event type, with its severity."""
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get(INCIDENT).state == "unknown"
    assert hass.states.get(INCIDENT).attributes["event_types"] == [
        "opened",
        "escalated",
        "explained",
        "acknowledged",
        "resolved",
    ]
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=1, g=0.5)))
    opened = hass.states.get(INCIDENT)
    assert opened.attributes["event_type"] == "opened"
    assert opened.attributes["severity"] == "medium"
    incident_id = opened.attributes["incident_id"]
    # Another node's incident events are not this node's.
    hass.bus.async_fire("iotshield_incident_resolved", {"node_id": "garage", "incident_id": "x"})
    await hass.async_block_till_done()
    assert hass.states.get(INCIDENT).attributes["event_type"] == "opened"

    await hass.services.async_call(
        DOMAIN, "acknowledge", {"incident_id": incident_id}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(INCIDENT).attributes["event_type"] == "acknowledged"
    # Calm readings: the severity drops (with hysteresis) and the incident resolves.
    for seq in range(2, 6):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq)))
    resolved = hass.states.get(INCIDENT)
    assert resolved.attributes["event_type"] == "resolved"
    assert resolved.attributes["incident_id"] == incident_id
    # Readings alone write nothing to it.
    before = resolved.last_updated
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=6, t=22.0)))
    assert hass.states.get(INCIDENT).last_updated == before
