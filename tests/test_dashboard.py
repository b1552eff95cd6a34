"""The IoTShield dashboard: every loaded node on it, made when it is read, with its controls."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components.lovelace import dashboard as lovelace_dashboard
from homeassistant.components.lovelace.const import LOVELACE_DATA
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.iotshield.const import CONF_NODE_ID, CONF_PRIVATE_KEY, DOMAIN
from custom_components.iotshield.dashboard import URL_PATH, NodeView, dashboard_config, node_section
from custom_components.iotshield.keys import private_key_pem

from .helpers import setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")

PANELS = "frontend_panels"


def _entities(node: str) -> dict[str, str]:
    """Return entity ids by key as a node's entry registers them."""
    return {
        "latest_alert": f"sensor.{node}_latest_alert",
        "severity": f"sensor.{node}_severity",
        "acknowledge": f"button.{node}_acknowledge_alert",
        "test_alarm": f"button.{node}_test_alarm",
        "hazard": f"binary_sensor.{node}_hazard",
        "temperature": f"sensor.{node}_temperature",
        "relearn": f"button.{node}_relearn_normal",
    }


def test_a_section_per_node_by_room_then_name() -> None:
    """Nodes are ordered by area and name; each section leads with its alert and controls."""
    config = dashboard_config(
        [
            NodeView("Kitchen", "Ground floor", _entities("kitchen")),
            NodeView("attic", None, _entities("attic")),
            NodeView("Hall", "Ground floor", _entities("hall")),
        ]
    )
    (view,) = config["views"]
    assert view["type"] == "sections"
    headings = [section["cards"][0]["heading"] for section in view["sections"]]
    assert headings == ["attic", "Hall · Ground floor", "Kitchen · Ground floor"]
    cards = view["sections"][2]["cards"]
    shown = [card["entity"] for card in cards if "entity" in card]
    assert shown == [
        "sensor.kitchen_latest_alert",
        "sensor.kitchen_severity",
        "button.kitchen_acknowledge_alert",
        "button.kitchen_test_alarm",
        "binary_sensor.kitchen_hazard",
        "sensor.kitchen_temperature",
    ]
    # The latest alert's tile tells what, how it stands and since when.
    assert cards[1]["state_content"] == ["state", "status", "opened_at"]
    # A tap on Acknowledge presses it, instead of opening a dialog.
    press = cards[3]["tap_action"]
    assert press == {
        "action": "perform-action",
        "perform_action": "button.press",
        "target": {"entity_id": "button.kitchen_acknowledge_alert"},
    }
    assert cards[3]["icon_tap_action"] == press
    assert cards[3]["hide_state"] is True
    # The explanation and what to do, only while there is an alert to explain.
    (markdown,) = [card for card in cards if card["type"] == "markdown"]
    assert "state_attr('sensor.kitchen_latest_alert', 'suggested_action')" in markdown["content"]
    assert "**What to do:**" in markdown["content"]
    assert markdown["visibility"] == [
        {
            "condition": "state",
            "entity": "sensor.kitchen_latest_alert",
            "state_not": ["none", "unknown", "unavailable"],
        }
    ]


def test_a_node_without_some_entities() -> None:
    """Keys the node does not have (disabled, hidden) leave no empty card."""
    section = node_section(NodeView("Hall", None, {"severity": "sensor.hall_severity"}))
    assert [card["type"] for card in section["cards"]] == ["heading", "tile"]


async def test_the_dashboard_speaks_the_users_language(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, mock_config_entry: MockConfigEntry
) -> None:
    """The few words the dashboard adds are in Home Assistant's language."""
    hass.config.language = "de"
    assert await async_setup_component(hass, "lovelace", {})
    await setup_entry(hass, mock_config_entry)
    config = await _config(hass_ws_client, hass)
    cards = config["views"][0]["sections"][0]["cards"]
    (markdown,) = [card for card in cards if card["type"] == "markdown"]
    assert "**Was tun:**" in markdown["content"]


async def _node(hass: HomeAssistant, key: rsa.RSAPrivateKey, node_id: str) -> MockConfigEntry:
    """Add and load one more node."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title=node_id,
        unique_id=node_id,
        data={
            CONF_NODE_ID: node_id,
            "topic_prefix": "iotshield",
            CONF_PRIVATE_KEY: private_key_pem(key),
        },
        options={"publish_interval": 5, "stale_intervals": 3, "legacy_topic": False},
        version=1,
    )
    await setup_entry(hass, entry)
    return entry


async def _config(hass_ws_client: WebSocketGenerator, hass: HomeAssistant) -> dict[str, Any]:
    """Read the dashboard as the frontend does."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "lovelace/config", "url_path": URL_PATH})
    response = await client.receive_json()
    assert response["success"], response
    config: dict[str, Any] = response["result"]
    return config


