"""Tests of rejection counting and log rate-limiting, without Home Assistant."""

from __future__ import annotations

from custom_components.iotshield.protocol import Rejection
from custom_components.iotshield.rejections import Budget, RejectionTracker


def test_counts_by_reason_and_logs_once_per_interval() -> None:
    """Every rejection counts; each reason is logged at most once per interval."""
    tracker = RejectionTracker(log_interval=600)
    assert tracker.record(Rejection.OVERSIZE, now=1000.0) is True
    assert tracker.record(Rejection.OVERSIZE, now=1100.0) is False
    assert tracker.record(Rejection.MALFORMED, now=1100.0) is True
    assert tracker.record(Rejection.OVERSIZE, now=1599.0) is False
    assert tracker.record(Rejection.OVERSIZE, now=1600.0) is True
    assert tracker.total == 5
    assert tracker.count(Rejection.OVERSIZE) == 4
    counts = tracker.as_dict()
    assert list(counts) == [reason.value for reason in Rejection]
    assert counts["malformed"] == 1
    assert counts["decrypt_failed"] == 0


def test_consecutive_decrypt_failures_reset_on_success() -> None:
    """Only an unbroken run of decryption failures suggests the keys disagree."""
    tracker = RejectionTracker(log_interval=600)
    for _ in range(3):
        tracker.record(Rejection.DECRYPT_FAILED, now=0.0)
    tracker.record(Rejection.OUT_OF_RANGE, now=0.0)
    assert tracker.consecutive_decrypt_failures == 3
    tracker.record_success()
    assert tracker.consecutive_decrypt_failures == 0
    assert tracker.count(Rejection.DECRYPT_FAILED) == 3


def test_a_budget_allows_a_burst_then_its_rate() -> None:
    """A token bucket: `burst` at once, then `rate` a second, never more than `burst` saved."""
    budget = Budget(rate=2.0, burst=3.0)
    assert [budget.take(100.0) for _ in range(4)] == [True, True, True, False]
    # Half a second later one unit has come back, and only one.
    assert [budget.take(100.5) for _ in range(2)] == [True, False]
    # A long pause refills to the burst, not beyond.
    assert [budget.take(1000.0) for _ in range(4)] == [True, True, True, False]
