"""Incidents in Home Assistant: notifications, events, device triggers, services and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components import automation, persistent_notification
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import area_registry as ar, device_registry as dr, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_get_device_automations,
    async_mock_service,
)

from custom_components.iotshield.alerts import notification_id
from custom_components.iotshield.const import (
    CONF_HOLD_TIME,
    CONF_LEGACY_TOPIC,
    CONF_LLM_COOLDOWN,
    CONF_LLM_ENABLED,
    CONF_LLM_KEEP_ALIVE,
    CONF_LLM_PROVIDER,
    CONF_LLM_URL,
    CONF_MIN_SEVERITY,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    CONF_THRESHOLDS,
    DOMAIN,
    HOME_LLM_KEYS,
)
from custom_components.iotshield.home_llm import LLM_ISSUE_ID, home_entry
from custom_components.iotshield.keys import private_key_pem

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry, setup_home_llm
from .ollama_server import ANSWER, FakeOllama, free_port, ollama_server  # noqa: F401

pytestmark = pytest.mark.usefixtures("mqtt_mock")

DATA_TOPIC = "iotshield/kitchen/sensors/data"
EVENTS = ("opened", "escalated", "explained", "acknowledged", "resolved")
CALM: dict[str, Any] = {}
GAS_MEDIUM = {"g": 0.5}
FIRE = {"g": 0.5, "f": 1, "t": 52.0}


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Resolve an incident at the first calm severity, so tests need no clock."""
    return {
        CONF_PUBLISH_INTERVAL: 5,
        CONF_STALE_INTERVALS: 3,
        CONF_LEGACY_TOPIC: False,
        CONF_HOLD_TIME: 0,
    }


class Feed:
    """Publishes a node's readings with rising sequence numbers."""

    def __init__(self, hass: HomeAssistant, key: rsa.RSAPublicKey) -> None:
        """Remember where to publish and with which key."""
        self.hass, self.key, self.seq = hass, key, 0

    async def __call__(self, readings: dict[str, Any], times: int = 1) -> None:
        """Publish the readings `times` times."""
        for _ in range(times):
            self.seq += 1
            await publish(
                self.hass, DATA_TOPIC, encrypt(self.key, telemetry(seq=self.seq, **readings))
            )

    async def without_waiting(self, readings: dict[str, Any], until: Callable[[], bool]) -> None:
        """Publish once and wait only until `until` holds, not for the LLM's background work."""
        self.seq += 1
        async_fire_mqtt_message(
            self.hass, DATA_TOPIC, encrypt(self.key, telemetry(seq=self.seq, **readings))
        )
        async with asyncio.timeout(10):
            # Several tasks change what `until` looks at; there is no single event to await.
            while not until():  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def calm_down(self) -> None:
        """Publish enough calm readings for the severity to drop (hysteresis) and resolve."""
        await self(CALM, times=4)


@pytest.fixture
def feed(hass: HomeAssistant, public_key: rsa.RSAPublicKey) -> Feed:
    """Return the publisher of readings."""
    return Feed(hass, public_key)


@pytest.fixture
def events(hass: HomeAssistant) -> list[Event]:
    """Collect every iotshield_incident_* event."""
    # A callback records on the loop; a plain function would run later, in the thread pool.
    seen: list[Event] = []
    for name in EVENTS:
        hass.bus.async_listen(
            f"iotshield_incident_{name}", callback(lambda event: seen.append(event))
        )
    return seen


def notifications(hass: HomeAssistant) -> dict[str, dict[str, Any]]:
    """Return IoTShield's persistent notifications by id."""
    return {
        key: dict(value)
        for key, value in persistent_notification._async_get_or_create_notifications(hass).items()
        if key.startswith(DOMAIN)
    }


def kinds(events: list[Event]) -> list[str]:
    """Return the event types without their common prefix."""
    return [event.event_type.removeprefix("iotshield_incident_") for event in events]


