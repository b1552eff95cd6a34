"""The IoTShield wire format v1, as specified in firmware/PROTOCOL.md.

Plain Python with no Home Assistant import: topics, the envelope, the compact telemetry
schema and every check a payload must pass before it may change an entity.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import json
import math
import re
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PROTOCOL_VERSION: Final = 1
# Anything larger cannot be a v1 envelope for any key we accept up to 4096 bits.
MAX_ENVELOPE_BYTES: Final = 1024
# OAEP with SHA-256 costs 2 * 32 + 2 bytes of the modulus.
OAEP_SHA256_OVERHEAD: Final = 66
MAX_STATUS_BYTES: Final = 2048
MAX_EPSILON: Final = 100.0
MAX_ANNOUNCED_INTERVAL: Final = 86_400
FINGERPRINT_HEX_DIGITS: Final = 64
MAX_NODE_KEY_CHARS: Final = 512
# The announced noise Home Assistant accounts for is bounded (§7.6): what these ε and δ
# limits imply with the default sensitivities of §7.1.
MIN_ACCOUNTED_EPSILON: Final = 0.1
MIN_ACCOUNTED_DELTA: Final = 1e-10
MAX_ACCOUNTED_DELTA: Final = 0.1
DEFAULT_SENSITIVITY: Final = {"t": 0.1, "h": 0.25, "g": 0.002, "l": 5.0}
MAX_MOTION_FLIP: Final = 0.5
SIGMA_ROUNDING: Final = 1.01
WILL_TOKEN_BYTES: Final = 16
_HEX_DIGITS: Final = frozenset("0123456789abcdef")

NODE_ID_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
TOPIC_PREFIX_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
UINT32_MAX: Final = 2**32 - 1

STATUS_ONLINE: Final = "online"
STATUS_OFFLINE: Final = "offline"

_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class Rejection(StrEnum):
    """Why a payload was refused; the values name counters and translations."""

    OVERSIZE = "oversize"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    DECRYPT_FAILED = "decrypt_failed"
    INVALID_JSON = "invalid_json"
    INVALID_SCHEMA = "invalid_schema"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    NODE_MISMATCH = "node_mismatch"
    OVERLOADED = "overloaded"
    UNKNOWN_SESSION = "unknown_session"
    REPLAYED = "replayed"
    BAD_SIGNATURE = "bad_signature"
    AUTH_FAILED = "auth_failed"
    DOWNGRADE = "downgrade"
    STALE_SESSION = "stale_session"
    UNAUTHENTICATED_STATUS = "unauthenticated_status"
    RATE_LIMITED = "rate_limited"


class PayloadRejected(ValueError):
    """A payload failed a check; it must not change any state."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        """Keep the counter name apart from the human detail."""
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Range:
    """The closed interval of values a reading may take."""

    low: float
    high: float


# Plausible physical limits, wider than any one sensor so that better sensors fit.
RANGES: Final[dict[str, Range]] = {
    "t": Range(-40.0, 125.0),
    "h": Range(0.0, 100.0),
    "g": Range(0.0, 1.0),
    "l": Range(0.0, 200_000.0),
}
CONTINUOUS_KEYS: Final = ("t", "h", "g", "l")
BINARY_KEYS: Final = ("f", "m")


@dataclass(frozen=True, slots=True)
class PrivacyParams:
    """The local differential-privacy parameters a node says it applied."""

    epsilon: float
    delta: float


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One validated reading of a node; None marks a sensor the node could not read."""

    node_id: str
    seq: int
    timestamp: int | None
    temperature: float | None
    humidity: float | None
    gas: float | None
    light: float | None
    flame: bool | None
    motion: bool | None
    privacy: PrivacyParams | None


@dataclass(frozen=True, slots=True)
class NodePrivacy:
    """The noise a node says it adds (PROTOCOL.md §7), for judging readings near thresholds."""

    epsilon: float
    delta: float
    sigma: dict[str, float]
    gas_bound: float
    motion_flip: float


@dataclass(frozen=True, slots=True)
class Announce:
    """What a node says about itself on its status topic."""

    online: bool
    firmware: str | None = None
    interval: int | None = None
    key_fingerprint: str | None = None
    privacy: NodePrivacy | None = None
    node_key: str | None = None
    # The will token a revision-1 node's `offline` carries (§12.2).
    will: bytes | None = None
    # 1 for a node of wire format v2 revision 1 (§12), else None.
    revision: int | None = None

    @property
    def informative(self) -> bool:
        """Say whether this is an announce object rather than a bare online/offline."""
        return any(
            v is not None for v in (self.firmware, self.interval, self.privacy, self.node_key)
        )


