"""The side doors of a paired v2 node: nothing unauthenticated steers what Home Assistant believes.

Each test is an attack of PROTOCOL.md §9's attacker (publishes and subscribes on the broker,
holds Home Assistant's public key) or a state-loss scenario; see docs/threat-model.md.
"""

from __future__ import annotations

from datetime import timedelta
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_REAUTH
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.helpers.storage import Store
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from iotshield_node.privacy import PrivacyConfig
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import StoredCounters, V2Sender, node_key_b64
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
    flush_store,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, MqttMockHAClient

from custom_components.iotshield import keys
from custom_components.iotshield.const import (
    CONF_NODE_KEY,
    CONF_NODE_REV,
    CONF_PROTOCOL,
    CONF_PUBLISH_INTERVAL,
    DOMAIN,
)
from custom_components.iotshield.keys import fingerprint, format_fingerprint, public_key_pem
from custom_components.iotshield.protocol import Rejection
from custom_components.iotshield.protocol_v2 import node_key_fingerprint

from .envelope import encrypt, telemetry
from .helpers import (
    READING_ENTITIES,
    first_challenge,
    latest_challenge,
    publish,
    sent_commands,
    setup_entry,
)

# Acceptance is told by the reading entities' states: each reading is shown as it comes.
pytestmark = pytest.mark.usefixtures(
    "mqtt_mock", "every_reading_shown", "entity_registry_enabled_by_default"
)

DATA_TOPIC = "iotshield/kitchen/sensors/data"
STATUS_TOPIC = "iotshield/kitchen/status"
TEMPERATURE = "sensor.kitchen_temperature"


def reading(seq: int, t: float = 21.5, l: float = 300.0) -> bytes:  # noqa: E741
    """Return a telemetry plaintext as a node writes it."""
    return encode_telemetry(
        "kitchen", seq, 1763900000, Readings(t, 45.0, 0.05, l, False, False), None
    )


@pytest.fixture
def legacy(node: V2Sender) -> V2Sender:
    """Return the same node running older firmware: wire format v2 without revision 1."""
    return V2Sender("kitchen", node.identity, node.ha_key, StoredCounters(None), revision=0)


async def legacy_running(hass: HomeAssistant, entry: MockConfigEntry, legacy: V2Sender) -> None:
    """Load the entry; the older node opens a session and sends one reading."""
    await setup_entry(hass, entry)
    await publish(hass, DATA_TOPIC, legacy.open_session())
    await publish(hass, DATA_TOPIC, legacy.seal(reading(1)))


async def running(
    hass: HomeAssistant, entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> None:
    """Load the entry; the node answers Home Assistant's challenge and sends one reading."""
    await setup_entry(hass, entry)
    node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session(privacy=PrivacyConfig().announce()))
    await publish(hass, DATA_TOPIC, node.seal(reading(1)))
    assert hass.states.get(TEMPERATURE).state == "21.5"


def rejections(entry: MockConfigEntry) -> dict[str, int]:
    """Return the non-zero rejection counters."""
    return {k: v for k, v in entry.runtime_data.rejections.as_dict().items() if v}


def states(hass: HomeAssistant) -> dict[str, Any]:
    """Capture the reading entities' states and when they last changed."""
    return {
        entity_id: (hass.states.get(entity_id).state, hass.states.get(entity_id).last_updated)
        for entity_id in READING_ENTITIES
    }


