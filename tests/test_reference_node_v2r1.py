"""Wire format v2 revision 1 (PROTOCOL.md §12) in the reference node, checked by Home Assistant."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
import functools
import itertools
import json
import logging
from pathlib import Path
import secrets
import signal
import subprocess
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from iotshield_node import FIRMWARE_VERSION, node as node_module
from iotshield_node.node import BrokerConfig, ReferenceNode
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize
from iotshield_node.readings import Readings
from iotshield_node.simulation import SCENARIOS, scenario_run, simulate
from iotshield_node.telemetry import OAEP, encode_telemetry
from iotshield_node.v2 import (
    CommandRejectedError,
    StoredCounters,
    V2Sender,
    load_or_create_identity,
    node_key_b64,
    valid_challenge,
    verify_command,
)
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
import pytest

from custom_components.iotshield.keys import fingerprint, public_key_pem
from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    GCM_TAG_BYTES,
    PAD_BYTES,
    DataMessage,
    SessionInfo,
    SessionMessage,
    V2Receiver,
    V2State,
    command_session_tag,
    load_node_key,
    parse_v2_envelope,
    sign_command,
    will_hash,
)

from .broker import (  # noqa: F401
    Broker,
    Observer,
    StartNode,
    mosquitto,
    mqtt_node,
    start_cpp_node,
    start_node,
)
from .node_builds import build_mqtt_node

NODE = "kitchen"
DATA = f"iotshield/{NODE}/sensors/data"
STATUS = f"iotshield/{NODE}/status"
COMMANDS = f"iotshield/{NODE}/control/commands"
MAX_SESSION_BYTES = 2048
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@pytest.fixture(scope="module")
def identity() -> ec.EllipticCurvePrivateKey:
    """Return a node identity key for the tests without a broker."""
    return ec.generate_private_key(ec.SECP256R1())


def _receiver(
    identity: ec.EllipticCurvePrivateKey, *ha_keys: rsa.RSAPrivateKey, node_id: str = NODE
) -> V2Receiver:
    """Return Home Assistant's side of a node with this identity pinned."""
    return V2Receiver(node_id, load_node_key(node_key_b64(identity)), list(ha_keys), V2State())


def _accepted(receiver: V2Receiver, sender: V2Sender) -> bytes:
    """Answer a challenge with a session Home Assistant accepts; return the session key."""
    sender.challenge = receiver.issue_challenge()
    msg = parse_v2_envelope(sender.open_session())
    assert isinstance(msg, SessionMessage)
    key = receiver.verify_session(msg)
    assert receiver.accept_session(msg, key) is not None
    return key


def _sign_body(private_key: rsa.RSAPrivateKey, body: str) -> bytes:
    """Sign any body text as Home Assistant would, so that only the node's parsing is tested."""
    signature = private_key.sign(body.encode(), PSS, hashes.SHA256())
    doc = {"v": 2, "body": body, "sig": base64.b64encode(signature).decode()}
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "privacy",
    [PrivacyConfig(), PrivacyConfig(epsilon=0), PrivacyConfig(epsilon=0, motion_epsilon=0)],
    ids=["on", "motion only", "off"],
)
def test_session_signs_its_information_and_answers_a_challenge(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey, privacy: PrivacyConfig
) -> None:
    """The session's info is signed, refused without an issued challenge, accepted with one."""
    sender = V2Sender(NODE, identity, private_key.public_key(), StoredCounters(None))
    receiver = _receiver(identity, private_key)
    announced = privacy.announce()
    stale = parse_v2_envelope(sender.open_session(interval=42, privacy=announced))
    assert isinstance(stale, SessionMessage)
    with pytest.raises(PayloadRejected) as refused:
        receiver.accept_session(stale, receiver.verify_session(stale))
    assert refused.value.reason is Rejection.STALE_SESSION

    challenge = receiver.issue_challenge()
    sender.challenge = challenge
    payload = sender.open_session(interval=42, privacy=announced)
    assert len(payload) <= MAX_SESSION_BYTES
    info_text = json.loads(payload)["info"]
    info_doc = json.loads(info_text)
    assert json.dumps(info_doc, separators=(",", ":")) == info_text
    assert sorted(info_doc) == ["ch", "fw", "interval", "key_fp", "pad", "privacy", "will"]
    assert info_doc["privacy"] == announced
    token = base64.b64decode(json.loads(sender.will_payload())["will"])
    msg = parse_v2_envelope(payload)
    assert isinstance(msg, SessionMessage)
    info = receiver.accept_session(msg, receiver.verify_session(msg))
    assert info is not None
    assert (info.challenge, info.firmware, info.interval, info.pad) == (
        challenge,
        FIRMWARE_VERSION,
        42,
        PAD_BYTES,
    )
    assert info.key_fp == fingerprint(private_key.public_key())
    assert info.will == will_hash(token)
    assert (info.privacy is None) == (announced is None)

    # The information cannot be changed, nor dropped to pass as a revision-0 session.
    tampered = payload.replace(b'\\"interval\\":42', b'\\"interval\\":86400')
    assert tampered != payload
    doc = json.loads(payload)
    del doc["info"]
    for forged in (tampered, json.dumps(doc).encode()):
        msg = parse_v2_envelope(forged)
        assert isinstance(msg, SessionMessage)
        with pytest.raises(PayloadRejected) as bad:
            _receiver(identity, private_key).verify_session(msg)
        assert bad.value.reason is Rejection.BAD_SIGNATURE


