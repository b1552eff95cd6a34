"""Attacks on wire format v2 at the codec level: nothing forged, replayed or mutated gets in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings, strategies as st
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import (
    CommandRejectedError,
    StoredCounters,
    V2Sender,
    node_key_b64,
    verify_command,
)
import pytest

from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    DataMessage,
    SessionMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
    sign_command,
)

READINGS = Readings(t=21.5, h=45.0, g=0.05, l=300.0, f=False, m=True)


def _plaintext(seq: int = 1, node_id: str = "kitchen", t: float = 21.5) -> bytes:
    return encode_telemetry(
        node_id, seq, 1763900000, Readings(t, 45.0, 0.05, 300.0, False, True), None
    )


@pytest.fixture(scope="module")
def identity() -> ec.EllipticCurvePrivateKey:
    """Make the node's identity key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def receiver(identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey) -> V2Receiver:
    """Make Home Assistant's side, with the node's key pinned."""
    node_key = load_node_key(node_key_b64(identity))
    return V2Receiver("kitchen", node_key, [private_key], V2State())


@pytest.fixture
def sender(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey, receiver: V2Receiver
) -> V2Sender:
    """Make the node's side, holding the challenge Home Assistant sent it."""
    node = V2Sender("kitchen", identity, private_key.public_key(), StoredCounters(None))
    node.challenge = receiver.issue_challenge()
    return node


CHALLENGE = "AAECAwQFBgcICQoLDA0ODw=="


def receiver_expecting(
    node_key: ec.EllipticCurvePublicKey, keys: list[rsa.RSAPrivateKey], challenge: str
) -> V2Receiver:
    """Return a new Home Assistant side that has sent `challenge` to the node."""
    receiver = V2Receiver("kitchen", node_key, keys, V2State())
    # As if issue_challenge() had drawn this one: recorded messages can then be replayed.
    receiver._challenges.append(challenge)
    return receiver


def deliver(receiver: V2Receiver, payload: bytes) -> Telemetry | None:
    """Process one message as the integration does; None for an accepted session."""
    msg = parse_v2_envelope(payload)
    if isinstance(msg, SessionMessage):
        receiver.check_session_fresh(msg)
        receiver.accept_session(msg, receiver.verify_session(msg))
        return None
    return receiver.open_data(msg)


def _reason(receiver: V2Receiver, payload: bytes) -> Rejection:
    with pytest.raises(PayloadRejected) as info:
        deliver(receiver, payload)
    return info.value.reason


def test_round_trip_and_counters(sender: V2Sender, receiver: V2Receiver) -> None:
    """A session, then readings with rising counters, are accepted in order."""
    assert deliver(receiver, sender.open_session()) is None
    for seq in range(1, 4):
        telemetry = deliver(receiver, sender.seal(_plaintext(seq)))
        assert isinstance(telemetry, Telemetry)
        assert telemetry.seq == seq
    assert receiver.state.current is not None
    assert receiver.state.current.max_ctr == 3


def test_forgery_with_public_material_only(
    sender: V2Sender, receiver: V2Receiver, private_key: rsa.RSAPrivateKey
) -> None:
    """Knowing Home Assistant's public key is not enough to open a session or inject data."""
    deliver(receiver, sender.open_session())
    attacker = V2Sender(
        "kitchen",
        ec.generate_private_key(ec.SECP256R1()),
        private_key.public_key(),
        StoredCounters(None),
    )
    attacker.counters.last_sid = 1000
    assert _reason(receiver, attacker.open_session()) is Rejection.BAD_SIGNATURE
    # Data in the real session id, under a key the attacker chose.
    attacker.sid = sender.sid
    assert _reason(receiver, attacker.seal(_plaintext(t=99.0))) is Rejection.AUTH_FAILED
    # Data for a session Home Assistant never accepted.
    attacker.sid = 1000
    assert _reason(receiver, attacker.seal(_plaintext(t=99.0))) is Rejection.UNKNOWN_SESSION


