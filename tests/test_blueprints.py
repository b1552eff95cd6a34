"""The blueprints, loaded through Home Assistant's blueprint machinery and driven by events."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
import re
import shutil
from typing import Any

from homeassistant.components import automation
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import load_yaml
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed, async_mock_service

BLUEPRINTS = Path(__file__).parent.parent / "blueprints" / "automation" / "iotshield"


def incident(**overrides: Any) -> dict[str, Any]:
    """Return event data as the integration fires it."""
    data: dict[str, Any] = {
        "incident_id": "abc123",
        "node_id": "kitchen",
        "node": "Kitchen",
        "device_id": "dev-kitchen",
        "severity": "medium",
        "current_severity": "medium",
        "previous_severity": None,
        "readings": {"gas": 0.5},
        "rules": ["gas_medium"],
        "title": "Gas level raised – Kitchen",
        "explanation": "Kitchen: gas is up.",
        "suggested_action": "Ventilate.",
        "source": "rules",
        "acknowledged": False,
        "opened_at": "2026-11-24T09:00:00+00:00",
    }
    data.update(overrides)
    return data


@pytest.fixture
async def blueprint_hass(hass: HomeAssistant, tmp_path: Path) -> HomeAssistant:
    """Point Home Assistant at a config folder holding the repo's blueprints."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "iotshield")
    return hass


async def use_blueprint(hass: HomeAssistant, path: str, inputs: dict[str, Any]) -> None:
    """Create one automation from a blueprint."""
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {automation.DOMAIN: {"use_blueprint": {"path": f"iotshield/{path}", "input": inputs}}},
    )
    await hass.async_block_till_done()
    (state,) = hass.states.async_all(automation.DOMAIN)
    assert state.state == "on"


async def settle() -> None:
    """Let automation runs proceed.

    A pushed alert's run then waits for the phone's answer for hours, so Home Assistant's
    "block till done" would wait for it; a short real pause lets every run reach its wait.
    """
    await asyncio.sleep(0.1)


async def fire(hass: HomeAssistant, kind: str, **data: Any) -> None:
    """Fire one iotshield_incident_* event and let the automation run."""
    hass.bus.async_fire(f"iotshield_incident_{kind}", incident(**data))
    await settle()


PUSH_INPUTS = {"notify_action": "notify.mobile_app_phone", "min_severity": "medium"}
# The event fields that may be written by the local LLM: plain text only (explain.plain_text).
PLAIN_TEXT_FIELDS = {"title", "explanation", "suggested_action"}


def test_push_alert_shows_only_plain_text_fields() -> None:
    """What a phone shows is built from the incident's plain-text fields and fixed words."""
    blueprint = load_yaml(BLUEPRINTS / "push_alert.yaml")
    assert isinstance(blueprint, dict)
    shown = [
        str(action["data"][key])
        for action in blueprint["actions"]
        if isinstance(action, dict) and action.get("action") == "{{ notify_action }}"
        for key in ("title", "message")
    ]
    assert len(shown) == 4
    used = {field for text in shown for field in re.findall(r"incident\.(\w+)", text)}
    assert used == PLAIN_TEXT_FIELDS
    # Nothing else of the event (node names, readings) nor any markup is added to the text.
    assert not [text for text in shown if re.search(r"trigger\.|[\[\]<>*`]", text)]


async def test_push_alert_message_and_platform_data(blueprint_hass: HomeAssistant) -> None:
    """An opened incident is pushed with explanation, action, tap target and actions."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(hass, "push_alert.yaml", {**PUSH_INPUTS, "dashboard": "/lovelace/safety"})
    await fire(hass, "opened")
    (push,) = pushes
    assert push.data["title"] == "Gas level raised – Kitchen"
    assert push.data["message"] == "Kitchen: gas is up. Ventilate."
    data = push.data["data"]
    assert data["tag"] == "iotshield-abc123"
    assert data["url"] == data["clickAction"] == "/lovelace/safety"
    assert data["priority"] == "normal"
    assert data["channel"] == "iotshield"
    assert data["push"]["interruption-level"] == "active"
    assert data["push"]["sound"] == "default"
    assert [a["title"] for a in data["actions"]] == ["Acknowledge", "Snooze"]
    assert data["actions"][0]["action"] == "IOTSHIELD_ACK_abc123"


async def test_push_alert_critical_uses_critical_sound_and_channel(
    blueprint_hass: HomeAssistant,
) -> None:
    """A critical escalation rings through: iOS critical alert, Android high priority."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(hass, "push_alert.yaml", PUSH_INPUTS)
    await fire(hass, "escalated", severity="critical", previous_severity="medium")
    data = pushes[0].data["data"]
    assert data["priority"] == "high"
    assert data["ttl"] == 0
    assert data["channel"] == "iotshield_critical"
    assert data["push"]["interruption-level"] == "critical"
    assert data["push"]["sound"] == {"name": "default", "critical": 1, "volume": 1.0}


