"""Explanations: the rule-based text every alert starts with, and the LLM's prompt and answer.

Plain Python with no Home Assistant import. The context holds only what an explanation needs:
the node's name, its room, the (already noised) readings, the tripped rules, a short trend and
which readings are unusual for this home at this time of day.
Keys, topics, device and entry ids never enter it, so they cannot reach a prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import json
import re
import string
from typing import Any, Final

from .incidents import Explanation, Source
from .severity import Level

# Field names and units in the order readings are shown.
UNITS: Final = {
    "temperature": "°C",
    "humidity": "%",
    "gas": "(MQ-2, 0–1)",
    "light": "lx",
    "flame": "",
    "motion": "",
}
MAX_TITLE: Final = 120
MAX_EXPLANATION: Final = 1000
MAX_ACTION: Final = 500

# The structured answer the model is asked for (Ollama's `format`).
ANSWER_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "explanation": {"type": "string"},
        "suggested_action": {"type": "string"},
    },
    "required": ["title", "explanation", "suggested_action"],
}

DEFAULT_PROMPT: Final = (
    "You are the safety assistant of a smart home. A sensor node reports a possible hazard.\n"
    "Node: {node}\nRoom: {room}\nSeverity: {severity}\n"
    "Readings (with deliberate privacy noise):\n{readings}\n"
    "Tripped rules: {rules}\nTrend: {trend}\n"
    "Unusual for this home at this time of day: {anomalies}\n"
    "Answer in {language} with JSON only: a short title, a two-sentence explanation for a "
    "non-expert of what is probably happening, and one concrete suggested action."
)
PLACEHOLDERS: Final = (
    "node",
    "room",
    "severity",
    "readings",
    "rules",
    "trend",
    "anomalies",
    "language",
)


@dataclass(frozen=True, slots=True)
class Trend:
    """How one continuous reading moved over the recent readings."""

    first: float
    last: float
    seconds: float


@dataclass(frozen=True, slots=True)
class Context:
    """Everything an explanation may use, and nothing more."""

    node: str
    room: str | None
    level: Level
    readings: Mapping[str, float | bool | None]
    rules: tuple[str, ...]
    trend: Mapping[str, Trend] = field(default_factory=dict)
    # Readings the anomaly detector finds unusual: +1 higher (more) than usual, -1 lower (less).
    anomalies: Mapping[str, int] = field(default_factory=dict)


# What each rule means for a person at home: title, what is happening, what to do.
RULE_TEXTS: Final[dict[str, tuple[str, str, str]]] = {
    "fire": (
        "Fire detected",
        "The flame sensor sees fire and the heat or gas readings confirm it.",
        "Get everyone out, close doors behind you and call the fire brigade.",
    ),
    "explosion_risk": (
        "Explosion risk: gas near a flame",
        "A high gas concentration and an open flame are detected at the same time.",
        "Do not touch switches or appliances; leave at once and call emergency services "
        "from outside.",
    ),
    "fire_suspected": (
        "Possible fire: heat and gas together",
        "The temperature is very high while combustion gas rises, as in a fire starting.",
        "Check the room only if it is safe, keep away from smoke, and call the fire brigade "
        "if you see or smell fire.",
    ),
    "combustion": (
        "Heat and gas rising together",
        "Temperature and gas are both elevated, which points to smouldering or a faulty "
        "gas appliance.",
        "Look for smoke or a running appliance, ventilate the room and be ready to leave.",
    ),
    "flame_high": (
        "Flame detected",
        "The infrared flame sensor sees a flame.",
        "Check the room at once; if there is an unattended fire, leave and call the fire brigade.",
    ),
    "gas_high": (
        "High gas level",
        "The gas sensor reads a high concentration of combustible gas or smoke.",
        "Avoid flames and switches, open windows, check gas appliances and leave if it persists.",
    ),
    "gas_medium": (
        "Gas level raised",
        "The gas sensor reads more combustible gas or smoke than usual.",
        "Ventilate the room and check gas appliances and anything burning.",
    ),
    "gas_low": (
        "Slight gas increase",
        "The gas sensor reads slightly more gas or smoke than usual.",
        "Keep an eye on it and ventilate if it rises.",
    ),
    "temperature_high": (
        "Very high temperature",
        "The room is far hotter than a home should be.",
        "Check for fire or an overheating appliance, and switch off heat sources.",
    ),
    "temperature_medium": (
        "High temperature",
        "The room is hotter than normal.",
        "Check heating and appliances, ventilate, and make sure nobody is at risk of heat.",
    ),
    "temperature_low": (
        "Temperature outside the comfort range",
        "The room is warmer or colder than usual.",
        "Adjust heating or ventilation.",
    ),
    "humidity_high": (
        "Very high humidity",
        "The air is almost saturated, as with a water leak or steam.",
        "Look for leaks or running water and ventilate the room.",
    ),
    "humidity_medium": (
        "High humidity",
        "The air is humid enough for mould to grow if it stays so.",
        "Ventilate the room and look for a leak if nobody showered or cooked.",
    ),
    "humidity_low": (
        "Humidity outside the comfort range",
        "The air is more humid or drier than usual.",
        "Ventilate or humidify as needed.",
    ),
    "light_low": (
        "Unusual light",
        "The light level is outside its usual range.",
        "No action needed unless nobody should be there.",
    ),
    "motion_low": (
        "Motion detected",
        "The motion sensor saw movement.",
        "No action needed unless nobody should be there.",
    ),
    # Unusual for this home at this time of day, though within the thresholds.
    "anomaly_gas": (
        "Unusual gas reading",
        "The gas sensor reads differently from what is normal here at this time of day, "
        "though below the alarm thresholds.",
        "Check gas appliances and anything burning; if all is fine, the sensor may be "
        "drifting or failing.",
    ),
    "anomaly_temperature": (
        "Unusual temperature",
        "The temperature differs from what is normal here at this time of day, "
        "though it is within the alarm thresholds.",
        "Check heating, open windows and appliances; a value that never changes points to "
        "a stuck sensor.",
    ),
    "anomaly_humidity": (
        "Unusual humidity",
        "The humidity differs from what is normal here at this time of day, as with "
        "running water or steam when nobody is using it.",
        "Look for a leak, a running tap or an open window.",
    ),
    "anomaly_motion": (
        "Unusual activity",
        "The motion sensor reports a different amount of movement than usual at this "
        "time of day, for example activity at night or a sensor that triggers by itself.",
        "If nobody should be there, check the home; if it repeats with nobody there, check "
        "the motion sensor.",
    ),
    "anomaly_light": (
        "Unusual light",
        "The light level differs from what is normal here at this time of day.",
        "Check whether a lamp was left on or a blind is open; otherwise check the sensor.",
    ),
}
FALLBACK_TEXT: Final = (
    "Unusual readings",
    "The node reports readings outside their normal range.",
    "Check the room.",
)


def format_value(name: str, value: float | bool | None) -> str:
    """Return a reading as a person reads it."""
    if value is None:
        return "not available"
    if isinstance(value, bool):
        return "yes" if value else "no"
    digits = 2 if name == "gas" else 1
    unit = UNITS.get(name, "")
    return f"{value:.{digits}f} {unit}".strip()


def _main_rule(rules: tuple[str, ...], level: Level) -> str | None:
    """Return the rule that best names the hazard: compound rules first, then the worst."""
    known = [rule for rule in rules if rule in RULE_TEXTS]
    if not known:
        return None
    # RULE_TEXTS lists rules from most to least serious, anomalies last. Above LOW, an anomaly
    # (up to MEDIUM) says more than a LOW threshold rule (motion seen, a comfort range left);
    # at LOW, a threshold that was crossed says more than something merely unusual.
    order = list(RULE_TEXTS)
    if level > Level.LOW:
        return min(known, key=lambda rule: (rule.endswith("_low"), order.index(rule)))
    return min(known, key=order.index)


def rule_explanation(context: Context) -> Explanation:
    """Explain an incident from its rules alone: instant, offline and always available."""
    main = _main_rule(context.rules, context.level)
    title, text, action = RULE_TEXTS[main] if main else FALLBACK_TEXT
    where = context.node if context.room is None else f"{context.node} ({context.room})"
    shown = [
        f"{name} {format_value(name, context.readings.get(name))}"
        for name in UNITS
        if context.readings.get(name) is not None
    ]
    readings = f" Readings: {', '.join(shown)}." if shown else ""
    unusual = (
        f" Unusual for this time of day: {anomalies_text(context)}." if context.anomalies else ""
    )
    return Explanation(
        title=f"{title} – {context.node}",
        explanation=f"{where}: {text}{readings}{unusual}",
        suggested_action=action,
        source=Source.RULES,
    )


def _readings_text(context: Context) -> str:
    """List the readings one per line."""
    return "\n".join(
        f"- {name}: {format_value(name, context.readings.get(name))}" for name in UNITS
    )


def _trend_text(context: Context) -> str:
    """Describe how readings moved recently in one line."""
    parts = [
        f"{name} {format_value(name, t.first)} → {format_value(name, t.last)} "
        f"over {round(t.seconds)} s"
        for name, t in context.trend.items()
        if abs(t.last - t.first) > 0
    ]
    return "; ".join(parts) if parts else "no recent change"


def anomalies_text(context: Context) -> str:
    """Say which readings are unusual for this home at this time, and which way."""
    parts = []
    for name, direction in context.anomalies.items():
        if name in ("motion", "flame"):
            parts.append(f"{'more' if direction > 0 else 'less'} {name} than usual")
        else:
            parts.append(f"{name} {'higher' if direction > 0 else 'lower'} than usual")
    return "; ".join(parts) if parts else "nothing"


class PromptError(ValueError):
    """A prompt template that cannot be filled."""


def build_prompt(template: str, context: Context, language: str) -> str:
    """Fill the user's template with the context; raises PromptError when it cannot be."""
    values = {
        "node": context.node,
        "room": context.room or "unknown",
        "severity": context.level.label,
        "readings": _readings_text(context),
        "rules": ", ".join(context.rules) or "none",
        "trend": _trend_text(context),
        "anomalies": anomalies_text(context),
        "language": language,
    }
    try:
        # Only bare placeholder names: no attribute access, indexing or conversions.
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None and (name not in values or spec or conversion):
                raise PromptError(f"unknown placeholder {{{name}}}")
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as err:
        if isinstance(err, PromptError):
            raise
        raise PromptError(str(err)) from err