async def test_incident_lifecycle(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    events: list[Event],
) -> None:
    """Open, escalate, resolve: one notification, one event per transition, all fields."""
    await setup_entry(hass, mock_config_entry)
    await feed(CALM)
    await feed({"m": 1})  # LOW stays below the default minimum
    assert events == []
    await feed(GAS_MEDIUM, times=3)
    assert kinds(events) == ["opened"]
    opened = events[0].data
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    assert opened == {
        "incident_id": opened["incident_id"],
        "node_id": "kitchen",
        "node": "kitchen",
        "device_id": device.id,
        "severity": "medium",
        "current_severity": "medium",
        "previous_severity": None,
        "readings": {
            "temperature": 21.5,
            "humidity": 45.0,
            "gas": 0.5,
            "light": 320.0,
            "flame": False,
            "motion": False,
        },
        "rules": ["gas_medium"],
        # The detector is still learning this home: nothing is unusual yet.
        "anomalies": {},
        "title": "Gas level raised – kitchen",
        "explanation": opened["explanation"],
        "suggested_action": "Ventilate the room and check gas appliances and anything burning.",
        "source": "rules",
        "acknowledged": False,
        "opened_at": opened["opened_at"],
        "test": False,
    }
    assert "gas 0.50" in opened["explanation"]
    incident_id = opened["incident_id"]
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.attributes["incident_id"] == incident_id
    assert severity.attributes["incident_severity"] == "medium"
    shown = notifications(hass)
    assert list(shown) == [notification_id("kitchen", incident_id)]
    assert shown[notification_id("kitchen", incident_id)]["title"] == "Gas level raised – kitchen"

    await feed(FIRE)
    assert kinds(events) == ["opened", "escalated"]
    escalated = events[1].data
    assert escalated["incident_id"] == incident_id
    assert (escalated["severity"], escalated["previous_severity"]) == ("critical", "medium")
    assert "fire" in escalated["rules"]
    assert escalated["title"] == "Fire detected – kitchen"
    shown = notifications(hass)
    assert list(shown) == [notification_id("kitchen", incident_id)]
    assert shown[notification_id("kitchen", incident_id)]["title"] == "Fire detected – kitchen"
    assert "Severity: critical" in shown[notification_id("kitchen", incident_id)]["message"]

    await feed.calm_down()
    assert kinds(events) == ["opened", "escalated", "resolved"]
    assert events[2].data["previous_severity"] == "critical"
    shown = notifications(hass)
    assert list(shown) == [notification_id("kitchen", incident_id)]
    resolved = shown[notification_id("kitchen", incident_id)]
    assert resolved["title"].startswith("Resolved: ")
    assert "Latest readings: temperature 21.5 °C" in resolved["message"]
    assert hass.states.get("sensor.kitchen_severity").attributes["incident_id"] is None
    # The latest alert stays readable after the incident resolved.
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest.state == "Fire detected – kitchen"
    assert latest.attributes["resolved"] is True
    assert latest.attributes["severity"] == "critical"
    assert latest.attributes["incident_id"] == incident_id
    assert latest.attributes["source"] == "rules"

    # The next hazard is a new incident with its own notification.
    await feed(GAS_MEDIUM)
    assert kinds(events)[-1] == "opened"
    assert events[-1].data["incident_id"] != incident_id
    assert len(notifications(hass)) == 2


