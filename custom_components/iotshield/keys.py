"""Home Assistant's RSA key pair for a node: generation, import checks and fingerprints.

Plain Python with no Home Assistant import, so it can be tested and reused on its own.
"""

from __future__ import annotations

from enum import StrEnum
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_KEY_BITS = 2048
GENERATED_KEY_BITS = 2048
PUBLIC_EXPONENT = 65537


class KeyProblem(StrEnum):
    """Why a PEM text cannot serve as Home Assistant's key (values are translation keys)."""

    INVALID = "invalid_key"
    ENCRYPTED = "key_encrypted"
    NOT_RSA = "not_rsa"
    TOO_SHORT = "key_too_short"


class KeyImportError(ValueError):
    """A PEM text was refused as Home Assistant's private key."""

    def __init__(self, reason: KeyProblem) -> None:
        """Keep the reason for the config flow to translate."""
        super().__init__(reason.value)
        self.reason = reason


def generate_private_key() -> rsa.RSAPrivateKey:
    """Make a new RSA-2048 key pair (slow: call it from an executor)."""
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=GENERATED_KEY_BITS)


def load_private_key(pem: str, *, stored: bool = False) -> rsa.RSAPrivateKey:
    """Parse and check a PEM private key (slow: call it from an executor).

    `stored`: Home Assistant's own key from its entry, checked when it was made or imported.
    """
    data = pem.strip().encode("utf-8", errors="replace")
    if not data.startswith(b"-----BEGIN"):
        raise KeyImportError(KeyProblem.INVALID)
    try:
        # The RSA consistency check takes tens of milliseconds and holds the GIL, so even in
        # the executor it stalls the event loop; a stored key was checked before it was stored.
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=stored
        )
    except TypeError as err:
        # cryptography raises TypeError when the PEM is password-protected.
        raise KeyImportError(KeyProblem.ENCRYPTED) from err
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyImportError(KeyProblem.INVALID) from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyImportError(KeyProblem.NOT_RSA)
    if key.key_size < MIN_KEY_BITS:
        raise KeyImportError(KeyProblem.TOO_SHORT)
    return key


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """Serialise a private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Return the SubjectPublicKeyInfo PEM that a node is flashed with."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Return SHA-256 over the DER SubjectPublicKeyInfo, as 64 lowercase hex digits."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def format_fingerprint(hex_digest: str) -> str:
    """Group a fingerprint in fours so a person can compare it by eye."""
    return " ".join(hex_digest[i : i + 4] for i in range(0, len(hex_digest), 4))
