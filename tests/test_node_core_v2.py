"""Wire format v2 revision 1 across implementations: C++ core, reference node, integration."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from iotshield_node.privacy import PrivacyConfig
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import StoredCounters, V2Sender, load_or_create_identity, node_key_b64
import pytest

from custom_components.iotshield.keys import fingerprint, public_key_pem
from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    PAD_BYTES,
    SessionInfo,
    SessionMessage,
    V2Receiver,
    V2State,
    command_session_tag,
    data_aad,
    data_nonce,
    load_node_key,
    parse_v2_envelope,
    sign_command,
    will_hash,
)

from .node_builds import HostNode, host_node  # noqa: F401

READINGS = ("22.5", "40", "0.125", "250.5", "1", "0")
# The widest and narrowest value §4 allows for each reading, in the order t h g l f m.
LOWEST = ("-40", "0", "0", "0", "0", "0")
HIGHEST = ("125", "100", "1", "200000", "1", "1")
NODE = "kitchen"


@pytest.fixture
def ha_key_file(tmp_path: Path, private_key: rsa.RSAPrivateKey) -> Path:
    """Write Home Assistant's public key as a node stores it."""
    path = tmp_path / "ha_public.pem"
    path.write_text(public_key_pem(private_key))
    return path


@pytest.fixture
def identity(host_node: HostNode, tmp_path: Path) -> tuple[Path, str]:  # noqa: F811
    """Make a node identity with the C++ core: its file and its announced node_key."""
    path = tmp_path / "identity.pem"
    (node_key,) = host_node.run("identity-new", path)
    return path, node_key


def _receiver(node_key: str, private_key: rsa.RSAPrivateKey, node: str = NODE) -> V2Receiver:
    """Make Home Assistant's side of the node, with its identity pinned."""
    return V2Receiver(node, load_node_key(node_key), [private_key], V2State())


def _will(host_node: HostNode) -> tuple[dict[str, str], str]:  # noqa: F811
    """Draw a will token with the C++ core: the will payload and the hash it prints."""
    payload, digest = host_node.run("will", NODE)
    return json.loads(payload), digest


def _receive(
    receiver: V2Receiver, lines: list[str]
) -> tuple[list[SessionInfo | None], list[Telemetry]]:
    """Feed session and data messages to Home Assistant's side, in order."""
    infos: list[SessionInfo | None] = []
    readings: list[Telemetry] = []
    for line in lines:
        msg = parse_v2_envelope(line.encode())
        if isinstance(msg, SessionMessage):
            receiver.check_session_fresh(msg)
            infos.append(receiver.accept_session(msg, receiver.verify_session(msg)))
        else:
            readings.append(receiver.open_data(msg))
    return infos, readings


def test_cpp_r1_session_and_data_are_accepted(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
) -> None:
    """A revision-1 session answering an issued challenge is accepted with its signed settings."""
    path, node_key = identity
    receiver = _receiver(node_key, private_key)
    challenge = receiver.issue_challenge()
    _, digest = _will(host_node)
    lines = host_node.run("v2r1", ha_key_file, path, NODE, 5, 3, challenge, digest, *READINGS)
    (info,), readings = _receive(receiver, lines)
    assert info is not None
    assert info.challenge == challenge
    assert (info.firmware, info.interval, info.pad) == ("1.1.0", 5, PAD_BYTES)
    assert info.key_fp == fingerprint(private_key)
    assert info.will == digest
    assert info.privacy is not None
    assert info.privacy.sigma["t"] == pytest.approx(0.969, abs=1e-3)
    assert [r.seq for r in readings] == [1, 2, 3]
    assert (readings[0].temperature, readings[0].gas, readings[0].flame) == (22.5, 0.125, True)
    with pytest.raises(PayloadRejected) as caught:
        _receive(receiver, lines[-1:])
    assert caught.value.reason is Rejection.REPLAYED
    # The Python reference node reads the identity file the C++ core wrote, and agrees on it.
    assert node_key_b64(load_or_create_identity(path)) == node_key


