"""The C++ core and the Python reference node against PROTOCOL.md and the integration's decoder."""

from __future__ import annotations

from collections.abc import Callable
import json
import math
from pathlib import Path
import statistics

from cryptography.hazmat.primitives.asymmetric import rsa
from iotshield_node.privacy import (
    CLAMP,
    NoiseSource,
    PrivacyConfig,
    flip_rate,
    gaussian_sigma,
    privatize,
)
from iotshield_node.readings import Readings
from iotshield_node.telemetry import announce, encode_telemetry, fingerprint, seal_v1
import pytest

from custom_components.iotshield.keys import fingerprint as ha_fingerprint, public_key_pem
from custom_components.iotshield.protocol import Telemetry, V1Decoder, parse_status

from .node_builds import HostNode, host_node  # noqa: F401

# (name, readings as the C++ command line takes them, epsilon)
CASES = [
    ("calm", ("21.5", "45.25", "0.05", "320", "0", "0"), 0.5),
    ("fire", ("49.99", "20", "1", "19999.99", "1", "1"), 0.5),
    ("all_null", ("null", "null", "null", "null", "null", "null"), 0.5),
    ("cold_dark", ("0", "90", "0", "0", "0", "1"), 0.5),
    ("negative_zero", ("-0.001", "30", "0.0004", "0.001", "1", "0"), 0.5),
    ("no_privacy", ("22", "50", "0.1", "100", "0", "0"), 0.0),
]


def _opt(text: str) -> float | None:
    return None if text == "null" else float(text)


def _flag(text: str) -> bool | None:
    return None if text == "null" else text == "1"


def _readings(values: tuple[str, ...]) -> Readings:
    t, h, g, l, f, m = values  # noqa: E741
    return Readings(t=_opt(t), h=_opt(h), g=_opt(g), l=_opt(l), f=_flag(f), m=_flag(m))


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory, private_key: rsa.RSAPrivateKey) -> Path:
    """Write Home Assistant's public key where a node would keep it."""
    path = tmp_path_factory.mktemp("keys") / "ha_public.pem"
    path.write_text(public_key_pem(private_key))
    return path


@pytest.mark.parametrize(("name", "values", "epsilon"), CASES, ids=[c[0] for c in CASES])
def test_cpp_envelope_decodes_in_integration(
    host_node: HostNode,  # noqa: F811
    key_files: Path,
    private_key: rsa.RSAPrivateKey,
    name: str,
    values: tuple[str, ...],
    epsilon: float,
) -> None:
    """Every payload kind from the C++ core passes the integration's decoder unchanged."""
    timestamp = 0 if name == "cold_dark" else 1763900000
    plaintext, envelope = host_node.run(
        "seal", key_files, "kitchen", 7, timestamp, *values, epsilon, "1e-05", "-"
    )
    decoded = V1Decoder(private_key, "kitchen").decode(envelope.encode())
    expected = _readings(values)

    def rounded(value: float | None, decimals: int) -> float | None:
        return None if value is None else round(value + 0.0, decimals)

    assert isinstance(decoded, Telemetry)
    assert decoded.seq == 7
    assert decoded.timestamp == (timestamp or None)
    assert decoded.temperature == rounded(expected.t, 2)
    assert decoded.humidity == rounded(expected.h, 2)
    assert decoded.gas == rounded(expected.g, 3)
    assert decoded.light == rounded(expected.l, 2)
    assert decoded.flame == expected.f
    assert decoded.motion == expected.m
    assert (decoded.privacy is None) == (epsilon == 0)
    # The Python reference node writes the very same bytes.
    privacy = PrivacyConfig(epsilon=epsilon) if epsilon else None
    assert encode_telemetry("kitchen", 7, timestamp, expected, privacy).decode() == plaintext


def test_python_envelope_decodes_in_integration(private_key: rsa.RSAPrivateKey) -> None:
    """The reference node's envelope decodes too, and stays within one RSA block."""
    readings = _readings(("23.456", "51.5", "0.2", "12345.678", "1", "0"))
    plaintext = encode_telemetry("n" * 32, 2**32 - 1, 2**32 - 1, readings, PrivacyConfig())
    envelope = seal_v1(plaintext, private_key.public_key())
    decoded = V1Decoder(private_key, "n" * 32).decode(envelope)
    assert decoded.temperature == 23.46
    assert decoded.light == 12345.68
    with pytest.raises(ValueError, match="one RSA block carries 190"):
        seal_v1(b"x" * 191, private_key.public_key())


