"""Helpers shared by the Home Assistant tests."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

# The node's readings (and the time of the last one): what bad input must never change.
READING_ENTITIES = (
    "sensor.kitchen_temperature",
    "sensor.kitchen_humidity",
    "sensor.kitchen_gas_level",
    "sensor.kitchen_illuminance",
    "binary_sensor.kitchen_flame",
    "binary_sensor.kitchen_motion",
    "sensor.kitchen_last_reading",
)


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add an entry to Home Assistant and load it."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def publish(hass: HomeAssistant, topic: str, payload: bytes | str) -> None:
    """Deliver an MQTT message as the broker would and wait until it is fully processed."""
    async_fire_mqtt_message(hass, topic, payload)
    # Decryption runs in a background task and the executor.
    await hass.async_block_till_done(wait_background_tasks=True)
