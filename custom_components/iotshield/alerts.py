"""Alerts of one node: incidents delivered as notifications and events, explained by rules and LLM.

The decisions live in plain modules (`incidents`, `explain`, `llm`); this is the Home Assistant
side: bus events, the persistent notification, repair issues and the background worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
import time
from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import area_registry as ar, device_registry as dr, issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from .const import (
    CONF_HOLD_TIME,
    CONF_LLM_COOLDOWN,
    CONF_LLM_ENABLED,
    CONF_LLM_MODEL,
    CONF_MIN_SEVERITY,
    DEFAULT_LLM_COOLDOWN,
    DOMAIN,
    EVENT_PREFIX,
    LOGGER,
    TREND_READINGS,
    TREND_SECONDS,
)
from .explain import (
    RULES_DECIDE_FROM,
    Context,
    Trend,
    combine,
    format_value,
    recheck_stored,
    rule_explanation,
)
from .home_llm import HOME_LLM, HomeLLM
from .incidents import (
    DEFAULT_HOLD_SECONDS,
    DRILL_SECONDS,
    Change,
    Explanation,
    Incident,
    IncidentTracker,
    Source,
    Transition,
)
from .llm import ExplanationQueue, Failure, LLMError
from .severity import Assessment, Level
from .texts import AlertTexts, for_language

type Readings = dict[str, float | bool | None]


def llm_issue_id(node_id: str) -> str:
    """Return the repair issue id a node raised for its own LLM before the home had one."""
    return f"llm_unavailable_{node_id}"


def notification_id(node_id: str, incident_id: str) -> str:
    """Return the stable persistent-notification id of one incident."""
    return f"{DOMAIN}_{node_id}_{incident_id}"


class NodeAlerts:
    """Turns a node's assessed readings into incidents, events, notifications and explanations."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        node_id: str,
        stored: dict[str, Any] | None,
        on_change: Callable[[], None],
    ) -> None:
        """Restore an open incident; `on_change` is called when it must be saved and shown."""
        self.hass = hass
        self.entry = entry
        self.node_id = node_id
        options = entry.options
        self.tracker = IncidentTracker(
            min_level=Level[str(options.get(CONF_MIN_SEVERITY, "medium")).upper()],
            hold_seconds=float(options.get(CONF_HOLD_TIME, DEFAULT_HOLD_SECONDS)),
        )
        self.restored = self.tracker.restore(stored)
        self._on_change = on_change
        self._cooldown = float(options.get(CONF_LLM_COOLDOWN, DEFAULT_LLM_COOLDOWN))
        # Nodes use the home's LLM unless told not to; a node may name its own model.
        self.llm_enabled = bool(options.get(CONF_LLM_ENABLED, True))
        self.model = str(options.get(CONF_LLM_MODEL) or "")
        self._last_asked: dict[Level, float] = {}
        self._history: deque[tuple[float, Readings]] = deque(maxlen=TREND_READINGS)
        self.latest: Readings = {}
        self.anomalies: dict[str, int] = {}
        self._drill_timer: CALLBACK_TYPE | None = None
        self.queue = ExplanationQueue(
            self._async_explain_locked,
            self._on_llm_result,
            self._on_llm_failure,
            lambda coro: entry.async_create_background_task(hass, coro, f"{DOMAIN} {node_id} llm"),
        )
        incident = self.tracker.incident
        if incident is not None and incident.explanation is not None:
            incident.explanation = recheck_stored(
                incident.explanation,
                rule_explanation(self.context(incident.level, incident.rules), self.texts),
                incident.level,
            )

    async def async_start(self) -> None:
        """Show an incident that was open before a restart."""
        # Nodes once had their own LLM settings and repair; the home's entry has both now.
        ir.async_delete_issue(self.hass, DOMAIN, llm_issue_id(self.node_id))
        self.entry.async_on_unload(self.async_stop)
        incident = self.tracker.incident
        if incident is not None and incident.test:
            # A drill's timer did not survive the restart; the drill ends here, announced.
            self._end_drill()
            return
        if incident is not None and not incident.acknowledged:
            # Notifications do not survive a restart; the incident does. Show it again quietly:
            # no event, so no automation or phone is alerted twice.
            self._notify(incident, resolved=False)

    @property
    def home(self) -> HomeLLM | None:
        """Return the home's LLM when it is set up and this node uses it."""
        return self.hass.data.get(HOME_LLM) if self.llm_enabled else None

    @property
    def texts(self) -> AlertTexts:
        """Return the alert texts in Home Assistant's language, as it is set now."""
        return for_language(self.hass.config.language)

    @property
    def incident(self) -> Incident | None:
        """Return the open incident."""
        return self.tracker.incident

    # Readings in

    @callback
    def async_observe(
        self, readings: Readings, assessment: Assessment, anomalies: Mapping[str, int]
    ) -> None:
        """Take one assessed reading and what is unusual: keep the trend, follow the incident."""
        now = time.monotonic()
        self.latest = readings
        self.anomalies = dict(anomalies)
        self._history.append((now, readings))
        if self.tracker.drill_due(assessment.level, time.time()):
            # A real hazard ends the drill first, so that it is alerted as itself, never a test.
            self._end_drill()
        change = self.tracker.observe(
            assessment.level, [rule.rule_id for rule in assessment.rules], time.time()
        )
        if change is None:
            if self.tracker.incident is not None:
                self._on_change()
            return
        incident = change.incident
        if change.transition is Transition.RESOLVED:
            self._deliver(change)
            return
        explanation = rule_explanation(self.context(incident.level, incident.rules), self.texts)
        self.tracker.explain(incident.incident_id, explanation)
        delivered = Change(change.transition, self.tracker.incident or incident, change.previous)
        self._deliver(delivered)
        self._maybe_ask_llm(delivered)

    def context(self, level: Level, rules: tuple[str, ...]) -> Context:
        """Build what an explanation may see: the node's name, room, readings, trend, anomalies."""
        return Context(
            node=self.entry.title,
            room=self._room(),
            level=level,
            readings=dict(self.latest),
            rules=rules,
            trend=self._trend(),
            anomalies=dict(self.anomalies),
        )

    def _trend(self) -> dict[str, Trend]:
        """Describe how each continuous reading moved over the last few minutes."""
        if not self._history:
            return {}
        now = self._history[-1][0]
        recent = [(t, r) for t, r in self._history if now - t <= TREND_SECONDS]
        trend: dict[str, Trend] = {}
        for name in ("temperature", "humidity", "gas", "light"):
            points = [
                (t, float(v))
                for t, r in recent
                if isinstance(v := r.get(name), (int, float)) and not isinstance(v, bool)
            ]
            if len(points) >= 2:  # noqa: PLR2004 - a trend needs two points
                trend[name] = Trend(points[0][1], points[-1][1], points[-1][0] - points[0][0])
        return trend

    def _device_id(self) -> str | None:
        """Return the node's device id, for events and device triggers."""
        devices = dr.async_entries_for_config_entry(dr.async_get(self.hass), self.entry.entry_id)
        return devices[0].id if devices else None

    def _room(self) -> str | None:
        """Return the name of the area the user put the node in."""
        devices = dr.async_entries_for_config_entry(dr.async_get(self.hass), self.entry.entry_id)
        if not devices or devices[0].area_id is None:
            return None
        area = ar.async_get(self.hass).async_get_area(devices[0].area_id)
        return None if area is None else area.name

    # The local LLM

    def _maybe_ask_llm(self, change: Change) -> None:
        """Queue an LLM explanation, unless the same severity was explained moments ago."""
        if self.home is None:
            return
        level = change.incident.level
        now = time.monotonic()
        last = self._last_asked.get(level)
        # Escalation always bypasses the cooldown: a worse hazard deserves fresh words.
        if (
            change.transition is Transition.OPENED
            and last is not None
            and now - last < self._cooldown
        ):
            return
        self._last_asked[level] = now
        incident = change.incident
        self.queue.submit(incident.incident_id, self.context(level, incident.rules))

    async def _async_explain_locked(self, context: Context) -> Explanation:
        """Ask the home's model, which takes one request at a time for the whole home."""
        home = self.home
        if home is None:
            raise LLMError(Failure.UNREACHABLE, "the home has no LLM set up")
        return await home.async_explain(context, self.texts.language_name, self.model)

    @callback
    def _on_llm_result(self, incident_id: str, context: Context, answer: Explanation) -> None:
        """Add the model's answer to the incident's explanation, in place."""
        self._llm_worked()
        incident = self.tracker.incident
        if incident is None or incident.incident_id != incident_id:
            LOGGER.debug("Explanation for closed incident %s of %s", incident_id, self.node_id)
            return
        if context.level < incident.level:
            # Written for a milder hazard than the incident now is; the escalation asked again.
            LOGGER.debug("Outdated explanation for incident %s of %s", incident_id, self.node_id)
            return
        # The context is the one the rule text was made from when the request was queued, so
        # the rules' title and advice are those already shown.
        texts = self.texts
        explanation = combine(rule_explanation(context, texts), answer, context.level, texts)
        change = self.tracker.explain(incident_id, explanation)
        if change is not None:
            self._deliver(change)

    @callback
    def _on_llm_failure(self, incident_id: str, err: LLMError) -> None:
        """Keep the rule-based explanation; raise a repair when the model stays unusable."""
        LOGGER.info(
            "No LLM explanation for incident %s of node %s (%s); the rule-based one stays",
            incident_id,
            self.node_id,
            err,
        )
        self._llm_failed(err)

    def _llm_worked(self) -> None:
        """Forget the home's earlier failures."""
        if (home := self.home) is not None:
            home.worked()

    def _llm_failed(self, err: LLMError) -> None:
        """Count a failure against the home's LLM, which raises the repair issue."""
        if (home := self.home) is not None:
            home.failed(err)

    async def async_explain_now(self) -> dict[str, Any]:
        """Explain the node's current state now (the explain service)."""
        incident = self.tracker.incident
        if incident is not None:
            level, rules = incident.current, incident.rules
        else:
            level, rules = Level.NORMAL, ()
        context = self.context(level, rules)
        texts = self.texts
        explanation = rule_explanation(context, texts)
        if self.home is not None and self.latest:
            try:
                answer = await self._async_explain_locked(context)
            except LLMError as err:
                LOGGER.info("The LLM could not explain node %s now: %s", self.node_id, err)
                self._llm_failed(err)
            else:
                self._llm_worked()
                explanation = combine(explanation, answer, level, texts)
        return {
            "node": self.entry.title,
            "severity": level.label,
            "incident_id": None if incident is None else incident.incident_id,
            "rules": list(rules),
            "readings": dict(self.latest),
            **explanation.as_dict(),
        }

    def llm_summary(self) -> dict[str, Any]:
        """Describe the node's use of the home's LLM and its queue, for diagnostics."""
        home = self.home
        return {
            "enabled": self.llm_enabled,
            "model": self.model or None,
            "home": None if home is None else home.summary(),
            "busy": self.queue.busy,
            "pending": self.queue.pending,
            "dropped": self.queue.dropped,
        }

    # Drills (Test alarm)

    @callback
    def async_test_alarm(self) -> str | None:
        """Run a drill through notification, events and triggers; None while an incident is open."""
        change = self.tracker.start_drill(time.time())
        if change is None:
            return None
        incident = change.incident
        explanation = rule_explanation(self.context(incident.level, incident.rules), self.texts)
        self.tracker.explain(incident.incident_id, explanation)
        self._deliver(Change(change.transition, self.tracker.incident or incident, None))
        self._drill_timer = async_call_later(self.hass, DRILL_SECONDS, self._drill_expired)
        return incident.incident_id

    @callback
    def _drill_expired(self, _now: object) -> None:
        """End a drill nobody acknowledged."""
        self._drill_timer = None
        self._end_drill()

    def _end_drill(self) -> None:
        """Resolve the open drill and announce it."""
        self.async_stop()
        if (change := self.tracker.end_drill(time.time())) is not None:
            self._deliver(change)

    @callback
    def async_stop(self) -> None:
        """Cancel the drill's timer (the entry unloads, or the drill ended)."""
        if self._drill_timer is not None:
            self._drill_timer()
            self._drill_timer = None

    # Delivery

    @callback
    def async_acknowledge(self, incident_id: str | None) -> bool:
        """Silence the open incident; False when there is no such incident."""
        change = self.tracker.acknowledge(incident_id)
        if change is None:
            incident = self.tracker.incident
            return incident is not None and incident_id in (None, incident.incident_id)
        persistent_notification.async_dismiss(
            self.hass, notification_id(self.node_id, change.incident.incident_id)
        )
        self._fire(change)
        self._on_change()
        if change.incident.test:
            # Silencing a drill is the end of the test, as with a smoke alarm's test button.
            self._end_drill()
        return True

    def _deliver(self, change: Change) -> None:
        """Fire the transition's event and show it in the incident's notification."""
        incident = change.incident
        silenced = incident.acknowledged and change.transition is Transition.EXPLAINED
        if not silenced:
            self._fire(change)
            if not incident.acknowledged or change.transition is not Transition.RESOLVED:
                self._notify(incident, resolved=change.transition is Transition.RESOLVED)
        self._on_change()

    def _fire(self, change: Change) -> None:
        """Fire `iotshield_incident_<transition>` with everything an automation needs."""
        self.hass.bus.async_fire(f"{EVENT_PREFIX}{change.transition.value}", self.payload(change))

    def payload(self, change: Change) -> dict[str, Any]:
        """Return the event data of a transition."""
        incident = change.incident
        explanation = incident.explanation or rule_explanation(
            self.context(incident.level, incident.rules), self.texts
        )
        return {
            "incident_id": incident.incident_id,
            "node_id": self.node_id,
            "node": self.entry.title,
            "device_id": self._device_id(),
            "severity": incident.level.label,
            "current_severity": incident.current.label,
            "previous_severity": None if change.previous is None else change.previous.label,
            "readings": dict(self.latest),
            "rules": list(incident.rules),
            # Readings unusual for this home at this time of day, and which way.
            "anomalies": {
                name: "higher" if direction > 0 else "lower"
                for name, direction in self.anomalies.items()
            },
            "title": explanation.title,
            "explanation": explanation.explanation,
            "suggested_action": explanation.suggested_action,
            "source": explanation.source.value,
            "acknowledged": incident.acknowledged,
            "opened_at": dt_util.utc_from_timestamp(incident.opened_at).isoformat(),
            # A drill (Test alarm): automations may treat it differently, nothing is wrong.
            "test": incident.test,
        }

    def _notify(self, incident: Incident, *, resolved: bool) -> None:
        """Create or update the incident's one persistent notification."""
        texts = self.texts
        explanation = incident.explanation or rule_explanation(
            self.context(incident.level, incident.rules), texts
        )
        if explanation.source is not Source.LLM:
            footer = texts.phrase("footer_rules", incident=incident.incident_id)
        elif incident.level >= RULES_DECIDE_FROM:
            footer = texts.phrase("footer_combined", incident=incident.incident_id)
        else:
            footer = texts.phrase("footer_llm", incident=incident.incident_id)
        if resolved:
            title = texts.phrase("resolved_title", title=explanation.title)
            status = f"**{texts.phrases['resolved']}** – {texts.phrases['resolved_status']}"
            readings = ", ".join(
                f"{texts.readings.get(name, name)} {format_value(name, value, texts)}"
                for name, value in self.latest.items()
                if value is not None
            )
            footer = f"{texts.phrase('latest_readings', readings=readings)} {footer}"
        else:
            title = explanation.title
            severity = texts.severity.get(incident.level.label, incident.level.label)
            status = f"**{texts.phrase('severity', severity=severity)}**"
        message = (
            f"{status}\n\n{explanation.explanation}\n\n"
            f"**{texts.phrases['what_to_do']}** {explanation.suggested_action}\n\n_{footer}_"
        )
        persistent_notification.async_create(
            self.hass,
            message,
            title=title,
            notification_id=notification_id(self.node_id, incident.incident_id),
        )
