"""The IoTShield integration: encrypted safety telemetry from ESP32 nodes over MQTT."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components import mqtt
from homeassistant.config_entries import SOURCE_IMPORT, ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.typing import ConfigType
from homeassistant.util import dt as dt_util

from .alerts import llm_issue_id
from .const import (
    CONF_KEY_UNCONFIRMED,
    CONF_LLM_ENABLED,
    CONF_LLM_MODEL,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_NODE_REV,
    CONF_PREVIOUS_KEY_UNTIL,
    CONF_PREVIOUS_PRIVATE_KEY,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    DOMAIN,
    HOME_LLM_KEYS,
    LOGGER,
    PROTOCOL_V1,
    PROTOCOL_V2,
)
from .coordinator import (
    IoTShieldConfigEntry,
    IoTShieldCoordinator,
    announced_key_issue_id,
    baseline_store,
    entry_settings,
    firmware_update_issue_id,
    impersonation_issue_id,
    key_mismatch_issue_id,
    state_store,
    unauthenticated_issue_id,
)
from .home_llm import (
    LLM_ISSUE_ID,
    async_setup_home,
    async_unload_home,
    home_entry,
    is_home_entry,
    llm_settings,
)
from .keys import KeyImportError, fingerprint, load_private_key
from .panel import async_update_dashboard
from .protocol import V1Decoder
from .protocol_v2 import NodeKeyError, V2Receiver, V2State, load_node_key
from .services import async_setup_services

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.SENSOR,
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the services, which serve every node."""
    async_setup_services(hass)
    return True


def _load_keys(entry: IoTShieldConfigEntry, now: datetime) -> list[rsa.RSAPrivateKey]:
    """Load Home Assistant's keys, newest first.

    The previous key only within its grace period, or while the node has not confirmed the
    new key: then the previous one is the only key the node obeys.
    """
    keys = [load_private_key(entry.data[CONF_PRIVATE_KEY])]
    until = entry.data.get(CONF_PREVIOUS_KEY_UNTIL)
    previous = entry.data.get(CONF_PREVIOUS_PRIVATE_KEY)
    in_grace = bool(until and (parsed := dt_util.parse_datetime(until)) and parsed > now)
    if previous and (in_grace or entry.data.get(CONF_KEY_UNCONFIRMED)):
        keys.append(load_private_key(previous))
    return keys


