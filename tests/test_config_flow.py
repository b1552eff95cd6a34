"""Tests of the setup wizard, MQTT discovery, reconfiguration and options."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import (
    CONF_KEY_SOURCE,
    CONF_LEGACY_TOPIC,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from custom_components.iotshield.keys import (
    fingerprint,
    format_fingerprint,
    load_private_key,
    private_key_pem,
    public_key_pem,
)
from custom_components.iotshield.protocol_v2 import node_key_fingerprint

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")

NODE_IDENTITY = ec.generate_private_key(ec.SECP256R1())
NODE_KEY_B64 = base64.b64encode(
    NODE_IDENTITY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
NODE_KEY_PEM = (
    NODE_IDENTITY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


async def _pair(hass: HomeAssistant, result: Any, pairing: str, node_key: str | None = None) -> Any:
    """Submit the show-key step and then the manual pairing step."""
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_manual"
    user_input = {"pairing": pairing}
    if node_key is not None:
        user_input["node_key"] = node_key
    return await hass.config_entries.flow.async_configure(result["flow_id"], user_input)


def _discovery(node_id: str = "garage", payload: str | bytes | None = None) -> MqttServiceInfo:
    """Return what MQTT discovery hands the flow for a node's retained status message."""
    if payload is None:
        payload = json.dumps(
            {
                "state": "online",
                "node": node_id,
                "fw": "1.0.0",
                "interval": 5,
                "proto": 2,
                "node_key": NODE_KEY_B64,
            }
        )
    return MqttServiceInfo(
        topic=f"iotshield/{node_id}/status",
        payload=payload,
        qos=1,
        retain=True,
        subscribed_topic="iotshield/+/status",
        timestamp=0.0,
    )


def _suggested(result: Any, field: str) -> Any:
    """Return the value a form shows in a field (its suggested value)."""
    for key in result["data_schema"].schema:
        if str(key) == field:
            return (key.description or {}).get("suggested_value")
    raise KeyError(field)


