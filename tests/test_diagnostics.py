"""Tests of the diagnostics download."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.iotshield.keys import fingerprint

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry


@pytest.mark.usefixtures("mqtt_mock")
async def test_diagnostics_redact_the_key(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """The download explains the node's state and counters but never holds the private key."""
    await setup_entry(hass, mock_config_entry)
    await publish(hass, "iotshield/kitchen/status", b'{"state":"online","fw":"1.0.0","interval":5}')
    await publish(
        hass, "iotshield/kitchen/sensors/data", encrypt(private_key.public_key(), telemetry(t=22.5))
    )
    await publish(hass, "iotshield/kitchen/sensors/data", b"junk")

    result = await get_diagnostics_for_config_entry(hass, hass_client, mock_config_entry)

    text = json.dumps(result)
    assert "PRIVATE KEY" not in text
    assert result["entry"]["data"]["private_key"] == "**REDACTED**"
    assert result["entry"]["data"]["node_id"] == "kitchen"
    assert result["key_fingerprint"] == fingerprint(private_key)
    node = result["node"]
    assert node["available"] is True
    assert node["announce"]["firmware"] == "1.0.0"
    assert node["last_reading"]["temperature"] == 22.5
    assert node["stale_after"] == 15.0
    assert result["rejections"]["malformed"] == 1
    assert result["rejections"]["decrypt_failed"] == 0
    assert result["incident"] is None
    # The node would use the home's LLM with the home's model, but the home has none set up.
    assert result["llm"]["enabled"] is True
    assert result["llm"]["model"] is None
    assert result["llm"]["home"] is None