@pytest.mark.parametrize(
    "challenge",
    [
        "not-issued",
        "",
        "-",
        "AAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAB==",
        "A" * 68,
        'AAAA","ch":"AAAA',
    ],
    ids=["other", "none", "dash", "unpadded", "non_canonical", "too_long", "injection"],
)
def test_cpp_session_without_issued_challenge_is_stale(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
    challenge: str,
) -> None:
    """A correctly signed session that names no challenge Home Assistant issued is stale."""
    path, node_key = identity
    receiver = _receiver(node_key, private_key)
    receiver.issue_challenge()
    # Valid base64 that Home Assistant never sent; the other cases are no challenge at all.
    sent = base64.b64encode(os.urandom(16)).decode() if challenge == "not-issued" else challenge
    _, digest = _will(host_node)
    lines = host_node.run("v2r1", ha_key_file, path, NODE, 5, 1, sent, digest, *READINGS)
    info_text = json.loads(lines[0])["info"]
    # The node repeats only a valid challenge into the text it signs; anything else becomes "".
    assert json.loads(info_text)["ch"] == (sent if challenge == "not-issued" else "")
    msg = parse_v2_envelope(lines[0].encode())
    assert isinstance(msg, SessionMessage)
    key = receiver.verify_session(msg)  # the signature is good ...
    with pytest.raises(PayloadRejected) as caught:
        receiver.accept_session(msg, key)  # ... the session is not fresh
    assert caught.value.reason is Rejection.STALE_SESSION
    with pytest.raises(PayloadRejected) as caught:
        _receive(receiver, lines[1:])
    assert caught.value.reason is Rejection.UNKNOWN_SESSION


def test_tampered_info_fails_the_signature(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
) -> None:
    """Changing one byte of the signed info, or dropping it, breaks the session's signature."""
    path, node_key = identity
    receiver = _receiver(node_key, private_key)
    challenge = receiver.issue_challenge()
    _, digest = _will(host_node)
    (line,) = host_node.run("v2r1", ha_key_file, path, NODE, 5, 0, challenge, digest, *READINGS)
    doc = json.loads(line)
    info = doc["info"]
    at = info.index('"interval":5') + len('"interval":')
    variants = {
        "interval": {**doc, "info": info[:at] + "7" + info[at + 1 :]},
        "space": {**doc, "info": info + " "},
        "revision_0": {k: v for k, v in doc.items() if k != "info"},
    }
    for name, variant in variants.items():
        msg = parse_v2_envelope(json.dumps(variant, separators=(",", ":")).encode())
        assert isinstance(msg, SessionMessage)
        with pytest.raises(PayloadRejected) as caught:
            receiver.verify_session(msg)
        assert caught.value.reason is Rejection.BAD_SIGNATURE, name
    # The untouched message still verifies: the failures above are the tampering's.
    (accepted,), _ = _receive(receiver, [line])
    assert accepted is not None
    assert accepted.interval == 5


@pytest.mark.parametrize(
    ("firmware", "accepted"),
    [
        ('1.1"b\\c', True),
        ("tab\tand\x01", True),
        ("é" * 32, True),
        ("", False),
        ("x" * 33, False),
    ],
    ids=["quote_backslash", "control", "utf8_32", "empty", "too_long"],
)
def test_cpp_info_escapes_what_it_signs(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
    firmware: str,
    accepted: bool,
) -> None:
    """Quotes, backslashes and control characters survive both JSON levels; bad fw is unsent."""
    path, node_key = identity
    receiver = _receiver(node_key, private_key)
    challenge = receiver.issue_challenge()
    _, digest = _will(host_node)
    args = ("v2r1", ha_key_file, path, NODE, 5, 0, challenge, digest, *READINGS, 256, firmware)
    if not accepted:
        assert host_node.run(*args, expect=1) == []
        return
    (info,), _ = _receive(receiver, host_node.run(*args))
    assert info is not None
    assert info.firmware == firmware