@pytest.mark.parametrize(
    "privacy", [PrivacyConfig(), PrivacyConfig(epsilon=0, motion_epsilon=0)], ids=["on", "off"]
)
def test_every_scenario_seals_to_one_length(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey, privacy: PrivacyConfig
) -> None:
    """Over a day of every scenario, each data message's ciphertext has the same length."""
    sender = V2Sender(NODE, identity, private_key.public_key(), StoredCounters(None))
    receiver = _receiver(identity, private_key)
    _accepted(receiver, sender)
    lengths: set[int] = set()
    for scenario in SCENARIOS:
        # 25 hours at one reading a minute hold every scenario's event (intrusion at 03:00).
        samples, labels = simulate(scenario, seed=7, count=1500, interval=60)
        assert labels or scenario == "normal"
        noise = NoiseSource(11)
        for sample in samples:
            readings = privatize(sample.readings, privacy, noise)
            plaintext = encode_telemetry(NODE, sample.seq, sample.timestamp, readings, privacy)
            msg = parse_v2_envelope(sender.seal(plaintext))
            assert isinstance(msg, DataMessage)
            lengths.add(len(msg.ct))
            assert receiver.open_data(msg).seq == sample.seq
    assert lengths == {PAD_BYTES + GCM_TAG_BYTES}


BOUNDS: dict[str, tuple[Any, ...]] = {
    "t": (-40.0, 125.0, None),
    "h": (0.0, 100.0, None),
    "g": (0.0, 1.0, None),
    "l": (0.0, 200000.0, None),
    "f": (False, True, None),
    "m": (False, True, None),
}


def test_every_sensor_bound_seals_to_one_length(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey
) -> None:
    """Minimum, maximum and unread, of every sensor in every combination, have one length."""
    privacies = [None, PrivacyConfig(), PrivacyConfig(epsilon=0.001234, delta=0.0001234)]
    lengths: set[int] = set()
    for node_id in ("k", "n" * 32):
        sender = V2Sender(node_id, identity, private_key.public_key(), StoredCounters(None))
        receiver = _receiver(identity, private_key, node_id=node_id)
        _accepted(receiver, sender)
        for values in itertools.product(*BOUNDS.values()):
            readings = Readings(**dict(zip(BOUNDS, values, strict=True)))
            for privacy, stamp in itertools.product(privacies, (0, 2**32 - 1)):
                plaintext = encode_telemetry(node_id, stamp, stamp, readings, privacy)
                msg = parse_v2_envelope(sender.seal(plaintext))
                assert isinstance(msg, DataMessage)
                lengths.add(len(msg.ct))
                got = receiver.open_data(msg)
                assert (got.temperature, got.humidity, got.gas, got.light) == values[:4]
                assert (got.flame, got.motion) == values[4:]
    assert lengths == {PAD_BYTES + GCM_TAG_BYTES}


