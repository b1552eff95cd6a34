"""Explanations without a model: rule texts, the prompt's contents and answer validation."""

from __future__ import annotations

import html
import json
import re
import unicodedata

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.iotshield.explain import (
    _INPUT_FACTOR,
    DEFAULT_PROMPT,
    LINK_REMOVED,
    MAX_ACTION,
    MAX_EXPLANATION,
    MAX_TITLE,
    MODEL_LABEL,
    RULE_TEXTS,
    AnswerError,
    Context,
    PromptError,
    Trend,
    build_prompt,
    check_prompt,
    combine,
    parse_answer,
    plain_text,
    recheck_stored,
    rule_explanation,
)
from custom_components.iotshield.incidents import Explanation, Source
from custom_components.iotshield.severity import SENSOR_NAMES, Level, SeverityEngine

READINGS = {
    "temperature": 52.3,
    "humidity": 40.0,
    "gas": 0.72,
    "light": 310.0,
    "flame": True,
    "motion": False,
}


def context(rules: tuple[str, ...] = ("fire", "flame_high", "gas_high")) -> Context:
    """Return a fire in the kitchen."""
    return Context(
        node="Kitchen node",
        room="Kitchen",
        level=Level.CRITICAL,
        readings=READINGS,
        rules=rules,
        trend={"temperature": Trend(24.0, 52.3, 60.0)},
    )


def test_every_rule_the_engine_can_trip_has_a_text() -> None:
    """No rule falls back to the generic text: single-sensor rules at each level, compounds."""
    engine_rules = {f"{name}_{level.label}" for name in SENSOR_NAMES.values() for level in Level}
    reachable = {
        "flame_high",
        "motion_low",
        "light_low",
        *(
            f"{s}_{lvl}"
            for s in ("temperature", "humidity", "gas")
            for lvl in ("low", "medium", "high")
        ),
        "fire",
        "fire_suspected",
        "explosion_risk",
        "combustion",
    }
    assert reachable - engine_rules <= {"fire", "fire_suspected", "explosion_risk", "combustion"}
    assert reachable <= set(RULE_TEXTS)
    # And what the engine really produces for a fire is covered.
    assessment = SeverityEngine().assess({"t": 60.0, "g": 0.9, "f": True, "h": 40, "l": 300})
    assert {rule.rule_id for rule in assessment.rules} <= set(RULE_TEXTS)


def test_rule_explanation_names_the_worst_hazard_and_readings() -> None:
    """A fire is explained as a fire, with the node, room and readings."""
    explanation = rule_explanation(context())
    assert explanation.source is Source.RULES
    assert explanation.title == "Fire detected – Kitchen node"
    assert explanation.explanation.startswith("Kitchen node (Kitchen): ")
    assert "temperature 52.3 °C" in explanation.explanation
    assert "gas 0.72" in explanation.explanation
    assert "flame yes" in explanation.explanation
    assert "fire brigade" in explanation.suggested_action


def test_rule_explanation_without_known_rules() -> None:
    """Unknown rules fall back to a generic text rather than failing."""
    explanation = rule_explanation(context(rules=("something_new",)))
    assert explanation.title.startswith("Unusual readings")


def test_prompt_holds_only_what_the_explanation_needs() -> None:
    """Node name, room, readings, rules and trend; no keys, topics or ids can appear."""
    prompt = build_prompt(DEFAULT_PROMPT, context(), "German")
    assert "Kitchen node" in prompt
    assert "Room: Kitchen" in prompt
    assert "- temperature: 52.3 °C" in prompt
    assert "fire, flame_high, gas_high" in prompt
    assert "temperature 24.0 °C → 52.3 °C over 60 s" in prompt
    assert "German" in prompt
    # The context type has no field for anything else, so nothing else can leak.
    assert set(Context.__dataclass_fields__) == {
        "node",
        "room",
        "level",
        "readings",
        "rules",
        "trend",
        "anomalies",
    }
    assert "Unusual for this home at this time of day: nothing" in prompt