def check_prompt(template: str) -> None:
    """Refuse a template with unknown or broken placeholders (for the options flow)."""
    sample = Context("node", "room", Level.MEDIUM, {}, ("gas_medium",))
    build_prompt(template, sample, "English")


class AnswerError(ValueError):
    """An LLM answer that is not the structured object asked for."""


_THINKING = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINKING = re.compile(r"^.*</think(?:ing)?>", re.DOTALL | re.IGNORECASE)


def _clean(value: Any, limit: int, name: str) -> str:
    """Return a non-empty single-spaced string within its length limit."""
    if not isinstance(value, str) or not value.strip():
        raise AnswerError(f"{name} missing or empty")
    text = " ".join(value.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def parse_answer(text: str) -> Explanation:
    """Validate a model's answer, dropping any thinking text around the JSON object."""
    text = _UNCLOSED_THINKING.sub("", _THINKING.sub("", text))
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise AnswerError("no JSON object in the answer")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as err:
        raise AnswerError(f"malformed JSON: {err.msg}") from err
    if not isinstance(data, dict):
        raise AnswerError("the answer is not a JSON object")
    return Explanation(
        title=_clean(data.get("title"), MAX_TITLE, "title"),
        explanation=_clean(data.get("explanation"), MAX_EXPLANATION, "explanation"),
        suggested_action=_clean(data.get("suggested_action"), MAX_ACTION, "suggested_action"),
        source=Source.LLM,
    )
