"""Wire format v2 inside Home Assistant: readings, attacks, repairs, commands and key rotation."""

from __future__ import annotations

import base64
from datetime import timedelta
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from iotshield_node.telemetry import seal_v1
from iotshield_node.v2 import (
    CommandRejectedError,
    StoredCounters,
    V2Sender,
    node_key_b64,
    verify_command,
)
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, MqttMockHAClient

from custom_components.iotshield.const import (
    CONF_KEY_UNCONFIRMED,
    CONF_NODE_KEY,
    CONF_PRIVATE_KEY,
    DOMAIN,
)
from custom_components.iotshield.keys import load_private_key
from custom_components.iotshield.protocol import Rejection

from .helpers import (
    READING_ENTITIES,
    first_challenge,
    publish,
    running_v2_node,
    setup_entry,
    v2_reading,
)

# Acceptance is told by the reading entities' states: each reading is shown as it comes.
pytestmark = pytest.mark.usefixtures(
    "mqtt_mock", "every_reading_shown", "entity_registry_enabled_by_default"
)

DATA_TOPIC = "iotshield/kitchen/sensors/data"


reading = v2_reading


def snapshot(hass: HomeAssistant) -> dict[str, tuple[str, object]]:
    """Capture state and last change of the reading entities."""
    return {
        entity_id: (hass.states.get(entity_id).state, hass.states.get(entity_id).last_updated)
        for entity_id in READING_ENTITIES
    }


_running = running_v2_node


