"""Both node implementations, through a real broker: every command, a reboot and a restart.

The same test runs against the Python reference node and the firmware's own Node class built
for the host, so what the ESP32 runs is what the tests run.
"""

from __future__ import annotations

from pathlib import Path
import signal
import subprocess
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import CONF_PUBLISH_INTERVAL, DOMAIN
from custom_components.iotshield.coordinator import IoTShieldCoordinator
from custom_components.iotshield.keys import public_key_pem

from .broker import (  # noqa: F401
    Broker,
    StartNode,
    connect_home_assistant,
    mosquitto,
    mqtt_node,
    start_node,
    wait_until,
)
from .helpers import paired_v2_entry, setup_entry

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled", "mock_hass_config")]


def _session(coordinator: IoTShieldCoordinator) -> tuple[int, int]:
    """Return the current session id and its highest accepted counter."""
    receiver = coordinator.receiver
    assert receiver is not None
    current = receiver.state.current
    return (0, 0) if current is None else (current.sid, current.max_ctr)


async def _command(hass: HomeAssistant, device_id: str, command: str, **args: Any) -> None:
    """Send a command through Home Assistant's service, as a user's automation would."""
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": command, **args}, blocking=True
    )


async def test_every_command_a_reboot_and_a_restart(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    start_node: StartNode,  # noqa: F811
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """publish_now, set_interval, set_epsilon and reboot work; a restarted node is back."""
    mqtt_entry = await connect_home_assistant(hass, mosquitto)
    entry = paired_v2_entry(mock_config_entry, tmp_path)
    await setup_entry(hass, entry)
    coordinator = entry.runtime_data
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    state = ("--interval", "600", "--state-dir", str(tmp_path))
    node: subprocess.Popen[bytes] = start_node(mosquitto, key, *state)
    try:
        await wait_until(hass, lambda: coordinator.data.telemetry is not None, "a first reading")
        (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)

        before = _session(coordinator)
        await _command(hass, device.id, "publish_now")
        await wait_until(hass, lambda: _session(coordinator) > before, "a reading on request")

        await _command(hass, device.id, "set_interval", interval=30)
        await wait_until(
            hass,
            lambda: coordinator.session_info is not None
            and coordinator.session_info.interval == 30,
            "the new interval, signed into a session",
        )
        assert entry.options[CONF_PUBLISH_INTERVAL] == 30

        await _command(hass, device.id, "set_epsilon", epsilon=1.0)
        await wait_until(
            hass,
            lambda: coordinator.session_info is not None
            and coordinator.session_info.privacy is not None
            and coordinator.session_info.privacy.epsilon == 1.0,
            "the new ε, signed into a session",
        )

        sid = _session(coordinator)[0]
        await _command(hass, device.id, "reboot")
        await wait_until(
            hass,
            lambda: _session(coordinator)[0] > sid and _session(coordinator)[1] >= 1,
            "a session and a reading after the reboot",
            seconds=40,
        )

        # A restart of the process: the clean stop says offline, the new start is back.
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=15) == 0
        await wait_until(
            hass,
            lambda: hass.states.get("sensor.kitchen_temperature").state == STATE_UNAVAILABLE,
            "the node's own offline",
        )
        sid = _session(coordinator)[0]
        node = start_node(mosquitto, key, *state)
        await wait_until(
            hass,
            lambda: _session(coordinator)[0] > sid
            and _session(coordinator)[1] >= 1
            and hass.states.get("sensor.kitchen_temperature").state != STATE_UNAVAILABLE,
            "the restarted node's session and reading",
            seconds=40,
        )
        # Nothing the nodes sent was refused and counted along the way.
        assert coordinator.rejections.total == 0
    finally:
        if node.poll() is None:
            node.terminate()
            node.wait(timeout=15)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
    await hass.async_block_till_done()


@pytest.mark.parametrize(
    "line",
    ['{"t": "hot"}', '{"t": NaN}', '{"f": 1}', '{"m": "yes"}', "[1, 2]", "{", '{"h": true}'],
)
def test_both_nodes_refuse_a_bad_recording(
    mosquitto: Broker,  # noqa: F811
    start_node: StartNode,  # noqa: F811
    tmp_path: Path,
    private_key: rsa.RSAPrivateKey,
    line: str,
) -> None:
    """Either node refuses to play a recording with a bad reading, before it goes online."""
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    recording = tmp_path / "bad.jsonl"
    recording.write_text('{"raw": {"t": 20, "f": false}}\n' + line + "\n")
    node = start_node(mosquitto, key, "--state-dir", str(tmp_path), "--readings", str(recording))
    try:
        assert node.wait(timeout=20) == 2
    finally:
        node.kill()
        node.wait()
