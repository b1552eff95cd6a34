"""Explanations: the rule-based text every alert starts with, and the LLM's prompt and answer.

Plain Python with no Home Assistant import. The context holds only what an explanation needs:
the node's name, its room, the (already noised) readings, the tripped rules, a short trend and
which readings are unusual for this home at this time of day.
Keys, topics, device and entry ids never enter it, so they cannot reach a prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import html
import json
import re
import string
from typing import Any, Final
import unicodedata

from .incidents import Explanation, Source
from .severity import Level
from .texts import ENGLISH, AlertTexts

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
# From this severity up the rule-based title and advice stay; the model only adds explanation.
RULES_DECIDE_FROM: Final = Level.HIGH

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


# Rules from most to least serious, anomalies last: the first one tripped names the hazard.
RULE_ORDER: Final = (
    "fire",
    "explosion_risk",
    "fire_suspected",
    "combustion",
    "flame_high",
    "gas_high",
    "gas_medium",
    "gas_low",
    "temperature_high",
    "temperature_medium",
    "temperature_low",
    "humidity_high",
    "humidity_medium",
    "humidity_low",
    "light_low",
    "motion_low",
    # Unusual for this home at this time of day, though within the thresholds.
    "anomaly_gas",
    "anomaly_temperature",
    "anomaly_humidity",
    "anomaly_motion",
    "anomaly_light",
    # A drill from the Test alarm button or service.
    "test_alarm",
)
# The English texts, for callers that do not choose a language (the prompt is English).
RULE_TEXTS: Final = ENGLISH.rules
FALLBACK_TEXT: Final = ENGLISH.fallback
MODEL_LABEL: Final = f"{ENGLISH.phrases['model_label']} "


def format_value(name: str, value: float | bool | None, texts: AlertTexts = ENGLISH) -> str:
    """Return a reading as a person reads it."""
    if value is None:
        return texts.phrases["not_available"]
    if isinstance(value, bool):
        return texts.phrases["yes" if value else "no"]
    digits = 2 if name == "gas" else 1
    unit = UNITS.get(name, "")
    return f"{texts.number(value, digits)} {unit}".strip()


def _main_rule(rules: tuple[str, ...], level: Level) -> str | None:
    """Return the rule that best names the hazard: compound rules first, then the worst."""
    known = [rule for rule in rules if rule in RULE_ORDER]
    if not known:
        return None
    # Above LOW, an anomaly (up to MEDIUM) says more than a LOW threshold rule (motion seen, a
    # comfort range left); at LOW, a threshold that was crossed says more than something merely
    # unusual.
    order = list(RULE_ORDER)
    if level > Level.LOW:
        return min(known, key=lambda rule: (rule.endswith("_low"), order.index(rule)))
    return min(known, key=order.index)


def rule_explanation(context: Context, texts: AlertTexts = ENGLISH) -> Explanation:
    """Explain an incident from its rules alone: instant, offline and always available."""
    main = _main_rule(context.rules, context.level)
    title, text, action = texts.rules[main] if main else texts.fallback
    where = context.node if context.room is None else f"{context.node} ({context.room})"
    shown = [
        f"{texts.readings[name]} {format_value(name, context.readings.get(name), texts)}"
        for name in UNITS
        if context.readings.get(name) is not None
    ]
    parts = [f"{where}: {text}"]
    if shown:
        parts.append(texts.phrase("readings", readings=", ".join(shown)))
    if context.anomalies:
        parts.append(texts.phrase("unusual", anomalies=anomalies_text(context, texts)))
    return Explanation(
        title=texts.phrase("title", title=title, node=context.node),
        explanation=" ".join(parts),
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


def anomalies_text(context: Context, texts: AlertTexts = ENGLISH) -> str:
    """Say which readings are unusual for this home at this time, and which way."""
    parts = []
    for name, direction in context.anomalies.items():
        reading = texts.readings.get(name, name)
        if name in ("motion", "flame"):
            parts.append(texts.phrase("more" if direction > 0 else "less", reading=reading))
        else:
            parts.append(texts.phrase("higher" if direction > 0 else "lower", reading=reading))
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

# The model is reached over plain, unauthenticated HTTP: whoever answers in its place writes
# these texts. They end up in a persistent notification (rendered as Markdown with some HTML),
# in entity attributes, in events that blueprints push to phones (whose apps may render HTML)
# and in service responses. One text serves all of them, so it must be inert in Markdown and
# HTML and still read well as plain text: markup is neutralised by removing or replacing its
# characters, never by escaping (a backslash or `&lt;` would show on a phone).
LINK_REMOVED: Final = "(link removed)"
# Work on at most this many characters per allowed one: the input's size is the server's choice.
_INPUT_FACTOR: Final = 4
# Cleaning passes before giving up on deliberately nested markup (see plain_text).
_PASSES: Final = 4
# Unicode categories with nothing to show: controls (terminal escapes, NUL), format characters
# (bidi overrides that reverse how text reads, zero-width characters that hide a URL from the
# patterns below), surrogates, private use and unassigned code points.
_INVISIBLE: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Anything a browser or Markdown takes for a tag, comment or autolink: `<` then a letter, `/`,
# `!` or `?`. A lone `<` (as in "gas < 0.5") is text and is only replaced below.
_TAG = re.compile(r"</?[A-Za-z!?][^<>]*>")
# Markdown images go entirely (a remote image reports when the notification is opened); links
# and references keep their text and lose their target. The replacement of brackets below is
# what makes every such construct inert; these only keep the wording readable.
_IMAGE = re.compile(r"!\[[^\[\]]*\](?:\([^()]*\)|\[[^\[\]]*\])?")
_LINK = re.compile(r"\[([^\[\]]*)\](?:\([^()]*\)|\[[^\[\]]*\])")
_REFERENCE = re.compile(r"\[[^\[\]]*\]:\s*\S*")
# What Markdown (GFM autolinks), browsers or phones make clickable from bare text: a scheme with
# `//`, `www.`, the schemes that need no `//`, and e-mail addresses. A bare domain ("example.org")
# stays: none of these renderers links it, and dotted words (entity ids, "e.g.") are common.
# A scheme is taken from where its run of scheme characters starts (so "1.https://" goes whole:
# Markdown links the "https://" inside a word too). Matches start only there and never
# backtrack, so a long word costs linear time, not quadratic.
_URL = re.compile(
    r"(?:(?<![a-z0-9+.-])[a-z0-9+.-]*+:/{2}|www\."
    r"|(?:mailto|xmpp|javascript|vbscript|data|file|tel|sms):(?=\S))\S*"
    r"|(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+",
    re.IGNORECASE,
)
# Characters with meaning in Markdown inline: brackets make links and images, `*` `_` `~`
# emphasis and strikethrough (a model could forge our bold "What to do:" label), backticks code,
# a backslash escapes, angle brackets start HTML. Their look-alikes read the same and do nothing.
_INLINE = str.maketrans(
    {"[": "(", "]": ")", "<": "\u2039", ">": "\u203a", "`": "'", "*": None, "~": None, "\\": None}
)
# `_` between letters or digits (as in "gas_high") cannot emphasise; anywhere else it can.
_UNDERSCORE = re.compile(r"(?<!\w)_+|(?<!_)_++(?!\w)")
# Block markers at the start of a line: headings, lists, thematic breaks (quotes and emphasis
# lost their characters above). The notification starts a line with the explanation.
_LEADING = re.compile(r"^(?:(?:#+|[-+]+|\d+[.)])(?=\s|$)\s*)+")


def _plain_pass(text: str) -> str:
    """Remove markup, links and invisible characters once; see plain_text."""
    # Entities first, so that `&lt;img&gt;` or `&#91;` cannot smuggle markup past the patterns.
    text = html.unescape(text)
    # Whitespace of every kind (newlines included) becomes one space: a single line.
    text = " ".join(text.split())
    text = "".join(c for c in text if unicodedata.category(c) not in _INVISIBLE)
    text = _TAG.sub("", text)
    text = _REFERENCE.sub("", text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _UNDERSCORE.sub("", text.translate(_INLINE))
    # After the characters above are gone, so that "ht*tp://" cannot hide a link.
    text = _UNDERSCORE.sub("", _URL.sub(LINK_REMOVED, text))
    text = " ".join(text.split())
    return _LEADING.sub("", text)


def plain_text(value: str, limit: int) -> str:
    """Return untrusted text as one plain line of at most `limit` characters, without markup."""
    # What comes out has no HTML, no Markdown link, image, emphasis, code or block marker, no
    # URL a renderer would make clickable and no control or invisible character.
    text = value[: limit * _INPUT_FACTOR]
    # Removing one thing can join what was around it into another ("&l*t;", "<scr<b>ipt>"), and
    # entities may be escaped twice; repeat until clean.
    for _ in range(_PASSES):
        cleaned = _plain_pass(text)
        if cleaned == text:
            break
        text = cleaned
    else:
        # Each pass ends with the markup characters gone; only character references nested
        # deeper than the passes can be left, and a full-width ampersand decodes to nothing.
        if html.unescape(text) != text:
            text = text.replace("&", "\uff06")
    if len(text) > limit:
        # Cut before an underscore too, which the ellipsis would otherwise turn into emphasis.
        text = text[: limit - 1].rstrip(" _") + "…"
    return text


def _clean(value: Any, limit: int, name: str) -> str:
    """Return a field as non-empty plain text within its length limit."""
    if not isinstance(value, str) or not value.strip():
        raise AnswerError(f"{name} missing or empty")
    text = plain_text(value, limit)
    if not text:
        raise AnswerError(f"{name} has nothing left once markup and links are removed")
    return text


def parse_answer(text: str) -> Explanation:
    """Validate a model's answer as plain text, dropping any thinking text around the JSON."""
    # Cleaned here, once, so that the notification, entities, events, blueprints and service
    # responses all get the same plain text.
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


