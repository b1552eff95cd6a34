"""Counting and rate-limited reporting of rejected payloads.

Plain Python with no Home Assistant import.
"""

from __future__ import annotations

from collections import Counter

from .protocol import Rejection


class RejectionTracker:
    """Counts rejections by reason and decides when one is worth a log line."""

    def __init__(self, log_interval: float) -> None:
        """Log each reason at most once per `log_interval` seconds."""
        self._log_interval = log_interval
        self._counts: Counter[Rejection] = Counter()
        self._last_logged: dict[Rejection, float] = {}
        self.consecutive_decrypt_failures = 0

    def record(self, reason: Rejection, now: float) -> bool:
        """Count one rejection at monotonic time `now`; True when it should be logged."""
        self._counts[reason] += 1
        if reason is Rejection.DECRYPT_FAILED:
            self.consecutive_decrypt_failures += 1
        last = self._last_logged.get(reason)
        if last is not None and now - last < self._log_interval:
            return False
        self._last_logged[reason] = now
        return True

    def record_success(self) -> None:
        """Note a payload that decrypted, which ends any run of decryption failures."""
        self.consecutive_decrypt_failures = 0

    @property
    def total(self) -> int:
        """Return how many payloads were rejected for any reason."""
        return self._counts.total()

    def count(self, reason: Rejection) -> int:
        """Return how many payloads were rejected for one reason."""
        return self._counts[reason]

    def as_dict(self) -> dict[str, int]:
        """Return every reason with its count, zeros included, in a stable order."""
        return {reason.value: self._counts[reason] for reason in Rejection}


class Budget:
    """A token bucket: at most `rate` units a second on average, `burst` at once.

    Bounds how much expensive work (an RSA private-key operation, a signature check) one
    node's topic can cost, whoever publishes on it.
    """

    def __init__(self, rate: float, burst: float) -> None:
        """Start full."""
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Spend one unit at monotonic time `now`; False when the budget is used up."""
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
