"""Every kind of bad input is counted, logged sparingly and changes no entity's state."""

from __future__ import annotations

import base64
from collections.abc import Callable
import json
import logging

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from custom_components.iotshield.const import DOMAIN, MAX_PENDING_ENVELOPES, V1_DECRYPTION_BURST
from custom_components.iotshield.keys import fingerprint, format_fingerprint
from custom_components.iotshield.protocol import Rejection

from .envelope import encrypt, envelope, telemetry
from .helpers import READING_ENTITIES, flush_rejection_count, publish, setup_entry

# Acceptance is told by the reading entities' states: each reading is shown as it comes.
pytestmark = pytest.mark.usefixtures(
    "mqtt_mock", "every_reading_shown", "entity_registry_enabled_by_default"
)

DATA_TOPIC = "iotshield/kitchen/sensors/data"


def _ciphertext(public: rsa.RSAPublicKey) -> bytes:
    """Return the raw RSA ciphertext of a valid reading."""
    return base64.b64decode(json.loads(encrypt(public, telemetry(t=99.0)))["ct"])


def _tampered(public: rsa.RSAPublicKey) -> bytes:
    """Flip one bit of a valid ciphertext."""
    raw = bytearray(_ciphertext(public))
    raw[17] ^= 0x40
    return envelope(bytes(raw))


type Builder = Callable[[rsa.RSAPublicKey, rsa.RSAPublicKey], bytes]

# (case, expected reason, payload from the entry's public key and a foreign public key)
BAD_PAYLOADS: list[tuple[str, Rejection, Builder]] = [
    ("oversize", Rejection.OVERSIZE, lambda pub, _: b"{" + b" " * 2000 + b"}"),
    ("short_ciphertext", Rejection.TRUNCATED, lambda pub, _: envelope(_ciphertext(pub)[:200])),
    # A cut-off MQTT payload is no longer a JSON envelope.
    ("cut_off", Rejection.MALFORMED, lambda pub, _: encrypt(pub, telemetry(t=99.0))[:200]),
    ("not_an_envelope", Rejection.MALFORMED, lambda pub, _: b"\x00\x01 not an envelope"),
    ("version", Rejection.UNSUPPORTED_VERSION, lambda pub, _: envelope(b"\x00" * 256, 9)),
    ("wrong_key", Rejection.DECRYPT_FAILED, lambda _, foreign: encrypt(foreign, telemetry())),
    ("tampered", Rejection.DECRYPT_FAILED, lambda pub, _: _tampered(pub)),
    ("not_json", Rejection.INVALID_JSON, lambda pub, _: encrypt(pub, b"temperature=99")),
    ("wrong_type", Rejection.INVALID_SCHEMA, lambda pub, _: encrypt(pub, telemetry(t="99"))),
    ("nan", Rejection.NON_FINITE, lambda pub, _: encrypt(pub, telemetry(t=float("nan")))),
    ("inf", Rejection.NON_FINITE, lambda pub, _: encrypt(pub, telemetry(l=float("inf")))),
    ("out_of_range", Rejection.OUT_OF_RANGE, lambda pub, _: encrypt(pub, telemetry(h=140.0))),
    (
        "other_node",
        Rejection.NODE_MISMATCH,
        lambda pub, _: encrypt(pub, telemetry(node_id="garage", t=99.0)),
    ),
]


async def _setup_with_reading(
    hass: HomeAssistant, entry: MockConfigEntry, public: rsa.RSAPublicKey
) -> None:
    """Load the entry and give it one valid reading."""
    await setup_entry(hass, entry)
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(t=21.5, f=0, m=1)))


def _snapshot(hass: HomeAssistant) -> dict[str, tuple[str, dict[str, object], object, object]]:
    """Capture state, attributes and both timestamps of the reading entities."""
    snapshot = {}
    for entity_id in READING_ENTITIES:
        state = hass.states.get(entity_id)
        assert state is not None
        snapshot[entity_id] = (
            state.state,
            dict(state.attributes),
            state.last_updated,
            state.last_reported,
        )
    return snapshot


def test_every_reason_has_a_case() -> None:
    """Each rejection reason a v1 payload can earn from the wire is exercised below."""
    v2_only = {
        Rejection.UNKNOWN_SESSION,
        Rejection.REPLAYED,
        Rejection.BAD_SIGNATURE,
        Rejection.AUTH_FAILED,
        Rejection.DOWNGRADE,
        Rejection.STALE_SESSION,
        Rejection.UNAUTHENTICATED_STATUS,
    }
    # Floods: test_flood_is_shed_and_counted, tests/test_floods.py.
    floods = {Rejection.OVERLOADED, Rejection.RATE_LIMITED}
    assert {reason for _, reason, _ in BAD_PAYLOADS} == set(Rejection) - floods - v2_only


@pytest.mark.parametrize(
    ("reason", "build"),
    [(reason, build) for _, reason, build in BAD_PAYLOADS],
    ids=[case for case, _, _ in BAD_PAYLOADS],
)
async def test_rejection_changes_nothing_and_is_counted(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    reason: Rejection,
    build: Builder,
) -> None:
    """The bad payload is counted under its reason; no reading entity moves."""
    public = private_key.public_key()
    await _setup_with_reading(hass, mock_config_entry, public)
    before = _snapshot(hass)
    assert before["sensor.kitchen_temperature"][0] == "21.5"

    await publish(hass, DATA_TOPIC, build(public, other_private_key.public_key()))

    assert _snapshot(hass) == before
    counter = hass.states.get("sensor.kitchen_rejected_payloads")
    assert counter.state == "1"
    assert counter.attributes[reason.value] == 1
    assert sum(v for k, v in counter.attributes.items() if k in {r.value for r in Rejection}) == 1
    assert mock_config_entry.runtime_data.rejections.count(reason) == 1


