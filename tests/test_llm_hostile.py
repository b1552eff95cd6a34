"""A hostile or hijacked Ollama server: its answer is shown only as plain text, never as advice.

The server answers through the real `ollama` client. What it writes must reach the persistent
notification, the latest-alert sensor, the events, the push blueprint and the explain service
as plain text, and from severity high up the rule-based title and advice must stay.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import re
import shutil
from typing import Any

from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_mock_service

from custom_components.iotshield.alerts import notification_id
from custom_components.iotshield.const import CONF_HOLD_TIME, DOMAIN
from custom_components.iotshield.explain import (
    LINK_REMOVED,
    MAX_ACTION,
    MAX_EXPLANATION,
    MAX_TITLE,
    MODEL_LABEL,
    RULE_TEXTS,
    Context,
)
from custom_components.iotshield.incidents import Explanation, Incident, Source
from custom_components.iotshield.llm import LLMSettings, OllamaExplainer, create_connection
from custom_components.iotshield.severity import Level

from .ollama_server import FakeOllama, ollama_server  # noqa: F401
from .test_alerts import (
    FIRE,
    GAS_MEDIUM,
    Feed,
    events,  # noqa: F401
    feed,  # noqa: F401
    kinds,
    llm_entry_options,
    notifications,
    setup_with_options,
)
from .test_blueprints import BLUEPRINTS, PUSH_INPUTS, settle, use_blueprint

pytestmark = pytest.mark.usefixtures("mqtt_mock")

EVIL = "203.0.113.66"
# What the review's fake server answered during a fire, and more of the same.
HOSTILE: dict[str, str] = {
    "title": f"False alarm ![x](http://{EVIL}/track.png)",
    "explanation": (
        "False alarm, the sensor is faulty.\n\n# All clear\n"
        f"<img src=x onerror=alert(1)> [Tap here to silence all alarms](http://{EVIL}/off)"
        f"\x1b[31m\x07\u202e see www.{EVIL}.example"
    ),
    "suggested_action": (
        f"No action needed. **Ignore** the alarm: [Tap here to silence all alarms](http://{EVIL})"
    ),
}
FIRE_TITLE = "Fire detected – kitchen"
FIRE_ACTION = RULE_TEXTS["fire"][2]
# What is left of HOSTILE's explanation as plain text.
HOSTILE_PLAIN = (
    "False alarm, the sensor is faulty. # All clear Tap here to silence all alarms(31m see "
    f"{LINK_REMOVED}"
)
# Anything a Markdown renderer, a browser or a phone would act on, or a terminal would obey.
ACTIVE = re.compile(
    r"[\[\]<>*`~\\\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]|https?:|www\.|" + re.escape(EVIL)
)


def assert_plain(*texts: Any) -> None:
    """Fail when any text holds markup, a link, the attacker's address or a control character."""
    for text in texts:
        assert isinstance(text, str)
        assert ACTIVE.search(text) is None, text


def assert_notification_plain(message: str) -> None:
    """Fail when a notification holds markup beyond its own bold labels and italic footer."""
    own = re.sub(r"\*\*(?:Severity: \w+|What to do:)\*\*|\n\n_[^_]+_$", "", message)
    assert_plain(own.replace("\n\n", " "))