@pytest.mark.parametrize(
    "entry_options",
    [{CONF_HOLD_TIME: 0, CONF_MIN_SEVERITY: "critical"}],
)
async def test_minimum_severity_option(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """With a CRITICAL minimum, a gas reading alone opens nothing; a fire does."""
    await setup_entry(hass, mock_config_entry)
    await feed({"g": 0.7})
    assert events == []
    assert notifications(hass) == {}
    await feed(FIRE)
    assert kinds(events) == ["opened"]


async def test_hold_time_keeps_the_incident_open(
    hass: HomeAssistant,
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
    events: list[Event],
) -> None:
    """With the default hold time, calm readings right after a hazard do not resolve it."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title="kitchen",
        unique_id="kitchen",
        data={
            "node_id": "kitchen",
            "topic_prefix": "iotshield",
            "private_key": private_key_pem(private_key),
        },
        options={},
    )
    await setup_entry(hass, entry)
    feed = Feed(hass, public_key)
    await feed(GAS_MEDIUM)
    await feed.calm_down()
    assert kinds(events) == ["opened"]
    assert hass.states.get("sensor.kitchen_severity").state == "normal"
    assert hass.states.get("sensor.kitchen_severity").attributes["incident_id"] is not None


async def test_restart_keeps_the_incident_without_alerting_again(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """An open incident survives a reload (as at a restart): no new event, same notification."""
    await setup_entry(hass, mock_config_entry)
    await feed(GAS_MEDIUM)
    incident_id = events[0].data["incident_id"]
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    # Notifications are not kept by Home Assistant over a restart; the incident shows it again.
    persistent_notification.async_dismiss(hass, notification_id("kitchen", incident_id))
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert list(notifications(hass)) == [notification_id("kitchen", incident_id)]
    await feed(GAS_MEDIUM, times=2)
    assert kinds(events) == ["opened"]
    assert hass.states.get("sensor.kitchen_severity").attributes["incident_id"] == incident_id
    await feed(FIRE)
    assert kinds(events) == ["opened", "escalated"]
    assert events[1].data["incident_id"] == incident_id


async def test_acknowledge_service(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """Acknowledging dismisses the notification; a worse severity alerts again."""
    await setup_entry(hass, mock_config_entry)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "acknowledge", {}, blocking=True)
    assert err.value.translation_key == "acknowledge_what"
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "acknowledge", {"incident_id": "nope"}, blocking=True
        )
    assert err.value.translation_key == "no_open_incident"
    await feed(GAS_MEDIUM)
    incident_id = events[0].data["incident_id"]
    await hass.services.async_call(
        DOMAIN, "acknowledge", {"incident_id": incident_id}, blocking=True
    )
    # Since 2026.9 an event fired during a service call may be dispatched after the call returns.
    await hass.async_block_till_done()
    assert kinds(events) == ["opened", "acknowledged"]
    assert events[1].data["acknowledged"] is True
    assert notifications(hass) == {}
    assert hass.states.get("sensor.kitchen_severity").attributes["incident_acknowledged"] is True
    # Acknowledging again by device is accepted and changes nothing.
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    await hass.services.async_call(DOMAIN, "acknowledge", {"device_id": device.id}, blocking=True)
    await hass.async_block_till_done()
    assert kinds(events) == ["opened", "acknowledged"]
    await feed(FIRE)
    assert kinds(events)[-1] == "escalated"
    assert events[-1].data["acknowledged"] is False
    assert list(notifications(hass)) == [notification_id("kitchen", incident_id)]


async def test_explain_service_with_rules(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed
) -> None:
    """Without an LLM the explain service answers from the rules, with the node's room."""
    await setup_entry(hass, mock_config_entry)
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    area = ar.async_get(hass).async_create("Kitchen")
    dr.async_get(hass).async_update_device(device.id, area_id=area.id)
    await feed(FIRE)
    response = await hass.services.async_call(
        DOMAIN, "explain", {"device_id": device.id}, blocking=True, return_response=True
    )
    assert response is not None
    assert response["source"] == "rules"
    assert response["severity"] == "critical"
    assert response["title"] == "Fire detected – kitchen"
    assert str(response["explanation"]).startswith("kitchen (Kitchen): ")
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "explain", {"device_id": "nope"}, blocking=True, return_response=True
        )