async def _start_user_flow(hass: HomeAssistant, **fields: Any) -> dict[str, Any]:
    """Open the wizard and submit its first step."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    user_input = {
        CONF_NODE_ID: "garage",
        CONF_TOPIC_PREFIX: "iotshield",
        CONF_KEY_SOURCE: "generate",
    }
    user_input.update(fields)
    return dict(await hass.config_entries.flow.async_configure(result["flow_id"], user_input))


async def test_generate_key(hass: HomeAssistant) -> None:
    """The default path generates a key, shows its public half and creates the entry."""
    result = await _start_user_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "show_key"
    placeholders = result["description_placeholders"]
    assert placeholders["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    result = await _pair(hass, result, "paste", NODE_KEY_PEM)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "garage"
    data = result["data"]
    assert data[CONF_NODE_ID] == "garage"
    assert data[CONF_TOPIC_PREFIX] == "iotshield"
    key = load_private_key(data[CONF_PRIVATE_KEY])
    assert key.key_size == 2048
    # What the user was shown belongs to the key that was stored.
    assert placeholders["public_key"] == public_key_pem(key).strip()
    assert placeholders["fingerprint"] == format_fingerprint(fingerprint(key))
    assert result["data"][CONF_PROTOCOL] == 2
    assert result["data"][CONF_NODE_KEY] == NODE_KEY_B64
    assert result["options"] == {
        CONF_PUBLISH_INTERVAL: 5,
        CONF_STALE_INTERVALS: 3,
        CONF_LEGACY_TOPIC: False,
    }
    entry = result["result"]
    assert entry.unique_id == "garage"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_import_key_with_errors_and_recovery(
    hass: HomeAssistant, private_key: rsa.RSAPrivateKey
) -> None:
    """Each unusable key gets its own translated error and the user can try again."""
    result = await _start_user_flow(hass, **{CONF_KEY_SOURCE: "import"})
    assert result["step_id"] == "import_key"
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for pem, error in (
        ("not a key", "invalid_key"),
        (private_key_pem(short), "key_too_short"),
        (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode(),
            "not_rsa",
        ),
        (
            private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ).decode(),
            "key_encrypted",
        ),
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_PRIVATE_KEY: pem}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "import_key"
        assert result["errors"] == {CONF_PRIVATE_KEY: error}
        # What was pasted stays in the field for the next try.
        assert _suggested(result, CONF_PRIVATE_KEY) == pem
    seed_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRIVATE_KEY: seed_pem}
    )
    assert result["step_id"] == "show_key"
    assert result["description_placeholders"]["fingerprint"] == format_fingerprint(
        fingerprint(private_key)
    )
    result = await _pair(hass, result, "v1")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fingerprint(load_private_key(result["data"][CONF_PRIVATE_KEY])) == fingerprint(
        private_key
    )


@pytest.mark.parametrize(
    ("fields", "error_field", "error"),
    [
        ({CONF_NODE_ID: "Kitchen Node"}, CONF_NODE_ID, "invalid_node_id"),
        ({CONF_NODE_ID: "a/b"}, CONF_NODE_ID, "invalid_node_id"),
        ({CONF_TOPIC_PREFIX: "home/#"}, CONF_TOPIC_PREFIX, "invalid_topic_prefix"),
        ({CONF_TOPIC_PREFIX: "a//b"}, CONF_TOPIC_PREFIX, "invalid_topic_prefix"),
    ],
)
async def test_user_step_errors_and_recovery(
    hass: HomeAssistant, fields: dict[str, str], error_field: str, error: str
) -> None:
    """A bad node id or prefix is pointed out on its field and can be corrected."""
    result = await _start_user_flow(hass, **fields)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {error_field: error}
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {CONF_NODE_ID: "garage", CONF_TOPIC_PREFIX: "home/iot/", CONF_KEY_SOURCE: "generate"},
        )
    )
    assert result["step_id"] == "show_key"
    result = dict(await _pair(hass, result, "v1"))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    # Surrounding slashes are trimmed rather than refused.
    assert result["data"][CONF_TOPIC_PREFIX] == "home/iot"


async def test_duplicate_node_aborts(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """A node can only be added once, by hand or by discovery."""
    mock_config_entry.add_to_hass(hass)
    result = await _start_user_flow(hass, **{CONF_NODE_ID: "kitchen"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    result = dict(
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("kitchen")
        )
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_discovery_confirm_creates_entry(hass: HomeAssistant) -> None:
    """An announcing node starts a confirm step that ends in an entry for it."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"node_id": "garage"}
    progress = hass.config_entries.flow.async_progress()
    assert progress[0]["context"]["title_placeholders"] == {"node_id": "garage"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY_SOURCE: "generate"}
    )
    assert result["step_id"] == "show_key"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_confirm"
    assert result["description_placeholders"]["node_fingerprint"] == format_fingerprint(
        node_key_fingerprint(NODE_KEY_B64)
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"pairing": "pin"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PROTOCOL] == 2
    assert result["data"][CONF_NODE_KEY] == NODE_KEY_B64
    assert result["data"][CONF_NODE_ID] == "garage"
    assert result["data"][CONF_TOPIC_PREFIX] == "iotshield"
    # A second announcement of the same node while the first flow is open is not offered twice.
    second = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    assert second["type"] is FlowResultType.ABORT


async def test_discovery_in_progress_aborts_second(hass: HomeAssistant) -> None:
    """Two announcements of one node open one flow."""
    first = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    assert first["type"] is FlowResultType.FORM
    second = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    assert second["type"] is FlowResultType.ABORT
    assert second["reason"] == "already_in_progress"


