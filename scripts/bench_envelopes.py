"""Per-message cost of wire formats v1 and v2 in the integration's decoder, on one core.

Prints a Markdown table. Run with the oldest lane's Python from the repository root:

    .venv/oldest/bin/python scripts/bench_envelopes.py [--seconds 2]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
import platform
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "firmware" / "reference_node")]

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from iotshield_node.readings import Readings  # noqa: E402
from iotshield_node.telemetry import OAEP, encode_telemetry, seal_v1  # noqa: E402
from iotshield_node.v2 import StoredCounters, V2Sender, node_key_b64  # noqa: E402

from custom_components.iotshield.keys import generate_private_key  # noqa: E402
from custom_components.iotshield.protocol import V1Decoder  # noqa: E402
from custom_components.iotshield.protocol_v2 import (  # noqa: E402
    DataMessage,
    SessionMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
)


def measure(operation: Callable[[int], object], seconds: float) -> float:
    """Return the mean seconds per call of operation(i), running for about `seconds`."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            operation(calls)
            calls += 1
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args(argv)

    ha_key = generate_private_key()
    identity = ec.generate_private_key(ec.SECP256R1())
    readings = Readings(21.5, 45.0, 0.05, 300.0, False, True)
    plaintext = encode_telemetry("kitchen", 1, 1763900000, readings, None)

    v1_decoder = V1Decoder(ha_key, "kitchen")
    v1_envelope = seal_v1(plaintext, ha_key.public_key())
    raw_rsa = ha_key.public_key().encrypt(b"x" * 32, OAEP)

    sender = V2Sender("kitchen", identity, ha_key.public_key(), StoredCounters(None))
    node_key = load_node_key(node_key_b64(identity))
    receiver = V2Receiver("kitchen", node_key, [ha_key], V2State())
    sender.challenge = receiver.issue_challenge()
    session_payload = sender.open_session()
    session_msg = parse_v2_envelope(session_payload)
    assert isinstance(session_msg, SessionMessage)
    receiver.accept_session(session_msg, receiver.verify_session(session_msg))
    # Enough distinct data messages that the counter check passes on every call.
    data_messages = [sender.seal(plaintext) for _ in range(200_000 if args.seconds >= 1 else 2_000)]
    aes = AESGCM(b"k" * 32)
    aes_ct = aes.encrypt(b"\0" * 12, plaintext, b"aad")

    def v2_data(i: int) -> object:
        msg = parse_v2_envelope(data_messages[i % len(data_messages)])
        assert isinstance(msg, DataMessage)
        if msg.ctr <= receiver.state.current.max_ctr:  # type: ignore[union-attr]
            receiver.state.current.max_ctr = msg.ctr - 1  # type: ignore[union-attr]
        return receiver.open_data(msg)

    rows = [
        (
            "raw RSA-2048 OAEP decrypt",
            measure(lambda _: ha_key.decrypt(raw_rsa, OAEP), args.seconds),
        ),
        (
            "v1 message (parse, RSA-OAEP decrypt, validate)",
            measure(lambda _: v1_decoder.decode(v1_envelope), args.seconds),
        ),
        (
            "raw AES-256-GCM decrypt",
            measure(lambda _: aes.decrypt(b"\0" * 12, aes_ct, b"aad"), args.seconds),
        ),
        ("v2 data message (parse, counter, AES-GCM, validate)", measure(v2_data, args.seconds)),
        (
            "v2 session message (ECDSA verify, RSA-OAEP unwrap)",
            measure(lambda _: receiver.verify_session(session_msg), args.seconds),
        ),
    ]
    v1 = rows[1][1]
    v2 = rows[3][1]
    machine = platform.processor() or platform.machine()
    print(f"Envelope cost per message, one core ({machine}, Python {platform.python_version()})")
    print()
    print("| operation | µs per message | messages/s |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.1f} | {1 / seconds:,.0f} |")
    print()
    print(f"v2 data costs {v2 / v1:.1%} of a v1 message ({v1 / v2:.0f}× cheaper).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
