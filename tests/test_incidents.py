"""The incident tracker alone: opening, escalation, hold time, acknowledgement and storage."""

from __future__ import annotations

import itertools

import pytest

from custom_components.iotshield.incidents import (
    DRILL_LEVEL,
    DRILL_SECONDS,
    Explanation,
    Incident,
    IncidentTracker,
    Source,
    Transition,
)
from custom_components.iotshield.severity import Level


def tracker(**kwargs: object) -> IncidentTracker:
    """Return a tracker with predictable incident ids."""
    ids = (f"inc{n}" for n in itertools.count(1))
    return IncidentTracker(new_id=lambda: next(ids), **kwargs)  # type: ignore[arg-type]


def test_opens_at_the_minimum_severity_only() -> None:
    """LOW readings do not open an incident by default; MEDIUM does, once."""
    t = tracker()
    assert t.observe(Level.LOW, ["temperature_low"], 0.0) is None
    change = t.observe(Level.MEDIUM, ["gas_medium"], 1.0)
    assert change is not None
    assert change.transition is Transition.OPENED
    assert change.previous is None
    assert change.incident.incident_id == "inc1"
    assert change.incident.rules == ("gas_medium",)
    assert t.observe(Level.MEDIUM, ["gas_medium"], 2.0) is None


def test_configurable_minimum() -> None:
    """A user who wants to hear about LOW readings gets incidents from them."""
    t = tracker(min_level=Level.LOW)
    change = t.observe(Level.LOW, ["humidity_low"], 0.0)
    assert change is not None
    assert change.transition is Transition.OPENED


def test_escalates_only_upwards() -> None:
    """A worse severity escalates with the previous one named; a milder one changes nothing."""
    t = tracker()
    t.observe(Level.MEDIUM, ["gas_medium"], 0.0)
    change = t.observe(Level.CRITICAL, ["fire"], 1.0)
    assert change is not None
    assert change.transition is Transition.ESCALATED
    assert change.previous is Level.MEDIUM
    assert change.incident.level is Level.CRITICAL
    assert t.observe(Level.HIGH, ["gas_high"], 2.0) is None
    assert t.incident is not None
    assert t.incident.level is Level.CRITICAL
    assert t.incident.current is Level.HIGH


def test_resolves_after_the_hold_time_of_calm() -> None:
    """Calm readings resolve the incident only once they have lasted the hold time."""
    t = tracker(hold_seconds=60)
    t.observe(Level.HIGH, ["gas_high"], 0.0)
    assert t.observe(Level.NORMAL, [], 10.0) is None
    assert t.observe(Level.LOW, ["motion_low"], 40.0) is None
    # A relapse restarts the hold time.
    assert t.observe(Level.MEDIUM, ["gas_medium"], 65.0) is None
    assert t.observe(Level.NORMAL, [], 70.0) is None
    assert t.observe(Level.NORMAL, [], 129.0) is None
    change = t.observe(Level.NORMAL, [], 130.0)
    assert change is not None
    assert change.transition is Transition.RESOLVED
    assert change.previous is Level.HIGH
    assert change.incident.resolved_at == 130.0
    assert t.incident is None
    # The next hazard is a new incident.
    change = t.observe(Level.MEDIUM, ["gas_medium"], 131.0)
    assert change is not None
    assert change.transition is Transition.OPENED
    assert change.incident.incident_id == "inc2"


def test_snapshots_do_not_change_with_later_readings() -> None:
    """An event's incident stays as it was when the event was made."""
    t = tracker()
    opened = t.observe(Level.MEDIUM, ["gas_medium"], 0.0)
    t.observe(Level.CRITICAL, ["fire"], 1.0)
    assert opened is not None
    assert opened.incident.level is Level.MEDIUM


def test_explain_only_the_open_incident() -> None:
    """An explanation for a resolved or unknown incident is dropped."""
    t = tracker(hold_seconds=0)
    text = Explanation("t", "e", "a", Source.LLM)
    assert t.explain("inc1", text) is None
    t.observe(Level.MEDIUM, ["gas_medium"], 0.0)
    assert t.explain("other", text) is None
    change = t.explain("inc1", text)
    assert change is not None
    assert change.transition is Transition.EXPLAINED
    assert change.incident.explanation == text
    t.observe(Level.NORMAL, [], 1.0)
    assert t.explain("inc1", text) is None