async def test_v2_readings_and_no_v1_warning(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    issue_registry: ir.IssueRegistry,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """A paired v2 node's readings arrive and no unauthenticated warning is shown."""
    await _running(hass, v2_entry, node, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.seal(reading(2, t=22.25)))
    assert hass.states.get("sensor.kitchen_temperature").state == "22.25"
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == "0"
    assert issue_registry.async_get_issue(DOMAIN, "unauthenticated_kitchen") is None


async def test_v1_node_is_flagged_unauthenticated(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """While a node uses v1, a repair issue says its readings are not authenticated."""
    await setup_entry(hass, mock_config_entry)
    issue = issue_registry.async_get_issue(DOMAIN, "unauthenticated_kitchen")
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.WARNING


async def _attack(
    hass: HomeAssistant, entry: MockConfigEntry, payload: bytes, reason: Rejection
) -> None:
    """Deliver an attacker's message and check nothing moved but the right counter."""
    before = snapshot(hass)
    counts = dict(entry.runtime_data.rejections.as_dict())
    await publish(hass, DATA_TOPIC, payload)
    assert snapshot(hass) == before
    after = entry.runtime_data.rejections.as_dict()
    assert after[reason.value] == counts[reason.value] + 1
    assert sum(after.values()) == sum(counts.values()) + 1


async def test_attacks_change_nothing(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """Forgery with public material, replays, old counters and a v1 downgrade are refused."""
    await _running(hass, v2_entry, node, mqtt_mock)
    second, third = node.seal(reading(2, t=22.0)), node.seal(reading(3, t=23.0))
    await publish(hass, DATA_TOPIC, third)
    assert hass.states.get("sensor.kitchen_temperature").state == "23.0"

    attacker = V2Sender(
        "kitchen",
        ec.generate_private_key(ec.SECP256R1()),
        private_key.public_key(),
        StoredCounters(None, last_sid=99),
    )
    await _attack(hass, v2_entry, attacker.open_session(), Rejection.BAD_SIGNATURE)
    # While the real node works, a forged session is only counted (no repair issue to spam).
    assert issue_registry.async_get_issue(DOMAIN, "impersonation_kitchen") is None
    attacker.sid, attacker.ctr = node.sid, 100
    await _attack(hass, v2_entry, attacker.seal(reading(9, t=80.0)), Rejection.AUTH_FAILED)
    await _attack(hass, v2_entry, third, Rejection.REPLAYED)
    await _attack(hass, v2_entry, second, Rejection.REPLAYED)
    plain = seal_v1(reading(9, t=80.0), private_key.public_key())
    await _attack(hass, v2_entry, plain, Rejection.DOWNGRADE)


async def test_replay_after_restart(
    hass: HomeAssistant, v2_entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> None:
    """Captured messages stay refused after Home Assistant restarts the entry."""
    await setup_entry(hass, v2_entry)
    node.challenge = await first_challenge(hass, mqtt_mock)
    session = node.open_session()
    await publish(hass, DATA_TOPIC, session)
    captured = node.seal(reading(1, t=20.0))
    await publish(hass, DATA_TOPIC, captured)
    await publish(hass, DATA_TOPIC, node.seal(reading(2, t=24.0)))
    assert await hass.config_entries.async_reload(v2_entry.entry_id)
    await hass.async_block_till_done()
    # The node answers the challenge Home Assistant sends at every start.
    node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await _attack(hass, v2_entry, captured, Rejection.UNKNOWN_SESSION)
    await _attack(hass, v2_entry, session, Rejection.REPLAYED)
    await publish(hass, DATA_TOPIC, node.seal(reading(3, t=25.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "25.0"


async def test_every_bit_flip_changes_nothing(
    hass: HomeAssistant, v2_entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> None:
    """A bit flipped anywhere in a valid data message: refused, counted, no state moves."""
    await _running(hass, v2_entry, node, mqtt_mock)
    valid = node.seal(reading(2, t=30.0))
    before = snapshot(hass)
    for index in range(len(valid) * 8):
        mutated = bytearray(valid)
        mutated[index // 8] ^= 1 << (index % 8)
        await publish(hass, DATA_TOPIC, bytes(mutated))
    assert snapshot(hass) == before
    assert v2_entry.runtime_data.rejections.total == len(valid) * 8
    await publish(hass, DATA_TOPIC, valid)
    assert hass.states.get("sensor.kitchen_temperature").state == "30.0"


async def test_impersonation_repair_flow(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    v2_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """After a node reset, the user can pin its new identity key from the repair."""
    assert await async_setup_component(hass, "repairs", {})
    await setup_entry(hass, v2_entry)
    reset = ec.generate_private_key(ec.SECP256R1())
    new_node = V2Sender("kitchen", reset, private_key.public_key(), StoredCounters(None))
    new_node.challenge = await first_challenge(hass, mqtt_mock)
    # The reset node's readings are refused: after three intervals it is unavailable.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=16))
    await hass.async_block_till_done()
    await publish(
        hass,
        "iotshield/kitchen/status",
        f'{{"state":"online","proto":2,"node_key":"{node_key_b64(reset)}"}}'.encode(),
    )
    await publish(hass, DATA_TOPIC, new_node.open_session())
    assert issue_registry.async_get_issue(DOMAIN, "impersonation_kitchen") is not None

    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": "impersonation_kitchen"}
    )
    flow = await response.json()
    assert flow["step_id"] == "confirm"
    assert flow["description_placeholders"]["node_id"] == "kitchen"
    response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
    assert (await response.json())["type"] == "create_entry"
    await hass.async_block_till_done()
    assert v2_entry.data[CONF_NODE_KEY] == node_key_b64(reset)
    new_node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, new_node.open_session())
    await publish(hass, DATA_TOPIC, new_node.seal(reading(1, t=26.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "26.0"


def _device_id(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    return device.id


def _published(mqtt_mock: MqttMockHAClient) -> tuple[str, bytes]:
    """Return the topic and payload of the last MQTT publish."""
    args = mqtt_mock.async_publish.call_args[0]
    payload = args[1]
    return args[0], payload if isinstance(payload, bytes) else payload.encode()


async def test_send_command_is_signed_and_fresh(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """Commands reach the node signed, with increasing counters the node accepts once."""
    await setup_entry(hass, v2_entry)
    # Let the start-up request for a session go out first; this test is about the service.
    await hass.async_block_till_done(wait_background_tasks=True)
    mqtt_mock.async_publish.reset_mock()
    device_id = _device_id(hass, v2_entry)
    counters = StoredCounters(None)
    seen: list[tuple[str, dict[str, Any]]] = []
    for data in (
        {"command": "set_interval", "interval": 12},
        {"command": "set_epsilon", "epsilon": 1.0},
        {"command": "reboot"},
    ):
        await hass.services.async_call(
            DOMAIN, "send_command", {"device_id": device_id, **data}, blocking=True
        )
        topic, payload = _published(mqtt_mock)
        assert topic == "iotshield/kitchen/control/commands"
        seen.append(verify_command(payload, private_key.public_key(), "kitchen", counters))
        with pytest.raises(CommandRejectedError):
            verify_command(payload, private_key.public_key(), "kitchen", counters)
    assert seen == [
        ("set_interval", {"interval": 12}),
        ("set_epsilon", {"epsilon": 1.0}),
        ("reboot", {}),
    ]
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device_id, "command": "set_interval"},
            blocking=True,
        )
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "send_command", {"device_id": "nope", "command": "reboot"}, blocking=True
        )


async def test_v1_commands_are_limited(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """A v1 node gets only the harmless unsigned commands."""
    await setup_entry(hass, mock_config_entry)
    device_id = _device_id(hass, mock_config_entry)
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": "publish_now"}, blocking=True
    )
    assert _published(mqtt_mock) == ("iotshield/kitchen/control/commands", b'{"cmd":"publish_now"}')
    with pytest.raises(ServiceValidationError) as info:
        await hass.services.async_call(
            DOMAIN, "send_command", {"device_id": device_id, "command": "reboot"}, blocking=True
        )
    assert info.value.translation_key == "command_needs_v2"
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "rotate_key", {"device_id": device_id}, blocking=True, return_response=True
        )


async def test_key_rotation_loses_no_reading(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """The node learns the new key by a command signed with the old one; both work meanwhile."""
    await _running(hass, v2_entry, node, mqtt_mock)
    await hass.async_block_till_done(wait_background_tasks=True)
    response = await hass.services.async_call(
        DOMAIN,
        "rotate_key",
        {"device_id": _device_id(hass, v2_entry)},
        blocking=True,
        return_response=True,
    )
    await hass.async_block_till_done()
    _, payload = _published(mqtt_mock)
    cmd, args = verify_command(payload, private_key.public_key(), "kitchen", StoredCounters(None))
    assert cmd == "set_ha_key"
    new_public = serialization.load_der_public_key(__import__("base64").b64decode(args["key"]))
    new_private = load_private_key(v2_entry.data[CONF_PRIVATE_KEY])
    assert isinstance(new_public, rsa.RSAPublicKey)
    assert new_public.public_numbers() == new_private.public_key().public_numbers()
    assert response is not None
    assert len(str(response["fingerprint"]).replace(" ", "")) == 64

    # A session the node opened with the old key just before switching still counts...
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(2, t=27.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "27.0"
    # Until the node confirms the new key, commands stay signed with the old one it trusts.
    device_id = _device_id(hass, v2_entry)
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": "publish_now"}, blocking=True
    )
    _, payload = _published(mqtt_mock)
    assert verify_command(payload, private_key.public_key(), "kitchen", StoredCounters(None))
    # ...and so does the first session under the new key, which confirms it.
    node.ha_key = new_public
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(3, t=28.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "28.0"
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == "0"
    assert CONF_KEY_UNCONFIRMED not in v2_entry.data
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": "publish_now"}, blocking=True
    )
    _, payload = _published(mqtt_mock)
    assert verify_command(payload, new_public, "kitchen", StoredCounters(None))


async def test_a_missed_rotation_is_sent_again_and_the_node_still_obeys(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """A node that missed set_ha_key keeps obeying; rotating again re-sends the same key."""
    await _running(hass, v2_entry, node, mqtt_mock)
    device_id = _device_id(hass, v2_entry)
    first = await hass.services.async_call(
        DOMAIN, "rotate_key", {"device_id": device_id}, blocking=True, return_response=True
    )
    _, lost = _published(mqtt_mock)
    # The command never reached the node; a restart of Home Assistant does not change that.
    assert await hass.config_entries.async_reload(v2_entry.entry_id)
    await hass.async_block_till_done()
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": "publish_now"}, blocking=True
    )
    _, payload = _published(mqtt_mock)
    counters = StoredCounters(None)
    assert verify_command(payload, private_key.public_key(), "kitchen", counters)[0] == (
        "publish_now"
    )
    again = await hass.services.async_call(
        DOMAIN, "rotate_key", {"device_id": device_id}, blocking=True, return_response=True
    )
    assert again == first
    _, resent = _published(mqtt_mock)
    cmd, args = verify_command(resent, private_key.public_key(), "kitchen", counters)
    assert cmd == "set_ha_key"
    assert args == json.loads(json.loads(lost)["body"])["args"]


async def test_unknown_session_asks_node_for_a_new_one(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Data of a session Home Assistant missed makes it ask (signed, rate-limited) for a new one."""
    clock = [1000.0]
    monkeypatch.setattr("custom_components.iotshield.coordinator.time.monotonic", lambda: clock[0])
    await setup_entry(hass, v2_entry)
    counters = StoredCounters(None)
    # At start Home Assistant asks once, with a fresh challenge.
    node.challenge = await first_challenge(hass, mqtt_mock)
    _, payload = _published(mqtt_mock)
    assert verify_command(payload, private_key.public_key(), "kitchen", counters) == (
        "open_session",
        {"ch": node.challenge},
    )
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(1)))
    # The node opens a session Home Assistant misses (a broker restart lost it).
    node.open_session()
    mqtt_mock.async_publish.reset_mock()
    clock[0] += 11
    await publish(hass, DATA_TOPIC, node.seal(reading(2)))
    _, payload = _published(mqtt_mock)
    command = verify_command(payload, private_key.public_key(), "kitchen", counters)
    assert command[0] == "open_session"
    assert v2_entry.runtime_data.rejections.as_dict()[Rejection.UNKNOWN_SESSION.value] == 1
    mqtt_mock.async_publish.reset_mock()
    await publish(hass, DATA_TOPIC, node.seal(reading(3)))
    assert not mqtt_mock.async_publish.called  # rate-limited
    node.challenge = str(command[1]["ch"])
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(4, t=24.5)))
    assert hass.states.get("sensor.kitchen_temperature").state == "24.5"


async def test_diagnostics_show_sessions_not_keys(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """Diagnostics name the sessions and counters but hold no key material."""
    await _running(hass, v2_entry, node, mqtt_mock)
    result = await get_diagnostics_for_config_entry(hass, hass_client, v2_entry)
    assert result["sessions"]["current"] == {"sid": node.sid, "max_ctr": 1}
    assert result["node"]["wire_revision"] == 1
    info = result["node"]["signed_session_info"]
    assert info["interval"] == 5
    assert len(info["will"]) == 64
    assert result["entry"]["data"]["private_key"] == "**REDACTED**"
    text = json.dumps(result)
    assert base64.b64encode(node._key).decode() not in text
    assert "PRIVATE KEY" not in text
