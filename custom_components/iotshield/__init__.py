"""The IoTShield integration: encrypted safety telemetry from ESP32 nodes over MQTT."""

from __future__ import annotations

from homeassistant.components import mqtt
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import issue_registry as ir

from .const import CONF_NODE_ID, CONF_PRIVATE_KEY, DOMAIN
from .coordinator import (
    IoTShieldConfigEntry,
    IoTShieldCoordinator,
    announced_key_issue_id,
    entry_settings,
    key_mismatch_issue_id,
)
from .keys import KeyImportError, fingerprint, load_private_key
from .protocol import V1Decoder

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.SENSOR]


async def async_setup_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> bool:
    """Load the node's key, create its entities and subscribe to its topics."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_ready")
    try:
        # Parsing an RSA key checks it, which takes milliseconds: not on the event loop.
        private_key = await hass.async_add_executor_job(
            load_private_key, entry.data[CONF_PRIVATE_KEY]
        )
    except KeyImportError as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN, translation_key="stored_key_invalid"
        ) from err
    node_id: str = entry.data[CONF_NODE_ID]
    coordinator = IoTShieldCoordinator(
        hass, entry, V1Decoder(private_key, node_id), fingerprint(private_key)
    )
    entry.runtime_data = coordinator
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Subscribe only once the entities exist, so retained messages reach them.
    await coordinator.async_start()
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def _async_update_listener(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> None:
    """Reload after the options or a reconfiguration changed the entry's settings.

    Home Assistant also updates the entry whenever the node announces itself again (MQTT
    discovery records its discovery key), which must not reload anything.
    """
    if entry.runtime_data.loaded_settings != entry_settings(entry):
        await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> bool:
    """Unload the entities; subscriptions and timers go with the entry's unload callbacks."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: IoTShieldConfigEntry) -> None:
    """Drop the node's repair issues when the node is removed."""
    node_id = entry.data[CONF_NODE_ID]
    for issue_id in (key_mismatch_issue_id(node_id), announced_key_issue_id(node_id)):
        ir.async_delete_issue(hass, DOMAIN, issue_id)
