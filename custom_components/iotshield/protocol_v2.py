"""Wire format v2 (PROTOCOL.md §9–§11): signed sessions, AES-256-GCM data, signed commands.

Plain Python with no Home Assistant import. Expensive work (RSA decryption and ECDSA
verification of a session) is in `verify_session`, which is pure and may run in a thread; all
state changes happen in `accept_session` and `open_data`, on the caller's thread.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
import hashlib
import json
import re
import secrets
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .protocol import (
    MAX_ANNOUNCED_INTERVAL,
    UINT32_MAX,
    NodePrivacy,
    PayloadRejected,
    Rejection,
    Telemetry,
    b64_member,
    loads_strict,
    parse_privacy,
    parse_telemetry,
)

PROTOCOL_V2: Final = 2
# Revision 1 of wire format v2 (PROTOCOL.md §12): signed session information and the rest.
REVISION_1: Final = 1
# A revision-1 session carries its signed information; 2048 bytes leave room for it.
MAX_V2_ENVELOPE_BYTES: Final = 2048
MAX_V2_PLAINTEXT_BYTES: Final = 512
SESSION_KEY_BYTES: Final = 32
GCM_TAG_BYTES: Final = 16
SESSION_LABEL: Final = b"iotshield-v2-session|"
SESSION_LABEL_R1: Final = b"iotshield-v2r1-session|"
COMMAND_TAG_LABEL: Final = b"iotshield-v2-command|"
AAD_LABEL: Final = "iotshield-v2|"
# Every data plaintext of a revision-1 node is padded to this many bytes (§12.4).
PAD_BYTES: Final = 256
MIN_PAD_BYTES: Final = 64
CHALLENGE_BYTES: Final = 16
MAX_CHALLENGE_CHARS: Final = 64
# Challenges sent to a node are kept in memory only, the newest few (§12.3).
CHALLENGES_KEPT: Final = 4
MAX_FIRMWARE_CHARS: Final = 32
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """A node's request to open session `sid` with the wrapped key `ek`."""

    sid: int
    ek: bytes
    sig: bytes
    # The signed information of a revision-1 session (UTF-8 JSON text), None for revision 0.
    info: bytes | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a revision-1 node signs into its session about itself (§12.1)."""

    challenge: str
    firmware: str
    interval: int
    privacy: NodePrivacy | None
    key_fp: str
    will: str
    pad: int


@dataclass(frozen=True, slots=True)
class DataMessage:
    """An AES-GCM encrypted reading in session `sid` with counter `ctr`."""

    sid: int
    ctr: int
    ct: bytes


@dataclass(slots=True)
class Session:
    """A session key Home Assistant holds and the highest counter it accepted in it."""

    sid: int
    key: bytes
    max_ctr: int = 0


@dataclass(slots=True)
class V2State:
    """What Home Assistant must remember per node to refuse replays, also across restarts."""

    highest_sid: int = 0
    current: Session | None = None
    previous: Session | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return JSON-native data for storage."""

        def session(value: Session | None) -> dict[str, Any] | None:
            if value is None:
                return None
            key = base64.b64encode(value.key).decode()
            return {"sid": value.sid, "key": key, "max_ctr": value.max_ctr}

        return {
            "highest_sid": self.highest_sid,
            "current": session(self.current),
            "previous": session(self.previous),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> V2State:
        """Restore stored state; anything unreadable starts empty (refusing old sessions)."""
        if not isinstance(data, dict):
            return cls()

        def session(value: Any) -> Session | None:
            if not isinstance(value, dict):
                return None
            try:
                key = base64.b64decode(value["key"], validate=True)
                return Session(int(value["sid"]), key, int(value["max_ctr"]))
            except (KeyError, TypeError, ValueError, binascii.Error):
                return None

        highest = data.get("highest_sid")
        return cls(
            highest_sid=highest if isinstance(highest, int) else 0,
            current=session(data.get("current")),
            previous=session(data.get("previous")),
        )


def session_signed_bytes(node_id: str, sid: int, ek: bytes) -> bytes:
    """Return the bytes a node signs to open a session (§9)."""
    return SESSION_LABEL + f"{node_id}|{sid}|".encode() + ek


def session_signed_bytes_r1(node_id: str, sid: int, ek: bytes, info: bytes) -> bytes:
    """Return the bytes a revision-1 node signs to open a session (§12.1)."""
    return SESSION_LABEL_R1 + f"{node_id}|{sid}|".encode() + ek + info


def command_session_tag(session_key: bytes) -> str:
    """Return the tag that binds a command to the session with this key (§12.5)."""
    return hashlib.sha256(COMMAND_TAG_LABEL + session_key).digest()[:16].hex()


def will_hash(token: bytes) -> str:
    """Return the hash a session carries of its connection's will token (§12.2)."""
    return hashlib.sha256(token).hexdigest()


def _text(value: Any, field: str, low: int, high: int) -> str:
    """Check a string member's type and length."""
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"session info {field}")
    return value


