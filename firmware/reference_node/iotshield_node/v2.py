"""Wire format v2 on the node (PROTOCOL.md §9–§11): identity, sessions, data, verified commands."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
import json
import os
from pathlib import Path
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .telemetry import OAEP

SESSION_LABEL = b"iotshield-v2-session|"
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


class V2Sender:
    """Opens sessions and seals readings for one node."""

    def __init__(
        self,
        node_id: str,
        identity: ec.EllipticCurvePrivateKey,
        ha_key: rsa.RSAPublicKey,
        counters: StoredCounters,
    ) -> None:
        """Bind the node's identity, Home Assistant's key and the stored counters."""
        self.node_id = node_id
        self.identity = identity
        self.ha_key = ha_key
        self.counters = counters
        self.sid = 0
        self.ctr = 0
        self._key = b""
        self._opened = 0.0

    def open_session(self) -> bytes:
        """Start a new session and return its (signed) session message."""
        self.counters.last_sid += 1
        self.counters.save()
        self.sid = self.counters.last_sid
        self.ctr = 0
        self._key = os.urandom(32)
        self._opened = time.monotonic()
        ek = self.ha_key.encrypt(self._key, OAEP)
        signed = SESSION_LABEL + f"{self.node_id}|{self.sid}|".encode() + ek
        sig = self.identity.sign(signed, ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "v": 2,
                "type": "session",
                "sid": self.sid,
                "ek": base64.b64encode(ek).decode(),
                "sig": base64.b64encode(sig).decode(),
            },
            separators=(",", ":"),
        ).encode()

    def needs_new_session(self) -> bool:
        """Say whether the session must rotate (none yet, by count, or by age)."""
        return (
            self.sid == 0
            or self.ctr >= ROTATE_AFTER_MESSAGES
            or time.monotonic() - self._opened >= ROTATE_AFTER_SECONDS
        )

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt one telemetry plaintext as the session's next data message."""
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
    payload: bytes, ha_key: rsa.RSAPublicKey, node_id: str, counters: StoredCounters
) -> tuple[str, dict[str, Any]]:
    """Return (cmd, args) of a correctly signed, fresh command for this node, and record it."""
    try:
        doc = json.loads(payload)
        body_text = doc["body"]
        signature = base64.b64decode(doc["sig"], validate=True)
        if doc.get("v") != 2 or not isinstance(body_text, str):  # noqa: PLR2004
            raise CommandRejectedError("not a v2 command")
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise CommandRejectedError("unreadable command") from err
    try:
        ha_key.verify(signature, body_text.encode(), PSS, hashes.SHA256())
    except InvalidSignature as err:
        raise CommandRejectedError("bad signature") from err
    body = json.loads(body_text)
    if body.get("node") != node_id:
        raise CommandRejectedError("command for another node")
    ctr = body.get("ctr")
    if type(ctr) is not int or ctr <= counters.last_command_ctr:
        raise CommandRejectedError("replayed command")
    cmd, args = body.get("cmd"), body.get("args")
    if not isinstance(cmd, str) or not isinstance(args, dict):
        raise CommandRejectedError("malformed command")
    counters.last_command_ctr = ctr
    counters.save()
    return cmd, args
