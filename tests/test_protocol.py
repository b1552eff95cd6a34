"""Tests of the v1 wire format, without Home Assistant."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric import rsa
import pytest

from custom_components.iotshield.protocol import (
    MAX_ENVELOPE_BYTES,
    PayloadRejected,
    PrivacyParams,
    Rejection,
    Telemetry,
    V1Decoder,
    is_valid_node_id,
    is_valid_topic_prefix,
    max_plaintext_bytes,
    node_id_from_status_topic,
    parse_envelope,
    parse_status,
    parse_telemetry,
)

from .envelope import encrypt, envelope, plaintext_bytes, telemetry


def _reason(call: object) -> Rejection:
    """Run a callable that must reject and return the reason."""
    assert callable(call)
    with pytest.raises(PayloadRejected) as info:
        call()
    return info.value.reason


def test_round_trip(private_key: rsa.RSAPrivateKey) -> None:
    """A node's envelope decodes into the reading it carried."""
    decoder = V1Decoder(private_key, "kitchen")
    payload = encrypt(private_key.public_key(), telemetry(seq=7, t=23.25, m=1, f=0, l=0))
    assert decoder.decode(payload) == Telemetry(
        node_id="kitchen",
        seq=7,
        timestamp=1763900000,
        temperature=23.25,
        humidity=45.0,
        gas=0.05,
        light=0.0,
        flame=False,
        motion=True,
        privacy=PrivacyParams(0.5, 1e-05),
    )


def test_envelope_size_for_rsa_2048(private_key: rsa.RSAPrivateKey) -> None:
    """A v1 envelope with RSA-2048 is 359 bytes, well inside the limit PROTOCOL.md sets."""
    payload = encrypt(private_key.public_key(), telemetry())
    assert len(payload) == 359
    assert len(payload) < MAX_ENVELOPE_BYTES


def test_longest_plaintext_fits_one_block(private_key: rsa.RSAPrivateKey) -> None:
    """The widest telemetry PROTOCOL.md allows is 167 bytes and fits RSA-2048's 190."""
    widest = (
        b'{"n":"' + b"n" * 32 + b'","s":4294967295,"t":4294967295,'
        b'"r":{"t":-39.99,"h":100.00,"g":1.000,"f":1,"m":1,"l":199999.99},'
        b'"p":{"e":0.001234,"d":1.234e-05}}'
    )
    assert len(widest) == 167
    assert len(widest) <= max_plaintext_bytes(2048) == 190
    decoded = V1Decoder(private_key, "n" * 32).decode(encrypt(private_key.public_key(), widest))
    assert decoded.light == 199999.99
    assert decoded.privacy == PrivacyParams(0.001234, 1.234e-05)


def test_plaintext_optional_members() -> None:
    """Time 0 or absent means no clock; privacy absent means no noise; nulls are unread sensors."""
    doc = telemetry(t=None, l=None)
    doc["t"] = 0
    del doc["p"]
    result = parse_telemetry(plaintext_bytes(doc), "kitchen")
    assert result.timestamp is None
    assert result.privacy is None
    assert result.temperature is None
    assert result.light is None
    del doc["t"]
    doc["extra"] = "ignored"
    assert parse_telemetry(plaintext_bytes(doc), "kitchen").timestamp is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX_ENVELOPE_BYTES + 1), Rejection.OVERSIZE),
        (b"not json", Rejection.MALFORMED),
        (b"\xff\xfe", Rejection.MALFORMED),
        (b"[1, 2]", Rejection.MALFORMED),
        (b'{"ct": "AAAA"}', Rejection.MALFORMED),
        (b'{"v": "1", "ct": "AAAA"}', Rejection.MALFORMED),
        (b'{"v": 2, "ct": "AAAA"}', Rejection.UNSUPPORTED_VERSION),
        (b'{"v": 1}', Rejection.MALFORMED),
        (b'{"v": 1, "ct": "***"}', Rejection.MALFORMED),
        (b'{"v": 1, "ct": "AAAA"}', Rejection.TRUNCATED),
        (envelope(b"\x00" * 255), Rejection.TRUNCATED),
        (envelope(b"\x00" * 257), Rejection.OVERSIZE),
    ],
)
def test_envelope_rejections(payload: bytes, reason: Rejection) -> None:
    """Each framing fault is caught before any decryption, with its own reason."""
    assert _reason(lambda: parse_envelope(payload, 256)) is reason


