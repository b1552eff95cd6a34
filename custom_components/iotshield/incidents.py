"""Incidents: a hazard from the moment it reaches the minimum severity until it has calmed down.

Plain Python with no Home Assistant import. The tracker turns the stream of assessed severities
into a few transitions (opened, escalated, explained, acknowledged, resolved) so that a user is
alerted once per incident, again only when it gets worse, and told when it is over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final
import uuid

from .severity import Level

DEFAULT_MIN_LEVEL: Final = Level.MEDIUM
DEFAULT_HOLD_SECONDS: Final = 300
# A drill (the Test alarm) ends when acknowledged, when a real hazard starts, or after this long.
DRILL_SECONDS: Final = 300
DRILL_LEVEL: Final = Level.HIGH
DRILL_RULE: Final = "test_alarm"


class Transition(StrEnum):
    """What happened to an incident (the suffix of its `iotshield_incident_*` event)."""

    OPENED = "opened"
    ESCALATED = "escalated"
    EXPLAINED = "explained"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Source(StrEnum):
    """Who wrote an explanation."""

    RULES = "rules"
    LLM = "llm"


@dataclass(frozen=True, slots=True)
class Explanation:
    """What an incident means and what to do, in a title and two short texts."""

    title: str
    explanation: str
    suggested_action: str
    source: Source

    def as_dict(self) -> dict[str, str]:
        """Return the JSON form used in storage, events and service responses."""
        return {
            "title": self.title,
            "explanation": self.explanation,
            "suggested_action": self.suggested_action,
            "source": self.source.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Rebuild an explanation from its stored form."""
        return cls(
            str(data["title"]),
            str(data["explanation"]),
            str(data["suggested_action"]),
            Source(data["source"]),
        )