def test_an_overlong_plaintext_is_never_sealed(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey
) -> None:
    """A plaintext longer than the pad is refused without using up a counter."""
    sender = V2Sender(NODE, identity, private_key.public_key(), StoredCounters(None))
    sender.open_session()
    sender.seal(b"{" + b" " * (PAD_BYTES - 1))
    with pytest.raises(ValueError, match="padded length"):
        sender.seal(b"{" + b" " * PAD_BYTES)
    assert sender.ctr == 1


def test_commands_must_name_the_current_or_previous_session(
    identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey
) -> None:
    """`sess` of the current or previous session passes; older, absent or wrong ones do not."""
    sender = V2Sender(NODE, identity, private_key.public_key(), StoredCounters(None))
    receiver = _receiver(identity, private_key)
    keys = []
    for _ in range(3):
        msg = parse_v2_envelope(sender.open_session())
        assert isinstance(msg, SessionMessage)
        keys.append(receiver.verify_session(msg))
    tags = sender.session_tags()
    assert set(tags) == {command_session_tag(keys[1]), command_session_tag(keys[2])}
    counters = StoredCounters(None)
    public = private_key.public_key()
    ctr = itertools.count(100)

    def signed(cmd: str, tag: str | None) -> bytes:
        return sign_command(private_key, NODE, next(ctr), cmd, {}, session_tag=tag)

    refused = [
        signed("publish_now", None),
        signed("publish_now", command_session_tag(keys[0])),
        signed("reboot", "0" * 32),
        signed("reboot", command_session_tag(keys[2]).upper()),
        _sign_body(
            private_key,
            json.dumps({"node": NODE, "ctr": 200, "cmd": "reboot", "args": {}, "sess": 1}),
        ),
    ]
    for payload in refused:
        with pytest.raises(CommandRejectedError, match="session"):
            verify_command(payload, public, NODE, counters, tags)
    # A refused command records nothing, not even its counter.
    assert counters.last_command_ctr == 0
    for payload in (
        signed("publish_now", command_session_tag(keys[1])),
        signed("set_interval", command_session_tag(keys[2])),
        signed("open_session", None),
    ):
        assert verify_command(payload, public, NODE, counters, tags)[1] == {}
    assert counters.last_command_ctr == 106


def test_challenges_are_short_canonical_base64() -> None:
    """Only at most 64 characters of canonical standard base64 are taken as a challenge."""
    good = base64.b64encode(secrets.token_bytes(16)).decode()
    assert all(valid_challenge(c) for c in (good, "", "A" * 64))
    bad = ["A" * 68, "AB==", "-_8=", "AAA", "AA AA", " " + good, 16, None, ["AA=="]]
    assert not any(valid_challenge(c) for c in bad)


class HomeSide:
    """Home Assistant's view of the node under test: a receiver, a command counter, a broker."""

    def __init__(
        self,
        observer: Observer,
        private_key: rsa.RSAPrivateKey,
        state_dir: Path,
        *later_keys: rsa.RSAPrivateKey,
    ) -> None:
        """Pin the identity the node's state folder holds (made here, before the node starts)."""
        self.observer = observer
        self.private_key = private_key
        identity = load_or_create_identity(state_dir / f"{NODE}.identity.pem")
        self.receiver = _receiver(identity, *later_keys, private_key)
        self.ctr = itertools.count(10**13)
        self.keys: list[bytes] = []

    def next_on(self, *topics: str) -> paho.MQTTMessage:
        """Return the next message on one of these topics."""
        return self.observer.wait_for(lambda m: m.topic in topics)

    def send(self, payload: bytes) -> None:
        """Publish one command payload with QoS 1."""
        self.observer.client.publish(COMMANDS, payload, qos=1).wait_for_publish(5)

    def command(self, cmd: str, args: dict[str, Any], tag: str | None = None) -> None:
        """Send a command signed by Home Assistant, naming the current session by default."""
        tag = tag if tag is not None else command_session_tag(self.keys[-1])
        self.send(sign_command(self.private_key, NODE, next(self.ctr), cmd, args, tag))

    def unbound(self, cmd: str, args: dict[str, Any]) -> None:
        """Send a command signed by Home Assistant without `sess`."""
        self.send(sign_command(self.private_key, NODE, next(self.ctr), cmd, args))

    def session(self) -> tuple[SessionMessage, bytes]:
        """Read the next data-topic message as a correctly signed session; keep its key."""
        msg = parse_v2_envelope(self.next_on(DATA).payload)
        assert isinstance(msg, SessionMessage)
        key = self.receiver.verify_session(msg)
        self.keys.append(key)
        return msg, key

    def accept(self) -> SessionInfo:
        """Read the next data-topic message as a session Home Assistant accepts; return its info."""
        msg, key = self.session()
        info = self.receiver.accept_session(msg, key)
        assert info is not None
        return info

    def data(self) -> DataMessage:
        """Read the next data-topic message as a data message of the one padded length."""
        msg = parse_v2_envelope(self.next_on(DATA).payload)
        assert isinstance(msg, DataMessage)
        assert len(msg.ct) == PAD_BYTES + GCM_TAG_BYTES
        return msg

    def reading(self) -> Telemetry:
        """Read the next data-topic message as a reading Home Assistant accepts."""
        return self.receiver.open_data(self.data())

    def stale_start(self) -> None:
        """Read the node's first session and reading, refused as no challenge was answered."""
        msg, key = self.session()
        with pytest.raises(PayloadRejected) as stale:
            self.receiver.accept_session(msg, key)
        assert stale.value.reason is Rejection.STALE_SESSION
        with pytest.raises(PayloadRejected) as unknown:
            self.reading()
        assert unknown.value.reason is Rejection.UNKNOWN_SESSION

    def start_fresh(self) -> SessionInfo:
        """Get past the node's first session by answering a challenge, as Home Assistant does."""
        self.stale_start()
        self.unbound("open_session", {"ch": self.receiver.issue_challenge()})
        info = self.accept()
        self.reading()
        return info