async def async_migrate_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Move a node's own LLM settings (minor version 1) to the home's one LLM entry."""
    if entry.version > 1:
        return False
    if entry.minor_version < 2 and not is_home_entry(entry):  # noqa: PLR2004 - the version
        options = await _async_move_llm_settings(hass, dict(entry.options))
        hass.config_entries.async_update_entry(entry, options=options, minor_version=2)
    return True


async def _async_move_llm_settings(hass: HomeAssistant, options: dict[str, Any]) -> dict[str, Any]:
    """Return a node's options without its LLM settings, which the home entry then holds.

    The first node with the LLM on creates the home entry with its settings; a later node whose
    model differs keeps that model as its own, so no node changes what it asks.
    """
    own = {key: options.pop(key) for key in HOME_LLM_KEYS if key in options}
    if not options.get(CONF_LLM_ENABLED):
        # A node that had the LLM off (the old default) stays off.
        options[CONF_LLM_ENABLED] = False
        return options
    home = home_entry(hass)
    if home is None:
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_IMPORT}, data=own
        )
        LOGGER.info("The node's LLM settings now serve the whole home (%s)", result.get("type"))
        home = home_entry(hass)
    wanted = llm_settings(own)
    if home is None or llm_settings(home.options).model != wanted.model:
        options[CONF_LLM_MODEL] = wanted.model
    if home is not None and llm_settings(home.options).url != wanted.url:
        LOGGER.warning(
            "A node asked the LLM at %s; it now uses the home's at %s",
            wanted.url,
            llm_settings(home.options).url,
        )
    return options


async def async_setup_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> bool:
    """Load the node's keys and state, create its entities and subscribe to its topics."""
    if is_home_entry(entry):
        await async_setup_home(hass, entry)  # type: ignore[arg-type]
        entry.async_on_unload(entry.add_update_listener(_async_reload_home))
        return True
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_ready")
    try:
        # Parsing an RSA key checks it, which takes milliseconds: not on the event loop.
        keys = await hass.async_add_executor_job(_load_keys, entry, dt_util.utcnow())
    except KeyImportError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="stored_key_invalid"
        ) from err
    node_id: str = entry.data[CONF_NODE_ID]
    store = state_store(hass, entry)
    stored = await store.async_load() or {}
    decoder: V1Decoder | V2Receiver
    if entry.data.get(CONF_PROTOCOL, PROTOCOL_V1) == PROTOCOL_V2:
        try:
            node_key = load_node_key(entry.data[CONF_NODE_KEY])
        except (KeyError, NodeKeyError) as err:
            raise ConfigEntryError(
                translation_domain=DOMAIN, translation_key="stored_key_invalid"
            ) from err
        decoder = V2Receiver(
            node_id,
            node_key,
            keys,
            V2State.from_dict(stored.get("v2")),
            revision=int(entry.data.get(CONF_NODE_REV, 0)),
        )
        ir.async_delete_issue(hass, DOMAIN, unauthenticated_issue_id(node_id))
    else:
        decoder = V1Decoder(keys[0], node_id)
        ir.async_create_issue(
            hass,
            DOMAIN,
            unauthenticated_issue_id(node_id),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="unauthenticated",
            translation_placeholders={"node_id": node_id},
        )
    learned = baseline_store(hass, entry)
    # Until the node confirms a rotated key, commands are signed with the one it trusts.
    pending = keys[0] if entry.data.get(CONF_KEY_UNCONFIRMED) and len(keys) > 1 else None
    coordinator = IoTShieldCoordinator(
        hass,
        entry,
        decoder,
        fingerprint(keys[0]),
        store,
        stored,
        keys[-1] if pending is not None else keys[0],
        (learned, await learned.async_load()),
        pending,
    )
    entry.runtime_data = coordinator
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Subscribe only once the entities exist, so retained messages reach them.
    await coordinator.async_start()
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    async_update_dashboard(hass)
    return True


async def _async_reload_home(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Use the home's new LLM settings; nodes find the new explainer on their next request."""
    await hass.config_entries.async_reload(entry.entry_id)


async def _async_update_listener(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> None:
    """Reload after the options or a reconfiguration changed the entry's settings.

    Home Assistant also updates the entry whenever the node announces itself again (MQTT
    discovery records its discovery key), which must not reload anything.
    """
    if entry.runtime_data.loaded_settings != entry_settings(entry):
        await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> bool:
    """Unload the entities and write the session state; subscriptions go with the entry."""
    if is_home_entry(entry):
        async_unload_home(hass, entry)  # type: ignore[arg-type]
        return True
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    await entry.runtime_data.async_flush()
    # The entry is unloading now, so the dashboard no longer shows its section.
    async_update_dashboard(hass)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> None:
    """Drop the node's repair issues and stored state when the node is removed."""
    if is_home_entry(entry):
        ir.async_delete_issue(hass, DOMAIN, LLM_ISSUE_ID)
        return
    async_update_dashboard(hass, removed=entry.entry_id)
    node_id = entry.data[CONF_NODE_ID]
    for issue_id in (
        key_mismatch_issue_id(node_id),
        announced_key_issue_id(node_id),
        impersonation_issue_id(node_id),
        firmware_update_issue_id(node_id),
        unauthenticated_issue_id(node_id),
        llm_issue_id(node_id),
    ):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
    await state_store(hass, entry).async_remove()
    await baseline_store(hass, entry).async_remove()
