"""Describe IoTShield's incident events in the logbook."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN, EVENT_PREFIX
from .incidents import Transition
from .texts import ENGLISH, AlertTexts, for_language

MAX_TITLE = 120


def describe(
    data: Mapping[str, Any], transition: Transition, texts: AlertTexts = ENGLISH
) -> dict[str, str]:
    """Return the logbook entry of one incident event, in the given language."""
    title = str(data.get("title") or "")[:MAX_TITLE]
    verb = texts.phrases[f"logbook_{transition.value}"]
    severity = str(data.get("severity") or "")
    shown = texts.severity.get(severity, severity)
    message = f"{verb} ({shown})" if shown else verb
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
            return describe(event.data, transition, for_language(hass.config.language))

        async_describe_event(DOMAIN, f"{EVENT_PREFIX}{transition.value}", describe_event)
