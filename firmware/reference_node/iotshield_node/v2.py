"""Wire format v2, revision 1, on the node (PROTOCOL.md §9–§12): identity, sessions, commands."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import FIRMWARE_VERSION
from .telemetry import OAEP, PAD_BYTES, fingerprint, pad

SESSION_LABEL = b"iotshield-v2-session|"
SESSION_LABEL_R1 = b"iotshield-v2r1-session|"
COMMAND_TAG_LABEL = b"iotshield-v2-command|"
REVISION = 1
WILL_TOKEN_BYTES = 16
MAX_CHALLENGE_CHARS = 64
ROTATE_AFTER_MESSAGES = 10_000
ROTATE_AFTER_SECONDS = 24 * 3600
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)


def load_or_create_identity(path: Path) -> ec.EllipticCurvePrivateKey:
    """Return the node's P-256 identity key, creating it on first start."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{path} is not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def node_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """Return the announced form of the identity key: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def identity_fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    """Return SHA-256 over the identity's DER public key in hex: what the pairing wizard shows."""
    return hashlib.sha256(base64.b64decode(node_key_b64(key))).hexdigest()


def group_fours(hex_digest: str) -> str:
    """Group a fingerprint in fours, as the wizard shows it, so a person can compare by eye."""
    return " ".join(hex_digest[i : i + 4] for i in range(0, len(hex_digest), 4))


@dataclass
class StoredCounters:
    """What a node must remember across reboots: its last session id and command counter."""

    path: Path | None
    last_sid: int = 0
    last_command_ctr: int = 0

    @classmethod
    def load(cls, path: Path | None) -> StoredCounters:
        """Read the counters, or start at zero."""
        if path is None or not path.exists():
            return cls(path)
        doc = json.loads(path.read_text())
        return cls(path, int(doc.get("last_sid", 0)), int(doc.get("last_command_ctr", 0)))

    def save(self) -> None:
        """Write the counters (atomically, so a crash never loses them)."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"last_sid": self.last_sid, "last_command_ctr": self.last_command_ctr})
        )
        tmp.replace(self.path)


def command_session_tag(session_key: bytes) -> str:
    """Return the tag by which a command names the session with this key (§12.5)."""
    return hashlib.sha256(COMMAND_TAG_LABEL + session_key).digest()[:16].hex()


def valid_challenge(value: object) -> bool:
    """Say whether an open_session `ch` is at most 64 characters of canonical standard base64."""
    if not isinstance(value, str) or len(value) > MAX_CHALLENGE_CHARS:
        return False
    try:
        decoded = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return False
    # §3: receivers refuse every spelling but the canonical one.
    return base64.b64encode(decoded).decode() == value