def test_every_anomaly_rule_has_a_text_and_reads_as_unusual() -> None:
    """Each sensor the detector judges has its own text, and the direction is spelled out."""
    for name in ("temperature", "humidity", "gas", "light", "motion"):
        assert f"anomaly_{name}" in RULE_TEXTS
    odd_hours = Context(
        node="Hall node",
        room=None,
        level=Level.MEDIUM,
        readings=READINGS,
        # Motion seen is LOW; that the motion is unusual at this hour says more.
        rules=("motion_low", "anomaly_motion"),
        anomalies={"motion": 1, "temperature": -1},
    )
    explanation = rule_explanation(odd_hours)
    assert explanation.title == "Unusual activity – Hall node"
    assert explanation.explanation.endswith(
        "Unusual for this time of day: more motion than usual; temperature lower than usual."
    )
    prompt = build_prompt(DEFAULT_PROMPT, odd_hours, "English")
    assert "Unusual for this home at this time of day: more motion than usual;" in prompt
    # A threshold hazard still names the incident when something is also unusual.
    fire = rule_explanation(context(rules=("fire", "anomaly_temperature")))
    assert fire.title.startswith("Fire detected")
    # At LOW, a crossed threshold names it before something merely unusual.
    low = Context("Hall node", None, Level.LOW, READINGS, ("anomaly_light", "gas_low"))
    assert rule_explanation(low).title == "Slight gas increase – Hall node"


def test_custom_prompt_and_broken_ones() -> None:
    """A user's template is filled; unknown placeholders and stray braces are refused."""
    assert build_prompt("{node} at {severity}", context(), "English") == "Kitchen node at critical"
    check_prompt("Literal {{braces}} are fine: {readings}")
    for broken in ("{secret_key}", "unclosed {node", "{0}", "{node.__class__}"):
        with pytest.raises(PromptError):
            check_prompt(broken)


def answer(**overrides: object) -> str:
    """Return a well-formed answer with some fields changed."""
    doc: dict[str, object] = {
        "title": "Fire",
        "explanation": "Smoke.",
        "suggested_action": "Leave.",
    }
    doc.update(overrides)
    return json.dumps(doc)


def test_parse_a_good_answer() -> None:
    """A structured answer becomes an LLM explanation with tidied whitespace."""
    explanation = parse_answer(answer(explanation="Smoke   and\nheat."))
    assert explanation.source is Source.LLM
    assert explanation.explanation == "Smoke and heat."


@pytest.mark.parametrize(
    "text",
    [
        "<think>Let me think about gas.</think>\n" + answer(),
        "<thinking>hmm {not json}</thinking>" + answer(),
        "reasoning without an opening tag</think>" + answer(),
        "Sure! Here is the JSON:\n```json\n" + answer() + "\n```",
    ],
)
def test_thinking_and_chatter_are_stripped(text: str) -> None:
    """Thinking text and chatter around the JSON object are dropped."""
    assert parse_answer(text).title == "Fire"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot help with that.",
        '{"title": "Fire", "explanation": ',
        "[1, 2, 3]",
        answer(title=""),
        answer(title=42),
        json.dumps({"title": "Fire", "explanation": "x"}),
    ],
)
def test_malformed_answers_are_refused(text: str) -> None:
    """Anything but the three non-empty strings is refused."""
    with pytest.raises(AnswerError):
        parse_answer(text)