async def test_device_triggers_fire_an_automation(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed
) -> None:
    """The automation editor offers the triggers, and they fire for this node only."""
    await setup_entry(hass, mock_config_entry)
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, device.id)
    offered = {t["type"] for t in triggers if t["domain"] == DOMAIN}
    assert offered == {f"incident_{name}" for name in EVENTS}
    calls = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: [
                {
                    "trigger": {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device.id,
                        "type": f"incident_{name}",
                    },
                    "action": {
                        "service": "test.automation",
                        "data": {
                            "type": name,
                            "severity": "{{ trigger.event.data.severity }}",
                            "title": "{{ trigger.event.data.title }}",
                        },
                    },
                }
                for name in ("opened", "escalated", "resolved")
            ]
        },
    )
    await feed(GAS_MEDIUM)
    await feed(FIRE)
    await feed.calm_down()
    await hass.async_block_till_done()
    got = [(c.data["type"], c.data["severity"]) for c in calls]
    assert got == [("opened", "medium"), ("escalated", "critical"), ("resolved", "critical")]
    # Another node's event does not fire this node's trigger.
    hass.bus.async_fire("iotshield_incident_opened", {"device_id": "other", "severity": "high"})
    await hass.async_block_till_done()
    assert len(calls) == 3


async def test_thresholds_from_options(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """Edited thresholds change what counts as a hazard after the options flow."""
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "thresholds"}
    )
    assert result["step_id"] == "thresholds"
    defaults = {
        key: marker.default() for key, marker in ((str(k), k) for k in result["data_schema"].schema)
    }
    assert defaults["gas_medium"] == 0.4
    wrong = {**defaults, "gas_low": 0.5, "gas_medium": 0.3}
    result = await hass.config_entries.options.async_configure(result["flow_id"], wrong)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"gas_low": "thresholds_not_ordered"}
    wrong = {**defaults, "humidity_high": 120.0}
    result = await hass.config_entries.options.async_configure(result["flow_id"], wrong)
    assert result["errors"] == {"humidity_high": "thresholds_out_of_range"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**defaults, "gas_medium": 0.55}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert mock_config_entry.options[CONF_THRESHOLDS]["gas"]["medium"] == 0.55
    assert mock_config_entry.options[CONF_HOLD_TIME] == 0  # other options kept
    assert mock_config_entry.state is ConfigEntryState.LOADED
    await feed({"g": 0.5})
    assert hass.states.get("sensor.kitchen_severity").state == "low"
    assert events == []


async def test_alerts_options(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """Minimum severity and hold time are stored from the incidents step."""
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "alerts"}
    )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_MIN_SEVERITY: "high", CONF_HOLD_TIME: 120.0}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert mock_config_entry.options[CONF_MIN_SEVERITY] == "high"
    assert mock_config_entry.options[CONF_HOLD_TIME] == 120


def _form_defaults(schema: Any) -> dict[str, Any]:
    """Return what the frontend submits untouched: defaults, and suggested values that are set."""
    values: dict[str, Any] = {}
    for key in schema.schema:
        # voluptuous marks a missing default with an object that is not callable.
        if callable(key.default):
            values[str(key)] = key.default()
        elif suggested := (key.description or {}).get("suggested_value"):
            values[str(key)] = suggested
    return values


async def _llm_options(
    hass: HomeAssistant, entry: MockConfigEntry, **changes: Any
) -> dict[str, Any]:
    """Open the node's LLM step and submit its defaults with some changes."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "llm"}
    )
    assert result["step_id"] == "llm"
    values = _form_defaults(result["data_schema"])
    values.update(changes)
    return await hass.config_entries.options.async_configure(result["flow_id"], values)


async def _home_llm_form(
    hass: HomeAssistant, flow_id: str, schema: Any, **changes: Any
) -> dict[str, Any]:
    """Submit the home LLM's form with its defaults and some changes."""
    values = _form_defaults(schema)
    values.update(changes)
    return await hass.config_entries.options.async_configure(flow_id, values)