@contextmanager
def _process_node(
    start_node: StartNode,  # noqa: F811
    broker: Broker,
    private_key: rsa.RSAPrivateKey,
    state_dir: Path,
    *later_keys: rsa.RSAPrivateKey,
    log: Path | None = None,
) -> Iterator[tuple[HomeSide, subprocess.Popen[bytes]]]:
    """Run a node (Python or C++) as a user would, with Home Assistant's side watching."""
    key = state_dir / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    observer = Observer(broker)
    home = HomeSide(observer, private_key, state_dir, *later_keys)
    process = start_node(broker, key, "--interval", "600", "--state-dir", str(state_dir), log=log)
    try:
        yield home, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=15)
        observer.close()


@contextmanager
def _running(node: ReferenceNode) -> Iterator[ReferenceNode]:
    """Run a reference node in this process (its run loop in a thread) until the block ends."""
    thread = threading.Thread(target=node.run, daemon=True)
    node.start()
    thread.start()
    try:
        yield node
    finally:
        node.stop()
        thread.join(timeout=15)
        assert not thread.is_alive()


def _local_node(
    broker: Broker, private_key: rsa.RSAPrivateKey, state_dir: Path, protocol: int
) -> ReferenceNode:
    """Make a reference node object for `kitchen` that reads every 600 s unless told."""
    return ReferenceNode(
        node_id=NODE,
        public_key=private_key.public_key(),
        broker=BrokerConfig(broker.host, broker.port, broker.username, broker.password),
        scenario=scenario_run(
            "normal", seed=3, start=datetime.now(UTC), interval=600, count=None, event_at=None
        ),
        interval=600,
        protocol=protocol,
        state_dir=state_dir,
    )


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_node_answers_a_challenge_at_once_and_obeys_only_bound_commands(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """open_session: one session with the challenge and a reading at once; `sess` is checked."""
    with _process_node(start_node, mosquitto, private_key, tmp_path) as (home, node):
        announce = json.loads(home.next_on(STATUS).payload)
        assert (announce["proto"], announce["rev"]) == (2, 1)
        # Without a challenge answered the node's first session is refused, as after a restart.
        home.stale_start()

        # Two requests at once: a session with the first challenge and a reading right away...
        first, second = home.receiver.issue_challenge(), home.receiver.issue_challenge()
        home.unbound("open_session", {"ch": first})
        home.unbound("open_session", {"ch": second})
        info = home.accept()
        assert (info.challenge, info.interval, info.firmware) == (first, 600, FIRMWARE_VERSION)
        assert info.key_fp == fingerprint(private_key.public_key())
        assert home.reading().node_id == NODE
        # ...and the second, within the same second, postponed rather than lost.
        info = home.accept()
        assert (info.challenge, info.interval) == (second, 600)
        home.reading()

        # Absent and wrong `sess` are refused; the current session's is obeyed.
        home.unbound("set_interval", {"interval": 700})
        home.command("set_interval", {"interval": 800}, tag=secrets.token_hex(16))
        home.command("set_interval", {"interval": 900})
        assert json.loads(home.next_on(STATUS).payload)["interval"] == 900
        # The next session signs the new interval and still carries the last challenge.
        info = home.accept()
        assert (info.challenge, info.interval) == (second, 900)
        home.reading()

        # The previous session's tag still works; the one before it no longer does.
        home.command("set_interval", {"interval": 1000}, tag=command_session_tag(home.keys[-3]))
        home.command("set_interval", {"interval": 1100}, tag=command_session_tag(home.keys[-2]))
        assert json.loads(home.next_on(STATUS).payload)["interval"] == 1100
        assert home.accept().interval == 1100
        assert node.poll() is None


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_set_ha_key_answers_at_once(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """After set_ha_key: a new announce, a session under the new key and a reading, unasked."""
    with _process_node(start_node, mosquitto, private_key, tmp_path, other_private_key) as (
        home,
        _node,
    ):
        challenge = home.start_fresh().challenge
        new_key = other_private_key.public_key()
        der = new_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        home.command("set_ha_key", {"key": base64.b64encode(der).decode()})
        assert json.loads(home.next_on(STATUS).payload)["key_fp"] == fingerprint(new_key)
        msg, key = home.session()
        # The session key is wrapped for the new key only.
        assert other_private_key.decrypt(msg.ek, OAEP) == key
        with pytest.raises(ValueError, match="Decryption failed"):
            private_key.decrypt(msg.ek, OAEP)
        info = home.receiver.accept_session(msg, key)
        assert info is not None
        assert (info.key_fp, info.challenge) == (fingerprint(new_key), challenge)
        # The node's interval is 600 s: this reading is the immediate answer.
        assert home.reading().node_id == NODE


def _impostor_takes_over(broker: Broker) -> None:
    """Connect with the node's client id, which makes the broker drop the node, then leave."""
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"iotshield-node-{NODE}")
    client.username_pw_set(broker.username, broker.password)
    client.on_connect = lambda *_: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _will_token(home: HomeSide) -> bytes:
    """Wait for the node's `offline` status and return its will token."""
    msg = home.observer.wait_for(lambda m: m.topic == STATUS and b'"offline"' in m.payload)
    doc = json.loads(msg.payload)
    assert sorted(doc) == ["node", "state", "will"]
    assert (doc["state"], doc["node"]) == ("offline", NODE)
    token = base64.b64decode(doc["will"], validate=True)
    assert len(token) == 16
    return token


def _session_will(home: HomeSide) -> str:
    """Return the `will` of the next session, read from its signature-checked information."""
    msg, _key = home.session()
    assert msg.info is not None
    will: str = json.loads(msg.info)["will"]
    return will


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_each_connection_has_its_own_will_token(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """The will's token hashes to the session's `will`; every new connection draws a new one."""
    with _process_node(start_node, mosquitto, private_key, tmp_path) as (home, node):
        tokens = []
        wills = [_session_will(home)]
        # The first reading; from now on the node publishes only when it connects.
        home.data()
        for _ in range(2):
            # The broker drops the node: it sends the node's will, and paho reconnects.
            _impostor_takes_over(mosquitto)
            tokens.append(_will_token(home))
            assert will_hash(tokens[-1]) == wills[-1]
            wills.append(_session_will(home))
        # A clean stop publishes the will message of the current connection itself.
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=15) == 0
        tokens.append(_will_token(home))
        assert will_hash(tokens[-1]) == wills[-1]
        assert len(set(tokens)) == len(set(wills)) == 3


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_v1_node_obeys_only_publish_now(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unsigned set_interval 86400 and other commands change nothing; publish_now is obeyed."""
    observer = Observer(mosquitto)
    try:
        with _running(_local_node(mosquitto, private_key, tmp_path, protocol=1)) as node:
            observer.wait_for(lambda m: m.topic == DATA)
            for payload in (
                b'{"cmd":"set_interval","interval":86400}',
                b'{"cmd":"set_interval","args":{"interval":86400}}',
                b'{"cmd":"set_epsilon","epsilon":0}',
                b'{"cmd":"reboot"}',
                b'{"cmd":["publish_now"]}',
                b"[" * 100_000,
                b"\xff\xfe",
                b"null",
            ):
                observer.client.publish(COMMANDS, payload, qos=1).wait_for_publish(5)
            observer.publish(COMMANDS, '{"cmd":"publish_now"}')
            # The reading comes after every command before it was handled, in order.
            seen: list[paho.MQTTMessage] = []

            def is_data(msg: paho.MQTTMessage) -> bool:
                seen.append(msg)
                return msg.topic == DATA

            observer.wait_for(is_data)
            assert [m.payload for m in seen if m.topic == STATUS] == []
            assert (node.interval, node.privacy.epsilon) == (600, 0.5)
            assert node.connected.is_set()
    finally:
        observer.close()
    records = [r for r in caplog.records if r.name == node_module.__name__]
    assert len([r for r in records if r.levelno == logging.WARNING]) == 8
    assert not [r for r in records if r.levelno > logging.WARNING]


def _hostile_payloads(private_key: rsa.RSAPrivateKey, tag: str, ctr: Iterator[int]) -> list[bytes]:
    """Return commands that must each be refused with a log line and nothing else."""

    def signed(cmd: str, args: dict[str, Any]) -> bytes:
        return sign_command(private_key, NODE, next(ctr), cmd, args, session_tag=tag)

    def body(doc: Any) -> bytes:
        return _sign_body(private_key, doc if isinstance(doc, str) else json.dumps(doc))

    weak = rsa.generate_private_key(65537, 1024)
    weak_der = weak.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [
        # Unsigned or malformed envelopes.
        b'{"v":2,"body":"\\ud800","sig":""}',
        b'{"v":2,"body":"\\ud800","sig":"AAAA"}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b"null",
        b"[]",
        b'"x"',
        b"1e999",
        b'{"v":2}',
        b'{"v":2,"body":{},"sig":"AA=="}',
        b'{"v":2,"body":"{}","sig":7}',
        b'{"v":"2","body":"{}","sig":"AA=="}',
        b'{"v":2,"body":"{}","sig":"not*base64"}',
        b'{"v":2,"body":"{}","sig":"\\u00e9"}',
        # Correctly signed bodies that are not commands.
        body("not json"),
        body("[" * 100_000),
        body([]),
        body("9" * 5000),
        body({"node": NODE, "ctr": 1e400, "cmd": "reboot", "args": {}, "sess": tag}),
        body({"node": [NODE], "ctr": next(ctr), "cmd": "reboot", "args": {}, "sess": tag}),
        body({"node": NODE, "ctr": next(ctr), "cmd": 7, "args": {}, "sess": tag}),
        body({"node": NODE, "ctr": next(ctr), "cmd": "reboot", "args": [], "sess": tag}),
        # Signed, bound commands with unusable arguments.
        signed("set_interval", {"interval": "60"}),
        signed("set_interval", {"interval": 0}),
        signed("set_interval", {"interval": True}),
        signed("set_epsilon", {"epsilon": float("nan")}),
        signed("set_epsilon", {"epsilon": 1e999}),
        signed("set_ha_key", {"key": "not a key"}),
        signed("set_ha_key", {"key": 12}),
        signed("set_ha_key", {"key": base64.b64encode(weak_der).decode()}),
        signed("open_session", {"ch": "A" * 68}),
        signed("open_session", {"ch": "AB=="}),
        signed("open_session", {"ch": 5}),
        signed("format_disk", {}),
    ]


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_hostile_commands_do_not_stop_the_node(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each hostile command is a logged refusal; the node keeps its state and keeps publishing."""
    observer = Observer(mosquitto)
    home = HomeSide(observer, private_key, tmp_path)
    try:
        with _running(_local_node(mosquitto, private_key, tmp_path, protocol=2)) as node:
            info = home.start_fresh()
            tag = command_session_tag(home.keys[-1])
            hostile = _hostile_payloads(private_key, tag, home.ctr)
            # Even an exception nobody foresaw, as this payload provokes, is a logged refusal.
            unforeseen = b'{"unforeseen":true}'

            def verify(payload: bytes, *rest: Any) -> tuple[str, dict[str, Any]]:
                if payload == unforeseen:
                    raise RuntimeError("unforeseen")
                return verify_command(payload, *rest)

            monkeypatch.setattr(node_module, "verify_command", verify)
            for payload in [*hostile, unforeseen]:
                home.send(payload)
            home.command("publish_now", {})
            # Still the same session: no hostile command opened one or changed a setting.
            assert home.reading().seq > 0
            assert (node.interval, node.privacy.epsilon) == (600, 0.5)
            assert node._v2 is not None
            assert node._v2.challenge == info.challenge
            assert node._v2.ha_key.public_numbers() == private_key.public_key().public_numbers()
    finally:
        observer.close()
    records = [r for r in caplog.records if r.name == node_module.__name__]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    errors = [r for r in records if r.levelno > logging.WARNING]
    assert len(warnings) == len(hostile)
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "unforeseen" in str(errors[0].exc_info[1])


def _command_lines(log: Path) -> int:
    """Count the node's log lines about commands: each command it handles writes at least one."""
    return sum("command" in line for line in log.read_text(errors="replace").splitlines())


def _wait_for(check: Callable[[], bool], seconds: float = 30) -> None:
    """Wait until `check()` holds, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("the node did not work through its commands")
        time.sleep(0.05)


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_hostile_commands_change_nothing_on_either_node(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Every hostile command to the running program: no session, no setting, no key changes."""
    log = tmp_path / "node.log"
    with _process_node(start_node, mosquitto, private_key, tmp_path, log=log) as (home, node):
        home.start_fresh()
        tag = command_session_tag(home.keys[-1])
        before = _command_lines(log)
        # The firmware queues at most eight commands and drops (and logs) the rest of a burst;
        # sent four at a time, each batch is worked through before the next, however slow the
        # machine, so every hostile command is looked at.
        payloads = _hostile_payloads(private_key, tag, home.ctr)
        for start in range(0, len(payloads), 4):
            for payload in payloads[start : start + 4]:
                home.send(payload)
            _wait_for(lambda n=start: _command_lines(log) >= before + min(n + 4, len(payloads)))
        home.command("publish_now", {})
        # The next message on the data topic is a reading of the same session, under our key.
        assert home.reading().node_id == NODE
        home.command("set_interval", {"interval": 900})
        # The first announce since is the one this command caused: nothing hostile made one.
        announce = json.loads(home.next_on(STATUS).payload)
        assert (announce["interval"], announce["key_fp"]) == (
            900,
            fingerprint(private_key.public_key()),
        )
        info = home.accept()
        assert (info.interval, info.key_fp) == (900, fingerprint(private_key.public_key()))
        assert node.poll() is None
    # Every hostile command was looked at, none lost to a full queue.
    assert "command queue full" not in log.read_text(errors="replace")


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled")
def test_the_cpp_node_has_no_data_race(
    mosquitto: Broker,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Under ThreadSanitizer: commands, a rotation, a dropped connection and a stop race nothing."""
    (tmp_path / "tsan").mkdir()
    binary = build_mqtt_node(tmp_path / "tsan", thread_sanitizer=True)
    start = functools.partial(start_cpp_node, binary=binary)
    log = tmp_path / "node.log"
    with _process_node(start, mosquitto, private_key, tmp_path, other_private_key, log=log) as (
        home,
        node,
    ):
        home.start_fresh()
        # Settings the MQTT thread receives and the loop reads: interval, privacy, the key.
        home.command("set_epsilon", {"epsilon": 1.0})
        assert home.accept().privacy is not None
        home.reading()
        home.command("set_interval", {"interval": 700})
        assert home.accept().interval == 700
        home.reading()
        # The broker drops the node: the MQTT thread draws the next will while the loop runs.
        _impostor_takes_over(mosquitto)
        _will_token(home)
        home.session()
        der = other_private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        home.unbound("open_session", {"ch": home.receiver.issue_challenge()})
        home.accept()
        home.reading()
        home.command("set_ha_key", {"key": base64.b64encode(der).decode()})
        home.session()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    report = log.read_text(errors="replace")
    assert "Home Assistant key rotated" in report
    assert "ThreadSanitizer" not in report, report