def _hex64(value: Any, field: str) -> str:
    """Check a member holding 64 lowercase hex digits."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"session info {field}")
    return value


def _bounded_int(value: Any, field: str, low: int, high: int) -> int:
    """Check an integer member's range."""
    if type(value) is not int or not low <= value <= high:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"session info {field}")
    return value


def parse_session_info(info: bytes) -> SessionInfo:
    """Read the signed information of a revision-1 session; malformed is invalid_schema."""
    doc = loads_strict(info, Rejection.INVALID_SCHEMA)
    if not isinstance(doc, dict):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "session info is not an object")
    if "privacy" not in doc:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "session info privacy")
    privacy = doc["privacy"]
    if privacy is not None and not isinstance(privacy, dict):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "session info privacy")
    return SessionInfo(
        challenge=_text(doc.get("ch"), "ch", 0, MAX_CHALLENGE_CHARS),
        firmware=_text(doc.get("fw"), "fw", 1, MAX_FIRMWARE_CHARS),
        interval=_bounded_int(doc.get("interval"), "interval", 1, MAX_ANNOUNCED_INTERVAL),
        privacy=parse_privacy(privacy),
        key_fp=_hex64(doc.get("key_fp"), "key_fp"),
        will=_hex64(doc.get("will"), "will"),
        pad=_bounded_int(doc.get("pad"), "pad", MIN_PAD_BYTES, MAX_V2_PLAINTEXT_BYTES),
    )


def data_aad(node_id: str, sid: int, ctr: int) -> bytes:
    """Return the associated data bound to a data message (§10)."""
    return f"{AAD_LABEL}{node_id}|{sid}|{ctr}".encode()


def data_nonce(ctr: int) -> bytes:
    """Return the 12-byte GCM nonce: four zero bytes and the counter, big-endian."""
    return b"\0\0\0\0" + ctr.to_bytes(8, "big")


def _id(value: Any, field: str, low: int) -> int:
    """Check a session id or counter: an integer from `low` to 2**32 - 1."""
    if type(value) is not int:
        raise PayloadRejected(Rejection.MALFORMED, f"{field} is not an integer")
    if not low <= value <= UINT32_MAX:
        raise PayloadRejected(Rejection.OUT_OF_RANGE, f"{field}={value}")
    return value


def parse_v2_envelope(payload: bytes) -> SessionMessage | DataMessage:
    """Check a v2 message's framing; a v1 envelope from a v2 node is a downgrade."""
    if len(payload) > MAX_V2_ENVELOPE_BYTES:
        raise PayloadRejected(Rejection.OVERSIZE, f"{len(payload)} bytes")
    doc = loads_strict(payload, Rejection.MALFORMED)
    if not isinstance(doc, dict):
        raise PayloadRejected(Rejection.MALFORMED, "envelope is not an object")
    version = doc.get("v")
    if version == 1 and type(version) is int:
        raise PayloadRejected(Rejection.DOWNGRADE, "v1 envelope from a v2 node")
    if type(version) is not int:
        raise PayloadRejected(Rejection.MALFORMED, "envelope has no integer v")
    if version != PROTOCOL_V2:
        raise PayloadRejected(Rejection.UNSUPPORTED_VERSION, f"v={version}")
    kind = doc.get("type")
    if kind == "session":
        info = doc.get("info")
        if info is not None and not isinstance(info, str):
            raise PayloadRejected(Rejection.MALFORMED, "session info is not a string")
        try:
            info_bytes = None if info is None else info.encode()
        except UnicodeEncodeError as err:
            raise PayloadRejected(Rejection.MALFORMED, "session info is not UTF-8") from err
        return SessionMessage(
            sid=_id(doc.get("sid"), "sid", 1),
            ek=b64_member(doc.get("ek"), "ek"),
            sig=b64_member(doc.get("sig"), "sig"),
            info=info_bytes,
        )
    if kind == "data":
        return DataMessage(
            sid=_id(doc.get("sid"), "sid", 1),
            ctr=_id(doc.get("ctr"), "ctr", 1),
            ct=b64_member(doc.get("ct"), "ct"),
        )
    raise PayloadRejected(Rejection.MALFORMED, "unknown message type")