def test_acknowledge_silences_until_worse() -> None:
    """Acknowledging holds at the present severity; escalation lifts it."""
    t = tracker()
    assert t.acknowledge() is None
    t.observe(Level.MEDIUM, ["gas_medium"], 0.0)
    assert t.acknowledge("nope") is None
    change = t.acknowledge("inc1")
    assert change is not None
    assert change.transition is Transition.ACKNOWLEDGED
    assert change.incident.acknowledged
    assert t.acknowledge() is None  # already silenced
    t.observe(Level.CRITICAL, ["fire"], 1.0)
    assert t.incident is not None
    assert not t.incident.acknowledged


def test_round_trip_through_storage() -> None:
    """An open incident survives a restart as JSON-native data."""
    t = tracker()
    t.observe(Level.HIGH, ["gas_high"], 5.0)
    t.explain("inc1", Explanation("Gas", "High gas.", "Ventilate.", Source.RULES))
    t.acknowledge()
    stored = t.as_dict()
    assert stored is not None
    restored = tracker()
    assert restored.restore(stored)
    assert restored.incident == t.incident
    # The restored incident goes on: same severity is no news, calm resolves it.
    assert restored.observe(Level.HIGH, ["gas_high"], 6.0) is None


@pytest.mark.parametrize(
    "damaged",
    [
        None,
        {},
        {"incident_id": "x"},
        {**Incident("x", 0, Level.HIGH, Level.HIGH, ()).as_dict(), "level": "worst"},
    ],
)
def test_damaged_storage_is_ignored(damaged: dict[str, object] | None) -> None:
    """A missing or damaged stored incident leaves the tracker empty instead of failing."""
    t = tracker()
    assert not t.restore(damaged)
    assert t.incident is None


def test_a_drill_opens_only_when_nothing_is_open() -> None:
    """A drill is a high, test-flagged incident; never while a real one (or a drill) is open."""
    tracker = IncidentTracker(hold_seconds=0)
    change = tracker.start_drill(0.0)
    assert change is not None
    assert change.transition is Transition.OPENED
    assert change.incident.test is True
    assert change.incident.level is DRILL_LEVEL
    assert change.incident.status == "open"
    assert tracker.start_drill(1.0) is None
    # Calm readings neither escalate nor resolve it.
    assert tracker.observe(Level.NORMAL, (), 2.0) is None
    assert tracker.incident is not None
    assert tracker.incident.test
    ended = tracker.end_drill(3.0)
    assert ended is not None
    assert ended.transition is Transition.RESOLVED
    assert ended.incident.status == "resolved"
    assert tracker.end_drill(4.0) is None
    real = IncidentTracker()
    real.observe(Level.HIGH, ("gas_high",), 0.0)
    assert real.start_drill(1.0) is None
    assert real.end_drill(1.0) is None


def test_a_drill_is_due_to_end_at_a_hazard_or_after_its_time() -> None:
    """A hazard or the drill's time ends it; a later hazard opens a real incident."""
    tracker = IncidentTracker()
    tracker.start_drill(100.0)
    assert not tracker.drill_due(Level.LOW, 100.0 + DRILL_SECONDS - 1)
    assert tracker.drill_due(Level.NORMAL, 100.0 + DRILL_SECONDS)
    assert tracker.drill_due(Level.MEDIUM, 101.0)
    # Even a caller that forgets to end it first never escalates a drill into a hazard.
    change = tracker.observe(Level.CRITICAL, ("fire",), 102.0)
    assert change is not None
    assert change.transition is Transition.OPENED
    assert change.incident.test is False
    assert tracker.last_resolved is not None
    assert tracker.last_resolved.test


def test_the_test_flag_is_stored() -> None:
    """A stored drill comes back as a drill; old stored incidents are real ones."""
    tracker = IncidentTracker()
    tracker.start_drill(0.0)
    stored = tracker.as_dict()
    assert stored is not None
    assert stored["test"] is True
    again = IncidentTracker()
    assert again.restore(stored)
    assert again.incident is not None
    assert again.incident.test
    del stored["test"]
    old = IncidentTracker()
    assert old.restore(stored)
    assert old.incident is not None
    assert not old.incident.test
