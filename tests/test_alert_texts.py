"""Alerts in the user's language: every language complete, German alerts end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path
import string
from typing import Any

from homeassistant.core import Event, HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.alerts import notification_id
from custom_components.iotshield.const import CONF_LLM_LANGUAGE
from custom_components.iotshield.explain import (
    RULE_ORDER,
    Context,
    combine,
    format_value,
    rule_explanation,
)
from custom_components.iotshield.incidents import Explanation, Source
from custom_components.iotshield.severity import SENSOR_NAMES, Level
from custom_components.iotshield.texts import (
    DIRECTORY,
    ENGLISH,
    LANGUAGES,
    PHRASES,
    for_language,
    load,
    parse,
)

from .helpers import setup_entry
from .ollama_server import ANSWER, FakeOllama, ollama_server  # noqa: F401
from .test_alerts import (  # noqa: F401
    FIRE,
    GAS_MEDIUM,
    Feed,
    entry_options,
    events,
    feed,
    kinds,
    llm_entry_options,
    notifications,
    setup_with_options,
)

pytestmark = pytest.mark.usefixtures("mqtt_mock")

FILES = sorted(DIRECTORY.glob("*.json"))


def _placeholders(text: str) -> set[str]:
    """Return the `{name}` placeholders of a text."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def problems(data: dict[str, Any]) -> list[str]:
    """Return what is missing, extra or wrong in one language's alert texts."""
    english: dict[str, Any] = json.loads((DIRECTORY / "en.json").read_text())
    found: list[str] = []
    for section in ("severity", "readings", "phrases", "rules"):
        have, want = set(data.get(section, {})), set(english[section])
        found += [f"{section}.{key} missing" for key in sorted(want - have)]
        found += [f"{section}.{key} extra" for key in sorted(have - want)]
    if set(data.get("rules", {})) != set(RULE_ORDER):
        found.append("rules differ from the rules the code knows")
    for key, wanted in PHRASES.items():
        text = data.get("phrases", {}).get(key)
        if text is not None and _placeholders(text) != set(wanted):
            found.append(f"phrases.{key} has placeholders {sorted(_placeholders(text))}")
    texts: list[str] = [*data.get("phrases", {}).values(), *data.get("severity", {}).values()]
    for rule in [*data.get("rules", {}).values(), data.get("fallback", {})]:
        if set(rule) != {"title", "explanation", "action"}:
            found.append(f"a rule text has fields {sorted(rule)}")
        texts += [str(value) for value in rule.values()]
    found += [f"empty or markup: {text!r}" for text in texts if not text.strip() or "<" in text]
    phrases = set(data.get("phrases", {}).values())
    found += [f"placeholder: {text!r}" for text in texts if "{" in text and text not in phrases]
    if not data.get("language_name") or data.get("decimal_separator") not in (".", ","):
        found.append("language_name or decimal_separator missing")
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_every_language_is_complete(path: Path) -> None:
    """Each language has every rule, reading, severity and phrase, with the right placeholders."""
    assert problems(json.loads(path.read_text())) == []


def test_german_is_shipped() -> None:
    """German is there, and is German."""
    assert set(LANGUAGES) >= {"en", "de"}
    assert LANGUAGES["de"].rules["fire"].title == "Feuer erkannt"


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["rules"].pop("fire"), "rules.fire missing"),
        (lambda d: d["phrases"].update(severity="Stufe: {level}"), "phrases.severity"),
        (lambda d: d["readings"].update(smell="Geruch"), "readings.smell extra"),
        (lambda d: d["rules"]["gas_high"].update(title="<b>Gas</b>"), "markup"),
        (lambda d: d["rules"]["gas_high"].pop("action"), "fields"),
    ],
    ids=["missing rule", "placeholder renamed", "extra reading", "markup", "missing field"],
)
def test_the_completeness_check_can_fail(breakage: Any, expected: str) -> None:
    """A broken translation is reported."""
    broken = copy.deepcopy(json.loads((DIRECTORY / "de.json").read_text()))
    breakage(broken)
    assert any(expected in problem for problem in problems(broken))


@pytest.mark.parametrize(
    ("tag", "language"),
    [("de", "de"), ("de-CH", "de"), ("de_AT", "de"), ("en-GB", "en"), ("fr", "en"), (None, "en")],
)
def test_language_tags(tag: str | None, language: str) -> None:
    """Regional tags find their language; languages without texts fall back to English."""
    assert for_language(tag).language == language


def test_load_reads_a_directory(tmp_path: Path) -> None:
    """A language file dropped next to the others is picked up."""
    (tmp_path / "xx.json").write_text((DIRECTORY / "de.json").read_text())
    assert load(tmp_path)["xx"].language_name == "German"


def test_every_threshold_rule_has_a_text() -> None:
    """The severity engine cannot trip a rule that has no text."""
    for sensor in SENSOR_NAMES.values():
        for level in ("low", "medium", "high"):
            rule = f"{sensor}_{level}"
            if rule in RULE_ORDER:
                assert all(rule in texts.rules for texts in LANGUAGES.values())