def data_topic(prefix: str, node_id: str) -> str:
    """Return the topic a node publishes telemetry on."""
    return f"{prefix}/{node_id}/sensors/data"


def legacy_data_topic(prefix: str) -> str:
    """Return the seed prototype's flat telemetry topic, shared by all nodes."""
    return f"{prefix}/sensors/data"


def command_topic(prefix: str, node_id: str) -> str:
    """Return the topic Home Assistant sends a node's commands on."""
    return f"{prefix}/{node_id}/control/commands"


def status_topic(prefix: str, node_id: str) -> str:
    """Return a node's retained status (announce and last will) topic."""
    return f"{prefix}/{node_id}/status"


def node_id_from_status_topic(topic: str, prefix: str) -> str | None:
    """Return the node id in `<prefix>/<node_id>/status`, or None if the topic is not one."""
    head = f"{prefix}/"
    if not topic.startswith(head) or not topic.endswith("/status"):
        return None
    node_id = topic[len(head) : -len("/status")]
    return node_id if NODE_ID_PATTERN.fullmatch(node_id) else None


def is_valid_node_id(node_id: str) -> bool:
    """Say whether a node id is allowed (it becomes a topic level and a unique id)."""
    return NODE_ID_PATTERN.fullmatch(node_id) is not None


def is_valid_topic_prefix(prefix: str) -> bool:
    """Say whether a prefix is a plain topic path without wildcards."""
    return TOPIC_PREFIX_PATTERN.fullmatch(prefix) is not None


def max_plaintext_bytes(key_bits: int) -> int:
    """Return how many plaintext bytes one RSA-OAEP-SHA256 block carries."""
    return key_bits // 8 - OAEP_SHA256_OVERHEAD


def _reject_constant(name: str) -> Any:
    """Refuse the NaN and Infinity literals Python's json would otherwise accept."""
    raise PayloadRejected(Rejection.NON_FINITE, f"literal {name}")


def loads_strict(data: bytes, reason: Rejection) -> Any:
    """Parse strict JSON, mapping every parse failure to one rejection reason."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PayloadRejected(reason, "not UTF-8 JSON") from err


def b64_member(value: Any, field: str) -> bytes:
    """Decode a base64 member, refusing anything but the canonical spelling (§3)."""
    if not isinstance(value, str):
        raise PayloadRejected(Rejection.MALFORMED, f"{field} is not a string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise PayloadRejected(Rejection.MALFORMED, f"{field} is not base64") from err
    # Only the canonical encoding counts, so one message has exactly one spelling.
    if base64.b64encode(raw).decode() != value:
        raise PayloadRejected(Rejection.MALFORMED, f"{field} is not canonical base64")
    return raw


def parse_envelope(payload: bytes, key_bytes: int) -> bytes:
    """Check a v1 envelope's framing and sizes and return the RSA ciphertext in it."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise PayloadRejected(Rejection.OVERSIZE, f"{len(payload)} bytes")
    envelope = loads_strict(payload, Rejection.MALFORMED)
    if not isinstance(envelope, dict):
        raise PayloadRejected(Rejection.MALFORMED, "envelope is not an object")
    version = envelope.get("v")
    if type(version) is not int:
        raise PayloadRejected(Rejection.MALFORMED, "envelope has no integer v")
    if version != PROTOCOL_VERSION:
        raise PayloadRejected(Rejection.UNSUPPORTED_VERSION, f"v={version}")
    ciphertext = b64_member(envelope.get("ct"), "ct")
    if len(ciphertext) < key_bytes:
        raise PayloadRejected(Rejection.TRUNCATED, f"{len(ciphertext)} of {key_bytes} bytes")
    if len(ciphertext) > key_bytes:
        raise PayloadRejected(Rejection.OVERSIZE, f"{len(ciphertext)} of {key_bytes} bytes")
    return ciphertext


def _finite(value: Any, field: str) -> float:
    """Check that a value is a JSON number (not a boolean) and finite."""
    if type(value) not in (int, float):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"{field} is not a number")
    try:
        number = float(value)
    except OverflowError:
        # JSON integers have no size limit; one beyond a float's range is no reading.
        raise PayloadRejected(Rejection.NON_FINITE, field) from None
    if not math.isfinite(number):
        raise PayloadRejected(Rejection.NON_FINITE, field)
    return number