@dataclass(slots=True)
class Incident:
    """One open hazard of a node."""

    incident_id: str
    opened_at: float
    # The highest severity reached: an incident never de-escalates, it resolves.
    level: Level
    current: Level
    rules: tuple[str, ...]
    calm_since: float | None = None
    acknowledged_level: Level | None = None
    explanation: Explanation | None = None
    resolved_at: float | None = None
    # A drill started by the user (Test alarm), never a hazard.
    test: bool = False

    @property
    def acknowledged(self) -> bool:
        """Say whether the user silenced the incident at its present severity."""
        return self.acknowledged_level is not None and self.acknowledged_level >= self.level

    @property
    def status(self) -> str:
        """Return "open", "acknowledged" or "resolved"."""
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged else "open"

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON-native form kept in the node's store."""
        return {
            "incident_id": self.incident_id,
            "opened_at": self.opened_at,
            "level": self.level.label,
            "current": self.current.label,
            "rules": list(self.rules),
            "calm_since": self.calm_since,
            "acknowledged_level": None
            if self.acknowledged_level is None
            else self.acknowledged_level.label,
            "explanation": None if self.explanation is None else self.explanation.as_dict(),
            "test": self.test,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        """Rebuild an incident from its stored form; raises KeyError/ValueError when damaged."""
        acknowledged = data.get("acknowledged_level")
        explanation = data.get("explanation")
        calm_since = data.get("calm_since")
        return cls(
            incident_id=str(data["incident_id"]),
            opened_at=float(data["opened_at"]),
            level=Level[str(data["level"]).upper()],
            current=Level[str(data["current"]).upper()],
            rules=tuple(str(rule) for rule in data["rules"]),
            calm_since=None if calm_since is None else float(calm_since),
            acknowledged_level=None if acknowledged is None else Level[str(acknowledged).upper()],
            explanation=None if explanation is None else Explanation.from_dict(explanation),
            test=data.get("test") is True,
        )


@dataclass(frozen=True, slots=True)
class Change:
    """A transition and a snapshot of the incident right after it."""

    transition: Transition
    incident: Incident
    previous: Level | None


def new_incident_id() -> str:
    """Return a short random id; incidents of one node never share one."""
    return uuid.uuid4().hex[:12]


@dataclass(slots=True)
class IncidentTracker:
    """Follows one node's severity and opens, escalates and resolves its incident."""

    min_level: Level = DEFAULT_MIN_LEVEL
    hold_seconds: float = DEFAULT_HOLD_SECONDS
    new_id: Callable[[], str] = new_incident_id
    incident: Incident | None = None
    # The last resolved incident, so that late explanations and acknowledgements still find it.
    last_resolved: Incident | None = field(default=None)

    def observe(self, level: Level, rules: Sequence[str], now: float) -> Change | None:
        """Take the severity of one reading; return the transition it causes, if any."""
        return None if self._drill_holds(level, now) else self._follow(level, rules, now)

    def _follow(self, level: Level, rules: Sequence[str], now: float) -> Change | None:
        """Open, escalate or resolve the real incident for one reading's severity."""
        incident = self.incident
        if incident is None:
            if level < self.min_level:
                return None
            self.incident = Incident(self.new_id(), now, level, level, tuple(rules))
            return Change(Transition.OPENED, self._copy(self.incident), None)
        incident.current = level
        if level > incident.level:
            previous = incident.level
            incident.level, incident.rules, incident.calm_since = level, tuple(rules), None
            return Change(Transition.ESCALATED, self._copy(incident), previous)
        if level >= self.min_level:
            # Still a hazard: the rules of the latest reading say best what is going on now.
            incident.rules, incident.calm_since = tuple(rules), None
            return None
        if incident.calm_since is None:
            incident.calm_since = now
        if now - incident.calm_since < self.hold_seconds:
            return None
        incident.resolved_at = now
        self.incident, self.last_resolved = None, incident
        return Change(Transition.RESOLVED, replace(incident), incident.level)

    def _drill_holds(self, level: Level, now: float) -> bool:
        """Say whether an open drill ignores this reading; a real hazard ends it first."""
        incident = self.incident
        if incident is None or not incident.test:
            return False
        if level < self.min_level:
            return True
        # Callers end a drill with `end_drill` to announce it; this is the silent safety net.
        self.end_drill(now)
        return False

    def start_drill(self, now: float) -> Change | None:
        """Open a drill; None while any incident (a real one or another drill) is open."""
        if self.incident is not None:
            return None
        self.incident = Incident(
            self.new_id(), now, DRILL_LEVEL, DRILL_LEVEL, (DRILL_RULE,), test=True
        )
        return Change(Transition.OPENED, self._copy(self.incident), None)

    def end_drill(self, now: float) -> Change | None:
        """Resolve the open drill; None when no drill is open."""
        incident = self.incident
        if incident is None or not incident.test:
            return None
        incident.resolved_at = now
        self.incident, self.last_resolved = None, incident
        return Change(Transition.RESOLVED, replace(incident), incident.level)

    def drill_due(self, level: Level, now: float) -> bool:
        """Say whether the open drill must end now: a real hazard begins, or its time is up."""
        incident = self.incident
        return (
            incident is not None
            and incident.test
            and (level >= self.min_level or now - incident.opened_at >= DRILL_SECONDS)
        )

    def explain(self, incident_id: str, explanation: Explanation) -> Change | None:
        """Attach an explanation to the open incident; None when it is no longer open."""
        incident = self.incident
        if incident is None or incident.incident_id != incident_id:
            return None
        incident.explanation = explanation
        return Change(Transition.EXPLAINED, self._copy(incident), None)

    def acknowledge(self, incident_id: str | None = None) -> Change | None:
        """Silence the open incident (or the given one) at its present severity."""
        incident = self.incident
        if incident is None or incident_id not in (None, incident.incident_id):
            return None
        if incident.acknowledged:
            return None
        incident.acknowledged_level = incident.level
        return Change(Transition.ACKNOWLEDGED, self._copy(incident), None)

    @staticmethod
    def _copy(incident: Incident) -> Incident:
        """Return a copy of an incident that later readings do not change."""
        return replace(incident)

    def as_dict(self) -> dict[str, Any] | None:
        """Return the open incident's stored form."""
        return None if self.incident is None else self.incident.as_dict()

    def restore(self, data: dict[str, Any] | None) -> bool:
        """Take back an incident stored before a restart; False when there was none to take."""
        if not data:
            return False
        try:
            self.incident = Incident.from_dict(data)
        except (KeyError, ValueError, TypeError):
            return False
        return True
