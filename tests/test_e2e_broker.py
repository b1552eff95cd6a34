"""End to end through a real Mosquitto broker and Home Assistant's real MQTT client.

The node side here is an independent implementation of firmware/PROTOCOL.md v1: OpenSSL's
command line encrypts, the envelope is framed by hand, and a separate paho-mqtt client
publishes. Nothing of the integration's own code builds these payloads.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
import json
from pathlib import Path
import shutil
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
import paho.mqtt.client as paho
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import DOMAIN
from custom_components.iotshield.keys import public_key_pem

from .broker import Broker, connect_home_assistant, mosquitto  # noqa: F401

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled", "mock_hass_config")]

READINGS = {
    "sensor.kitchen_temperature": "23.75",
    "sensor.kitchen_humidity": "48.5",
    "sensor.kitchen_gas_level": "0.125",
    "sensor.kitchen_illuminance": "312.25",
    "binary_sensor.kitchen_flame": STATE_OFF,
    # One reading with motion may be the node's random flip (randomized response).
    "binary_sensor.kitchen_motion": STATE_OFF,
}
PLAINTEXT = (
    b'{"n":"kitchen","s":41,"t":1763900000,'
    b'"r":{"t":23.75,"h":48.50,"g":0.125,"f":0,"m":1,"l":312.25},"p":{"e":0.5,"d":1e-05}}'
)


def openssl_envelope(public_pem: Path, plaintext: bytes) -> bytes:
    """Encrypt with OpenSSL's RSA-OAEP/SHA-256 and frame the result as PROTOCOL.md §3 says."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is installed by scripts/setup"
    ciphertext = subprocess.run(
        [
            openssl,
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            str(public_pem),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ],
        input=plaintext,
        capture_output=True,
        check=True,
    ).stdout
    assert len(ciphertext) == 256
    return b'{"v":1,"ct":"' + base64.b64encode(ciphertext) + b'"}'


def node_publish(broker: Broker, messages: list[tuple[str, bytes, bool]]) -> None:
    """Publish as a node would: its own client, QoS 1, waiting for the broker's acks."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-node")
    client.username_pw_set(broker.username, broker.password)
    client.connect(broker.host, broker.port, keepalive=60)
    infos = [
        client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in messages
    ]
    for _ in range(200):
        client.loop(timeout=0.05)
        if all(info.is_published() for info in infos):
            break
    assert all(info.is_published() for info in infos)
    client.disconnect()


async def _publish_until(
    hass: HomeAssistant,
    broker: Broker,
    messages: list[tuple[str, bytes, bool]],
    check: Callable[[], bool],
    what: str,
) -> None:
    """Publish like a node that repeats itself until `check()` holds, or fail after a while.

    Home Assistant's MQTT client batches new subscriptions, so the very first message after
    setup can come before the broker knows Home Assistant wants it; real nodes publish again.
    """
    for _ in range(20):
        await hass.async_add_executor_job(node_publish, broker, messages)
        for _ in range(20):
            await hass.async_block_till_done(wait_background_tasks=True)
            if check():
                return
            await asyncio.sleep(0.025)
    pytest.fail(f"timed out waiting for {what}")


async def test_independent_node_through_real_broker(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Ciphertext from OpenSSL becomes the six states; a tampered copy changes nothing."""
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED

    pem = tmp_path / "ha_public.pem"
    pem.write_text(public_key_pem(private_key))
    good = await hass.async_add_executor_job(openssl_envelope, pem, PLAINTEXT)
    announce = json.dumps({"state": "online", "node": "kitchen", "fw": "0.9.0", "interval": 5})
    await _publish_until(
        hass,
        mosquitto,
        [
            ("iotshield/kitchen/status", announce.encode(), True),
            ("iotshield/kitchen/sensors/data", good, False),
        ],
        lambda: hass.states.get("sensor.kitchen_temperature").state == "23.75",
        "the reading to arrive",
    )
    assert {entity_id: hass.states.get(entity_id).state for entity_id in READINGS} == READINGS

    # Flip one base64 character of the ciphertext: still valid framing, no longer valid OAEP.
    doc = json.loads(good)
    ct = doc["ct"]
    doc["ct"] = ct[:100] + ("A" if ct[100] != "A" else "B") + ct[101:]
    tampered = json.dumps(doc, separators=(",", ":")).encode()
    before = {entity_id: hass.states.get(entity_id) for entity_id in READINGS}
    await _publish_until(
        hass,
        mosquitto,
        [("iotshield/kitchen/sensors/data", tampered, False)],
        lambda: hass.states.get("sensor.kitchen_rejected_payloads").state != "0",
        "the tampered payload to be counted",
    )
    counter = hass.states.get("sensor.kitchen_rejected_payloads")
    assert counter.attributes["decrypt_failed"] == int(counter.state) >= 1
    for entity_id, state in before.items():
        after = hass.states.get(entity_id)
        assert (after.state, after.last_updated) == (state.state, state.last_updated)

    # The node's last will makes its entities unavailable.
    await _publish_until(
        hass,
        mosquitto,
        [("iotshield/kitchen/status", b"offline", True)],
        lambda: hass.states.get("sensor.kitchen_temperature").state == STATE_UNAVAILABLE,
        "the node to go offline",
    )

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()


async def test_announcing_node_is_discovered(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
) -> None:
    """A node announcing on its status topic starts the setup wizard through MQTT discovery."""
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    announce = json.dumps({"state": "online", "node": "garage", "fw": "0.9.0", "interval": 5})
    await _publish_until(
        hass,
        mosquitto,
        [("iotshield/garage/status", announce.encode(), True)],
        lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)),
        "the discovery flow",
    )
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["step_id"] == "discovery_confirm"
    assert flow["context"]["source"] == "mqtt"
    assert flow["context"]["unique_id"] == "garage"
    hass.config_entries.flow.async_abort(flow["flow_id"])
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()
