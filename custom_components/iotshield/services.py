"""Services: node commands, key rotation, and acknowledging and explaining incidents."""

from __future__ import annotations

import base64
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from homeassistant.auth.permissions.const import POLICY_CONTROL
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError, Unauthorized, UnknownUser
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.util import dt as dt_util
import voluptuous as vol

from .const import (
    ATTR_COMMAND,
    ATTR_EPSILON,
    ATTR_INCIDENT_ID,
    ATTR_INTERVAL,
    COMMANDS,
    CONF_PREVIOUS_KEY_UNTIL,
    CONF_PREVIOUS_PRIVATE_KEY,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    DOMAIN,
    KEY_ROTATION_GRACE_SECONDS,
    MAX_PUBLISH_INTERVAL,
    MIN_PUBLISH_INTERVAL,
    PROTOCOL_V2,
    SERVICE_ACKNOWLEDGE,
    SERVICE_EXPLAIN,
    SERVICE_ROTATE_KEY,
    SERVICE_SEND_COMMAND,
    SERVICE_TEST_ALARM,
)
from .coordinator import IoTShieldConfigEntry
from .home_llm import is_home_entry
from .keys import fingerprint, format_fingerprint, generate_private_key, private_key_pem

ATTR_DEVICE_ID = "device_id"

SEND_COMMAND_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_COMMAND): vol.In(COMMANDS),
        vol.Optional(ATTR_INTERVAL): vol.All(
            vol.Coerce(int), vol.Range(min=MIN_PUBLISH_INTERVAL, max=MAX_PUBLISH_INTERVAL)
        ),
        vol.Optional(ATTR_EPSILON): vol.All(vol.Coerce(float), vol.Range(min=0, max=100)),
    }
)
ROTATE_KEY_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})
EXPLAIN_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})
TEST_ALARM_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})
ACKNOWLEDGE_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_DEVICE_ID): cv.string,
        vol.Optional(ATTR_INCIDENT_ID): cv.string,
    }
)
# Which argument each command needs.
REQUIRED_ARGUMENT = {"set_interval": ATTR_INTERVAL, "set_epsilon": ATTR_EPSILON}


def _entry_for_device(hass: HomeAssistant, device_id: str) -> IoTShieldConfigEntry:
    """Return the loaded IoTShield entry whose node is this device."""
    registry = dr.async_get(hass)
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.state is not ConfigEntryState.LOADED or is_home_entry(entry):
            continue
        if any(
            d.id == device_id for d in dr.async_entries_for_config_entry(registry, entry.entry_id)
        ):
            return entry
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_device",
        translation_placeholders={"device_id": device_id},
    )


async def _async_send_command(call: ServiceCall) -> None:
    """Send one command to a node."""
    entry = _entry_for_device(call.hass, call.data[ATTR_DEVICE_ID])
    command: str = call.data[ATTR_COMMAND]
    args: dict[str, Any] = {}
    if (needed := REQUIRED_ARGUMENT.get(command)) is not None:
        if needed not in call.data:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="missing_argument",
                translation_placeholders={"command": command, "argument": needed},
            )
        args[needed] = call.data[needed]
    await entry.runtime_data.async_send_command(command, args)
    if command == "set_interval":
        # Home Assistant judges staleness by its own setting, never by the node's word
        # (PROTOCOL.md §5): the interval the user commands becomes that setting.
        entry.runtime_data.async_set_interval_option(args[ATTR_INTERVAL])


async def _async_rotate_key(call: ServiceCall) -> ServiceResponse:
    """Give Home Assistant a new key for a v2 node; the old one works for a grace period."""
    hass = call.hass
    entry = _entry_for_device(hass, call.data[ATTR_DEVICE_ID])
    if entry.data.get(CONF_PROTOCOL) != PROTOCOL_V2:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="rotation_needs_v2",
            translation_placeholders={"node_id": entry.title},
        )
    coordinator = entry.runtime_data
    new_key = coordinator.pending_key
    if new_key is None:
        new_key = await hass.async_add_executor_job(generate_private_key)
        until = (dt_util.utcnow() + timedelta(seconds=KEY_ROTATION_GRACE_SECONDS)).isoformat()
        # Hold the new key before the node hears of it: a node that switches at once must
        # find its new session accepted (and Home Assistant still subscribed: no reload).
        coordinator.async_use_new_ha_key(
            new_key,
            fingerprint(new_key),
            {
                **entry.data,
                CONF_PRIVATE_KEY: private_key_pem(new_key),
                CONF_PREVIOUS_PRIVATE_KEY: entry.data[CONF_PRIVATE_KEY],
                CONF_PREVIOUS_KEY_UNTIL: until,
            },
        )
    else:
        # The node has not confirmed the last rotation: tell it that key again, not a new one.
        until = str(entry.data[CONF_PREVIOUS_KEY_UNTIL])
    der = new_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Signed with the old key, which the node trusts until it confirms the new one.
    await coordinator.async_send_command("set_ha_key", {"key": base64.b64encode(der).decode()})
    return {"fingerprint": format_fingerprint(fingerprint(new_key)), "old_key_until": until}