def test_german_rule_explanation() -> None:
    """German words, a decimal comma, German yes/no and anomaly phrases."""
    german = LANGUAGES["de"]
    context = Context(
        node="Küche",
        room="Erdgeschoss",
        level=Level.CRITICAL,
        readings={"temperature": 52.3, "gas": 0.72, "flame": True},
        rules=("fire", "gas_high"),
        anomalies={"motion": 1, "temperature": 1},
    )
    shown = rule_explanation(context, german)
    assert shown.title == "Feuer erkannt – Küche"
    assert shown.explanation.startswith("Küche (Erdgeschoss): Der Flammensensor sieht Feuer")
    assert "Messwerte: Temperatur 52,3 °C, Gas 0,72 (MQ-2, 0–1), Flamme ja." in shown.explanation
    assert "Ungewöhnlich für diese Tageszeit: mehr Bewegung als üblich; Temperatur höher" in (
        shown.explanation
    )
    assert shown.suggested_action == german.rules["fire"].action
    # English stays the default for callers that choose no language (the prompt).
    assert rule_explanation(context).title == "Fire detected – Küche"
    assert format_value("temperature", 21.46, german) == "21,5 °C"
    assert format_value("motion", None, german) == "nicht verfügbar"


def test_german_model_label() -> None:
    """From high up, the model's words are labelled in the alert's language."""
    context = Context("Küche", None, Level.HIGH, {}, ("gas_high",))
    german = LANGUAGES["de"]
    rules = rule_explanation(context, german)
    model = Explanation("Titel", "Der Sensor spinnt.", "Nichts tun.", Source.LLM)
    shown = combine(rules, model, Level.HIGH, german)
    assert shown.explanation == f"{rules.explanation} Lokales LLM: Der Sensor spinnt."
    assert shown.suggested_action == german.rules["gas_high"].action


def test_parse_refuses_a_file_without_rules() -> None:
    """A file that lacks a section does not load silently half-empty."""
    data = json.loads((DIRECTORY / "en.json").read_text())
    del data["rules"]
    with pytest.raises(KeyError):
        parse("xx", data)


async def test_german_alerts(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
) -> None:
    """With Home Assistant in German, the notification and the events are German."""
    hass.config.language = "de"
    await setup_entry(hass, mock_config_entry)
    await feed(GAS_MEDIUM, times=3)
    await feed(FIRE)
    assert kinds(events) == ["opened", "escalated"]
    opened, escalated = (event.data for event in events)
    assert opened["title"] == "Gaswert erhöht – kitchen"
    assert escalated["title"] == "Feuer erkannt – kitchen"
    assert escalated["suggested_action"] == LANGUAGES["de"].rules["fire"].action
    # Machine-readable fields stay the same in every language, for automations.
    assert escalated["severity"] == "critical"
    assert "fire" in escalated["rules"]
    incident_id = escalated["incident_id"]
    shown = notifications(hass)[notification_id("kitchen", incident_id)]
    assert shown["title"] == "Feuer erkannt – kitchen"
    assert shown["message"].startswith("**Schweregrad: kritisch**\n\n")
    assert "**Was tun:** " in shown["message"]
    assert "Erklärt von den IoTShield-Regeln. Vorfall " in shown["message"]
    assert "Temperatur 52,0 °C" in shown["message"]

    # The language is read when an alert is written: a change applies without a restart.
    hass.config.language = "en"
    await feed({"t": 21.5}, times=4)
    assert kinds(events)[-1] == "resolved"
    resolved = notifications(hass)[notification_id("kitchen", incident_id)]
    assert resolved["title"] == "Resolved: Feuer erkannt – kitchen"
    assert "**Resolved** – readings have been back to normal" in resolved["message"]


async def test_german_resolved_notification(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
) -> None:
    """The all-clear is German too."""
    hass.config.language = "de-AT"
    await setup_entry(hass, mock_config_entry)
    await feed(GAS_MEDIUM, times=3)
    await feed({}, times=4)
    assert kinds(events) == ["opened", "resolved"]
    (shown,) = notifications(hass).values()
    assert shown["title"] == "Behoben: Gaswert erhöht – kitchen"
    assert "**Behoben** – die Messwerte sind seit einer Weile wieder normal." in shown["message"]
    assert "Letzte Messwerte: Temperatur 21,5 °C" in shown["message"]


@pytest.mark.parametrize(
    ("option", "language", "answer_in"),
    [("", "de", "German"), ("", "fr", "English"), ("French", "de", "French")],
    ids=["follows Home Assistant", "no texts: English", "option wins"],
)
async def test_the_model_answers_in_the_alerts_language(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
    option: str,
    language: str,
    answer_in: str,
) -> None:
    """The prompt asks for Home Assistant's language unless the option names another."""
    hass.config.language = language
    options = llm_entry_options(ollama_server.url, **{CONF_LLM_LANGUAGE: option})
    await setup_with_options(hass, mock_config_entry, options)
    await feed(GAS_MEDIUM, times=3)
    await hass.async_block_till_done(wait_background_tasks=True)
    (prompt,) = ollama_server.prompts()
    assert f"Answer in {answer_in} with JSON only" in prompt
    assert kinds(events) == ["opened", "explained"]
    assert events[-1].data["title"] == ANSWER["title"]


def test_english_is_the_fallback() -> None:
    """The fallback language is English and complete."""
    assert ENGLISH.language == "en"
    assert ENGLISH.language_name == "English"