def _shown(config: dict[str, Any]) -> list[str]:
    """Return every entity the dashboard shows."""
    return [
        card["entity"]
        for view in config["views"]
        for section in view["sections"]
        for card in section["cards"]
        if "entity" in card
    ]


async def test_every_loaded_node_appears_without_editing(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """The sidebar gets the dashboard with the first node; nodes added later appear on it."""
    assert await async_setup_component(hass, "lovelace", {})
    assert URL_PATH not in hass.data.get(PANELS, {})
    await setup_entry(hass, mock_config_entry)
    panel = hass.data[PANELS][URL_PATH]
    assert panel.component_name == "lovelace"
    assert panel.sidebar_title == "IoTShield"
    assert panel.config == {"mode": "yaml"}
    shown = _shown(await _config(hass_ws_client, hass))
    assert "sensor.kitchen_latest_alert" in shown
    assert "button.kitchen_acknowledge_alert" in shown
    assert "button.kitchen_test_alarm" in shown

    updates = []
    hass.bus.async_listen("lovelace_updated", updates.append)
    hall = await _node(hass, private_key, "hall")
    await hass.async_block_till_done()
    assert [event.data for event in updates] == [{"url_path": URL_PATH}]
    shown = _shown(await _config(hass_ws_client, hass))
    assert "sensor.hall_latest_alert" in shown
    assert "sensor.kitchen_latest_alert" in shown

    # The user's area and name for a node are what the heading shows.
    device = dr.async_entries_for_config_entry(dr.async_get(hass), hall.entry_id)[0]
    area = ar.async_get(hass).async_create("Hallway")
    dr.async_get(hass).async_update_device(device.id, area_id=area.id, name_by_user="Front hall")
    # A disabled entity is not shown.
    er.async_get(hass).async_update_entity(
        "sensor.hall_temperature", disabled_by=er.RegistryEntryDisabler.USER
    )
    config = await _config(hass_ws_client, hass)
    headings = [section["cards"][0]["heading"] for section in config["views"][0]["sections"]]
    assert "Front hall · Hallway" in headings
    assert "sensor.hall_temperature" not in _shown(config)

    # A node that is not loaded leaves the dashboard, which stays in the sidebar (a reload
    # after saving options must not pull it from under the user).
    assert await hass.config_entries.async_unload(hall.entry_id)
    await hass.async_block_till_done()
    assert "sensor.hall_latest_alert" not in _shown(await _config(hass_ws_client, hass))
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert _shown(await _config(hass_ws_client, hass)) == []
    assert URL_PATH in hass.data[PANELS]
    await hass.config_entries.async_setup(hall.entry_id)
    await hass.async_block_till_done()
    assert "sensor.hall_latest_alert" in _shown(await _config(hass_ws_client, hass))
    # With the last node removed it leaves the sidebar.
    assert await hass.config_entries.async_remove(hall.entry_id)
    await hass.async_block_till_done()
    assert URL_PATH in hass.data[PANELS]
    assert await hass.config_entries.async_remove(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert URL_PATH not in hass.data[PANELS]
    assert URL_PATH not in hass.data[LOVELACE_DATA].dashboards


async def test_a_dashboard_of_the_users_own_stays(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """A dashboard the user made at the same address is left as it is."""
    assert await async_setup_component(hass, "lovelace", {})
    own = lovelace_dashboard.LovelaceYAML(hass, URL_PATH, {"mode": "yaml", "filename": "mine.yaml"})
    hass.data[LOVELACE_DATA].dashboards[URL_PATH] = own
    await setup_entry(hass, mock_config_entry)
    assert hass.data[LOVELACE_DATA].dashboards[URL_PATH] is own
    assert URL_PATH not in hass.data.get(PANELS, {})


async def test_no_frontend_no_dashboard(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Without Home Assistant's dashboards loaded the node works and registers no panel."""
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get("sensor.kitchen_latest_alert") is not None
    assert URL_PATH not in hass.data.get(PANELS, {})