async def test_the_first_node_sets_up_the_home_llm(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """Switching a node's LLM on without a home LLM leads to its form, checked before saving."""
    await setup_entry(hass, mock_config_entry)
    result = await _llm_options(hass, mock_config_entry, llm_enabled=True)
    assert result["step_id"] == "home_llm"
    # AI Task is offered only where Home Assistant runs it.
    assert CONF_LLM_PROVIDER not in {str(key) for key in result["data_schema"].schema}
    flow_id, schema = result["flow_id"], result["data_schema"]
    refused = f"http://127.0.0.1:{free_port()}"
    result = await _home_llm_form(hass, flow_id, schema, llm_url=refused)
    assert result["errors"] == {"base": "cannot_connect"}
    result = await _home_llm_form(
        hass, flow_id, schema, llm_url=ollama_server.url, llm_model="qwen3:8b"
    )
    assert result["errors"] == {"llm_model": "model_missing"}
    result = await _home_llm_form(
        hass, flow_id, schema, llm_url=ollama_server.url, llm_prompt="{key}"
    )
    assert result["errors"] == {"llm_prompt": "invalid_prompt"}
    assert home_entry(hass) is None
    result = await _home_llm_form(hass, flow_id, schema, llm_url=ollama_server.url + "/")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done(wait_background_tasks=True)
    assert mock_config_entry.options[CONF_LLM_ENABLED] is True
    assert CONF_LLM_URL not in mock_config_entry.options
    home = home_entry(hass)
    assert home is not None
    assert home.state is ConfigEntryState.LOADED
    assert home.options[CONF_LLM_URL] == ollama_server.url
    assert home.options["llm_model"] == "llama3.2:1b"
    # The model was loaded ahead when the home's entry started.
    assert ollama_server.preloads


async def test_node_llm_options_with_a_home_llm(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """With a home LLM, a node only opts out or names its own model, which is checked."""
    await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    await setup_entry(hass, mock_config_entry)
    result = await _llm_options(hass, mock_config_entry, llm_model="qwen3:8b")
    assert result["errors"] == {"llm_model": "model_missing"}
    ollama_server.models.append("qwen3:8b")
    result = await _llm_options(hass, mock_config_entry, llm_model="qwen3:8b")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    # The saved options reload the node; let it finish before the next change.
    await hass.async_block_till_done()
    assert mock_config_entry.options["llm_model"] == "qwen3:8b"
    # Switched off, nothing is asked of the server.
    ollama_server.models.clear()
    result = await _llm_options(hass, mock_config_entry, llm_enabled=False)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert mock_config_entry.options[CONF_LLM_ENABLED] is False


async def setup_with_options(
    hass: HomeAssistant, entry: MockConfigEntry, options: dict[str, Any]
) -> None:
    """Load a node entry with the given options; LLM settings go to the home's LLM entry."""
    home = {key: value for key, value in options.items() if key in HOME_LLM_KEYS}
    if home:
        await setup_home_llm(hass, home)
    entry.add_to_hass(hass)
    node = {key: value for key, value in options.items() if key not in HOME_LLM_KEYS}
    hass.config_entries.async_update_entry(entry, options=node)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def llm_entry_options(url: str, **extra: Any) -> dict[str, Any]:
    """Return options with the home's LLM at `url` and the node using it."""
    return {CONF_HOLD_TIME: 0, CONF_LLM_ENABLED: True, CONF_LLM_URL: url, **extra}


async def test_llm_upgrades_the_explanation(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    events: list[Event],
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """The rule-based alert goes out first; the model's answer follows as `explained`."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.gate = gate = asyncio.Event()
    await feed.without_waiting(GAS_MEDIUM, lambda: bool(events and ollama_server.chats))
    # The model has not answered yet, and the alert is already out.
    assert kinds(events) == ["opened"]
    assert events[0].data["source"] == "rules"
    gate.set()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "explained"]
    explained = events[1].data
    assert explained["source"] == "llm"
    assert explained["title"] == ANSWER["title"]
    assert explained["incident_id"] == events[0].data["incident_id"]
    (shown,) = notifications(hass).values()
    assert shown["title"] == ANSWER["title"]
    assert "local LLM" in shown["message"]
    # The prompt has the node's name and readings, never its keys or ids.
    (prompt,) = ollama_server.prompts()
    assert "kitchen" in prompt
    assert "gas: 0.50" in prompt
    assert "PRIVATE" not in prompt
    assert mock_config_entry.entry_id not in prompt
    assert events[0].data["device_id"] not in prompt
    # The explain service uses the model too.
    device = dr.async_entries_for_config_entry(dr.async_get(hass), mock_config_entry.entry_id)[0]
    response = await hass.services.async_call(
        DOMAIN, "explain", {"device_id": device.id}, blocking=True, return_response=True
    )
    assert response is not None
    assert response["source"] == "llm"


async def test_the_model_is_loaded_ahead_of_the_first_incident(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    events: list[Event],
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """At start-up the model is loaded, so the first explanation meets a warm model."""
    ollama_server.load_seconds = 0.2
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [p["model"] for p in ollama_server.preloads] == ["llama3.2:1b"]
    assert (ollama_server.loads, ollama_server.chats) == (1, [])
    await feed(GAS_MEDIUM, times=3)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "explained"]
    assert ollama_server.loads == 1


@pytest.mark.parametrize("reachable", [True, False])
async def test_no_preload_when_the_model_unloads_after_each_answer(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ollama_server: FakeOllama,  # noqa: F811
    reachable: bool,
) -> None:
    """Keep-alive 0 means unload after each answer: loading ahead would be wasted."""
    url = ollama_server.url if reachable else f"http://127.0.0.1:{free_port()}"
    options = llm_entry_options(url, **{CONF_LLM_KEEP_ALIVE: 0 if reachable else 600})
    await setup_with_options(hass, mock_config_entry, options)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert ollama_server.preloads == []
    # A server that cannot be reached ahead raises no repair: only real requests count.
    assert ir.async_get(hass).async_get_issue(DOMAIN, LLM_ISSUE_ID) is None


async def test_llm_cooldown_and_escalation(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    events: list[Event],
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """A second incident of the same severity keeps its rules text; escalation bypasses that."""
    await setup_with_options(
        hass, mock_config_entry, llm_entry_options(ollama_server.url, **{CONF_LLM_COOLDOWN: 3600})
    )
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    await feed.calm_down()
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "explained", "resolved", "opened"]
    assert len(ollama_server.chats) == 1
    await feed(FIRE)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events)[-2:] == ["escalated", "explained"]
    assert len(ollama_server.chats) == 2


async def test_unreachable_llm_never_delays_alerts_and_raises_a_repair(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    events: list[Event],
    socket_enabled: None,
) -> None:
    """With the server gone, alerts carry rule texts and a repair issue appears, then goes."""
    await setup_with_options(
        hass,
        mock_config_entry,
        llm_entry_options(f"http://127.0.0.1:{free_port()}", **{CONF_LLM_COOLDOWN: 0}),
    )
    registry = ir.async_get(hass)
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened"]
    assert registry.async_get_issue(DOMAIN, LLM_ISSUE_ID) is None
    await feed(FIRE)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "escalated"]
    assert events[1].data["source"] == "rules"
    issue = registry.async_get_issue(DOMAIN, LLM_ISSUE_ID)
    assert issue is not None
    assert issue.translation_key == "llm_unreachable"
    # New settings start afresh; removing the home's LLM clears the issue for good.
    home = home_entry(hass)
    assert home is not None
    hass.config_entries.async_update_entry(home, options={**home.options, "llm_timeout": 5.0})
    await hass.async_block_till_done()
    assert registry.async_get_issue(DOMAIN, LLM_ISSUE_ID) is None
    await feed.calm_down()
    for readings in (GAS_MEDIUM, FIRE):
        await feed(readings)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert registry.async_get_issue(DOMAIN, LLM_ISSUE_ID) is not None
    await hass.config_entries.async_remove(home.entry_id)
    await hass.async_block_till_done()
    assert registry.async_get_issue(DOMAIN, LLM_ISSUE_ID) is None


async def test_unloading_leaves_nothing_running(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """A request still with the model when the entry unloads is cancelled cleanly."""
    await setup_with_options(hass, mock_config_entry, llm_entry_options(ollama_server.url))
    ollama_server.gate = asyncio.Event()
    await feed.without_waiting(GAS_MEDIUM, lambda: bool(ollama_server.chats))
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
