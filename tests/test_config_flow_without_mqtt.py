"""Adding a node before Home Assistant's MQTT integration is set up ends with a clear reason."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import DOMAIN


async def test_without_mqtt_the_wizard_says_so(hass: HomeAssistant) -> None:
    """No MQTT entry, or one that is not loaded: the user flow aborts, translated."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_set_up"
    # An MQTT entry that never loaded (a broker that is not configured) is no better.
    MockConfigEntry(domain="mqtt", data={"broker": "127.0.0.1"}).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["reason"] == "mqtt_not_set_up"