def test_replays_are_refused(sender: V2Sender, receiver: V2Receiver) -> None:
    """The same data twice, an older counter, and an old session are refused as replays."""
    session = sender.open_session()
    deliver(receiver, session)
    first, second = sender.seal(_plaintext(1)), sender.seal(_plaintext(2))
    deliver(receiver, second)
    assert _reason(receiver, second) is Rejection.REPLAYED
    assert _reason(receiver, first) is Rejection.REPLAYED  # out of order, older counter
    assert _reason(receiver, session) is Rejection.REPLAYED


def test_state_survives_a_restart(sender: V2Sender, receiver: V2Receiver) -> None:
    """After storing and restoring the state, captured messages are still refused."""
    session = sender.open_session()
    deliver(receiver, session)
    captured = sender.seal(_plaintext(1))
    deliver(receiver, captured)
    stored = json.loads(json.dumps(receiver.state.as_dict()))
    restarted = V2Receiver(
        "kitchen",
        receiver._node_key,
        receiver._ha_keys,
        V2State.from_dict(stored),
        revision=receiver.revision,
    )
    assert _reason(restarted, captured) is Rejection.UNKNOWN_SESSION
    assert _reason(restarted, session) is Rejection.REPLAYED
    # A revision-1 node's data count only in a session opened since the restart (§12.3).
    assert _reason(restarted, sender.seal(_plaintext(2))) is Rejection.UNKNOWN_SESSION
    sender.challenge = restarted.issue_challenge()
    deliver(restarted, sender.open_session())
    assert _reason(restarted, captured) is Rejection.UNKNOWN_SESSION
    assert isinstance(deliver(restarted, sender.seal(_plaintext(3))), Telemetry)


def test_rotation_keeps_in_flight_data(sender: V2Sender, receiver: V2Receiver) -> None:
    """Data of the previous session still counts after a rotation; older sessions do not."""
    deliver(receiver, sender.open_session())
    late = sender.seal(_plaintext(1))
    deliver(receiver, sender.open_session())
    assert isinstance(deliver(receiver, late), Telemetry)
    very_late = late
    deliver(receiver, sender.open_session())
    deliver(receiver, sender.open_session())
    assert _reason(receiver, very_late) in (Rejection.UNKNOWN_SESSION, Rejection.REPLAYED)


def test_session_signed_by_another_node_key(
    receiver: V2Receiver, private_key: rsa.RSAPrivateKey
) -> None:
    """A session key signed by a different node identity is refused."""
    other = V2Sender(
        "kitchen",
        ec.generate_private_key(ec.SECP256R1()),
        private_key.public_key(),
        StoredCounters(None),
    )
    assert _reason(receiver, other.open_session()) is Rejection.BAD_SIGNATURE
    assert receiver.state.current is None