def combine(
    rules: Explanation, model: Explanation, level: Level, texts: AlertTexts = ENGLISH
) -> Explanation:
    """Return what to show for an incident at `level` once the model has answered."""
    # Below RULES_DECIDE_FROM a reworded title or action costs little, and plain words help.
    if level < RULES_DECIDE_FROM:
        return model
    # From there up a wrong or forged answer ("false alarm, no action needed") must never take
    # the place of "get everyone out": the rules' title and advice stay, the rules' explanation
    # stays first, the model's explanation follows, labelled, and its suggested action is left
    # out.
    label = f"{texts.phrases['model_label']} "
    room = MAX_EXPLANATION - len(rules.explanation) - len(label) - 1
    added = model.explanation
    if len(added) > room:
        added = added[: max(room - 1, 0)].rstrip(" _") + "…"
    return Explanation(
        title=rules.title,
        explanation=f"{rules.explanation} {label}{added}",
        suggested_action=rules.suggested_action,
        source=Source.LLM,
    )


def recheck_stored(stored: Explanation, rules: Explanation, level: Level) -> Explanation:
    """Hold a stored explanation to today's rules: the model's text plain, its advice combined."""
    # An incident kept over a restart may have been explained by an earlier version, which
    # showed the model's text unchecked and let it replace the advice.
    if stored.source is not Source.LLM:
        return stored
    authoritative = level >= RULES_DECIDE_FROM
    return Explanation(
        title=rules.title if authoritative else plain_text(stored.title, MAX_TITLE),
        explanation=plain_text(stored.explanation, MAX_EXPLANATION),
        suggested_action=rules.suggested_action
        if authoritative
        else plain_text(stored.suggested_action, MAX_ACTION),
        source=Source.LLM,
    )
