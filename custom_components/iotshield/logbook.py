"""Describe IoTShield's incident events in the logbook."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN, EVENT_PREFIX
from .incidents import Transition

# What each transition reads as after the node's name in the logbook.
VERBS = {
    Transition.OPENED: "opened an incident",
    Transition.ESCALATED: "escalated its incident",
    Transition.EXPLAINED: "explained its incident",
    Transition.ACKNOWLEDGED: "had its incident acknowledged",
    Transition.RESOLVED: "resolved its incident",
}
MAX_TITLE = 120


def describe(data: Mapping[str, Any], transition: Transition) -> dict[str, str]:
    """Return the logbook entry of one incident event."""
    title = str(data.get("title") or "")[:MAX_TITLE]
    severity = str(data.get("severity") or "")
    message = f"{VERBS[transition]} ({severity})" if severity else VERBS[transition]
    # The logbook links the entry to the device through the event's own device_id.
    return {
        LOGBOOK_ENTRY_NAME: str(data.get("node") or data.get("node_id") or DOMAIN),
        LOGBOOK_ENTRY_MESSAGE: f"{message}: {title}" if title else message,
    }


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe every `iotshield_incident_*` event."""
    for transition in Transition:

        def describe_event(event: Event, transition: Transition = transition) -> dict[str, str]:
            return describe(event.data, transition)

        async_describe_event(DOMAIN, f"{EVENT_PREFIX}{transition.value}", describe_event)