class StaleSession(PayloadRejected):
    """A correctly signed revision-1 session that answers no challenge of this run (§12.3)."""

    def __init__(self, sid: int, *, unchallenged: bool) -> None:
        """Say whether the node named no challenge at all (it just started) or an old one."""
        detail = "carries no challenge" if unchallenged else "answers no current challenge"
        super().__init__(Rejection.STALE_SESSION, f"session {sid} {detail}")
        self.unchallenged = unchallenged


class NodeKeyError(ValueError):
    """A text that is not a P-256 public key."""


def load_node_key(text: str) -> ec.EllipticCurvePublicKey:
    """Parse a node identity key given as base64 DER or PEM SubjectPublicKeyInfo (P-256 only)."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as err:
        raise NodeKeyError("not a public key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise NodeKeyError("not a P-256 key")
    return key


def node_key_der_b64(key: ec.EllipticCurvePublicKey) -> str:
    """Return the canonical stored form of a node key: base64 DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def canonical_node_key(text: str | None) -> str | None:
    """Return an announced node key in its stored form, or None when it is not a P-256 key."""
    if text is None:
        return None
    try:
        return node_key_der_b64(load_node_key(text))
    except NodeKeyError:
        return None


def node_key_fingerprint(der_b64: str) -> str:
    """Return SHA-256 over a node key's DER SubjectPublicKeyInfo, as 64 hex digits."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(base64.b64decode(der_b64))
    return digest.finalize().hex()


class V2Receiver:
    """Home Assistant's side of one v2 node: sessions, counters and decryption."""

    def __init__(
        self,
        node_id: str,
        node_key: ec.EllipticCurvePublicKey,
        ha_keys: Sequence[rsa.RSAPrivateKey],
        state: V2State,
        *,
        revision: int = 0,
    ) -> None:
        """Bind the node's pinned identity, Home Assistant's keys (newest first) and state."""
        self.node_id = node_id
        self._node_key = node_key
        self._ha_keys = list(ha_keys)
        self.state = state
        # Once a node sent a revision-1 session, revision-0 sessions are a downgrade.
        self.revision = revision
        # Challenges live only in memory: a restored backup cannot bring an old one back.
        self._challenges: deque[str] = deque(maxlen=CHALLENGES_KEPT)
        # Sessions accepted since this receiver was made; a revision-1 node's data count only
        # in those, so a rolled-back store cannot make recorded data acceptable again.
        self._fresh: deque[int] = deque(maxlen=2)
        # Set while Home Assistant may have missed a session because it was not listening
        # (its broker connection dropped); then the one newer session id seen first.
        self._gap = False
        self._gap_sid: int | None = None

    @property
    def awaiting_session(self) -> bool:
        """Say whether no session was accepted since Home Assistant asked for one at start."""
        return not self._fresh

    def listening_interrupted(self) -> None:
        """Note that the node may open a session now that Home Assistant will never receive."""
        self._gap = True
        self._gap_sid = None

    def missed_while_away(self, sid: int) -> bool:
        """Say whether unknown session `sid` can be the one the node opened while not heard."""
        # A node opens one session when it reconnects, newer than every accepted one; the first
        # such id seen is taken for it. Any other unknown session is an attacker's.
        if not self._gap or sid <= self.state.highest_sid:
            return False
        if self._gap_sid is None:
            self._gap_sid = sid
        return sid == self._gap_sid

    def set_ha_keys(self, ha_keys: Sequence[rsa.RSAPrivateKey]) -> None:
        """Use new Home Assistant keys (newest first) from now on, e.g. after a rotation."""
        self._ha_keys = list(ha_keys)

    def issue_challenge(self) -> str:
        """Return a new challenge for open_session and remember it (§12.3)."""
        challenge = base64.b64encode(secrets.token_bytes(CHALLENGE_BYTES)).decode()
        self._challenges.append(challenge)
        return challenge

    def current_session_tag(self) -> str | None:
        """Return the tag binding commands to the current session, if there is one (§12.5)."""
        current = self.state.current
        return None if current is None else command_session_tag(current.key)

    def verify_session(self, msg: SessionMessage) -> bytes:
        """Check the signature and unwrap the session key (CPU-bound, no state change)."""
        if msg.info is None:
            if self.revision >= REVISION_1:
                raise PayloadRejected(Rejection.DOWNGRADE, f"revision-0 session {msg.sid}")
            signed = session_signed_bytes(self.node_id, msg.sid, msg.ek)
        else:
            signed = session_signed_bytes_r1(self.node_id, msg.sid, msg.ek, msg.info)
        try:
            self._node_key.verify(msg.sig, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as err:
            raise PayloadRejected(Rejection.BAD_SIGNATURE, f"session {msg.sid}") from err
        for key in self._ha_keys:
            try:
                session_key = key.decrypt(msg.ek, _OAEP)
            except ValueError:
                continue
            if len(session_key) != SESSION_KEY_BYTES:
                raise PayloadRejected(Rejection.INVALID_SCHEMA, "session key is not 32 bytes")
            return session_key
        raise PayloadRejected(Rejection.DECRYPT_FAILED, f"session {msg.sid} key")

    def check_session_fresh(self, msg: SessionMessage) -> None:
        """Refuse a session id that is not above every accepted one (a replayed session)."""
        if msg.sid <= self.state.highest_sid:
            raise PayloadRejected(
                Rejection.REPLAYED, f"session {msg.sid} <= {self.state.highest_sid}"
            )
        if msg.info is None and self.revision >= REVISION_1:
            raise PayloadRejected(Rejection.DOWNGRADE, f"revision-0 session {msg.sid}")

    def accept_session(self, msg: SessionMessage, session_key: bytes) -> SessionInfo | None:
        """Make a verified session current, keeping the one before for in-flight data.

        Returns the signed information of a revision-1 session (None for revision 0).
        """
        self.check_session_fresh(msg)
        info = None
        if msg.info is not None:
            info = parse_session_info(msg.info)
            if info.challenge not in self._challenges:
                raise StaleSession(msg.sid, unchallenged=not info.challenge)
            self.revision = max(self.revision, REVISION_1)
        self.state.previous = self.state.current
        self.state.current = Session(msg.sid, session_key)
        self.state.highest_sid = msg.sid
        self._fresh.append(msg.sid)
        self._gap = False
        return info

    def reset(self) -> None:
        """Forget every session (a new node key was pinned): nothing of the old one counts."""
        self.state.current = None
        self.state.previous = None
        self.state.highest_sid = 0
        self._fresh.clear()

    def open_data(self, msg: DataMessage) -> Telemetry:
        """Decrypt and validate a data message, then advance its session's counter."""
        session = next(
            (s for s in (self.state.current, self.state.previous) if s and s.sid == msg.sid),
            None,
        )
        if session is None or (self.revision >= REVISION_1 and msg.sid not in self._fresh):
            raise PayloadRejected(Rejection.UNKNOWN_SESSION, f"session {msg.sid}")
        if msg.ctr <= session.max_ctr:
            raise PayloadRejected(Rejection.REPLAYED, f"counter {msg.ctr} <= {session.max_ctr}")
        if len(msg.ct) > MAX_V2_PLAINTEXT_BYTES + GCM_TAG_BYTES:
            raise PayloadRejected(Rejection.OVERSIZE, f"{len(msg.ct)} bytes of ciphertext")
        try:
            plaintext = AESGCM(session.key).decrypt(
                data_nonce(msg.ctr), msg.ct, data_aad(self.node_id, msg.sid, msg.ctr)
            )
        except InvalidTag as err:
            raise PayloadRejected(
                Rejection.AUTH_FAILED, f"session {msg.sid} ctr {msg.ctr}"
            ) from err
        # A revision-1 node pads with spaces (§12.4); JSON ignores trailing whitespace.
        telemetry = parse_telemetry(plaintext.rstrip(b" "), self.node_id)
        session.max_ctr = msg.ctr
        # The node still speaks in a session Home Assistant holds: it missed none.
        self._gap = False
        return telemetry


def sign_command(
    private_key: rsa.RSAPrivateKey,
    node_id: str,
    ctr: int,
    cmd: str,
    args: dict[str, Any],
    session_tag: str | None = None,
) -> bytes:
    """Return a signed command message (§11), bound to a session when its tag is given."""
    doc: dict[str, Any] = {"node": node_id, "ctr": ctr, "cmd": cmd, "args": args}
    if session_tag is not None:
        doc["sess"] = session_tag
    body = json.dumps(doc, separators=(",", ":"))
    signature = private_key.sign(body.encode(), _PSS, hashes.SHA256())
    return json.dumps(
        {"v": PROTOCOL_V2, "body": body, "sig": base64.b64encode(signature).decode()},
        separators=(",", ":"),
    ).encode()