def test_overlong_fields_are_cut() -> None:
    """A rambling model cannot flood a notification."""
    explanation = parse_answer(answer(title="x" * 1000))
    assert len(explanation.title) == MAX_TITLE
    assert explanation.title.endswith("…")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # Ordinary wording, numbers, units and punctuation pass unchanged.
        (
            "Temperature is 52.3 °C (very high) – gas 0.72! Rule gas_high, -5 °C outside.",
            "Temperature is 52.3 °C (very high) – gas 0.72! Rule gas_high, -5 °C outside.",
        ),
        ("Gas < 0.5 and > 0.2", "Gas \u2039 0.5 and \u203a 0.2"),
        # Markdown images go, links keep their words and lose their target.
        ("False alarm ![x](http://10.0.0.9/track.png) indeed", "False alarm indeed"),
        (
            "[Tap here to silence all alarms](http://evil.example/s)",
            "Tap here to silence all alarms",
        ),
        ("[ref]: http://evil.example\n[click][ref] now", "click now"),
        ("[a] [b]", "(a) (b)"),
        # HTML tags go, escaped or not; a script's text stays as harmless words.
        ("<img src=x onerror=alert(1)>Fire <b>out</b>", "Fire out"),
        ("&lt;a href=&quot;http://x&quot;&gt;Go&lt;/a&gt;", "Go"),
        ("&#91;Go&#93;(http://x)", "Go"),
        # Escaped more times than the cleaning goes: the ampersand can no longer start anything.
        ("&amp;amp;amp;amp;amp;lt;b&amp;amp;amp;amp;amp;gt;", "\uff06amp;lt;b\uff06amp;gt;"),
        ("<http://evil.example> and <!-- hidden -->", "and"),
        # Bare URLs, www., e-mail and script schemes become a visible marker.
        ("See https://evil.example/x.", f"See {LINK_REMOVED}"),
        ("See WWW.evil.example now", f"See {LINK_REMOVED} now"),
        ("Mail help@evil.example", f"Mail {LINK_REMOVED}"),
        ("Run javascript:alert(1)", f"Run {LINK_REMOVED}"),
        ("Sensor data: gas", "Sensor data: gas"),
        # Links hidden by markup or invisible characters are still found.
        ("h*ttp://evil.example", LINK_REMOVED),
        ("1.https://evil.example now", f"{LINK_REMOVED} now"),
        ("gas_https://evil.example", f"gas{LINK_REMOVED}"),
        ("http\u200b://evil.example", LINK_REMOVED),
        # Emphasis, code, strikethrough, headings, quotes, lists and rules.
        ("**What to do:** nothing", "What to do: nothing"),
        ("__No__ _action_ ~~needed~~ `now`", "No action needed 'now'"),
        ("# Heading", "Heading"),
        ("> quoted", "\u203a quoted"),
        ("- item", "item"),
        ("1. Open windows", "Open windows"),
        ("---", ""),
        # Control and invisible characters: terminal escapes, bells, bidi overrides, NUL.
        ("bell\x07 \x1b[31mred\x1b[0m \u202eevil\x00", "bell (31mred(0m evil"),
        ("line one\r\nline two\u2028three\tfour", "line one line two three four"),
    ],
)
def test_plain_text_examples(text: str, shown: str) -> None:
    """Markup, links and invisible characters are removed; ordinary text is kept."""
    assert plain_text(text, 500) == shown


def test_plain_text_cuts_to_the_limit() -> None:
    """An oversized text is cut with an ellipsis, never before an emphasis-making underscore."""
    assert plain_text("x" * 100_000, 50) == "x" * 49 + "…"
    cut = plain_text("word_" * 100, 50)
    assert len(cut) <= 50
    assert cut.endswith("word…")


@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, "_a" * 50_000, "a" + "_" * 99_998 + "a", "a." * 50_000, "a@" * 50_000],
)
def test_plain_text_reads_a_bounded_prefix(text: str) -> None:
    """A 100 kB hostile word costs what four times the limit costs: the rest is never read."""
    limit = 1000
    prefix = text[: limit * _INPUT_FACTOR]
    assert plain_text(text, limit) == plain_text(prefix, limit)
    assert plain_text(text + "<script>[x](http://evil)", limit) == plain_text(prefix, limit)


# Markup a renderer acts on, to be mixed into arbitrary text.
FRAGMENTS = (
    "[",
    "]",
    "(",
    ")",
    "!",
    "<",
    ">",
    "*",
    "_",
    "~",
    "`",
    "\\",
    "#",
    "-",
    "&",
    ";",
    ":",
    "//",
    ".",
    "@",
    " ",
    "\n",
    "http",
    "https://",
    "www.",
    "mailto:",
    "javascript:",
    "evil.example",
    "img",
    "a href=",
    "&lt;",
    "&gt;",
    "&#91;",
    "&amp;",
    "1.",
    "\u200b",
    "\u202e",
    "\x1b",
    "\x00",
)
UNTRUSTED = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map(
    "".join
)
# What a Markdown renderer, a browser or a phone would make clickable or format.
ACTIVE = re.compile(
    r"[\[\]<>*`~\\]|(?:https?|ftp)://|www\.|(?:mailto|javascript):(?=\S)|\w@[\w-]+\.\w"
    r"|(?<!\w)_|_(?!\w)",
    re.IGNORECASE,
)
LEADING_MARKER = re.compile(r"^(?:#+|[-+]+|\d+[.)])(?:\s|$)")