def test_every_bit_flip_is_refused(sender: V2Sender, receiver: V2Receiver) -> None:
    """Flipping any bit of a valid session or data message never gets it accepted."""
    session = sender.open_session()
    data = sender.seal(_plaintext(1))
    for message in (session, data):
        for index in range(len(message) * 8):
            mutated = bytearray(message)
            mutated[index // 8] ^= 1 << (index % 8)
            probe = receiver_expecting(receiver._node_key, receiver._ha_keys, sender.challenge)
            if message is data:
                deliver(probe, session)
            with pytest.raises(PayloadRejected):
                deliver(probe, bytes(mutated))


def test_downgrade_and_framing() -> None:
    """A v1 envelope from a v2 node, other versions and broken framing are refused."""
    cases = {
        b'{"v":1,"ct":"AAAA"}': Rejection.DOWNGRADE,
        b'{"v":3,"type":"data"}': Rejection.UNSUPPORTED_VERSION,
        b'{"v":2,"type":"other"}': Rejection.MALFORMED,
        b'{"v":2,"type":"data","sid":0,"ctr":1,"ct":""}': Rejection.OUT_OF_RANGE,
        b'{"v":2,"type":"data","sid":1,"ctr":"1","ct":""}': Rejection.MALFORMED,
        b'{"v":2,"type":"session","sid":1,"ek":"***","sig":""}': Rejection.MALFORMED,
        b"x" * 3000: Rejection.OVERSIZE,
    }
    for payload, reason in cases.items():
        with pytest.raises(PayloadRejected) as info:
            parse_v2_envelope(payload)
        assert info.value.reason is reason, payload


def _mutate(message: bytes, data: st.DataObject) -> bytes:
    """Apply one random mutation: flip, cut, insert, or rewrite a JSON member."""
    choice = data.draw(st.integers(0, 3))
    raw = bytearray(message)
    if choice == 0:
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= data.draw(st.integers(1, 255))
    elif choice == 1:
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif choice == 2:
        index = data.draw(st.integers(0, len(raw)))
        raw[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        doc = json.loads(message)
        key = data.draw(st.sampled_from(sorted(doc)))
        doc[key] = data.draw(
            st.one_of(
                st.integers(-(2**40), 2**40),
                st.text(max_size=20),
                st.none(),
                st.booleans(),
                st.just(base64.b64encode(b"\0" * 48).decode()),
            )
        )
        raw = bytearray(json.dumps(doc).encode())
    return bytes(raw)


@pytest.fixture(scope="module")
def captured(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey
) -> tuple[bytes, bytes]:
    """Capture one valid session message and one data message (fixed for the whole run)."""
    sender = V2Sender("kitchen", identity, private_key.public_key(), StoredCounters(None))
    sender.challenge = CHALLENGE
    return sender.open_session(), sender.seal(_plaintext(1))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_mutations_never_accepted(
    identity: ec.EllipticCurvePrivateKey,
    private_key: rsa.RSAPrivateKey,
    captured: tuple[bytes, bytes],
    data: st.DataObject,
) -> None:
    """No mutation of a valid message is accepted, and only PayloadRejected ever escapes."""
    session, data_message = captured
    node_key = load_node_key(node_key_b64(identity))
    message = data.draw(st.sampled_from([session, data_message]))
    receiver = receiver_expecting(node_key, [private_key], CHALLENGE)
    if message is data_message:
        deliver(receiver, session)
    mutated = _mutate(message, data)
    if mutated == message:
        return
    try:
        deliver(receiver, mutated)
    except PayloadRejected:
        return
    # A mutation may only "succeed" by re-encoding the very same JSON content.
    assert json.loads(mutated) == json.loads(message)


def test_commands_signed_fresh_and_addressed(
    private_key: rsa.RSAPrivateKey, other_private_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """A node runs a command only if Home Assistant signed it, for this node, with a new counter."""
    counters = StoredCounters(tmp_path / "counters.json")
    public = private_key.public_key()
    good = sign_command(private_key, "kitchen", 10, "set_interval", {"interval": 9})
    assert verify_command(good, public, "kitchen", counters) == ("set_interval", {"interval": 9})
    assert StoredCounters.load(tmp_path / "counters.json").last_command_ctr == 10
    rejected = [
        good,  # replay
        sign_command(private_key, "kitchen", 9, "reboot", {}),  # older counter
        sign_command(other_private_key, "kitchen", 11, "reboot", {}),  # forged
        sign_command(private_key, "garage", 12, "reboot", {}),  # another node
        good.replace(b'interval\\":9', b'interval\\":1'),  # tampered body
        b'{"cmd":"reboot"}',  # unsigned v1 form
        b"garbage",
    ]
    for payload in rejected:
        with pytest.raises(CommandRejectedError):
            verify_command(payload, public, "kitchen", counters)
    assert counters.last_command_ctr == 10


def test_message_types_are_distinct() -> None:
    """Session and data messages parse into their own types."""
    assert isinstance(
        parse_v2_envelope(b'{"v":2,"type":"data","sid":1,"ctr":1,"ct":""}'), DataMessage
    )