def test_python_identity_drives_cpp_core(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """A key file made by the reference node works in the C++ core: one identity format."""
    path = tmp_path / "python-identity.pem"
    receiver = _receiver(node_key_b64(load_or_create_identity(path)), private_key)
    challenge = receiver.issue_challenge()
    _, digest = _will(host_node)
    lines = host_node.run("v2r1", ha_key_file, path, NODE, 9, 1, challenge, digest, *READINGS)
    _, (reading,) = _receive(receiver, lines)
    assert reading.light == 250.5
    other = _receiver(node_key_b64(load_or_create_identity(tmp_path / "other.pem")), private_key)
    other.issue_challenge()
    with pytest.raises(PayloadRejected) as caught:
        _receive(other, lines[:1])
    assert caught.value.reason is Rejection.BAD_SIGNATURE


def _reading_cases() -> list[tuple[str, tuple[str, ...]]]:
    """Return readings at the lowest, highest and missing value of every sensor in turn."""
    cases = [("all_low", LOWEST), ("all_high", HIGHEST), ("all_null", ("null",) * 6)]
    for i, sensor in enumerate("thglfm"):
        for label, value in (("low", LOWEST[i]), ("high", HIGHEST[i]), ("null", "null")):
            values = list(READINGS)
            values[i] = value
            cases.append((f"{sensor}_{label}", tuple(values)))
    return cases


def _python_ct_length(private_key: rsa.RSAPrivateKey, node: str, values: tuple[str, ...]) -> int:
    """Return the ct length of the Python reference node's data message for these readings."""
    sender = V2Sender(
        node,
        ec.generate_private_key(ec.SECP256R1()),
        private_key.public_key(),
        StoredCounters(None),
    )
    sender.open_session()
    t, h, g, l, f, m = (None if v == "null" else float(v) for v in values)  # noqa: E741
    readings = Readings(
        t=t, h=h, g=g, l=l, f=None if f is None else f == 1, m=None if m is None else m == 1
    )
    plaintext = encode_telemetry(node, 2**32 - 1, 2**32 - 1, readings, PrivacyConfig())
    return len(base64.b64decode(json.loads(sender.seal(plaintext))["ct"]))


def test_every_data_message_has_one_length(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
) -> None:
    """Every sensor's whole range gives one ct length, the reference node's; only ids vary."""
    path, node_key = identity
    challenge = "AAAAAAAAAAAAAAAAAAAAAA=="
    _, digest = _will(host_node)
    ct_lengths: set[int] = set()
    rest_lengths: set[int] = set()
    python_lengths: set[int] = set()
    for node in (NODE, "n" * 32):
        receiver = _receiver(node_key, private_key, node)
        for sid in (1, 4294967295):
            for _, values in _reading_cases():
                lines = host_node.run(
                    "v2r1", ha_key_file, path, node, sid, 11, challenge, digest, *values
                )
                msg = parse_v2_envelope(lines[0].encode())
                assert isinstance(msg, SessionMessage)
                key = receiver.verify_session(msg)
                for line in lines[1:]:
                    doc = json.loads(line)
                    ct = base64.b64decode(doc["ct"])
                    ct_lengths.add(len(ct))
                    rest_lengths.add(len(line) - len(str(doc["sid"])) - len(str(doc["ctr"])))
                    plaintext = AESGCM(key).decrypt(
                        data_nonce(doc["ctr"]), ct, data_aad(node, doc["sid"], doc["ctr"])
                    )
                    assert len(plaintext) == PAD_BYTES
                    text = plaintext.rstrip(b" ")
                    assert text.endswith(b"}")
                    assert json.loads(text)["s"] == doc["ctr"]
            python_lengths.update(
                _python_ct_length(private_key, node, v) for v in (LOWEST, HIGHEST)
            )
    # Beyond the digits of sid and ctr a data message's length never changes.
    assert len(rest_lengths) == 1
    assert ct_lengths == {PAD_BYTES + 16} == {272}
    assert python_lengths == ct_lengths
    # A long-lived session's four-digit counters change nothing either.
    lines = host_node.run("v2r1", ha_key_file, path, NODE, 7, 1000, challenge, digest, *HIGHEST)
    assert {len(json.loads(line)["ct"]) for line in lines[1:]} == {364}


def test_cpp_refuses_plaintext_longer_than_pad(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    identity: tuple[Path, str],
) -> None:
    """A plaintext that does not fit the pad is never sent, and the pad stays in §12.1's range."""
    path, _ = identity
    digest = hashlib.sha256(b"token").hexdigest()
    args = ("v2r1", ha_key_file, path, NODE, 5, 2, "-", digest, *HIGHEST)
    (session,) = host_node.run(*args, 64, expect=1)
    assert json.loads(json.loads(session)["info"])["pad"] == 64
    assert len(host_node.run(*args, 512)) == 3
    for pad in (63, 513):
        assert host_node.run(*args, pad, expect=1) == []
    # A will that is not 64 lowercase hex digits is not signed either.
    assert host_node.run(*args[:7], digest.upper(), *HIGHEST, expect=1) == []


def test_will_hash_matches_token(host_node: HostNode) -> None:  # noqa: F811
    """The will payload carries 16 fresh random bytes and sessions carry their SHA-256."""
    payload, digest = _will(host_node)
    assert set(payload) == {"state", "node", "will"}
    assert (payload["state"], payload["node"]) == ("offline", NODE)
    token = base64.b64decode(payload["will"], validate=True)
    assert len(token) == 16
    assert digest == will_hash(token) == hashlib.sha256(token).hexdigest()
    other, other_digest = _will(host_node)
    assert (other["will"], other_digest) != (payload["will"], digest)


def test_cpp_announce_says_revision_1(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    identity: tuple[Path, str],
) -> None:
    """A v2 node announces protocol 2, revision 1 and its identity key."""
    _, node_key = identity
    (line,) = host_node.run("announce", ha_key_file, NODE, "1.1.0", 5, 0.5, node_key)
    doc = json.loads(line)
    assert (doc["proto"], doc["rev"], doc["node_key"]) == (2, 1, node_key)
    (v1_line,) = host_node.run("announce", ha_key_file, NODE, "1.1.0", 5, 0.5)
    assert not {"proto", "rev", "node_key"} & set(json.loads(v1_line))


def _session_key(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    identity: tuple[Path, str],
    receiver: V2Receiver,
) -> bytes:
    """Open a C++ session that Home Assistant accepts and return the key it unwrapped."""
    path, _ = identity
    challenge = receiver.issue_challenge()
    digest = hashlib.sha256(os.urandom(16)).hexdigest()
    (line,) = host_node.run("v2r1", ha_key_file, path, NODE, 1, 0, challenge, digest, *READINGS)
    msg = parse_v2_envelope(line.encode())
    assert isinstance(msg, SessionMessage)
    key = receiver.verify_session(msg)
    receiver.accept_session(msg, key)
    return key


def test_cpp_core_verifies_commands(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
) -> None:
    """The firmware runs only commands Home Assistant signed, for it, with a new counter."""
    receiver = _receiver(identity[1], private_key)
    key = _session_key(host_node, ha_key_file, identity, receiver)
    tag = receiver.current_session_tag()
    assert tag == command_session_tag(key)

    def verify(message: bytes, last: int, expect: int = 0) -> str:
        (line,) = host_node.run(
            "verify-command", ha_key_file, NODE, last, key.hex(), stdin=message, expect=expect
        )
        return line

    new_key = base64.b64encode(b"\x30\x82").decode()
    good = [
        (
            sign_command(private_key, NODE, 5, "set_interval", {"interval": 30}, tag),
            "set_interval 5 30",
        ),
        (
            sign_command(private_key, NODE, 6, "set_epsilon", {"epsilon": 0.25}, tag),
            "set_epsilon 6 0",
        ),
        (sign_command(private_key, NODE, 7, "set_ha_key", {"key": new_key}, tag), "set_ha_key 7 0"),
    ]
    for message, expected in good:
        assert verify(message, 4).startswith(f"ok {expected}")
    assert verify(good[1][0], 0).split()[4] == "0.25"
    assert verify(good[2][0], 0).split()[5] == new_key
    assert verify(good[0][0], 0).split()[7] == tag
    signed = sign_command(private_key, NODE, 5, "reboot", {}, tag)
    rejected = {
        "replayed": (signed, 5),
        "bad_signature": (sign_command(other_private_key, NODE, 50, "reboot", {}, tag), 0),
        "other_node": (sign_command(private_key, "garage", 50, "reboot", {}, tag), 0),
        "unreadable": (b'{"cmd":"reboot"}', 0),
        "tampered": (signed.replace(b"reboot", b"rebooT"), 0),
        "duplicate_member": (b'{"v":2,' + signed[1:], 0),
    }
    expected_reason = {"tampered": "bad_signature", "duplicate_member": "unreadable"}
    for reason, (message, last) in rejected.items():
        assert verify(message, last, expect=3) == f"rejected {expected_reason.get(reason, reason)}"
    # The same reader takes other spellings of the same JSON.
    spaced = json.dumps(json.loads(signed)).encode()
    assert spaced != signed
    assert verify(spaced, 0).startswith("ok reboot 5")


def test_cpp_core_binds_commands_to_sessions(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    identity: tuple[Path, str],
) -> None:
    """Only open_session runs without naming the node's current or previous session."""
    receiver = _receiver(identity[1], private_key)
    current = _session_key(host_node, ha_key_file, identity, receiver)
    older, previous = os.urandom(32), os.urandom(32)
    sessions = (older.hex(), previous.hex(), current.hex())

    def verify(
        tag: str | None,
        cmd: str = "reboot",
        args: dict[str, object] | None = None,
        expect: int = 0,
    ) -> str:
        message = sign_command(private_key, NODE, 9, cmd, args or {}, tag)
        (line,) = host_node.run(
            "verify-command",
            ha_key_file,
            NODE,
            8,
            *sessions,
            stdin=message,
            expect=3 if expect or (tag not in allowed and cmd != "open_session") else 0,
        )
        return line

    allowed = {command_session_tag(current), command_session_tag(previous)}
    assert receiver.current_session_tag() == command_session_tag(current)
    for tag in allowed:
        assert verify(tag).startswith("ok reboot 9")
    others = (command_session_tag(older), command_session_tag(os.urandom(32)))
    for tag in (None, *others, command_session_tag(current).upper()):
        assert verify(tag) == "rejected other_session"
    # open_session needs no session and hands over its challenge; one that is not canonical
    # base64 of at most 64 characters spoils the whole command (PROTOCOL.md §12.3).
    challenge = receiver.issue_challenge()
    assert verify(None, "open_session", {"ch": challenge}).split()[6] == challenge
    assert verify(None, "open_session", {}).split()[6] == "-"
    for bad in ("A" * 68, "AAA", "AAAAAAAAAAAAAAAAAAAAAB==", "AAAA\nAAAA", 7, None):
        assert verify(None, "open_session", {"ch": bad}, expect=3) == "rejected unreadable"
    # A node that holds no session refuses everything else.
    message = sign_command(private_key, NODE, 9, "reboot", {}, command_session_tag(current))
    (line,) = host_node.run("verify-command", ha_key_file, NODE, 8, stdin=message, expect=3)
    assert line == "rejected other_session"


def test_open_session_at_most_once_per_second(host_node: HostNode) -> None:  # noqa: F811
    """Requests within a second of a requested session wait for the second to pass."""
    events = ["0", "r", "5", "r", "r", "500", "1004", "1005", "1006", "r", "1500", "2005", "2006"]
    assert host_node.run("session-requests", *events) == [
        "wait",  # nothing requested
        "open",  # the first request opens at once
        "wait",  # two more within the second are held ...
        "wait",
        "open",  # ... and served together once it has passed
        "wait",
        "wait",
        "open",
        "wait",
    ]