@settings(max_examples=500)
@given(text=UNTRUSTED, limit=st.integers(min_value=1, max_value=120))
def test_plain_text_leaves_nothing_active(text: str, limit: int) -> None:
    """Whatever the input, the output is one line of inert text within the limit."""
    shown = plain_text(text, limit)
    assert len(shown) <= limit
    assert ACTIVE.search(shown) is None, shown
    # No character reference a renderer would decode into markup.
    assert html.unescape(shown) == shown, shown
    assert LEADING_MARKER.match(shown) is None, shown
    assert shown == shown.strip()
    assert "  " not in shown
    assert all(
        unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for c in shown
    )
    # Clean text stays as it is: nothing is cleaned twice into something else.
    assert plain_text(shown, limit) == shown


@given(text=st.text(alphabet=st.characters(categories=["L", "N", "Zs"]), max_size=200))
def test_plain_text_keeps_plain_words(text: str) -> None:
    """Letters, digits and spaces in any script are kept (only spacing is tidied)."""
    assert plain_text(text, 1000) == " ".join(text.split())


def test_parse_answer_returns_plain_text() -> None:
    """Every field of an answer is cleaned, and a field with nothing left is refused."""
    explanation = parse_answer(
        answer(
            title="**False alarm** ![x](http://evil.example/t.png)",
            explanation="<b>Fine</b>\x07 [Tap here](http://evil.example)",
            suggested_action="No action needed. See www.evil.example",
        )
    )
    assert explanation == Explanation(
        "False alarm", "Fine Tap here", f"No action needed. See {LINK_REMOVED}", Source.LLM
    )
    with pytest.raises(AnswerError):
        parse_answer(answer(title="![x](http://evil.example/t.png)"))
    oversized = parse_answer(answer(explanation="a" * 50_000, suggested_action="b" * 50_000))
    assert len(oversized.explanation) == MAX_EXPLANATION
    assert len(oversized.suggested_action) == MAX_ACTION


MODEL = Explanation("False alarm", "The sensor is faulty.", "No action needed.", Source.LLM)


@pytest.mark.parametrize("level", [Level.HIGH, Level.CRITICAL])
def test_from_high_up_the_rules_keep_title_and_advice(level: Level) -> None:
    """The model's explanation is added after the rules'; its title and action are not used."""
    rules = rule_explanation(context())
    shown = combine(rules, MODEL, level)
    assert shown.title == rules.title
    assert shown.suggested_action == rules.suggested_action
    assert shown.explanation == f"{rules.explanation} {MODEL_LABEL}The sensor is faulty."
    assert shown.source is Source.LLM
    # However long the model's words, the rules' explanation stays whole.
    long = combine(rules, Explanation("t", "y" * MAX_EXPLANATION, "a", Source.LLM), level)
    assert long.explanation.startswith(rules.explanation)
    assert len(long.explanation) <= MAX_EXPLANATION


@pytest.mark.parametrize("level", [Level.NORMAL, Level.LOW, Level.MEDIUM])
def test_below_high_the_model_may_reword(level: Level) -> None:
    """Below high the model's (already plain) answer is shown as it is."""
    assert combine(rule_explanation(context()), MODEL, level) == MODEL


def test_stored_explanations_are_checked_again() -> None:
    """A model's text kept by an earlier version is cleaned, and from high up loses its advice."""
    rules = rule_explanation(context())
    stored = Explanation(
        "[Silence](http://evil.example)", "<b>False</b> alarm", "No action needed.", Source.LLM
    )
    critical = recheck_stored(stored, rules, Level.CRITICAL)
    assert critical == Explanation(rules.title, "False alarm", rules.suggested_action, Source.LLM)
    medium = recheck_stored(stored, rules, Level.MEDIUM)
    assert medium == Explanation("Silence", "False alarm", "No action needed.", Source.LLM)
    # What this version stored passes unchanged, and rule texts are never touched.
    current = combine(rules, MODEL, Level.CRITICAL)
    assert recheck_stored(current, rules, Level.CRITICAL) == current
    assert recheck_stored(rules, rules, Level.CRITICAL) is rules