def _loaded_entries(hass: HomeAssistant) -> list[IoTShieldConfigEntry]:
    """Return the loaded IoTShield entries."""
    return [
        entry
        for entry in hass.config_entries.async_entries(DOMAIN)
        # The home's LLM entry has no node behind it.
        if entry.state is ConfigEntryState.LOADED and not is_home_entry(entry)
    ]


async def _async_acknowledge(call: ServiceCall) -> None:
    """Silence an incident, chosen by its node, its id, or both."""
    device_id: str | None = call.data.get(ATTR_DEVICE_ID)
    incident_id: str | None = call.data.get(ATTR_INCIDENT_ID)
    if device_id is None and incident_id is None:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="acknowledge_what")
    if device_id is not None:
        entries = [_entry_for_device(call.hass, device_id)]
    else:
        entries = _loaded_entries(call.hass)
    for entry in entries:
        if entry.runtime_data.alerts.async_acknowledge(incident_id):
            return
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="no_open_incident",
        translation_placeholders={"incident_id": incident_id or "-"},
    )


async def _async_test_alarm(call: ServiceCall) -> ServiceResponse:
    """Run a drill on one node: its notification, events and device triggers, flagged as a test."""
    entry = _entry_for_device(call.hass, call.data[ATTR_DEVICE_ID])
    return {"incident_id": async_test_alarm(entry)}


def async_test_alarm(entry: IoTShieldConfigEntry) -> str:
    """Start a node's drill, or say in the user's language why it cannot start."""
    incident_id = entry.runtime_data.alerts.async_test_alarm()
    if incident_id is None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="test_alarm_busy",
            translation_placeholders={"node": entry.title},
        )
    return incident_id


def async_acknowledge_node(entry: IoTShieldConfigEntry) -> None:
    """Acknowledge a node's open incident (or drill), or say that there is none."""
    if not entry.runtime_data.alerts.async_acknowledge(None):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="nothing_to_acknowledge",
            translation_placeholders={"node": entry.title},
        )


async def _async_explain(call: ServiceCall) -> ServiceResponse:
    """Explain a node's current state now, with the local LLM when it can."""
    entry = _entry_for_device(call.hass, call.data[ATTR_DEVICE_ID])
    return await entry.runtime_data.alerts.async_explain_now()


def _admin_only[R](
    handler: Callable[[ServiceCall], Coroutine[Any, Any, R]],
) -> Callable[[ServiceCall], Coroutine[Any, Any, R]]:
    """Refuse a call made by a user who is not an administrator.

    What async_register_admin_service does, for handlers that return a response, which it
    cannot register on every supported Home Assistant.
    """

    async def checked(call: ServiceCall) -> R:
        if call.context.user_id:
            user = await call.hass.auth.async_get_user(call.context.user_id)
            if user is None:
                raise UnknownUser(context=call.context, permission=POLICY_CONTROL)
            if not user.is_admin:
                raise Unauthorized(context=call.context)
        return await handler(call)

    return checked


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's services; the ones that change a node are for admins."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_COMMAND,
        _admin_only(_async_send_command),
        schema=SEND_COMMAND_SCHEMA,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_ROTATE_KEY,
        _admin_only(_async_rotate_key),
        schema=ROTATE_KEY_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_ACKNOWLEDGE, _async_acknowledge, schema=ACKNOWLEDGE_SCHEMA
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_TEST_ALARM,
        _async_test_alarm,
        schema=TEST_ALARM_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_EXPLAIN,
        _async_explain,
        schema=EXPLAIN_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