@pytest.mark.parametrize(
    "info",
    [
        _discovery("garage", ""),
        _discovery("garage", "online"),
        _discovery("garage", "offline"),
        _discovery("garage", '{"state":"offline","node":"garage","fw":"1.0.0","interval":5}'),
        _discovery("garage", "gibberish"),
        _discovery("garage", b"\xff\xfe"),
        MqttServiceInfo(
            topic="iotshield/Not Valid/status",
            payload="online",
            qos=1,
            retain=True,
            subscribed_topic="iotshield/+/status",
            timestamp=0.0,
        ),
    ],
)
async def test_discovery_of_something_else_aborts(
    hass: HomeAssistant, info: MqttServiceInfo
) -> None:
    """Messages that are not an IoTShield status do not start a wizard."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=info
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_reconfigure_keep_key(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """The prefix can change without touching the key; the entry reloads onto new topics."""
    await setup_entry(hass, mock_config_entry)
    old_key = mock_config_entry.data[CONF_PRIVATE_KEY]
    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOPIC_PREFIX: "bad/+", CONF_KEY_SOURCE: "keep"}
    )
    assert result["errors"] == {CONF_TOPIC_PREFIX: "invalid_topic_prefix"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOPIC_PREFIX: "home", CONF_KEY_SOURCE: "keep"}
    )
    # The key is shown again: the node may need it flashed (the wrong-key repair says so).
    assert result["step_id"] == "show_key"
    assert result["description_placeholders"]["fingerprint"] == format_fingerprint(
        fingerprint(private_key)
    )
    assert result["description_placeholders"]["public_key"] == public_key_pem(private_key).strip()
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert mock_config_entry.data[CONF_TOPIC_PREFIX] == "home"
    assert mock_config_entry.data[CONF_PRIVATE_KEY] == old_key
    assert mock_config_entry.state is ConfigEntryState.LOADED
    public = private_key.public_key()
    await publish(hass, "iotshield/kitchen/sensors/data", encrypt(public, telemetry(t=30.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == STATE_UNKNOWN
    await publish(hass, "home/kitchen/sensors/data", encrypt(public, telemetry(t=31.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "31.0"


async def test_reconfigure_new_key(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """A new key is shown for flashing and then replaces the old one."""
    mock_config_entry.add_to_hass(hass)
    old_key = mock_config_entry.data[CONF_PRIVATE_KEY]
    result = await mock_config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "generate"}
    )
    assert result["step_id"] == "show_key"
    shown = result["description_placeholders"]["fingerprint"]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    new_key = mock_config_entry.data[CONF_PRIVATE_KEY]
    assert new_key != old_key
    assert format_fingerprint(fingerprint(load_private_key(new_key))) == shown


async def test_reconfigure_import_key(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, other_private_key: rsa.RSAPrivateKey
) -> None:
    """An existing key can be imported during reconfiguration."""
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "import"}
    )
    assert result["step_id"] == "import_key"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRIVATE_KEY: "nope"}
    )
    assert result["errors"] == {CONF_PRIVATE_KEY: "invalid_key"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PRIVATE_KEY: private_key_pem(other_private_key)}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["reason"] == "reconfigure_successful"
    assert fingerprint(load_private_key(mock_config_entry.data[CONF_PRIVATE_KEY])) == fingerprint(
        other_private_key
    )


async def test_options_flow(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """Options are shown with current values and stored as integers and a flag."""
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["node", "thresholds", "alerts", "llm"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "node"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "node"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_PUBLISH_INTERVAL: 10.0, CONF_STALE_INTERVALS: 4.0, CONF_LEGACY_TOPIC: True},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert mock_config_entry.options == {
        CONF_PUBLISH_INTERVAL: 10,
        CONF_STALE_INTERVALS: 4,
        CONF_LEGACY_TOPIC: True,
    }
    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert mock_config_entry.runtime_data.stale_after == 40.0


async def test_manual_pairing_errors_and_v1(hass: HomeAssistant) -> None:
    """A wrong node key is pointed out and can be fixed; v1 is an explicit choice."""
    result = await _start_user_flow(hass)
    result = await _pair(hass, result, "paste", "not a key")
    assert result["errors"] == {"node_key": "invalid_node_key"}
    rsa_pem = public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"pairing": "paste", "node_key": rsa_pem}
    )
    assert result["errors"] == {"node_key": "invalid_node_key"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"pairing": "paste", "node_key": f"  {NODE_KEY_B64}\n"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_NODE_KEY] == NODE_KEY_B64
    result = await _start_user_flow(hass, **{CONF_NODE_ID: "hall"})
    result = await _pair(hass, result, "v1")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PROTOCOL] == 1
    assert CONF_NODE_KEY not in result["data"]


async def test_discovered_node_can_still_choose_v1(hass: HomeAssistant) -> None:
    """Even when the node announces a key, the user may pair it as v1."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY_SOURCE: "generate"}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"pairing": "v1"})
    assert result["data"][CONF_PROTOCOL] == 1
