"""Telemetry encoding and the v1 envelope (PROTOCOL.md §3–4)."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .privacy import PrivacyConfig
from .readings import Readings

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
OAEP_SHA256_OVERHEAD = 66
# Revision 1 pads every v2 plaintext to one length, so that its size says nothing (§12.4).
PAD_BYTES = 256


def _num(value: float | None, decimals: int) -> str:
    """Format a continuous reading as §4 asks (fixed decimals) or null."""
    return "null" if value is None else f"{value:.{decimals}f}"


def _flag(value: bool | None) -> str:
    """Format a binary reading as 0, 1 or null."""
    return "null" if value is None else ("1" if value else "0")


def encode_telemetry(
    node_id: str, seq: int, timestamp: int, readings: Readings, privacy: PrivacyConfig | None
) -> bytes:
    """Return the compact plaintext JSON exactly as the C++ core writes it."""
    body = (
        f'{{"n":{json.dumps(node_id)},"s":{seq},"t":{timestamp},'
        f'"r":{{"t":{_num(readings.t, 2)},"h":{_num(readings.h, 2)},"g":{_num(readings.g, 3)},'
        f'"f":{_flag(readings.f)},"m":{_flag(readings.m)},"l":{_num(readings.l, 2)}}}'
    )
    if privacy is not None and privacy.enabled:
        body += f',"p":{{"e":{privacy.epsilon:.4g},"d":{privacy.delta:.4g}}}'
    return (body + "}").encode()


def pad(plaintext: bytes, length: int = PAD_BYTES) -> bytes:
    """Append spaces up to `length` bytes; a longer plaintext is a bug and is never sent."""
    if len(plaintext) > length:
        raise ValueError(f"telemetry is {len(plaintext)} bytes; the padded length is {length}")
    return plaintext.ljust(length, b" ")


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Load Home Assistant's public key (PEM SubjectPublicKeyInfo)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("Home Assistant's key must be an RSA public key")
    return key


def seal_v1(plaintext: bytes, public_key: rsa.RSAPublicKey) -> bytes:
    """Encrypt one plaintext with RSA-OAEP/SHA-256 and frame it as a v1 envelope."""
    limit = public_key.key_size // 8 - OAEP_SHA256_OVERHEAD
    if len(plaintext) > limit:
        raise ValueError(f"telemetry is {len(plaintext)} bytes; one RSA block carries {limit}")
    ciphertext = public_key.encrypt(plaintext, OAEP)
    return b'{"v":1,"ct":"' + base64.b64encode(ciphertext) + b'"}'


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """Return SHA-256 over the DER SubjectPublicKeyInfo as 64 hex digits (§2)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return digest.finalize().hex()


def announce(
    node_id: str,
    firmware: str,
    interval: int,
    privacy: PrivacyConfig | None,
    public_key: rsa.RSAPublicKey,
    node_key: str | None = None,
) -> dict[str, Any]:
    """Return the retained announce object of §5 (v2 revision 1 when an identity key is given)."""
    doc: dict[str, Any] = {
        "state": "online",
        "node": node_id,
        "fw": firmware,
        "interval": interval,
        "sensors": ["t", "h", "g", "f", "m", "l"],
        "privacy": privacy.announce() if privacy is not None else None,
        "key_fp": fingerprint(public_key),
    }
    if node_key is not None:
        doc["proto"] = 2
        doc["rev"] = 1
        doc["node_key"] = node_key
    return doc