def test_tampered_and_foreign_ciphertext(
    private_key: rsa.RSAPrivateKey, other_private_key: rsa.RSAPrivateKey
) -> None:
    """A flipped bit or another key's ciphertext fails OAEP decryption."""
    decoder = V1Decoder(private_key, "kitchen")
    good = encrypt(private_key.public_key(), telemetry())
    raw = bytearray(base64.b64decode(json.loads(good)["ct"]))
    raw[100] ^= 0x01
    assert _reason(lambda: decoder.decode(envelope(bytes(raw)))) is Rejection.DECRYPT_FAILED
    foreign = encrypt(other_private_key.public_key(), telemetry())
    assert _reason(lambda: decoder.decode(foreign)) is Rejection.DECRYPT_FAILED


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b"\xff not utf-8", Rejection.INVALID_JSON),
        (b"{truncated", Rejection.INVALID_JSON),
        (b"[]", Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(node_id="garage")), Rejection.NODE_MISMATCH),
        (plaintext_bytes({"s": 1, "r": {}}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes({**telemetry(), "s": -1}), Rejection.OUT_OF_RANGE),
        (plaintext_bytes({**telemetry(), "s": 1.5}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes({**telemetry(), "t": "now"}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes({**telemetry(), "r": [1, 2]}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes({**telemetry(), "r": {"t": 20}}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(t="21")), Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(h=True)), Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(f=True)), Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(m=1.0)), Rejection.INVALID_SCHEMA),
        (plaintext_bytes(telemetry(m=2)), Rejection.OUT_OF_RANGE),
        (plaintext_bytes(telemetry(t=float("nan"))), Rejection.NON_FINITE),
        (plaintext_bytes(telemetry(l=float("inf"))), Rejection.NON_FINITE),
        (plaintext_bytes(telemetry(g=float("-inf"))), Rejection.NON_FINITE),
        (plaintext_bytes(telemetry()).replace(b'"h":45.0', b'"h":1e999'), Rejection.NON_FINITE),
        (plaintext_bytes(telemetry(t=126)), Rejection.OUT_OF_RANGE),
        (plaintext_bytes(telemetry(h=-0.1)), Rejection.OUT_OF_RANGE),
        (plaintext_bytes(telemetry(g=1.01)), Rejection.OUT_OF_RANGE),
        (plaintext_bytes(telemetry(l=-1)), Rejection.OUT_OF_RANGE),
        (plaintext_bytes({**telemetry(), "p": {"e": 0, "d": 1e-5}}), Rejection.OUT_OF_RANGE),
        (plaintext_bytes({**telemetry(), "p": {"e": 0.5, "d": 1}}), Rejection.OUT_OF_RANGE),
        (plaintext_bytes({**telemetry(), "p": {"e": "x", "d": 1}}), Rejection.INVALID_SCHEMA),
        (plaintext_bytes({**telemetry(), "p": [0.5]}), Rejection.INVALID_SCHEMA),
        (
            plaintext_bytes({**telemetry(), "p": {"e": float("nan"), "d": 1e-5}}),
            Rejection.NON_FINITE,
        ),
    ],
)
def test_telemetry_rejections(plaintext: bytes, reason: Rejection) -> None:
    """Each content fault has its own reason."""
    assert _reason(lambda: parse_telemetry(plaintext, "kitchen")) is reason


def test_decode_batch_keeps_order_and_reasons(private_key: rsa.RSAPrivateKey) -> None:
    """A batch returns one result per payload, in order, without raising."""
    decoder = V1Decoder(private_key, "kitchen")
    public = private_key.public_key()
    results = decoder.decode_batch(
        [encrypt(public, telemetry(seq=1)), b"garbage", encrypt(public, telemetry(seq=3))]
    )
    first, second, third = results
    assert isinstance(first, Telemetry)
    assert first.seq == 1
    assert isinstance(second, PayloadRejected)
    assert second.reason is Rejection.MALFORMED
    assert isinstance(third, Telemetry)
    assert third.seq == 3


def test_status_parsing() -> None:
    """Plain words and announce objects are understood; anything else is not."""
    assert parse_status(b"online").online is True  # type: ignore[union-attr]
    assert parse_status(b"offline").online is False  # type: ignore[union-attr]
    announce = parse_status(
        json.dumps(
            {
                "state": "online",
                "node": "kitchen",
                "fw": "1.2.3",
                "interval": 10,
                "key_fp": "A" * 64,
            }
        ).encode()
    )
    assert announce is not None
    assert (announce.online, announce.firmware, announce.interval) == (True, "1.2.3", 10)
    assert announce.key_fingerprint == "a" * 64
    odd = parse_status(b'{"state": "offline", "interval": 0, "fw": 5, "key_fp": "short"}')
    assert odd is not None
    assert (odd.online, odd.interval, odd.firmware, odd.key_fingerprint) == (
        False,
        None,
        None,
        None,
    )
    noisy = parse_status(
        b'{"state":"online","privacy":{"e":0.5,"d":1e-05,"sigma":{"t":0.97,"h":"x","q":1},'
        b'"gas_bound":-1,"motion":{"flip":0.9}}}'
    )
    assert noisy is not None
    assert noisy.privacy is not None
    assert noisy.privacy.sigma == {"t": 0.97, "h": 0.0}
    assert (noisy.privacy.epsilon, noisy.privacy.gas_bound, noisy.privacy.motion_flip) == (
        0.5,
        0.0,
        0.5,
    )
    assert parse_status(b'{"state":"online","privacy":null}').privacy is None  # type: ignore[union-attr]
    for junk in (b"", b"maybe", b"[]", b'{"state": "up"}', b"{", b"x" * 5000, b"NaN"):
        assert parse_status(junk) is None


def test_topics_and_ids() -> None:
    """Node ids and prefixes are limited to what is safe as topic levels."""
    assert node_id_from_status_topic("iotshield/kitchen/status", "iotshield") == "kitchen"
    assert node_id_from_status_topic("home/iot/garage-2/status", "home/iot") == "garage-2"
    for topic in ("iotshield/status", "iotshield/a/b/status", "other/kitchen/status"):
        assert node_id_from_status_topic(topic, "iotshield") is None
    assert node_id_from_status_topic("iotshield/Kitchen/status", "iotshield") is None
    assert is_valid_node_id("a" * 32)
    assert not is_valid_node_id("a" * 33)
    for bad in ("", "-lead", "has space", "wild+", "wild#", "UPPER"):
        assert not is_valid_node_id(bad)
    assert is_valid_topic_prefix("iotshield")
    assert is_valid_topic_prefix("home/iot-shield")
    for bad in ("", "/lead", "trail/", "a//b", "a/+", "#"):
        assert not is_valid_topic_prefix(bad)
