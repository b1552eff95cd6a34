"""Floods cost a bounded amount: state writes, discovery flows, and no callback ever raises."""

from __future__ import annotations

import json
import logging
import os
import time

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from homeassistant.config_entries import SOURCE_MQTT
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from iotshield_node.v2 import StoredCounters, V2Sender
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.iotshield.const import (
    DOMAIN,
    MAX_DISCOVERY_FLOWS,
    SESSION_CHECK_BURST,
    V1_DECRYPTION_BURST,
)
from custom_components.iotshield.protocol import Rejection

from .envelope import encrypt, envelope, telemetry
from .helpers import first_challenge, flush_rejection_count, publish, setup_entry, v2_reading

pytestmark = pytest.mark.usefixtures("mqtt_mock")
DATA_TOPIC = "iotshield/kitchen/sensors/data"
STATUS_TOPIC = "iotshield/kitchen/status"
COUNTER = "sensor.kitchen_rejected_payloads"


async def test_a_flood_of_junk_writes_the_counter_about_once_a_second(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """500 junk payloads: all counted, a few state writes, per-reason counts unrecorded."""
    await setup_entry(hass, mock_config_entry)
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=21.5)))
    writes: list[Event] = []
    hass.bus.async_listen(
        "state_changed",
        callback(
            lambda event: writes.append(event) if event.data["entity_id"] == COUNTER else None
        ),
    )
    started = time.monotonic()
    for n in range(500):
        async_fire_mqtt_message(hass, DATA_TOPIC, f"junk {n}".encode())
    await hass.async_block_till_done(wait_background_tasks=True)
    elapsed = time.monotonic() - started
    # One write at once, then at most one a second while the flood lasts.
    assert 1 <= len(writes) <= 2 + int(elapsed)
    await flush_rejection_count(hass)
    counter = hass.states.get(COUNTER)
    assert counter.state == "500"
    # Back to back, more than the decrypting queue holds: the rest is shed as overloaded.
    shed = counter.attributes[Rejection.OVERLOADED.value]
    assert counter.attributes[Rejection.MALFORMED.value] + shed == 500
    # The recorder stores the total; the per-reason counts would make every write a new row.
    assert counter.state_info is not None
    assert {r.value for r in Rejection} <= counter.state_info["unrecorded_attributes"]
    assert hass.states.get("sensor.kitchen_temperature").state == "21.5"


def _announce(node_id: str, **extra: object) -> MqttServiceInfo:
    """Return a well-formed announce as MQTT discovery hands it to the flow."""
    doc = {"state": "online", "node": node_id, "fw": "1.1.0", "interval": 5, **extra}
    return MqttServiceInfo(
        topic=f"iotshield/{node_id}/status",
        payload=json.dumps(doc),
        qos=1,
        retain=True,
        subscribed_topic="iotshield/+/status",
        timestamp=0.0,
    )


async def test_forged_announces_open_a_handful_of_discovery_flows(hass: HomeAssistant) -> None:
    """300 announces of made-up nodes: a few wizards wait, the rest are refused."""
    results = [
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_MQTT}, data=_announce(f"forged-{n}")
        )
        for n in range(300)
    ]
    waiting = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert len(waiting) == MAX_DISCOVERY_FLOWS
    refused = [r for r in results if r.get("reason") == "too_many_discoveries"]
    assert len(refused) == 300 - MAX_DISCOVERY_FLOWS
    # Once the user deals with one, the next node to announce is offered again.
    hass.config_entries.flow.async_abort(waiting[0]["flow_id"])
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_announce("real-node")
    )
    assert again["step_id"] == "discovery_confirm"


HUGE = 10**400


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps({"state": "online", "interval": HUGE, "fw": "1"}),
        json.dumps({"state": "online", "privacy": {"e": HUGE, "d": HUGE, "sigma": {"t": HUGE}}}),
        json.dumps({"state": "online", "privacy": {"motion": {"flip": -HUGE}, "gas_bound": HUGE}}),
        json.dumps({"state": "offline", "will": HUGE}),
        json.dumps({"state": "online", "key_fp": HUGE, "node_key": HUGE, "rev": HUGE}),
        json.dumps({"state": "online", "privacy": [HUGE]}),
    ],
)
async def test_huge_numbers_in_status_raise_nothing(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    payload: str,
) -> None:
    """A status message with a 400-digit number is read leniently or refused, without an error."""
    await setup_entry(hass, mock_config_entry)
    with caplog.at_level(logging.WARNING):
        await publish(hass, STATUS_TOPIC, payload)
        # Discovery reads the same topic: the wizard refuses it or offers the node, no error.
        result = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": SOURCE_MQTT},
            data=MqttServiceInfo(
                topic="iotshield/other/status",
                payload=payload,
                qos=1,
                retain=True,
                subscribed_topic="iotshield/+/status",
                timestamp=0.0,
            ),
        )
    assert result["type"] in ("abort", "form")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_forged_v1_envelopes_cost_a_bounded_number_of_rsa_operations(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 well-formed forgeries: a burst is decrypted, the rest counted as rate limited."""
    clock = [1000.0]
    monkeypatch.setattr("custom_components.iotshield.coordinator.time.monotonic", lambda: clock[0])
    await setup_entry(hass, mock_config_entry)
    forged = envelope(os.urandom(private_key.key_size // 8))
    for _ in range(200):
        async_fire_mqtt_message(hass, DATA_TOPIC, forged)
    await hass.async_block_till_done(wait_background_tasks=True)
    rejections = mock_config_entry.runtime_data.rejections
    assert rejections.count(Rejection.DECRYPT_FAILED) == V1_DECRYPTION_BURST
    assert rejections.count(Rejection.RATE_LIMITED) == 200 - V1_DECRYPTION_BURST
    # The budget comes back with time: the node's next genuine reading is decrypted.
    clock[0] += 1
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=24.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "24.0"


async def test_forged_v2_sessions_cost_a_bounded_number_of_signature_checks(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of forged sessions: a burst is checked, the rest refused before any crypto."""
    clock = [1000.0]
    monkeypatch.setattr("custom_components.iotshield.coordinator.time.monotonic", lambda: clock[0])
    await setup_entry(hass, v2_entry)
    node.challenge = await first_challenge(hass, mqtt_mock)
    attacker = V2Sender(
        "kitchen",
        ec.generate_private_key(ec.SECP256R1()),
        private_key.public_key(),
        StoredCounters(None, last_sid=99),
    )
    for _ in range(50):
        async_fire_mqtt_message(hass, DATA_TOPIC, attacker.open_session())
    await hass.async_block_till_done(wait_background_tasks=True)
    rejections = v2_entry.runtime_data.rejections
    assert rejections.count(Rejection.BAD_SIGNATURE) == SESSION_CHECK_BURST
    assert rejections.count(Rejection.RATE_LIMITED) == 50 - SESSION_CHECK_BURST
    # The real node's session, a moment later, is checked and its reading arrives.
    clock[0] += 2
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(1)))
    assert hass.states.get("sensor.kitchen_temperature").state == "21.5"
