"""The node's privacy layer (PROTOCOL.md §7): Gaussian noise, bounded gas noise, RR for motion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import math
import random
from typing import Any

from .readings import Readings

CONTINUOUS = ("t", "h", "g", "l")
DEFAULT_SENSITIVITY: Mapping[str, float] = {"t": 0.1, "h": 0.25, "g": 0.002, "l": 5.0}
# What the node's sensors can report (DHT11, calibrated MQ-2, LDR); noise never leaves these.
CLAMP: Mapping[str, tuple[float, float]] = {
    "t": (0.0, 50.0),
    "h": (20.0, 90.0),
    "g": (0.0, 1.0),
    "l": (0.0, 20000.0),
}


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float) -> float:
    """Return σ = Δ·√(2 ln(1.25/δ))/ε of the Gaussian mechanism."""
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def flip_rate(epsilon: float) -> float:
    """Return the randomized-response flip probability 1/(1+e^ε)."""
    return 1.0 / (1.0 + math.exp(epsilon))


@dataclass(frozen=True)
class PrivacyConfig:
    """Privacy parameters; epsilon = 0 switches continuous noise off, motion_epsilon = 0 RR off."""

    epsilon: float = 0.5
    delta: float = 1e-5
    sensitivity: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SENSITIVITY))
    gas_bound: float = 0.03
    motion_epsilon: float = 2.0

    @property
    def enabled(self) -> bool:
        """Say whether continuous noise is applied."""
        return self.epsilon > 0

    def sigma(self, key: str) -> float:
        """Return σ for one continuous sensor (0 when noise is off)."""
        if not self.enabled:
            return 0.0
        return gaussian_sigma(self.sensitivity[key], self.epsilon, self.delta)

    @property
    def motion_flip(self) -> float:
        """Return the motion flip rate (0 when randomized response is off)."""
        return flip_rate(self.motion_epsilon) if self.motion_epsilon > 0 else 0.0

    def announce(self) -> dict[str, Any] | None:
        """Describe the layer for the announce message (§5), or None without noise."""
        if not self.enabled and self.motion_epsilon <= 0:
            return None
        return {
            "mech": "gaussian",
            "e": self.epsilon,
            "d": self.delta,
            "sens": {key: self.sensitivity[key] for key in CONTINUOUS},
            "sigma": {key: float(f"{self.sigma(key):.4g}") for key in CONTINUOUS},
            "gas_bound": self.gas_bound,
            "motion": {
                "mech": "rr",
                "e": self.motion_epsilon,
                "flip": float(f"{self.motion_flip:.4g}"),
            },
            "flame": "none",
        }


class NoiseSource:
    """Uniform and Gaussian samples; cryptographically secure unless seeded for simulation."""

    def __init__(self, seed: int | None = None) -> None:
        """Use the OS's CSPRNG, or a seeded generator for reproducible simulations."""
        # A seeded generator is for simulations only (§7.1); a real node uses the OS's CSPRNG.
        self._rng: random.Random = (
            random.SystemRandom() if seed is None else random.Random(seed)  # noqa: S311
        )

    def uniform(self) -> float:
        """Return a uniform number in (0, 1] with 53 random bits."""
        return (self._rng.getrandbits(53) + 1) / 2.0**53

    def gauss(self) -> float:
        """Return one N(0, 1) sample by the Box–Muller transform."""
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _clamp(key: str, value: float) -> float:
    """Keep a value inside the node's sensor range."""
    low, high = CLAMP[key]
    return min(max(value, low), high)


def privatize(readings: Readings, config: PrivacyConfig, noise: NoiseSource) -> Readings:
    """Apply §7.1–7.5 to one set of readings; unread sensors (None) stay None."""
    values: dict[str, Any] = {}
    for key in CONTINUOUS:
        value = getattr(readings, key)
        if value is None:
            values[key] = None
            continue
        delta = noise.gauss() * config.sigma(key)
        if key == "g":
            delta = min(max(delta, -config.gas_bound), config.gas_bound)
        values[key] = _clamp(key, value + delta)
    motion = readings.m
    if motion is not None and config.motion_flip > 0 and noise.uniform() <= config.motion_flip:
        motion = not motion
    return Readings(f=readings.f, m=motion, **values)
