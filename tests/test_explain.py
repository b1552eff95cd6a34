"""Explanations without a model: rule texts, the prompt's contents and answer validation."""

from __future__ import annotations

import json

import pytest

from custom_components.iotshield.explain import (
    DEFAULT_PROMPT,
    MAX_TITLE,
    RULE_TEXTS,
    AnswerError,
    Context,
    PromptError,
    Trend,
    build_prompt,
    check_prompt,
    parse_answer,
    rule_explanation,
)
from custom_components.iotshield.incidents import Source
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