def _number(value: Any, field: str) -> float | None:
    """Check one continuous reading: null, or a finite number within its range."""
    if value is None:
        return None
    number = _finite(value, field)
    bounds = RANGES[field]
    if not bounds.low <= number <= bounds.high:
        raise PayloadRejected(Rejection.OUT_OF_RANGE, f"{field}={number}")
    return number


def _flag(value: Any, field: str) -> bool | None:
    """Check one binary reading: null, 0 or 1."""
    if value is None:
        return None
    if type(value) is not int:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"{field} is not 0 or 1")
    if value not in (0, 1):
        raise PayloadRejected(Rejection.OUT_OF_RANGE, f"{field}={value}")
    return value == 1


def _uint32(value: Any, field: str) -> int:
    """Check an unsigned 32-bit integer field."""
    if type(value) is not int:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"{field} is not an integer")
    if not 0 <= value <= UINT32_MAX:
        raise PayloadRejected(Rejection.OUT_OF_RANGE, f"{field}={value}")
    return value


def _privacy(value: Any) -> PrivacyParams | None:
    """Check the optional privacy parameters: epsilon > 0 and 0 < delta < 1."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "p is not an object")
    epsilon = _finite(value.get("e"), "p.e")
    delta = _finite(value.get("d"), "p.d")
    if not 0 < epsilon <= MAX_EPSILON or not 0 < delta < 1:
        raise PayloadRejected(Rejection.OUT_OF_RANGE, f"p.e={epsilon} p.d={delta}")
    return PrivacyParams(epsilon, delta)


def parse_telemetry(plaintext: bytes, expected_node: str) -> Telemetry:
    """Validate decrypted telemetry JSON and return it as a typed reading."""
    doc = loads_strict(plaintext, Rejection.INVALID_JSON)
    if not isinstance(doc, dict):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "telemetry is not an object")
    node_id = doc.get("n")
    if not isinstance(node_id, str):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "n is not a string")
    if node_id != expected_node:
        raise PayloadRejected(Rejection.NODE_MISMATCH, f"n={node_id[:40]!r}")
    seq = _uint32(doc.get("s"), "s")
    raw_time = doc.get("t")
    # 0 or null: the node has no wall clock yet (no NTP sync).
    timestamp = None if raw_time is None else (_uint32(raw_time, "t") or None)
    readings = doc.get("r")
    if not isinstance(readings, dict):
        raise PayloadRejected(Rejection.INVALID_SCHEMA, "r is not an object")
    missing = [key for key in (*CONTINUOUS_KEYS, *BINARY_KEYS) if key not in readings]
    if missing:
        raise PayloadRejected(Rejection.INVALID_SCHEMA, f"r lacks {','.join(missing)}")
    return Telemetry(
        node_id=node_id,
        seq=seq,
        timestamp=timestamp,
        temperature=_number(readings["t"], "t"),
        humidity=_number(readings["h"], "h"),
        gas=_number(readings["g"], "g"),
        light=_number(readings["l"], "l"),
        flame=_flag(readings["f"], "f"),
        motion=_flag(readings["m"], "m"),
        privacy=_privacy(doc.get("p")),
    )


class V1Decoder:
    """Decrypts and validates v1 telemetry for one node with Home Assistant's private key."""

    def __init__(self, private_key: rsa.RSAPrivateKey, node_id: str) -> None:
        """Bind the decoder to the key and the node it serves."""
        self._key = private_key
        self._key_bytes = private_key.key_size // 8
        self.node_id = node_id

    def decode(self, payload: bytes, may_decrypt: Callable[[], bool] = lambda: True) -> Telemetry:
        """Turn an envelope into a validated reading or raise PayloadRejected (CPU-bound).

        `may_decrypt` is asked before the RSA operation, once the envelope is well formed.
        """
        ciphertext = parse_envelope(payload, self._key_bytes)
        if not may_decrypt():
            raise PayloadRejected(Rejection.RATE_LIMITED, "RSA decryptions")
        try:
            plaintext = self._key.decrypt(ciphertext, _OAEP)
        except ValueError as err:
            raise PayloadRejected(Rejection.DECRYPT_FAILED, "OAEP decryption failed") from err
        return parse_telemetry(plaintext, self.node_id)

    def decode_batch(
        self, payloads: list[bytes], may_decrypt: Callable[[], bool] = lambda: True
    ) -> list[Telemetry | PayloadRejected]:
        """Decode several envelopes in one executor hop, keeping their order."""
        results: list[Telemetry | PayloadRejected] = []
        for payload in payloads:
            try:
                results.append(self.decode(payload, may_decrypt))
            except PayloadRejected as err:
                results.append(err)
        return results


