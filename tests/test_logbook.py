"""Incident events are described in the logbook, on the node's device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import Event, HomeAssistant
from homeassistant.loader import async_get_integration
import pytest

from custom_components.iotshield.const import DOMAIN
from custom_components.iotshield.incidents import Transition
from custom_components.iotshield.logbook import async_describe_events, describe


def test_every_transition_is_described(hass: HomeAssistant) -> None:
    """Each of the five incident events has a describer, reading from the event itself."""
    described: dict[str, Callable[[Event], dict[str, str]]] = {}

    def register(domain: str, event_type: str, fn: Callable[[Event], dict[str, str]]) -> None:
        assert domain == DOMAIN
        described[event_type] = fn

    async_describe_events(hass, register)
    assert set(described) == {f"iotshield_incident_{t.value}" for t in Transition}
    data: dict[str, Any] = {
        "node": "Kitchen",
        "node_id": "kitchen",
        "device_id": "abc",
        "severity": "critical",
        "title": "Fire suspected in the kitchen",
    }
    entry = described["iotshield_incident_opened"](Event("iotshield_incident_opened", data))
    assert entry == {
        "name": "Kitchen",
        "message": "opened an incident (critical): Fire suspected in the kitchen",
    }
    resolved = described["iotshield_incident_resolved"](Event("iotshield_incident_resolved", data))
    assert resolved["message"].startswith("resolved its incident")
    # With Home Assistant in German the entry is German, read when the logbook is shown.
    hass.config.language = "de"
    german = described["iotshield_incident_opened"](Event("iotshield_incident_opened", data))
    assert (
        german["message"] == "hat einen Vorfall eröffnet (kritisch): Fire suspected in the kitchen"
    )


@pytest.mark.parametrize("data", [{}, {"title": "x" * 10_000, "severity": None}])
def test_odd_event_data_still_reads(data: dict[str, Any]) -> None:
    """An event fired by an automation with missing or huge fields gives a bounded entry."""
    entry = describe(data, Transition.ACKNOWLEDGED)
    assert entry["name"] == DOMAIN
    assert len(entry["message"]) < 200


async def test_home_assistant_finds_the_logbook_platform(hass: HomeAssistant) -> None:
    """The loader finds logbook.py as the platform the logbook integration asks for."""
    integration = await async_get_integration(hass, DOMAIN)
    platform = await integration.async_get_platform("logbook")
    assert platform.async_describe_events is async_describe_events
