"""Wire format v2 (PROTOCOL.md §9–§11): signed sessions, AES-256-GCM data, signed commands.

Plain Python with no Home Assistant import. Expensive work (RSA decryption and ECDSA
verification of a session) is in `verify_session`, which is pure and may run in a thread; all
state changes happen in `accept_session` and `open_data`, on the caller's thread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
import json
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .protocol import (
    UINT32_MAX,
    PayloadRejected,
    Rejection,
    Telemetry,
    b64_member,
    loads_strict,
    parse_telemetry,
)

PROTOCOL_V2: Final = 2
MAX_V2_ENVELOPE_BYTES: Final = 1024
MAX_V2_PLAINTEXT_BYTES: Final = 512
SESSION_KEY_BYTES: Final = 32
GCM_TAG_BYTES: Final = 16
SESSION_LABEL: Final = b"iotshield-v2-session|"
AAD_LABEL: Final = "iotshield-v2|"
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
        return SessionMessage(
            sid=_id(doc.get("sid"), "sid", 1),
            ek=b64_member(doc.get("ek"), "ek"),
            sig=b64_member(doc.get("sig"), "sig"),
        )
    if kind == "data":
        return DataMessage(
            sid=_id(doc.get("sid"), "sid", 1),
            ctr=_id(doc.get("ctr"), "ctr", 1),
            ct=b64_member(doc.get("ct"), "ct"),
        )
    raise PayloadRejected(Rejection.MALFORMED, "unknown message type")


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
    ) -> None:
        """Bind the node's pinned identity, Home Assistant's keys (newest first) and state."""
        self.node_id = node_id
        self._node_key = node_key
        self._ha_keys = list(ha_keys)
        self.state = state

    def verify_session(self, msg: SessionMessage) -> bytes:
        """Check the signature and unwrap the session key (CPU-bound, no state change)."""
        try:
            self._node_key.verify(
                msg.sig,
                session_signed_bytes(self.node_id, msg.sid, msg.ek),
                ec.ECDSA(hashes.SHA256()),
            )
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

    def accept_session(self, msg: SessionMessage, session_key: bytes) -> None:
        """Make a verified session current, keeping the one before for in-flight data."""
        self.check_session_fresh(msg)
        self.state.previous = self.state.current
        self.state.current = Session(msg.sid, session_key)
        self.state.highest_sid = msg.sid

    def open_data(self, msg: DataMessage) -> Telemetry:
        """Decrypt and validate a data message, then advance its session's counter."""
        session = next(
            (s for s in (self.state.current, self.state.previous) if s and s.sid == msg.sid),
            None,
        )
        if session is None:
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
        telemetry = parse_telemetry(plaintext, self.node_id)
        session.max_ctr = msg.ctr
        return telemetry


def sign_command(
    private_key: rsa.RSAPrivateKey, node_id: str, ctr: int, cmd: str, args: dict[str, Any]
) -> bytes:
    """Return a signed command message (§11) for a node."""
    body = json.dumps(
        {"node": node_id, "ctr": ctr, "cmd": cmd, "args": args}, separators=(",", ":")
    )
    signature = private_key.sign(body.encode(), _PSS, hashes.SHA256())
    return json.dumps(
        {"v": PROTOCOL_V2, "body": body, "sig": base64.b64encode(signature).decode()},
        separators=(",", ":"),
    ).encode()