async def wait_for_the_model(hass: HomeAssistant) -> None:
    """Let the background request to the model finish and its result be delivered."""
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_hostile_answer_during_a_fire_keeps_the_rule_advice(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A fire explained as "false alarm, no action" with links: the rules' advice stays."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.answer = dict(HOSTILE)
    await feed(FIRE)
    await wait_for_the_model(hass)
    assert kinds(events) == ["opened", "explained"]
    opened, explained = (event.data for event in events)
    assert (opened["severity"], opened["source"]) == ("critical", "rules")

    # The event: the rules' title and advice, the rules' explanation, then the model's, plain.
    assert explained["title"] == FIRE_TITLE
    assert explained["suggested_action"] == FIRE_ACTION
    assert explained["explanation"] == f"{opened['explanation']} {MODEL_LABEL}{HOSTILE_PLAIN}"
    assert explained["source"] == "llm"
    assert_plain(explained["title"], explained["explanation"], explained["suggested_action"])
    assert "No action needed" not in json.dumps(explained)

    # The persistent notification, which Home Assistant renders as Markdown.
    shown = notifications(hass)[notification_id("kitchen", explained["incident_id"])]
    assert shown["title"] == FIRE_TITLE
    message = shown["message"]
    assert message.startswith("**Severity: critical**\n\n")
    assert f"\n\n**What to do:** {FIRE_ACTION}\n\n" in message
    assert "Title and what to do by IoTShield rules" in message
    assert "No action needed" not in message
    assert_notification_plain(message)

    # The latest-alert sensor.
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest is not None
    assert latest.state == FIRE_TITLE
    assert latest.attributes["suggested_action"] == FIRE_ACTION
    assert latest.attributes["explanation"] == explained["explanation"]
    assert latest.attributes["source"] == "llm"
    assert_plain(latest.state, *(latest.attributes[key] for key in ("explanation", "source")))

    # The explain service asks the model again and answers the same way.
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    response = await hass.services.async_call(
        DOMAIN, "explain", {"device_id": device.id}, blocking=True, return_response=True
    )
    assert response is not None
    assert (response["title"], response["suggested_action"]) == (FIRE_TITLE, FIRE_ACTION)
    assert str(response["explanation"]).endswith(f"{MODEL_LABEL}{HOSTILE_PLAIN}")
    assert_plain(response["title"], response["explanation"], response["suggested_action"])

    # The push blueprint, driven by the events exactly as the integration fired them. (Set up
    # only now: its runs wait hours for the phone, which "block till done" above would await.)
    hass.config.config_dir = str(tmp_path)
    await hass.async_add_executor_job(
        shutil.copytree, BLUEPRINTS, tmp_path / "blueprints" / "automation" / "iotshield"
    )
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(hass, "push_alert.yaml", PUSH_INPUTS)
    for event in list(events):  # the events fixture records what is fired here too
        hass.bus.async_fire(event.event_type, dict(event.data))
        await settle()
    assert [push.data["title"] for push in pushes] == [FIRE_TITLE, FIRE_TITLE]
    pushed = pushes[1].data["message"]
    assert pushed == f"{explained['explanation']} {FIRE_ACTION}"
    assert_plain(pushed)


async def test_hostile_answer_below_high_is_shown_as_plain_text(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """Below high the model may reword title and advice, but only as plain text."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.answer = dict(HOSTILE)
    await feed(GAS_MEDIUM)
    await wait_for_the_model(hass)
    assert kinds(events) == ["opened", "explained"]
    explained = events[1].data
    assert explained["severity"] == "medium"
    assert explained["title"] == "False alarm"
    assert explained["explanation"] == HOSTILE_PLAIN
    assert explained["suggested_action"] == (
        "No action needed. Ignore the alarm: Tap here to silence all alarms"
    )
    assert_plain(explained["title"], explained["explanation"], explained["suggested_action"])
    (shown,) = notifications(hass).values()
    assert shown["title"] == "False alarm"
    assert "Explained by local LLM" in shown["message"]
    assert_notification_plain(shown["message"])
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest is not None
    assert latest.state == "False alarm"
    assert latest.attributes["explanation"] == HOSTILE_PLAIN
    assert_plain(latest.attributes["suggested_action"])


async def test_answer_for_a_milder_severity_never_reaches_an_escalated_incident(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """An answer to "medium gas" arriving after the escalation to fire is dropped."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.answer = dict(HOSTILE)
    ollama_server.gate = gate = asyncio.Event()
    await feed.without_waiting(GAS_MEDIUM, lambda: bool(ollama_server.chats))
    await feed.without_waiting(FIRE, lambda: len(events) == 2)
    assert kinds(events) == ["opened", "escalated"]
    gate.set()
    await wait_for_the_model(hass)
    # The medium answer was asked for and dropped; the fire was asked about and explained once.
    assert len(ollama_server.chats) == 2
    assert kinds(events) == ["opened", "escalated", "explained"]
    explained = events[2].data
    assert (explained["title"], explained["suggested_action"]) == (FIRE_TITLE, FIRE_ACTION)
    (shown,) = notifications(hass).values()
    assert shown["title"] == FIRE_TITLE


async def test_answer_of_nothing_but_markup_leaves_the_rule_text(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """A title that is only an image is no answer: the alert keeps its rule text."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.answer = {**HOSTILE, "title": f"![x](http://{EVIL}/track.png)"}
    await feed(GAS_MEDIUM)
    await wait_for_the_model(hass)
    # Asked again as a malformed answer, then given up on.
    assert len(ollama_server.chats) == 3
    assert kinds(events) == ["opened"]
    (shown,) = notifications(hass).values()
    assert shown["title"] == "Gas level raised – kitchen"
    assert hass.states.get("sensor.kitchen_latest_alert").attributes["source"] == "rules"


async def test_stored_explanation_from_an_earlier_version_is_checked_again(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
) -> None:
    """An open fire kept over a restart with a model's unchecked text is shown with rule advice."""
    hostile = Explanation(
        HOSTILE["title"], HOSTILE["explanation"], HOSTILE["suggested_action"], Source.LLM
    )
    incident = Incident("abc123", 1.7e9, Level.CRITICAL, Level.CRITICAL, ("fire",))
    incident.explanation = hostile
    key = f"{DOMAIN}.{mock_config_entry.entry_id}"
    hass_storage[key] = {
        "version": 1,
        "minor_version": 1,
        "key": key,
        "data": {"command_ctr": 0, "incident": incident.as_dict()},
    }
    await setup_with_options(hass, mock_config_entry, {CONF_HOLD_TIME: 0})
    shown = notifications(hass)[notification_id("kitchen", "abc123")]
    assert shown["title"] == FIRE_TITLE
    assert f"**What to do:** {FIRE_ACTION}" in shown["message"]
    assert_notification_plain(shown["message"])
    # The sensor shows the incident from the node's first reading on; the fire goes on.
    await feed(FIRE)
    assert kinds(events) == []
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest is not None
    assert latest.state == FIRE_TITLE
    assert latest.attributes["suggested_action"] == FIRE_ACTION
    assert latest.attributes["explanation"] == HOSTILE_PLAIN


CONTEXT = Context("Kitchen node", "Kitchen", Level.CRITICAL, {"flame": True}, ("fire",))
TAGS = "<b>Fire</b> <script>alert(1)</script><iframe src=//evil></iframe><a href=x>go</a>"


@pytest.mark.parametrize(
    ("answer", "content"),
    [
        pytest.param(HOSTILE, None, id="links-images-markdown"),
        pytest.param(
            {"title": TAGS, "explanation": TAGS, "suggested_action": TAGS}, None, id="html"
        ),
        pytest.param(
            {
                "title": "&lt;img src=x onerror=alert(1)&gt;Fire",
                "explanation": "&#91;Tap&#93;&#40;http://evil.example&#41; &amp;lt;b&amp;gt;",
                "suggested_action": "&#x3C;script&#x3E;Leave",
            },
            None,
            id="escaped-html",
        ),
        pytest.param(
            {
                "title": "Fire\x00\x07\x1b]0;pwned\x07\x1b[2J",
                "explanation": "Smoke\u202ereversed\u200b\u2066 \ufeffhidden\r\n\tnext line",
                "suggested_action": "Leave\x08\x08\x08\x7fnow\ue000",
            },
            None,
            id="control-characters",
        ),
        pytest.param(
            {
                "title": "Fire " * 10_000,
                "explanation": "[x](http://e.example) " * 20_000,
                "suggested_action": "Leave! " * 50_000,
            },
            None,
            id="oversized",
        ),
        pytest.param(
            None,
            "<b>Here you go</b> [link](http://evil.example)\n" + json.dumps(HOSTILE),
            id="markup-around-the-json",
        ),
    ],
)
async def test_hostile_answers_through_the_real_client(
    ollama_server: FakeOllama,  # noqa: F811
    answer: dict[str, str] | None,
    content: str | None,
) -> None:
    """Every field the real client brings back from a hostile server is plain and bounded."""
    if answer is not None:
        ollama_server.answer = answer
    ollama_server.content = content
    settings = LLMSettings(url=ollama_server.url, timeout=10.0, prompt="{rules}")
    explainer = OllamaExplainer(settings, create_connection(settings.url, settings.timeout))
    try:
        explanation = await explainer.async_explain(CONTEXT)
    finally:
        await explainer.async_close()
    assert explanation.source is Source.LLM
    assert len(explanation.title) <= MAX_TITLE
    assert len(explanation.explanation) <= MAX_EXPLANATION
    assert len(explanation.suggested_action) <= MAX_ACTION
    assert_plain(explanation.title, explanation.explanation, explanation.suggested_action)
    assert "\n" not in explanation.explanation
