"""Test alarm and Acknowledge: a drill through the whole alert path, never mistaken for a hazard."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.components import automation
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
)

from custom_components.iotshield.alerts import notification_id
from custom_components.iotshield.const import DOMAIN
from custom_components.iotshield.incidents import DRILL_SECONDS

from . import test_alerts
from .helpers import setup_entry
from .test_alerts import CALM, FIRE, GAS_MEDIUM, Feed, kinds, notifications

pytestmark = pytest.mark.usefixtures("mqtt_mock")

# The incident tests' fixtures: readings published as a node does, events collected, and an
# incident that resolves at the first calm reading.
entry_options = test_alerts.entry_options
feed = test_alerts.feed
events = test_alerts.events

ACKNOWLEDGE = "button.kitchen_acknowledge_alert"
TEST_ALARM = "button.kitchen_test_alarm"
LATEST = "sensor.kitchen_latest_alert"


def device_id(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    """Return the node's device id."""
    return dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)[0].id


async def press(hass: HomeAssistant, entity_id: str) -> None:
    """Press a button as the dashboard does, and let the events it fires arrive."""
    await hass.services.async_call("button", "press", {"entity_id": entity_id}, blocking=True)
    # Since 2026.9 events fired inside a service call may be dispatched after it returns.
    await hass.async_block_till_done()


async def test_test_alarm_runs_through_the_alert_path(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """The service opens a drill (notification, events flagged test); Acknowledge ends it."""
    await setup_entry(hass, mock_config_entry)
    await feed(CALM)
    response = await hass.services.async_call(
        DOMAIN,
        "test_alarm",
        {"device_id": device_id(hass, mock_config_entry)},
        blocking=True,
        return_response=True,
    )
    await hass.async_block_till_done()
    assert response is not None
    incident_id = response["incident_id"]
    assert kinds(events) == ["opened"]
    opened = events[0].data
    assert opened["incident_id"] == incident_id
    assert opened["test"] is True
    assert opened["severity"] == "high"
    assert opened["title"] == "Test alarm – kitchen"
    assert "Nothing is wrong" in opened["explanation"]
    assert opened["rules"] == ["test_alarm"]
    (shown,) = notifications(hass).values()
    assert shown["title"] == "Test alarm – kitchen"
    # The drill is an alert, not a hazard: severity and hazard stay as the readings say.
    assert hass.states.get("sensor.kitchen_severity").state == "normal"
    assert hass.states.get("binary_sensor.kitchen_hazard").state == "off"
    latest = hass.states.get(LATEST)
    assert latest.state == "Test alarm – kitchen"
    assert latest.attributes["status"] == "open"
    assert latest.attributes["test"] is True
    assert dt_util.parse_datetime(latest.attributes["opened_at"]) is not None
    # Readings during the drill neither escalate nor end it.
    await feed(CALM, times=3)
    assert kinds(events) == ["opened"]

    await press(hass, ACKNOWLEDGE)
    assert kinds(events) == ["opened", "acknowledged", "resolved"]
    assert all(event.data["test"] is True for event in events)
    assert notifications(hass) == {}
    latest = hass.states.get(LATEST)
    assert latest.attributes["status"] == "resolved"
    assert latest.attributes["resolved_at"] is not None
    # Nothing is left to acknowledge: the button says so in the user's language.
    with pytest.raises(ServiceValidationError) as err:
        await press(hass, ACKNOWLEDGE)
    assert err.value.translation_key == "nothing_to_acknowledge"
    assert err.value.translation_placeholders == {"node": "kitchen"}


async def test_test_alarm_never_hides_a_real_incident(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """No drill while an incident is open; a second drill waits for the first."""
    await setup_entry(hass, mock_config_entry)
    await feed(GAS_MEDIUM)
    with pytest.raises(ServiceValidationError) as err:
        await press(hass, TEST_ALARM)
    assert err.value.translation_key == "test_alarm_busy"
    await press(hass, ACKNOWLEDGE)
    # Acknowledged is still open: a drill now would take its place on the dashboard.
    with pytest.raises(ServiceValidationError):
        await press(hass, TEST_ALARM)
    await feed.calm_down()
    assert kinds(events) == ["opened", "acknowledged", "resolved"]
    await press(hass, TEST_ALARM)
    with pytest.raises(ServiceValidationError) as err:
        await press(hass, TEST_ALARM)
    assert err.value.translation_key == "test_alarm_busy"
    assert kinds(events)[3:] == ["opened"]


async def test_a_real_hazard_ends_the_drill(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, feed: Feed, events: list[Event]
) -> None:
    """A fire during a drill is alerted as a fire, with its own incident, never as a test."""
    await setup_entry(hass, mock_config_entry)
    await feed(CALM)
    await press(hass, TEST_ALARM)
    drill = events[0].data["incident_id"]
    await feed(FIRE)
    assert kinds(events) == ["opened", "resolved", "opened"]
    assert [event.data["test"] for event in events] == [True, True, False]
    assert events[1].data["incident_id"] == drill
    fire = events[2].data
    assert fire["incident_id"] != drill
    assert fire["severity"] == "critical"
    assert notification_id("kitchen", fire["incident_id"]) in notifications(hass)
    assert hass.states.get(LATEST).attributes["test"] is False
    # Acknowledge now silences the fire, not a test.
    await press(hass, ACKNOWLEDGE)
    assert events[-1].data["incident_id"] == fire["incident_id"]
    assert kinds(events)[-1] == "acknowledged"


async def test_an_unanswered_drill_ends_by_itself(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, events: list[Event]
) -> None:
    """After five minutes the drill resolves, even if the node sends nothing."""
    await setup_entry(hass, mock_config_entry)
    await press(hass, TEST_ALARM)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=DRILL_SECONDS - 5))
    await hass.async_block_till_done()
    assert kinds(events) == ["opened"]
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=DRILL_SECONDS + 1))
    await hass.async_block_till_done()
    assert kinds(events) == ["opened", "resolved"]
    assert events[1].data["test"] is True
    assert hass.states.get(LATEST).attributes["status"] == "resolved"


async def test_a_drill_does_not_survive_a_restart(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, events: list[Event]
) -> None:
    """A drill open at a restart is ended, and said so, instead of ringing again."""
    await setup_entry(hass, mock_config_entry)
    await press(hass, TEST_ALARM)
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert kinds(events) == ["opened", "resolved"]
    assert notifications(hass) == {} or all(
        value["title"].startswith("Resolved") for value in notifications(hass).values()
    )
    # No timer of the old drill is left to fire.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=DRILL_SECONDS + 1))
    await hass.async_block_till_done()
    assert kinds(events) == ["opened", "resolved"]


async def test_device_trigger_sees_the_drill(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """A device-trigger automation runs on the drill and can tell it is a test."""
    await setup_entry(hass, mock_config_entry)
    device = device_id(hass, mock_config_entry)
    calls = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: {
                "trigger": {
                    "platform": "device",
                    "domain": DOMAIN,
                    "device_id": device,
                    "type": "incident_opened",
                },
                "action": {
                    "service": "test.automation",
                    "data": {"test": "{{ trigger.event.data.test }}"},
                },
            }
        },
    )
    await hass.services.async_call(DOMAIN, "test_alarm", {"device_id": device}, blocking=True)
    await hass.async_block_till_done()
    assert [call.data["test"] for call in calls] == [True]


async def test_test_alarm_service_checks_its_device(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """An unknown device is refused with a translated error."""
    await setup_entry(hass, mock_config_entry)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "test_alarm", {"device_id": "nope"}, blocking=True)
    assert err.value.translation_key == "unknown_device"
