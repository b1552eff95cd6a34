"""Tests of key generation, import checks and fingerprints, without Home Assistant."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
import pytest

from custom_components.iotshield.keys import (
    KeyImportError,
    KeyProblem,
    fingerprint,
    format_fingerprint,
    load_private_key,
    private_key_pem,
    public_key_pem,
)


def _pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    encryption: serialization.KeySerializationEncryption | None = None,
) -> str:
    """Serialise a private key the way users' tools do."""
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
    ).decode()


def test_generated_key_round_trips(private_key: rsa.RSAPrivateKey) -> None:
    """A generated key is RSA-2048 and survives storage as PEM."""
    assert private_key.key_size == 2048
    assert private_key.public_key().public_numbers().e == 65537
    loaded = load_private_key(private_key_pem(private_key))
    assert fingerprint(loaded) == fingerprint(private_key)


def test_imports_seed_style_pkcs1_key(private_key: rsa.RSAPrivateKey) -> None:
    """The seed prototype's `BEGIN RSA PRIVATE KEY` files import, with whitespace around."""
    pem = _pem(private_key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert fingerprint(load_private_key(f"\n  {pem}\n")) == fingerprint(private_key)


def test_accepts_longer_keys() -> None:
    """Keys longer than 2048 bits are fine."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    assert load_private_key(_pem(key)).key_size == 3072


@pytest.mark.parametrize(
    ("make_pem", "problem"),
    [
        (lambda: "", KeyProblem.INVALID),
        (lambda: "hello", KeyProblem.INVALID),
        (
            lambda: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            KeyProblem.INVALID,
        ),
        (
            lambda: public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            KeyProblem.INVALID,
        ),
        (
            lambda: _pem(
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                encryption=serialization.BestAvailableEncryption(b"secret"),
            ),
            KeyProblem.ENCRYPTED,
        ),
        (lambda: _pem(ec.generate_private_key(ec.SECP256R1())), KeyProblem.NOT_RSA),
        (lambda: _pem(ed25519.Ed25519PrivateKey.generate()), KeyProblem.NOT_RSA),
        (
            lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            KeyProblem.TOO_SHORT,
        ),
    ],
)
def test_refused_keys(make_pem: object, problem: KeyProblem) -> None:
    """Every unusable key is refused with a reason the config flow can translate."""
    assert callable(make_pem)
    with pytest.raises(KeyImportError) as info:
        load_private_key(make_pem())
    assert info.value.reason is problem


def test_fingerprint_matches_openssl(private_key: rsa.RSAPrivateKey, tmp_path: object) -> None:
    """The fingerprint is what PROTOCOL.md's openssl command prints."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is installed by scripts/setup"
    der = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "DER"],
        input=public_key_pem(private_key).encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert fingerprint(private_key) == hashlib.sha256(der).hexdigest()
    assert len(fingerprint(private_key)) == 64
    grouped = format_fingerprint(fingerprint(private_key))
    assert grouped.replace(" ", "") == fingerprint(private_key)
    assert len(grouped.split(" ")) == 16