def _finite_or(value: Any, default: float) -> float:
    """Return a finite non-negative number from an announce, or the default."""
    if type(value) not in (int, float):
        return default
    try:
        number = float(value)
    except OverflowError:
        # A 400-digit integer is not a number any sensor announces.
        return default
    return number if math.isfinite(number) and number >= 0 else default


def max_accounted_sigma(key: str, epsilon: float, delta: float) -> float:
    """Return the most noise Home Assistant accounts for on one sensor (§7.6)."""
    epsilon = max(epsilon, MIN_ACCOUNTED_EPSILON)
    delta = min(max(delta, MIN_ACCOUNTED_DELTA), MAX_ACCOUNTED_DELTA)
    sigma = DEFAULT_SENSITIVITY[key] * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    # Announces round σ to four significant digits, which may round it up.
    return sigma * SIGMA_ROUNDING


def parse_privacy(doc: Any) -> NodePrivacy | None:
    """Read the announce's privacy object leniently: what is malformed is left out."""
    if not isinstance(doc, dict):
        return None
    sigma_doc = doc.get("sigma")
    epsilon = _finite_or(doc.get("e"), 0.0)
    delta = _finite_or(doc.get("d"), 0.0)
    # Never more noise than ε and δ imply: an absurd σ would blind hysteresis and detector.
    sigma = (
        {
            key: min(_finite_or(sigma_doc.get(key), 0.0), max_accounted_sigma(key, epsilon, delta))
            for key in CONTINUOUS_KEYS
            if key in sigma_doc
        }
        if isinstance(sigma_doc, dict)
        else {}
    )
    motion = doc.get("motion")
    return NodePrivacy(
        epsilon=epsilon,
        delta=delta,
        sigma=sigma,
        gas_bound=_finite_or(doc.get("gas_bound"), 0.0),
        motion_flip=min(
            _finite_or(motion.get("flip") if isinstance(motion, dict) else None, 0.0),
            MAX_MOTION_FLIP,
        ),
    )


def _fingerprint(value: Any) -> str | None:
    """Return an announced key fingerprint if it is 64 hex digits, else None."""
    if not isinstance(value, str) or len(value) != FINGERPRINT_HEX_DIGITS:
        return None
    lowered = value.lower()
    return lowered if set(lowered) <= _HEX_DIGITS else None


def _will_token(value: Any) -> bytes | None:
    """Return the will token of a revision-1 node's last will, if well formed."""
    if not isinstance(value, str) or len(value) > 2 * WILL_TOKEN_BYTES:
        return None
    try:
        token = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return token if len(token) == WILL_TOKEN_BYTES else None


def parse_status(payload: bytes) -> Announce | None:
    """Read a status message: `online`, `offline` or an announce object; None if neither."""
    if len(payload) > MAX_STATUS_BYTES:
        return None
    text = payload.decode("utf-8", errors="replace").strip()
    if text == STATUS_ONLINE:
        return Announce(online=True)
    if text == STATUS_OFFLINE:
        return Announce(online=False)
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError, PayloadRejected):
        return None
    if not isinstance(doc, dict) or doc.get("state") not in (STATUS_ONLINE, STATUS_OFFLINE):
        return None
    firmware = doc.get("fw")
    interval = doc.get("interval")
    key_fp = doc.get("key_fp")
    return Announce(
        online=doc["state"] == STATUS_ONLINE,
        firmware=firmware[:32] if isinstance(firmware, str) else None,
        interval=(
            interval if type(interval) is int and 1 <= interval <= MAX_ANNOUNCED_INTERVAL else None
        ),
        key_fingerprint=_fingerprint(key_fp),
        privacy=parse_privacy(doc.get("privacy")),
        node_key=node_key
        if isinstance(node_key := doc.get("node_key"), str) and len(node_key) < MAX_NODE_KEY_CHARS
        else None,
        will=_will_token(doc.get("will")),
        revision=1 if doc.get("rev") == 1 and type(doc.get("rev")) is int else None,
    )