async def test_push_alert_filters_and_quiet_updates(blueprint_hass: HomeAssistant) -> None:
    """Below the minimum nothing is pushed; explanations and the all-clear update quietly."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(
        hass, "push_alert.yaml", {**PUSH_INPUTS, "min_severity": "high", "nodes": ["dev-hall"]}
    )
    await fire(hass, "opened", severity="critical")  # another node
    await fire(hass, "opened", severity="medium", device_id="dev-hall")  # too mild
    assert pushes == []
    await fire(hass, "explained", severity="high", device_id="dev-hall", source="llm")
    await fire(hass, "resolved", severity="high", device_id="dev-hall")
    explained, resolved = pushes
    assert explained.data["data"]["push"]["interruption-level"] == "passive"
    assert explained.data["data"]["push"]["sound"] == "none"
    assert resolved.data["title"] == "Resolved: Gas level raised – Kitchen"
    assert resolved.data["message"] == "All clear. Kitchen: gas is up."
    assert resolved.data["data"]["actions"] == []


async def test_push_alert_acknowledge_and_snooze(blueprint_hass: HomeAssistant) -> None:
    """The phone's Acknowledge calls the service; Snooze also reminds if still open."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    acks: list[ServiceCall] = async_mock_service(hass, "iotshield", "acknowledge")
    await use_blueprint(hass, "push_alert.yaml", {**PUSH_INPUTS, "snooze_minutes": 1})
    await fire(hass, "opened")
    hass.bus.async_fire("mobile_app_notification_action", {"action": "IOTSHIELD_ACK_abc123"})
    await settle()
    assert [call.data for call in acks] == [{"incident_id": "abc123"}]
    assert len(pushes) == 1
    await fire(hass, "opened", incident_id="def456")
    hass.bus.async_fire("mobile_app_notification_action", {"action": "IOTSHIELD_SNOOZE_def456"})
    await settle()
    assert acks[-1].data == {"incident_id": "def456"}
    # Resolved within the snooze: no reminder.
    await fire(hass, "resolved", incident_id="def456")
    assert [p.data["title"].split(":")[0] for p in pushes] == ["Gas level raised – Kitchen"] * 2 + [
        "Resolved"
    ]
    # Still open when the snooze is over: a reminder, with the same tag.
    await fire(hass, "opened", incident_id="ghi789", title="Smoke")
    hass.bus.async_fire("mobile_app_notification_action", {"action": "IOTSHIELD_SNOOZE_ghi789"})
    await settle()
    assert len(pushes) == 4
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=2))
    await settle()
    assert pushes[-1].data["title"] == "Still open: Smoke"
    assert pushes[-1].data["data"]["tag"] == "iotshield-ghi789"


async def test_hazard_response_runs_once_per_incident(blueprint_hass: HomeAssistant) -> None:
    """The user's actions run when an incident reaches the severity, once."""
    hass = blueprint_hass
    calls = async_mock_service(hass, "test", "siren")
    await use_blueprint(
        hass,
        "hazard_response.yaml",
        {
            "severity": "high",
            "response": [
                {"action": "test.siren", "data": {"why": "{{ incident.title }}"}},
            ],
        },
    )
    await fire(hass, "opened", severity="medium")
    assert calls == []
    await fire(hass, "escalated", severity="high", previous_severity="medium", title="Smoke")
    assert [c.data for c in calls] == [{"why": "Smoke"}]
    # Already past the threshold: a further escalation does not run the actions again.
    await fire(hass, "escalated", severity="critical", previous_severity="high")
    assert len(calls) == 1
    await fire(hass, "opened", severity="critical", incident_id="next", title="Fire")
    assert [c.data for c in calls][-1] == {"why": "Fire"}


async def test_push_alert_test_alarm(blueprint_hass: HomeAssistant) -> None:
    """A test alarm is pushed (never as critical), unless the user turned tests off."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(hass, "push_alert.yaml", PUSH_INPUTS)
    await fire(hass, "opened", severity="critical", test=True, title="Test alarm – Kitchen")
    (push,) = pushes
    assert push.data["title"] == "Test alarm – Kitchen"
    assert push.data["data"]["push"]["interruption-level"] == "active"
    assert push.data["data"]["channel"] == "iotshield"
    # The default dashboard is the integration's own.
    assert push.data["data"]["url"] == "/iotshield/nodes"


async def test_push_alert_without_test_alarms(blueprint_hass: HomeAssistant) -> None:
    """With test alarms off only real incidents are pushed."""
    hass = blueprint_hass
    pushes = async_mock_service(hass, "notify", "mobile_app_phone")
    await use_blueprint(hass, "push_alert.yaml", {**PUSH_INPUTS, "test_alarms": False})
    await fire(hass, "opened", severity="high", test=True)
    assert pushes == []
    await fire(hass, "opened", severity="high", test=False, incident_id="real")
    assert len(pushes) == 1


async def test_hazard_response_skips_test_alarms_unless_asked(
    blueprint_hass: HomeAssistant,
) -> None:
    """A drill never cuts the gas by default; the user may include it to test the siren."""
    hass = blueprint_hass
    calls = async_mock_service(hass, "test", "siren")
    response = [{"action": "test.siren", "data": {"why": "{{ incident.title }}"}}]
    await use_blueprint(hass, "hazard_response.yaml", {"severity": "high", "response": response})
    await fire(hass, "opened", severity="high", test=True, title="Test alarm")
    assert calls == []
    await fire(hass, "opened", severity="high", incident_id="real", title="Smoke")
    assert [c.data for c in calls] == [{"why": "Smoke"}]


async def test_hazard_response_on_test_alarm(blueprint_hass: HomeAssistant) -> None:
    """With the option on, a test alarm runs the actions too."""
    hass = blueprint_hass
    calls = async_mock_service(hass, "test", "siren")
    response = [{"action": "test.siren", "data": {"why": "{{ incident.title }}"}}]
    await use_blueprint(
        hass,
        "hazard_response.yaml",
        {"severity": "high", "response": response, "on_test_alarm": True},
    )
    await fire(hass, "opened", severity="high", test=True, title="Test alarm")
    assert [c.data for c in calls] == [{"why": "Test alarm"}]