def test_cpp_core_rotates_its_home_assistant_key(
    host_node: HostNode,  # noqa: F811
    key_files: Path,
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """set_ha_key on a loaded key works, and a bad key leaves the old one in place.

    mbedTLS refuses to parse a key into a context that holds one; the node used to ignore
    that, store the new key anyway and lock itself out.
    """
    new = tmp_path / "new.pem"
    new.write_text(public_key_pem(other_private_key))
    back = tmp_path / "back.pem"
    back.write_text(public_key_pem(private_key))
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert host_node.run("rotate", key_files, new, bad, back) == [
        f"ok {ha_fingerprint(other_private_key)}",
        f"kept {ha_fingerprint(other_private_key)}",
        f"ok {ha_fingerprint(private_key)}",
    ]


def test_fingerprints_and_announce_agree(
    host_node: HostNode,  # noqa: F811
    key_files: Path,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """Both nodes announce the fingerprint the integration computes, in a form it reads."""
    expected = ha_fingerprint(private_key)
    assert host_node.run("fingerprint", key_files) == [expected]
    assert fingerprint(private_key.public_key()) == expected
    (cpp_announce,) = host_node.run("announce", key_files, "kitchen", "1.0.0", 5, 0.5)
    py_announce = json.dumps(
        announce("kitchen", "1.0.0", 5, PrivacyConfig(), private_key.public_key())
    )
    for text in (cpp_announce, py_announce):
        parsed = parse_status(text.encode())
        assert parsed is not None
        assert (parsed.online, parsed.firmware, parsed.interval) == (True, "1.0.0", 5)
        assert parsed.key_fingerprint == expected
        assert parsed.privacy is not None
        assert parsed.privacy.sigma["t"] == pytest.approx(0.969, abs=1e-3)
        assert parsed.privacy.sigma["l"] == pytest.approx(48.45, abs=0.01)
        assert parsed.privacy.motion_flip == pytest.approx(0.1192, abs=1e-4)
        assert parsed.privacy.gas_bound == 0.03
        doc = json.loads(text)
        assert doc["sensors"] == ["t", "h", "g", "f", "m", "l"]
        assert doc["privacy"]["motion"]["flip"] == pytest.approx(0.1192, abs=1e-4)
        assert doc["privacy"]["sigma"]["t"] == pytest.approx(0.969, abs=1e-3)


def test_sigma_formula() -> None:
    """σ = Δ·√(2 ln(1.25/δ))/ε with the documented defaults."""
    assert gaussian_sigma(1.0, 0.5, 1e-5) == pytest.approx(9.69, abs=0.01)
    config = PrivacyConfig()
    assert config.sigma("t") == pytest.approx(0.9690, abs=1e-4)
    assert config.sigma("h") == pytest.approx(2.4225, abs=1e-3)
    assert config.sigma("l") == pytest.approx(48.45, abs=0.01)
    assert flip_rate(2.0) == pytest.approx(0.1192, abs=1e-4)
    assert PrivacyConfig(epsilon=0).sigma("t") == 0.0
    assert PrivacyConfig(motion_epsilon=0).motion_flip == 0.0


SAMPLES = 20000

type Sampler = Callable[[str, float, int], list[float]]


def _cpp_sampler(node: HostNode) -> Sampler:
    return lambda sensor, value, seed: [
        float(x) for x in node.run("noise", sensor, value, SAMPLES, seed, 0.5, "1e-05")
    ]


def _py_sampler(sensor: str, value: float, seed: int) -> list[float]:
    noise = NoiseSource(seed)
    config = PrivacyConfig()
    base = {"t": None, "h": None, "g": None, "l": None, "f": None, "m": None}
    base[sensor] = bool(value) if sensor in "fm" else value
    readings = Readings(**base)  # type: ignore[arg-type]
    out = []
    for _ in range(SAMPLES):
        result = getattr(privatize(readings, config, noise), sensor)
        out.append(float(result))
    return out


@pytest.fixture(params=["cpp", "python"])
def sampler(request: pytest.FixtureRequest, host_node: HostNode) -> Sampler:  # noqa: F811
    """Draw privatized samples from the C++ core or the Python reference node."""
    return _cpp_sampler(host_node) if request.param == "cpp" else _py_sampler


@pytest.mark.parametrize(("sensor", "value"), [("t", 25.0), ("h", 55.0), ("l", 5000.0)])
def test_gaussian_noise_statistics(sampler: Sampler, sensor: str, value: float) -> None:
    """Far from the clamp range the noise has mean 0 and the formula's σ."""
    samples = sampler(sensor, value, 11)
    sigma = PrivacyConfig().sigma(sensor)
    mean = statistics.fmean(samples)
    assert abs(mean - value) < 4 * sigma / math.sqrt(SAMPLES)
    assert statistics.pstdev(samples) == pytest.approx(sigma, rel=0.03)


def test_gas_noise_is_bounded(sampler: Sampler) -> None:
    """Gas noise never exceeds its bound, is centred, and is not zero."""
    samples = sampler("g", 0.5, 12)
    assert max(abs(x - 0.5) for x in samples) <= 0.03 + 1e-12
    assert abs(statistics.fmean(samples) - 0.5) < 0.001
    assert statistics.pstdev(samples) > 0.01


def test_motion_randomized_response(sampler: Sampler) -> None:
    """The PIR bit flips at the documented rate, both ways."""
    flip = flip_rate(2.0)
    tolerance = 4 * math.sqrt(flip * (1 - flip) / SAMPLES)
    ones_flipped = 1 - statistics.fmean(sampler("m", 1, 13))
    zeros_flipped = statistics.fmean(sampler("m", 0, 14))
    assert abs(ones_flipped - flip) < tolerance
    assert abs(zeros_flipped - flip) < tolerance


def test_flame_is_never_perturbed(sampler: Sampler) -> None:
    """The flame bit is reported exactly."""
    assert set(sampler("f", 1, 15)) == {1.0}
    assert set(sampler("f", 0, 16)) == {0.0}


@pytest.mark.parametrize(("sensor", "value"), [("t", 49.5), ("h", 20.5), ("l", 0.0), ("g", 0.0)])
def test_noise_is_clamped(sampler: Sampler, sensor: str, value: float) -> None:
    """Noised values stay inside the node's sensor range and reach its edge."""
    low, high = CLAMP[sensor]
    samples = sampler(sensor, value, 17)
    assert min(samples) >= low
    assert max(samples) <= high
    assert low in samples or high in samples
