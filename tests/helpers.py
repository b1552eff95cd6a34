"""Helpers shared by the Home Assistant tests."""

from __future__ import annotations

from datetime import timedelta
import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import V2Sender, load_or_create_identity, node_key_b64
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)

from custom_components.iotshield.const import (
    CONF_KIND,
    CONF_NODE_KEY,
    CONF_PROTOCOL,
    DOMAIN,
    FIRST_SESSION_FALLBACK,
    HOME_UNIQUE_ID,
    KIND_HOME,
)

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


def sent_commands(mqtt_mock: MagicMock, node_id: str = "kitchen") -> list[dict[str, Any]]:
    """Return the bodies of the commands Home Assistant published to a node, oldest first."""
    bodies = []
    for call in mqtt_mock.async_publish.call_args_list:
        topic, payload = call[0][0], call[0][1]
        if topic != f"iotshield/{node_id}/control/commands":
            continue
        doc = json.loads(payload)
        bodies.append(json.loads(doc["body"]) if "body" in doc else doc)
    return bodies


async def first_challenge(hass: HomeAssistant, mqtt_mock: MagicMock) -> str:
    """Let Home Assistant ask for its first session, and return the challenge it sent."""
    # Without a retained status (or word from newer MQTT clients) the first request follows a
    # short fallback timer; Home Assistant asks only once either way.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=FIRST_SESSION_FALLBACK + 1))
    await hass.async_block_till_done(wait_background_tasks=True)
    return latest_challenge(mqtt_mock)


def latest_challenge(mqtt_mock: MagicMock) -> str:
    """Return the challenge of the newest open_session Home Assistant sent."""
    requests = [body for body in sent_commands(mqtt_mock) if body["cmd"] == "open_session"]
    assert requests, "Home Assistant asked for no session"
    return str(requests[-1]["args"]["ch"])


def paired_v2_entry(template: MockConfigEntry, state_dir: Path) -> MockConfigEntry:
    """Return a v2 entry of node `kitchen` pinning the identity its state folder holds.

    The identity is made if missing, as a flashed node makes it before it is paired.
    """
    identity = load_or_create_identity(state_dir / "kitchen.identity.pem")
    return MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title="kitchen",
        unique_id="kitchen",
        data={**template.data, CONF_PROTOCOL: 2, CONF_NODE_KEY: node_key_b64(identity)},
        options=template.options,
    )


async def flush_rejection_count(hass: HomeAssistant) -> None:
    """Let the Rejected payloads entity write the count it held back (at most one a second)."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=2))
    await hass.async_block_till_done()


def v2_reading(seq: int, t: float = 21.5) -> bytes:
    """Return node kitchen's telemetry plaintext as a v2 node seals it."""
    return encode_telemetry(
        "kitchen", seq, 1763900000, Readings(t, 45.0, 0.05, 300.0, False, True), None
    )


async def running_v2_node(
    hass: HomeAssistant, entry: MockConfigEntry, node: V2Sender, mqtt_mock: MagicMock
) -> None:
    """Load the entry; the node answers Home Assistant's challenge with a session and reading."""
    await setup_entry(hass, entry)
    node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, "iotshield/kitchen/sensors/data", node.open_session())
    await publish(hass, "iotshield/kitchen/sensors/data", node.seal(v2_reading(1)))
    assert hass.states.get("sensor.kitchen_temperature").state == "21.5"


async def setup_home_llm(hass: HomeAssistant, options: dict[str, Any]) -> MockConfigEntry:
    """Load the home's LLM entry with the given options."""
    home = MockConfigEntry(
        domain=DOMAIN,
        title="Home LLM",
        unique_id=HOME_UNIQUE_ID,
        minor_version=2,
        data={CONF_KIND: KIND_HOME},
        options=options,
    )
    home.add_to_hass(hass)
    assert await hass.config_entries.async_setup(home.entry_id)
    await hass.async_block_till_done()
    return home
