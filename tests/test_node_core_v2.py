"""Wire format v2 across implementations: C++ core ↔ Python reference node ↔ integration."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from iotshield_node.v2 import load_or_create_identity, node_key_b64
import pytest

from custom_components.iotshield.keys import public_key_pem
from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    SessionMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
    sign_command,
)

from .node_builds import HostNode, host_node  # noqa: F401

READINGS = ("22.5", "40", "0.125", "250.5", "1", "0")


@pytest.fixture
def ha_key_file(tmp_path: Path, private_key: rsa.RSAPrivateKey) -> Path:
    """Write Home Assistant's public key as a node stores it."""
    path = tmp_path / "ha_public.pem"
    path.write_text(public_key_pem(private_key))
    return path


def _receive(receiver: V2Receiver, lines: list[str]) -> list[Telemetry]:
    """Feed a session message and data messages to Home Assistant's side."""
    readings = []
    for line in lines:
        msg = parse_v2_envelope(line.encode())
        if isinstance(msg, SessionMessage):
            receiver.check_session_fresh(msg)
            receiver.accept_session(msg, receiver.verify_session(msg))
        else:
            readings.append(receiver.open_data(msg))
    return readings


def test_cpp_sessions_and_data_are_accepted(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """The C++ core's identity, session and data messages pass the integration's checks."""
    identity = tmp_path / "identity.pem"
    (node_key,) = host_node.run("identity-new", identity)
    lines = host_node.run("v2", ha_key_file, identity, "kitchen", 5, 3, *READINGS)
    receiver = V2Receiver("kitchen", load_node_key(node_key), [private_key], V2State())
    readings = _receive(receiver, lines)
    assert [r.seq for r in readings] == [1, 2, 3]
    assert (readings[0].temperature, readings[0].gas, readings[0].flame) == (22.5, 0.125, True)
    with pytest.raises(PayloadRejected) as info:
        _receive(receiver, lines[-1:])
    assert info.value.reason is Rejection.REPLAYED
    # The Python reference node reads the identity file the C++ core wrote, and agrees on it.
    assert node_key_b64(load_or_create_identity(identity)) == node_key


def test_python_identity_drives_cpp_core(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """A key file made by the reference node works in the C++ core: one identity format."""
    path = tmp_path / "python-identity.pem"
    identity = load_or_create_identity(path)
    lines = host_node.run("v2", ha_key_file, path, "kitchen", 9, 1, *READINGS)
    receiver = V2Receiver(
        "kitchen", load_node_key(node_key_b64(identity)), [private_key], V2State()
    )
    (reading,) = _receive(receiver, lines)
    assert reading.light == 250.5
    other = V2Receiver(
        "kitchen",
        load_node_key(node_key_b64(load_or_create_identity(tmp_path / "other.pem"))),
        [private_key],
        V2State(),
    )
    with pytest.raises(PayloadRejected) as info:
        _receive(other, lines[:1])
    assert info.value.reason is Rejection.BAD_SIGNATURE


def test_cpp_core_verifies_commands(
    host_node: HostNode,  # noqa: F811
    ha_key_file: Path,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
) -> None:
    """The firmware runs only commands Home Assistant signed, for it, with a new counter."""
    new_key = base64.b64encode(b"\x30\x82").decode()
    good = [
        (
            sign_command(private_key, "kitchen", 5, "set_interval", {"interval": 30}),
            "set_interval 5 30",
        ),
        (
            sign_command(private_key, "kitchen", 6, "set_epsilon", {"epsilon": 0.25}),
            "set_epsilon 6 0",
        ),
        (sign_command(private_key, "kitchen", 7, "set_ha_key", {"key": new_key}), "set_ha_key 7 0"),
    ]
    for message, expected in good:
        (line,) = host_node.run("verify-command", ha_key_file, "kitchen", 4, stdin=message)
        assert line.startswith(f"ok {expected}")
    (line,) = host_node.run("verify-command", ha_key_file, "kitchen", 0, stdin=good[1][0])
    assert line.split()[4] == "0.25"
    (line,) = host_node.run("verify-command", ha_key_file, "kitchen", 0, stdin=good[2][0])
    assert line.split()[5] == new_key
    signed = sign_command(private_key, "kitchen", 5, "reboot", {})
    rejected = {
        "replayed": (signed, 5),
        "bad_signature": (sign_command(other_private_key, "kitchen", 50, "reboot", {}), 0),
        "other_node": (sign_command(private_key, "garage", 50, "reboot", {}), 0),
        "unreadable": (b'{"cmd":"reboot"}', 0),
    }
    tampered = signed.replace(b"reboot", b"rebooT")
    for reason, (message, last) in {**rejected, "tampered": (tampered, 0)}.items():
        (line,) = host_node.run(
            "verify-command", ha_key_file, "kitchen", last, stdin=message, expect=3
        )
        assert line == f"rejected {'bad_signature' if reason == 'tampered' else reason}"
