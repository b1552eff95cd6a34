"""Every number a node or attacker sends is checked before arithmetic: no parser ever raises."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings, strategies as st

from custom_components.iotshield.protocol import (
    PayloadRejected,
    parse_privacy,
    parse_status,
    parse_telemetry,
)
from custom_components.iotshield.protocol_v2 import parse_session_info, parse_v2_envelope

# Numbers as JSON carries them: huge integers (no size limit in JSON), floats at the edges,
# booleans that Python counts as integers, and strings that look like numbers.
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(max_value=-(10**300), min_value=-(10**400)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 2**32, 2**64, 1e308, -1e308, 5e-324, True, False]),
    st.sampled_from(["1", "1e999", "NaN", ""]),
)
VALUES = st.recursive(
    st.one_of(st.none(), NUMBERS, st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
READING_KEYS = ("t", "h", "g", "l", "f", "m")
STATUS_KEYS = ("state", "fw", "interval", "key_fp", "node_key", "rev", "proto", "will")
PRIVACY_KEYS = ("e", "d", "sigma", "gas_bound", "motion")
SESSION_KEYS = ("ch", "fw", "interval", "privacy", "key_fp", "will", "pad")


def _doc(keys: tuple[str, ...], fixed: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of `keys` set to hostile values, on top of `fixed`."""
    return st.fixed_dictionaries(
        fixed, optional={key: st.one_of(NUMBERS, VALUES) for key in keys if key not in fixed}
    )


def _raw(doc: dict[str, Any]) -> bytes:
    """Encode as JSON; Python writes huge integers in full, as an attacker would."""
    return json.dumps(doc, allow_nan=False).encode()


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "n": st.just("kitchen"),
            "s": st.one_of(st.just(1), NUMBERS),
            "t": st.one_of(st.just(1763900000), NUMBERS, st.none()),
            "r": st.fixed_dictionaries({key: st.one_of(NUMBERS, VALUES) for key in READING_KEYS}),
        },
        optional={"p": st.one_of(VALUES, _doc(("e", "d"), {}))},
    )
)
def test_telemetry_refuses_or_reads_finite_numbers(doc: dict[str, Any]) -> None:
    """Telemetry is a typed reading of finite values in range, or a counted rejection."""
    try:
        telemetry = parse_telemetry(_raw(doc), "kitchen")
    except PayloadRejected:
        return
    for value in (telemetry.temperature, telemetry.humidity, telemetry.gas, telemetry.light):
        assert value is None or math.isfinite(value)


@settings(max_examples=300, deadline=None)
@given(
    _doc(STATUS_KEYS, {"state": st.sampled_from(["online", "offline"])}),
    _doc(PRIVACY_KEYS, {}),
)
def test_status_and_announced_privacy_never_raise(
    doc: dict[str, Any], privacy: dict[str, Any]
) -> None:
    """A status message is read leniently; whatever survives is finite and bounded."""
    announce = parse_status(_raw({**doc, "privacy": privacy}))
    if announce is None:
        # Too long to be a status message: refused before it is parsed.
        return
    if announce.interval is not None:
        assert 1 <= announce.interval <= 86400 * 7
    if announce.privacy is not None:
        read = announce.privacy
        numbers = [read.epsilon, read.delta, read.gas_bound, read.motion_flip]
        assert all(math.isfinite(n) and n >= 0 for n in [*numbers, *read.sigma.values()])


@settings(max_examples=300, deadline=None)
@given(_doc(PRIVACY_KEYS, {}))
def test_privacy_alone_never_raises(doc: dict[str, Any]) -> None:
    """The privacy object of an announce or a session, with any numbers in it."""
    read = parse_privacy(json.loads(_raw(doc)))
    assert read is not None
    assert math.isfinite(read.epsilon)


@settings(max_examples=300, deadline=None)
@given(_doc(SESSION_KEYS, {}))
def test_session_info_refuses_or_reads(doc: dict[str, Any]) -> None:
    """Signed session information with hostile numbers is read or refused, never raises."""
    try:
        info = parse_session_info(_raw(doc))
    except PayloadRejected:
        return
    assert info.interval >= 1


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"v": st.just(2)},
        optional={"sid": NUMBERS, "ctr": NUMBERS, "ct": VALUES, "ek": VALUES, "sig": VALUES},
    )
)
def test_v2_envelopes_refuse_or_read(doc: dict[str, Any]) -> None:
    """A v2 envelope with any numbers for its ids is parsed or refused, never raises."""
    try:
        parse_v2_envelope(_raw(doc))
    except PayloadRejected:
        return