class V2Sender:
    """Opens sessions and seals readings for one node (revision 1 unless told otherwise)."""

    def __init__(
        self,
        node_id: str,
        identity: ec.EllipticCurvePrivateKey,
        ha_key: rsa.RSAPublicKey,
        counters: StoredCounters,
        *,
        revision: int = REVISION,
    ) -> None:
        """Bind the node's identity, Home Assistant's key and the stored counters."""
        self.node_id = node_id
        self.identity = identity
        self.ha_key = ha_key
        self.counters = counters
        # Revision 0 (§9 alone) exists so that tests can play a node of older firmware.
        self.revision = revision
        self.sid = 0
        self.ctr = 0
        # The challenge of the last accepted open_session lives in memory only (§12.3).
        self.challenge = ""
        self._key = b""
        self._previous_key = b""
        self._opened = 0.0
        self._will_token = secrets.token_bytes(WILL_TOKEN_BYTES)

    def new_will(self) -> bytes:
        """Draw the will token of the next MQTT connection and return its last will (§12.2)."""
        self._will_token = secrets.token_bytes(WILL_TOKEN_BYTES)
        return self.will_payload()

    def will_payload(self) -> bytes:
        """Return the `offline` status that carries the current connection's will token."""
        return json.dumps(
            {
                "state": "offline",
                "node": self.node_id,
                "will": base64.b64encode(self._will_token).decode(),
            },
            separators=(",", ":"),
        ).encode()

    @property
    def will_hash(self) -> str:
        """Return SHA-256 of the current will token as sessions carry it."""
        return hashlib.sha256(self._will_token).hexdigest()

    def session_tags(self) -> tuple[str, ...]:
        """Return the tags of the current and previous sessions that commands may name."""
        return tuple(command_session_tag(k) for k in (self._key, self._previous_key) if k)

    def session_info(self, interval: int, privacy: dict[str, Any] | None, firmware: str) -> bytes:
        """Return the compact JSON text a revision-1 session signs about the node (§12.1)."""
        return json.dumps(
            {
                "ch": self.challenge,
                "fw": firmware,
                "interval": interval,
                "key_fp": fingerprint(self.ha_key),
                "pad": PAD_BYTES,
                "privacy": privacy,
                "will": self.will_hash,
            },
            separators=(",", ":"),
        ).encode()

    def open_session(
        self,
        *,
        interval: int = 5,
        privacy: dict[str, Any] | None = None,
        firmware: str = FIRMWARE_VERSION,
    ) -> bytes:
        """Start a new session and return its signed session message.

        The settings are what the node runs with; they are signed into a revision-1 session.
        """
        self.counters.last_sid += 1
        self.counters.save()
        self.sid = self.counters.last_sid
        self.ctr = 0
        self._previous_key = self._key
        self._key = os.urandom(32)
        self._opened = time.monotonic()
        ek = self.ha_key.encrypt(self._key, OAEP)
        doc: dict[str, Any] = {
            "v": 2,
            "type": "session",
            "sid": self.sid,
            "ek": base64.b64encode(ek).decode(),
        }
        if self.revision >= REVISION:
            info = self.session_info(interval, privacy, firmware)
            signed = SESSION_LABEL_R1 + f"{self.node_id}|{self.sid}|".encode() + ek + info
            doc["info"] = info.decode()
        else:
            signed = SESSION_LABEL + f"{self.node_id}|{self.sid}|".encode() + ek
        sig = self.identity.sign(signed, ec.ECDSA(hashes.SHA256()))
        doc["sig"] = base64.b64encode(sig).decode()
        return json.dumps(doc, separators=(",", ":")).encode()

    def needs_new_session(self) -> bool:
        """Say whether the session must rotate (none yet, by count, or by age)."""
        return (
            self.sid == 0
            or self.ctr >= ROTATE_AFTER_MESSAGES
            or time.monotonic() - self._opened >= ROTATE_AFTER_SECONDS
        )

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt one telemetry plaintext (padded in revision 1) as the next data message."""
        if self.revision >= REVISION:
            plaintext = pad(plaintext)
        self.ctr += 1
        nonce = b"\0\0\0\0" + self.ctr.to_bytes(8, "big")
        aad = f"iotshield-v2|{self.node_id}|{self.sid}|{self.ctr}".encode()
        ct = AESGCM(self._key).encrypt(nonce, plaintext, aad)
        return json.dumps(
            {
                "v": 2,
                "type": "data",
                "sid": self.sid,
                "ctr": self.ctr,
                "ct": base64.b64encode(ct).decode(),
            },
            separators=(",", ":"),
        ).encode()


class CommandRejectedError(ValueError):
    """A command that must not be executed."""


def verify_command(
    payload: bytes,
    ha_key: rsa.RSAPublicKey,
    node_id: str,
    counters: StoredCounters,
    session_tags: Collection[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Return (cmd, args) of a correctly signed, fresh command for this node, and record it.

    With `session_tags` (revision 1) a command other than open_session must name one of them.
    Whatever the payload holds, the only exception raised is CommandRejectedError.
    """
    try:
        doc = json.loads(payload)
        version, body_text = doc.get("v"), doc["body"]
        signature = base64.b64decode(doc["sig"], validate=True)
        # A lone surrogate in the JSON string has no UTF-8 form.
        body_bytes = body_text.encode() if isinstance(body_text, str) else None
    # RecursionError: a deeply nested payload; the others: every other malformed shape.
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise CommandRejectedError("unreadable command") from err
    if type(version) is not int or version != 2 or body_bytes is None:  # noqa: PLR2004
        raise CommandRejectedError("not a v2 command")
    try:
        ha_key.verify(signature, body_bytes, PSS, hashes.SHA256())
    except InvalidSignature as err:
        raise CommandRejectedError("bad signature") from err
    try:
        body = json.loads(body_text)
    except (ValueError, RecursionError) as err:
        raise CommandRejectedError("signed body is not JSON") from err
    if not isinstance(body, dict):
        raise CommandRejectedError("signed body is not an object")
    if body.get("node") != node_id:
        raise CommandRejectedError("command for another node")
    ctr = body.get("ctr")
    if type(ctr) is not int or ctr <= counters.last_command_ctr:
        raise CommandRejectedError("replayed command")
    cmd, args = body.get("cmd"), body.get("args")
    if not isinstance(cmd, str) or not isinstance(args, dict):
        raise CommandRejectedError("malformed command")
    if session_tags is not None and cmd != "open_session":
        sess = body.get("sess")
        if not isinstance(sess, str) or sess not in session_tags:
            # Checked before the counter is recorded: a refused command changes nothing.
            raise CommandRejectedError("command names no current session")
    counters.last_command_ctr = ctr
    counters.save()
    return cmd, args