async def pass_time(hass: HomeAssistant, seconds: float) -> None:
    """Let `seconds` of Home Assistant's time pass."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done(wait_background_tasks=True)


def v1_style_announce(**members: Any) -> str:
    """Return an announce as any broker user can publish it for node kitchen."""
    return json.dumps({"state": "online", "node": "kitchen", **members})


async def test_offline_then_an_authenticated_reading_makes_the_node_available(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    legacy: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """A revision-0 node: a forged `offline` lasts only until its next valid reading."""
    await legacy_running(hass, v2_entry, legacy)
    await publish(hass, STATUS_TOPIC, "offline")
    assert hass.states.get(TEMPERATURE).state == STATE_UNAVAILABLE
    await publish(hass, DATA_TOPIC, legacy.seal(reading(2, t=23.0)))
    assert hass.states.get(TEMPERATURE).state == "23.0"


async def test_unsigned_offline_changes_nothing_for_a_revision_1_node(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """Plain `offline`, a made-up token or a token-less object: counted, nothing changes."""
    await running(hass, v2_entry, node, mqtt_mock)
    before = states(hass)
    forged = [
        "offline",
        json.dumps({"state": "offline", "node": "kitchen", "will": "AAAAAAAAAAAAAAAAAAAAAA=="}),
        json.dumps({"state": "offline", "node": "kitchen"}),
    ]
    for payload in forged:
        await publish(hass, STATUS_TOPIC, payload)
    assert states(hass) == before
    assert rejections(v2_entry) == {Rejection.UNAUTHENTICATED_STATUS.value: len(forged)}
    assert v2_entry.runtime_data.node_available


async def test_only_the_current_will_token_marks_the_node_offline(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """The node's own last will marks it offline; replayed after it reconnects, it does not."""
    await running(hass, v2_entry, node, mqtt_mock)
    will = node.will_payload()
    await publish(hass, STATUS_TOPIC, will)
    assert hass.states.get(TEMPERATURE).state == STATE_UNAVAILABLE
    # The node reconnects: a new token, a new session, readings.
    node.new_will()
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(1, t=22.0)))
    assert hass.states.get(TEMPERATURE).state == "22.0"
    # The old will, seen by everyone on the broker, is now worthless.
    await publish(hass, STATUS_TOPIC, will)
    assert hass.states.get(TEMPERATURE).state == "22.0"
    assert rejections(v2_entry) == {Rejection.UNAUTHENTICATED_STATUS.value: 1}


