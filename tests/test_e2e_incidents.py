"""The main job end to end through a real Mosquitto: discovery to notification, broker restart.

The node runs as its own process: the Python reference node, and the firmware's Node built for
the host, each playing the same recorded fire. Home Assistant's real MQTT client receives its
announce, the wizard pairs it, the fire opens an incident (event, notification), the broker is
restarted in the middle of it, and the incident goes on and resolves exactly once.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
import sys

from homeassistant.components import persistent_notification
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
import pytest

from custom_components.iotshield.alerts import notification_id
from custom_components.iotshield.const import CONF_HOLD_TIME, DOMAIN
from custom_components.iotshield.keys import generate_private_key, public_key_pem

from .broker import (  # noqa: F401
    REFERENCE_NODE,
    Broker,
    StartNode,
    connect_home_assistant,
    mqtt_node,
    start_broker,
    start_node,
    stop_broker,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled", "mock_hass_config")]
TRANSITIONS = ("opened", "escalated", "explained", "acknowledged", "resolved")
# Calm, then a 40-second fire (flame after 4 s, heat and smoke rising), then calm: one reading a
# second, and a node holds the recording's last (calm) reading once it is played.
CYCLE = "normal:3,fire:40,normal:60"


def _record_fire(path: Path) -> Path:
    """Write the fire as raw readings with the reference node's simulator, as a user would."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "iotshield_node",
            "simulate",
            "--cycle",
            CYCLE,
            "--interval",
            "1",
            "--count",
            "103",
            "--out",
            str(path),
        ],
        cwd=REFERENCE_NODE,
        check=True,
        capture_output=True,
    )
    return path


def _stop(node: subprocess.Popen[bytes]) -> None:
    """Stop a node process (it says `offline` as it goes)."""
    node.terminate()
    node.wait(timeout=15)


async def test_discovery_to_notification_and_broker_restart(
    hass: HomeAssistant,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Announce → wizard → entry → readings → incident → event → notification, across a restart."""
    # Home Assistant retries a lost broker every 10 s; the test need not wait that long.
    monkeypatch.setattr("homeassistant.components.mqtt.client.RECONNECT_INTERVAL_SECONDS", 1)
    brokers = [start_broker()]
    nodes: list[subprocess.Popen[bytes]] = []
    events: list[Event] = []
    for name in TRANSITIONS:
        hass.bus.async_listen(
            f"iotshield_incident_{name}", callback(lambda event: events.append(event))
        )
    try:
        broker = brokers[0]
        mqtt_entry = await connect_home_assistant(hass, broker)
        # A node fresh from the box announces itself (its Home Assistant key is not set yet).
        placeholder = tmp_path / "placeholder.pem"
        placeholder.write_text(public_key_pem(generate_private_key()))
        state = ["--state-dir", str(tmp_path), "--interval", "1"]
        nodes.append(start_node(broker, placeholder, *state))
        await wait_until(
            hass,
            lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)),
            "the discovery flow",
        )
        (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"key_source": "generate"}
        )
        assert result["step_id"] == "show_key"
        ha_key = tmp_path / "ha_public.pem"
        ha_key.write_text(result["description_placeholders"]["public_key"] + "\n")
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        # The node announced its identity key: pairing is a comparison of fingerprints.
        assert result["step_id"] == "pair_confirm"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"pairing": "pin"}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        entry = result["result"]
        hass.config_entries.async_update_entry(entry, options={CONF_HOLD_TIME: 3})
        await hass.async_block_till_done()
        coordinator = entry.runtime_data
        (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)

        # The user puts Home Assistant's key into the node and restarts it.
        _stop(nodes.pop())
        fire = _record_fire(tmp_path / "fire.jsonl")
        nodes.append(start_node(broker, ha_key, *state, "--readings", str(fire)))
        await wait_until(
            hass,
            lambda: (state := hass.states.get("sensor.kitchen_temperature")) is not None
            and state.state not in ("unknown", "unavailable"),
            "live readings",
            seconds=30,
        )
        await wait_until(hass, lambda: bool(events), "the incident to open", seconds=40)
        opened = events[0]
        assert opened.event_type == "iotshield_incident_opened"
        incident_id = opened.data["incident_id"]
        assert opened.data["device_id"] == device.id
        assert opened.data["readings"]["flame"] is True
        notes = persistent_notification._async_get_or_create_notifications(hass)
        assert notification_id("kitchen", incident_id) in notes
        assert hass.states.get("binary_sensor.kitchen_hazard").state == "on"

        # The broker restarts in the middle of the fire.
        seen = coordinator.data.telemetry.seq if coordinator.data.telemetry else 0
        await hass.async_add_executor_job(stop_broker, broker)
        brokers.append(
            await hass.async_add_executor_job(start_broker, broker.directory, broker.port)
        )
        await wait_until(
            hass,
            lambda: coordinator.data.telemetry is not None
            and coordinator.data.telemetry.seq > seen + 2
            and coordinator.node_available,
            "readings after the broker restart",
            seconds=60,
        )
        # The fire burns out; the same incident resolves, once.
        await wait_until(
            hass,
            lambda: any(e.event_type == "iotshield_incident_resolved" for e in events),
            "the incident to resolve",
            seconds=90,
        )
        kinds = [e.event_type.removeprefix("iotshield_incident_") for e in events]
        assert kinds.count("opened") == 1
        assert kinds.count("resolved") == 1
        assert {e.data["incident_id"] for e in events} == {incident_id}
        assert set(kinds) <= {"opened", "escalated", "resolved"}
        assert list(persistent_notification._async_get_or_create_notifications(hass)) == [
            notification_id("kitchen", incident_id)
        ]
        assert hass.states.get("sensor.kitchen_latest_alert").attributes["resolved"] is True
        _stop(nodes.pop())
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        for node in nodes:
            node.kill()
            node.wait()
        for broker in brokers:
            stop_broker(broker)
        shutil.rmtree(brokers[0].directory, ignore_errors=True)