async def test_flood_is_shed_and_counted(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood is shed as overloaded or rate limited, every envelope counted; a burst is read."""
    # The decryption budget refills with time; a still clock makes the count exact.
    monkeypatch.setattr("custom_components.iotshield.coordinator.time.monotonic", lambda: 1000.0)
    public = private_key.public_key()
    await _setup_with_reading(hass, mock_config_entry, public)
    payload = encrypt(public, telemetry(seq=2, t=30.0))
    extra = 10
    # Delivered back to back; how many the decrypting task takes between them depends on
    # how Home Assistant schedules them, so the queue sheds up to `extra` as overloaded.
    for _ in range(MAX_PENDING_ENVELOPES + extra):
        async_fire_mqtt_message(hass, DATA_TOPIC, payload)
    await hass.async_block_till_done(wait_background_tasks=True)
    coordinator = mock_config_entry.runtime_data
    shed = coordinator.rejections.count(Rejection.OVERLOADED)
    limited = coordinator.rejections.count(Rejection.RATE_LIMITED)
    assert 0 <= shed <= extra
    # Exactly a burst is decrypted (one of them was the setup's reading); every other
    # envelope is counted under one of the two reasons, and under no other.
    assert shed + limited == MAX_PENDING_ENVELOPES + extra - (V1_DECRYPTION_BURST - 1)
    assert coordinator.rejections.total == shed + limited
    assert hass.states.get("sensor.kitchen_temperature").state == "30.0"
    await flush_rejection_count(hass)
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == str(shed + limited)


async def test_status_garbage_is_counted_not_applied(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """An unreadable status message neither changes availability nor goes unnoticed."""
    await _setup_with_reading(hass, mock_config_entry, private_key.public_key())
    before = _snapshot(hass)
    await publish(hass, "iotshield/kitchen/status", b"\xffgarbage")
    await publish(hass, "iotshield/kitchen/status", b"")
    assert _snapshot(hass) == before
    assert mock_config_entry.runtime_data.rejections.count(Rejection.MALFORMED) == 1


async def test_rejections_logged_once_per_reason(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream of bad payloads gives one warning per reason, not one per payload."""
    await _setup_with_reading(hass, mock_config_entry, private_key.public_key())
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            await publish(hass, DATA_TOPIC, b"junk")
            await publish(hass, DATA_TOPIC, b"x" * 3000)
    await flush_rejection_count(hass)
    lines = [r.getMessage() for r in caplog.records if "Rejected a payload" in r.getMessage()]
    assert len(lines) == 2
    assert any("malformed" in line for line in lines)
    assert any("oversize" in line for line in lines)
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == "8"


async def test_key_mismatch_raises_and_clears_repair(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Persistent decryption failures tell the user the keys disagree, until one decrypts."""
    public = private_key.public_key()
    await _setup_with_reading(hass, mock_config_entry, public)
    foreign = encrypt(other_private_key.public_key(), telemetry(t=50.0))
    for _ in range(4):
        await publish(hass, DATA_TOPIC, foreign)
    assert issue_registry.async_get_issue(DOMAIN, "key_mismatch_kitchen") is None
    await publish(hass, DATA_TOPIC, foreign)
    issue = issue_registry.async_get_issue(DOMAIN, "key_mismatch_kitchen")
    assert issue is not None
    assert issue.translation_key == "key_mismatch"
    assert issue.severity is ir.IssueSeverity.ERROR
    assert issue.translation_placeholders == {"node_id": "kitchen", "count": "5"}
    assert hass.states.get("sensor.kitchen_temperature").state == "21.5"

    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=9, t=22.0)))
    assert issue_registry.async_get_issue(DOMAIN, "key_mismatch_kitchen") is None
    assert hass.states.get("sensor.kitchen_temperature").state == "22.0"


async def test_interleaved_failures_do_not_raise_repair(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Occasional forged payloads between good ones are counted but are not a key mismatch."""
    public = private_key.public_key()
    await _setup_with_reading(hass, mock_config_entry, public)
    foreign = encrypt(other_private_key.public_key(), telemetry())
    for seq in range(6):
        await publish(hass, DATA_TOPIC, foreign)
        await publish(hass, DATA_TOPIC, foreign)
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq)))
    assert issue_registry.async_get_issue(DOMAIN, "key_mismatch_kitchen") is None
    assert mock_config_entry.runtime_data.rejections.count(Rejection.DECRYPT_FAILED) == 12


async def test_announced_foreign_key_raises_repair_at_once(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A node announcing another key's fingerprint is reported before any reading is lost."""
    await _setup_with_reading(hass, mock_config_entry, private_key.public_key())
    wrong = fingerprint(other_private_key)
    await publish(
        hass, "iotshield/kitchen/status", json.dumps({"state": "online", "key_fp": wrong}).encode()
    )
    issue = issue_registry.async_get_issue(DOMAIN, "announced_key_mismatch_kitchen")
    assert issue is not None
    assert issue.translation_placeholders == {
        "node_id": "kitchen",
        "expected": format_fingerprint(fingerprint(private_key)),
        "announced": format_fingerprint(wrong),
    }
    right = fingerprint(private_key).upper()
    await publish(
        hass, "iotshield/kitchen/status", json.dumps({"state": "online", "key_fp": right}).encode()
    )
    assert issue_registry.async_get_issue(DOMAIN, "announced_key_mismatch_kitchen") is None