async def test_an_announced_interval_cannot_hide_a_silent_node(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    legacy: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """An announce of 86400 s leaves the staleness window at 3 × the configured 5 s."""
    await legacy_running(hass, v2_entry, legacy)
    await publish(hass, STATUS_TOPIC, v1_style_announce(interval=86400))
    assert v2_entry.runtime_data.stale_after == 15
    await pass_time(hass, 16)
    assert hass.states.get(TEMPERATURE).state == STATE_UNAVAILABLE


async def test_absurd_announced_noise_is_bounded(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    legacy: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """σ = 1e308 in an announce: a hot reading's alarm still ends after calm readings."""
    await setup_entry(hass, v2_entry)
    await publish(hass, DATA_TOPIC, legacy.open_session())
    huge = {"t": 1e308, "h": 1e308, "g": 1e308, "l": 1e308}
    privacy = {"mech": "gaussian", "e": 0.5, "d": 1e-5, "sigma": huge, "motion": {"flip": 9}}
    await publish(hass, STATUS_TOPIC, v1_style_announce(privacy=privacy))
    noise = v2_entry.runtime_data.severity._noise
    assert noise["t"] < 2.0  # ε = 0.5, δ = 1e-5: σ ≤ 0.97 °C by PROTOCOL.md §7.6
    await publish(hass, DATA_TOPIC, legacy.seal(reading(1, t=40.0)))
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_ON
    for seq in range(2, 32):
        await publish(hass, DATA_TOPIC, legacy.seal(reading(seq, t=21.0)))
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_OFF
    assert v2_entry.runtime_data.anomaly._noise["t"] < 2.0


async def test_a_bogus_key_fingerprint_raises_no_issue(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    issue_registry: ir.IssueRegistry,
) -> None:
    """`key_fp` must be 64 hex digits; any other 64 characters are ignored."""
    await setup_entry(hass, v2_entry)
    await publish(hass, STATUS_TOPIC, v1_style_announce(key_fp="<b>click here</b>" + "x" * 47))
    assert issue_registry.async_get_issue(DOMAIN, "announced_key_mismatch_kitchen") is None
    await publish(hass, STATUS_TOPIC, v1_style_announce(key_fp="ab" * 32))
    assert issue_registry.async_get_issue(DOMAIN, "announced_key_mismatch_kitchen") is not None


async def test_a_revision_1_node_is_described_by_its_signed_session(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Firmware, noise and key fingerprint come from the signed session, not the status topic."""
    await running(hass, v2_entry, node, mqtt_mock)
    coordinator = v2_entry.runtime_data
    assert v2_entry.data[CONF_NODE_REV] == 1
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), v2_entry.entry_id)
    signed_firmware = device.sw_version
    assert signed_firmware is not None
    noise = dict(coordinator.severity._noise)
    await publish(
        hass,
        STATUS_TOPIC,
        v1_style_announce(
            fw="evil-9.9",
            interval=86400,
            key_fp="ab" * 32,
            privacy={"e": 0.1, "d": 0.1, "sigma": {"t": 5.0}},
        ),
    )
    device = dr.async_get(hass).async_get(device.id)
    assert device is not None
    assert device.sw_version == signed_firmware
    assert coordinator.severity._noise == noise
    assert issue_registry.async_get_issue(DOMAIN, "announced_key_mismatch_kitchen") is None
    assert issue_registry.async_get_issue(DOMAIN, "firmware_update_kitchen") is None
    assert rejections(v2_entry) == {}


async def test_a_legacy_node_is_asked_to_update_its_firmware(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    legacy: V2Sender,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A node of revision 0 keeps working, with a repair issue asking for new firmware."""
    await setup_entry(hass, v2_entry)
    await publish(hass, DATA_TOPIC, legacy.open_session())
    await publish(hass, DATA_TOPIC, legacy.seal(reading(1, t=24.0)))
    assert hass.states.get(TEMPERATURE).state == "24.0"
    issue = issue_registry.async_get_issue(DOMAIN, "firmware_update_kitchen")
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.WARNING


async def test_a_revision_0_session_after_revision_1_is_a_downgrade(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """Once a node signed a revision-1 session, its revision-0 sessions are refused, also later."""
    recorded = V2Sender(
        "kitchen", node.identity, node.ha_key, StoredCounters(None, last_sid=50), revision=0
    ).open_session()
    await running(hass, v2_entry, node, mqtt_mock)
    before = states(hass)
    await publish(hass, DATA_TOPIC, recorded)
    assert states(hass) == before
    assert rejections(v2_entry) == {Rejection.DOWNGRADE.value: 1}
    assert await hass.config_entries.async_reload(v2_entry.entry_id)
    await hass.async_block_till_done()
    await publish(hass, DATA_TOPIC, recorded)
    assert rejections(v2_entry) == {Rejection.DOWNGRADE.value: 1}


async def test_a_forged_session_alone_is_only_counted(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
) -> None:
    """While the real node sends valid readings, forged sessions raise no repair issue."""
    await running(hass, v2_entry, node, mqtt_mock)
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    attacker = V2Sender(
        "kitchen", attacker_key, private_key.public_key(), StoredCounters(None, last_sid=99)
    )
    await publish(
        hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(attacker_key))
    )
    for _ in range(5):
        await publish(hass, DATA_TOPIC, attacker.open_session())
    assert rejections(v2_entry) == {Rejection.BAD_SIGNATURE.value: 5}
    assert issue_registry.async_get_issue(DOMAIN, "impersonation_kitchen") is None
    await publish(hass, DATA_TOPIC, node.seal(reading(2, t=22.5)))
    assert hass.states.get(TEMPERATURE).state == "22.5"


async def test_the_repair_pins_the_key_that_was_shown(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A re-announce between display and submit does not change what is pinned.

    The attacker's session id 2**32 - 1, refused before, does not lock the real node out
    after the re-pair: pinning a key forgets every session.
    """
    assert await async_setup_component(hass, "repairs", {})
    await running(hass, v2_entry, node, mqtt_mock)
    # The real node is reflashed: a new identity, silent until it is re-paired.
    reset_key = ec.generate_private_key(ec.SECP256R1())
    reset = V2Sender("kitchen", reset_key, private_key.public_key(), StoredCounters(None))
    await pass_time(hass, 16)
    await publish(hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(reset_key)))
    reset.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, reset.open_session())
    assert issue_registry.async_get_issue(DOMAIN, "impersonation_kitchen") is not None

    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": "impersonation_kitchen"}
    )
    flow = await response.json()
    assert flow["step_id"] == "confirm"
    # Meanwhile the attacker re-announces their own key and tries a huge session id.
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    attacker = V2Sender(
        "kitchen", attacker_key, private_key.public_key(), StoredCounters(None, last_sid=2**32 - 2)
    )
    await publish(
        hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(attacker_key))
    )
    response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
    assert (await response.json())["type"] == "create_entry"
    await hass.async_block_till_done()
    assert v2_entry.data[CONF_NODE_KEY] == node_key_b64(reset_key)

    attacker.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, attacker.open_session())
    assert hass.states.get(TEMPERATURE).state != "99.0"
    reset.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, reset.open_session())
    await publish(hass, DATA_TOPIC, reset.seal(reading(1, t=26.0)))
    assert hass.states.get(TEMPERATURE).state == "26.0"


async def test_replay_after_the_state_was_deleted_is_refused(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    hass_storage: dict[str, Any],
) -> None:
    """Sessions and data recorded on the broker mean nothing after the store is lost."""
    await running(hass, v2_entry, node, mqtt_mock)
    node.challenge = latest_challenge(mqtt_mock)
    recorded = [node.open_session(), node.seal(reading(2, t=19.0))]
    for payload in recorded:
        await publish(hass, DATA_TOPIC, payload)
    assert hass.states.get(TEMPERATURE).state == "19.0"
    assert await hass.config_entries.async_unload(v2_entry.entry_id)
    hass_storage.pop(f"{DOMAIN}.{v2_entry.entry_id}", None)
    assert await hass.config_entries.async_setup(v2_entry.entry_id)
    await hass.async_block_till_done()
    await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.seal(reading(3, t=30.0)))
    before = states(hass)
    for payload in recorded:
        await publish(hass, DATA_TOPIC, payload)
    assert states(hass) == before
    # The entities show the values restored at start; no reading was accepted since.
    assert v2_entry.runtime_data.data.telemetry is None
    assert Rejection.STALE_SESSION.value in rejections(v2_entry)


async def test_replay_after_the_state_was_rolled_back_is_refused(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    hass_storage: dict[str, Any],
) -> None:
    """Restored from an older backup, Home Assistant refuses what was recorded after it."""
    await running(hass, v2_entry, node, mqtt_mock)
    await hass.config_entries.async_unload(v2_entry.entry_id)
    backup = json.loads(json.dumps(hass_storage[f"{DOMAIN}.{v2_entry.entry_id}"]))
    assert await hass.config_entries.async_setup(v2_entry.entry_id)
    await hass.async_block_till_done()
    # Life goes on after the backup: a new session and readings, all recorded.
    node.challenge = await first_challenge(hass, mqtt_mock)
    recorded = [node.open_session(), node.seal(reading(2, t=18.0)), node.seal(reading(3, t=17.0))]
    for payload in recorded:
        await publish(hass, DATA_TOPIC, payload)
    assert hass.states.get(TEMPERATURE).state == "17.0"
    # The backup is restored: the store forgets the new session.
    await hass.config_entries.async_unload(v2_entry.entry_id)
    hass_storage[f"{DOMAIN}.{v2_entry.entry_id}"] = backup
    assert await hass.config_entries.async_setup(v2_entry.entry_id)
    await hass.async_block_till_done()
    await first_challenge(hass, mqtt_mock)
    before_counts = sum(v2_entry.runtime_data.rejections.as_dict().values())
    for payload in recorded:
        await publish(hass, DATA_TOPIC, payload)
    # Neither the recorded session nor its data get in: no reading since the restore (the
    # entities show the values restored at start).
    assert v2_entry.runtime_data.data.telemetry is None
    assert sum(v2_entry.runtime_data.rejections.as_dict().values()) > before_counts


def count_store_writes(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[int]:
    """Count from now on how often `store` is written (one element per write)."""
    writes: list[int] = []
    write = store._async_write_data

    # Its arguments differ between Home Assistant versions (path and data, or data alone).
    async def counted(*args: Any) -> None:
        writes.append(1)
        await write(*args)

    # On the instance, not the class: the test harness's own storage patch stays as it is.
    monkeypatch.setattr(store, "_async_write_data", counted)
    return writes


async def test_readings_of_a_revision_1_node_leave_the_store_alone(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its session ends with the receiver: its counter need not be written at each reading."""
    await running(hass, v2_entry, node, mqtt_mock)
    store = v2_entry.runtime_data._store
    await flush_store(store)
    writes = count_store_writes(monkeypatch, store)
    captured = node.seal(reading(2, t=30.0))
    for payload in [captured, *(node.seal(reading(seq, t=22.0)) for seq in range(3, 40))]:
        await publish(hass, DATA_TOPIC, payload)
    await flush_store(store)
    assert writes == []
    # Power is cut: the store is what it was, its counter 38 readings behind. After the
    # restart a recorded reading of that session is still refused.
    key = f"{DOMAIN}.{v2_entry.entry_id}"
    on_disk = json.loads(json.dumps(hass_storage[key]))
    assert on_disk["data"]["v2"]["current"]["max_ctr"] < 2
    await hass.config_entries.async_unload(v2_entry.entry_id)
    hass_storage[key] = on_disk
    assert await hass.config_entries.async_setup(v2_entry.entry_id)
    await hass.async_block_till_done()
    await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, captured)
    assert v2_entry.runtime_data.data.telemetry is None
    assert hass.states.get(TEMPERATURE).state != "30.0"


async def test_readings_of_a_revision_0_node_keep_its_counter_on_disk(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    legacy: V2Sender,
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older node's session outlives a restart, so its counter is written after each reading."""
    await legacy_running(hass, v2_entry, legacy)
    store = v2_entry.runtime_data._store
    await flush_store(store)
    writes = count_store_writes(monkeypatch, store)
    await publish(hass, DATA_TOPIC, legacy.seal(reading(2, t=22.0)))
    await flush_store(store)
    assert len(writes) == 1
    stored = hass_storage[f"{DOMAIN}.{v2_entry.entry_id}"]["data"]["v2"]["current"]
    assert stored["max_ctr"] == legacy.ctr


async def test_a_v1_node_is_never_sent_set_interval(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """An unsigned set_interval is not harmless: Home Assistant sends v1 nodes only publish_now."""
    await setup_entry(hass, mock_config_entry)
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "send_command",
            {"device_id": device.id, "command": "set_interval", "interval": 60},
            blocking=True,
        )
    assert err.value.translation_key == "command_needs_v2"
    assert sent_commands(mqtt_mock) == []


async def test_set_interval_becomes_the_configured_interval(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """The interval the user commands is the one staleness is judged by, without a reload."""
    await running(hass, v2_entry, node, mqtt_mock)
    coordinator = v2_entry.runtime_data
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), v2_entry.entry_id)
    await hass.services.async_call(
        DOMAIN,
        "send_command",
        {"device_id": device.id, "command": "set_interval", "interval": 60},
        blocking=True,
    )
    await hass.async_block_till_done()
    assert v2_entry.options[CONF_PUBLISH_INTERVAL] == 60
    assert v2_entry.runtime_data is coordinator  # not reloaded
    assert coordinator.stale_after == 180
    body = sent_commands(mqtt_mock)[-1]
    assert body["cmd"] == "set_interval"
    # Bound to the session the node holds (PROTOCOL.md §12.5).
    assert body["sess"] in node.session_tags()


async def test_huge_numbers_in_a_status_are_harmless(
    hass: HomeAssistant, v2_entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> None:
    """A 400-digit integer anywhere in an announce changes nothing and raises nothing."""
    await running(hass, v2_entry, node, mqtt_mock)
    huge = int("9" * 400)
    for members in (
        {"interval": huge},
        {"privacy": {"e": huge, "d": huge, "sigma": {"t": huge}, "gas_bound": huge}},
        {"privacy": {"motion": {"flip": huge}}},
        {"rev": huge, "key_fp": huge},
    ):
        await publish(hass, STATUS_TOPIC, v1_style_announce(**members))
    assert hass.states.get(TEMPERATURE).state == "21.5"


async def test_padded_readings_are_accepted(
    hass: HomeAssistant, v2_entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> None:
    """Every data message of a revision-1 node has one length, and its readings arrive."""
    await running(hass, v2_entry, node, mqtt_mock)
    lengths = set()
    for seq, (t, lux) in enumerate(((0.0, 0.0), (49.99, 19999.99), (21.5, 312.0)), start=2):
        message = node.seal(reading(seq, t=t, l=lux))
        lengths.add(len(json.loads(message)["ct"]))
        await publish(hass, DATA_TOPIC, message)
        assert float(hass.states.get(TEMPERATURE).state) == t
    assert lengths == {364}


async def test_first_session_is_asked_for_once_subscribed(
    hass: HomeAssistant, v2_entry: MockConfigEntry, mqtt_mock: MqttMockHAClient
) -> None:
    """Home Assistant asks for a session only after the broker has its subscription.

    A retained status arrives only for a new subscription, so it proves the broker has it.
    """
    await setup_entry(hass, v2_entry)
    asked_at_setup = [b for b in sent_commands(mqtt_mock) if b["cmd"] == "open_session"]
    async_fire_mqtt_message(hass, STATUS_TOPIC, v1_style_announce(), retain=True)
    await hass.async_block_till_done(wait_background_tasks=True)
    asked = [b for b in sent_commands(mqtt_mock) if b["cmd"] == "open_session"]
    assert len(asked) == 1
    assert asked_at_setup in ([], asked)
    assert len(str(asked[0]["args"]["ch"])) == 24


async def test_pinning_a_key_forgets_every_session(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """An attacker's key pinned by mistake, then the real one again: the node is not locked out.

    With the attacker's session id 2**32 - 1 accepted while their key was pinned, the real
    node's session ids would all look replayed unless pinning starts the sessions afresh.
    """
    await running(hass, v2_entry, node, mqtt_mock)
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    attacker = V2Sender(
        "kitchen", attacker_key, private_key.public_key(), StoredCounters(None, last_sid=2**32 - 2)
    )
    await v2_entry.runtime_data.async_pin_node_key(node_key_b64(attacker_key))
    await hass.async_block_till_done()
    attacker.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, attacker.open_session())
    await publish(hass, DATA_TOPIC, attacker.seal(reading(1, t=33.0)))
    assert hass.states.get(TEMPERATURE).state == "33.0"
    # The user notices and re-pairs the real node.
    await v2_entry.runtime_data.async_pin_node_key(node_key_b64(node.identity))
    await hass.async_block_till_done()
    node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(1, t=21.0)))
    assert hass.states.get(TEMPERATURE).state == "21.0"


def reauth_flows(hass: HomeAssistant) -> list[dict[str, Any]]:
    """Return the re-authentication flows in progress."""
    return [
        flow
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == SOURCE_REAUTH
    ]


async def test_reauth_pins_the_key_that_was_shown(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MqttMockHAClient,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """A reflashed node: Home Assistant asks to re-pair it, and pins only the key it showed."""
    await running(hass, v2_entry, node, mqtt_mock)
    reset_key = ec.generate_private_key(ec.SECP256R1())
    reset = V2Sender("kitchen", reset_key, private_key.public_key(), StoredCounters(None))
    await pass_time(hass, 16)
    await publish(hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(reset_key)))
    reset.challenge = latest_challenge(mqtt_mock)
    await publish(hass, DATA_TOPIC, reset.open_session())
    (flow,) = reauth_flows(hass)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert result["step_id"] == "reauth_confirm"
    shown = result["description_placeholders"]["node_fingerprint"]
    assert shown == format_fingerprint(node_key_fingerprint(node_key_b64(reset_key)))
    # Meanwhile the attacker re-announces their own key: it is not what gets pinned.
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    await publish(
        hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(attacker_key))
    )
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pairing": "pin"})
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert v2_entry.data[CONF_NODE_KEY] == node_key_b64(reset_key)
    reset.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, reset.open_session())
    await publish(hass, DATA_TOPIC, reset.seal(reading(1, t=26.0)))
    assert hass.states.get(TEMPERATURE).state == "26.0"


async def test_a_v1_node_moves_to_v2_keeping_device_and_entities(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    identity: ec.EllipticCurvePrivateKey,
    private_key: rsa.RSAPrivateKey,
    mqtt_mock: MqttMockHAClient,
) -> None:
    """A node paired as v1 announces an identity: re-pairing makes it v2, nothing is lost."""
    await setup_entry(hass, mock_config_entry)
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)
    entities = {
        e.entity_id: e.unique_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), mock_config_entry.entry_id)
    }
    await publish(hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(identity)))
    (flow,) = reauth_flows(hass)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert result["data_schema"].schema["pairing"].config["options"] == ["pin", "keep"]
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pairing": "pin"})
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert mock_config_entry.data[CONF_PROTOCOL] == 2
    assert mock_config_entry.data[CONF_NODE_KEY] == node_key_b64(identity)
    assert dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id) == [
        device
    ]
    after = {
        e.entity_id: e.unique_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), mock_config_entry.entry_id)
    }
    assert after == entities
    node = V2Sender("kitchen", identity, private_key.public_key(), StoredCounters(None))
    node.challenge = await first_challenge(hass, mqtt_mock)
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(reading(1, t=24.0)))
    assert hass.states.get(TEMPERATURE).state == "24.0"
    # Announcing again offers nothing more: the entry is v2 now.
    await publish(hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key_b64(identity)))
    assert reauth_flows(hass) == []


