"""Build v1 telemetry envelopes the way a node does, for feeding real ciphertext to tests."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def telemetry(node_id: str = "kitchen", seq: int = 1, **readings: Any) -> dict[str, Any]:
    """Return a plaintext telemetry object with calm readings, overridden by `readings`."""
    values: dict[str, Any] = {"t": 21.5, "h": 45.0, "g": 0.05, "f": 0, "m": 0, "l": 320.0}
    values.update(readings)
    return {"n": node_id, "s": seq, "t": 1763900000, "r": values, "p": {"e": 0.5, "d": 1e-05}}


def plaintext_bytes(doc: dict[str, Any] | bytes) -> bytes:
    """Serialise telemetry compactly, as a node does; bytes pass through untouched."""
    if isinstance(doc, bytes):
        return doc
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def encrypt(public_key: rsa.RSAPublicKey, doc: dict[str, Any] | bytes) -> bytes:
    """Encrypt telemetry with RSA-OAEP/SHA-256 and frame it as a v1 envelope."""
    ciphertext = public_key.encrypt(plaintext_bytes(doc), OAEP)
    return envelope(ciphertext)


def envelope(ciphertext: bytes, version: int = 1) -> bytes:
    """Frame raw ciphertext as a v1 envelope."""
    text = base64.b64encode(ciphertext).decode()
    return json.dumps({"v": version, "ct": text}, separators=(",", ":")).encode()