async def test_a_key_mismatch_shows_home_assistants_key_again(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
) -> None:
    """Readings for another key: the re-pair flow shows the key the node must hold."""
    await setup_entry(hass, mock_config_entry)
    foreign = encrypt(other_private_key.public_key(), telemetry(t=50.0))
    for _ in range(5):
        await publish(hass, DATA_TOPIC, foreign)
    (flow,) = reauth_flows(hass)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    placeholders = result["description_placeholders"]
    assert placeholders["public_key"] == public_key_pem(private_key).strip()
    assert placeholders["fingerprint"] == format_fingerprint(fingerprint(private_key))
    # Nothing announced to pin: the only choice is to keep the pairing.
    assert result["data_schema"].schema["pairing"].config["options"] == ["keep"]
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pairing": "keep"})
    assert result["reason"] == "reauth_successful"


async def test_forged_payloads_opening_the_repair_cost_no_key_check(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    other_private_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anyone can make a v1 node's key mismatch: the re-pair flow it opens skips the RSA check.

    Checking the stored key again held the GIL for about 40 ms, so the flood that reached the
    threshold stalled the event loop that long (scripts/bench, under attack).
    """
    await setup_entry(hass, mock_config_entry)
    checked: list[bool] = []
    load = keys.serialization.load_pem_private_key

    def recorded(data: bytes, password: bytes | None, **kwargs: Any) -> Any:
        checked.append(not kwargs.get("unsafe_skip_rsa_key_validation", False))
        return load(data, password, **kwargs)

    monkeypatch.setattr(keys.serialization, "load_pem_private_key", recorded)
    forged = encrypt(other_private_key.public_key(), telemetry(t=50.0))
    for _ in range(5):
        await publish(hass, DATA_TOPIC, forged)
    await hass.async_block_till_done()
    assert len(reauth_flows(hass)) == 1
    assert checked == [False]


@pytest.mark.parametrize(
    "node_key",
    ["not a key", "AAAA", node_key_b64(ec.generate_private_key(ec.SECP384R1()))],
    # Fixed ids: a key made at collection differs between pytest-xdist's workers.
    ids=["text", "short", "p384"],
)
async def test_an_unusable_announced_identity_offers_nothing(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, node_key: str
) -> None:
    """A v1 node announcing a key that is not a P-256 key is not offered the move to v2."""
    await setup_entry(hass, mock_config_entry)
    await publish(hass, STATUS_TOPIC, v1_style_announce(proto=2, node_key=node_key))
    assert reauth_flows(hass) == []


async def test_discovery_with_an_unusable_identity_asks_for_the_key(hass: HomeAssistant) -> None:
    """An announce with a broken identity key: pairing falls back to pasting the key."""
    announce = v1_style_announce(node="garage", fw="1.1.0", interval=5, node_key="not a key")
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=MqttServiceInfo(
            topic="iotshield/garage/status",
            payload=announce,
            qos=1,
            retain=True,
            subscribed_topic="iotshield/+/status",
            timestamp=0.0,
        ),
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"key_source": "generate"}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_manual"
