"""Secrets at rest and privileges: private stores, the old key deleted, admin-only services."""

from __future__ import annotations

import base64
from datetime import timedelta
import inspect
from pathlib import Path
import stat
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.auth.models import User
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import Unauthorized
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
from iotshield_node.v2 import StoredCounters, V2Sender, verify_command
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.iotshield import _load_keys
from custom_components.iotshield.const import (
    CONF_KEY_UNCONFIRMED,
    CONF_PREVIOUS_KEY_UNTIL,
    CONF_PREVIOUS_PRIVATE_KEY,
    DOMAIN,
)
from custom_components.iotshield.coordinator import baseline_store, state_store

from .helpers import first_challenge, publish, running_v2_node, v2_reading

pytestmark = pytest.mark.usefixtures("mqtt_mock")
DATA_TOPIC = "iotshield/kitchen/sensors/data"


async def _running(
    hass: HomeAssistant, entry: MockConfigEntry, node: V2Sender, mqtt_mock: MqttMockHAClient
) -> str:
    """Load the entry with the node running; return its device id."""
    await running_v2_node(hass, entry, node, mqtt_mock)
    (device,) = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    return device.id


def _last_command(mqtt_mock: MqttMockHAClient) -> bytes:
    """Return the payload of the last MQTT publish."""
    payload = mqtt_mock.async_publish.call_args[0][1]
    return payload if isinstance(payload, bytes) else str(payload).encode()


def _public_key_of(command: bytes, key: rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """Return the key a set_ha_key command signed with `key` carries."""
    name, args = verify_command(command, key, "kitchen", StoredCounters(None))
    assert name == "set_ha_key"
    new = serialization.load_der_public_key(base64.b64decode(args["key"]))
    assert isinstance(new, rsa.RSAPublicKey)
    return new


async def _rotate(hass: HomeAssistant, device_id: str, user: User | None = None) -> Any:
    """Call rotate_key as `user` (Home Assistant itself when None)."""
    return await hass.services.async_call(
        DOMAIN,
        "rotate_key",
        {"device_id": device_id},
        blocking=True,
        return_response=True,
        context=Context(user_id=user.id if user else None),
    )


async def test_only_administrators_command_or_rekey_a_node(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    hass_admin_user: User,
    hass_read_only_user: User,
) -> None:
    """A user who is not an admin cannot turn privacy off, reboot the node or change its key."""
    device_id = await _running(hass, v2_entry, node, mqtt_mock)
    mqtt_mock.async_publish.reset_mock()
    for command, extra in (("set_epsilon", {"epsilon": 0}), ("reboot", {})):
        with pytest.raises(Unauthorized):
            await hass.services.async_call(
                DOMAIN,
                "send_command",
                {"device_id": device_id, "command": command, **extra},
                blocking=True,
                context=Context(user_id=hass_read_only_user.id),
            )
    with pytest.raises(Unauthorized):
        await _rotate(hass, device_id, hass_read_only_user)
    await hass.async_block_till_done()
    assert not mqtt_mock.async_publish.called
    assert CONF_PREVIOUS_PRIVATE_KEY not in v2_entry.data
    # An administrator may; so may Home Assistant itself (an automation has no user).
    await hass.services.async_call(
        DOMAIN,
        "send_command",
        {"device_id": device_id, "command": "publish_now"},
        blocking=True,
        context=Context(user_id=hass_admin_user.id),
    )
    assert mqtt_mock.async_publish.call_count == 1
    assert (await _rotate(hass, device_id, hass_admin_user))["fingerprint"]


async def test_the_previous_key_is_deleted_when_its_grace_ends(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """After rotation and confirmation the old key lives 24 h, then it is gone for good."""
    device_id = await _running(hass, v2_entry, node, mqtt_mock)
    await _rotate(hass, device_id)
    new_public = _public_key_of(_last_command(mqtt_mock), private_key.public_key())
    node.ha_key = new_public
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(2, 22.0)))
    assert CONF_KEY_UNCONFIRMED not in v2_entry.data
    assert CONF_PREVIOUS_PRIVATE_KEY in v2_entry.data
    until = dt_util.parse_datetime(v2_entry.data[CONF_PREVIOUS_KEY_UNTIL])
    assert until is not None

    async_fire_time_changed(hass, until + timedelta(seconds=1))
    await hass.async_block_till_done()
    assert CONF_PREVIOUS_PRIVATE_KEY not in v2_entry.data
    assert CONF_PREVIOUS_KEY_UNTIL not in v2_entry.data
    # A session sealed for the old key no longer opens: that key is gone from memory too.
    node.ha_key = private_key.public_key()
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(3, 23.0)))
    telemetry = v2_entry.runtime_data.data.telemetry
    assert telemetry is not None
    assert telemetry.seq == 2
    # Nor does it come back with a restart.
    assert await hass.config_entries.async_reload(v2_entry.entry_id)
    await hass.async_block_till_done()
    assert CONF_PREVIOUS_PRIVATE_KEY not in v2_entry.data


async def test_an_unconfirmed_rotation_keeps_the_only_key_the_node_obeys(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    node: V2Sender,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """A node that never took the new key still obeys after the grace, also across a restart."""
    device_id = await _running(hass, v2_entry, node, mqtt_mock)
    await _rotate(hass, device_id)
    new_public = _public_key_of(_last_command(mqtt_mock), private_key.public_key())
    until = dt_util.parse_datetime(v2_entry.data[CONF_PREVIOUS_KEY_UNTIL])
    assert until is not None
    # A restart past the grace still loads the old key, the only one the node obeys.
    later = until + timedelta(seconds=1)
    keys = await hass.async_add_executor_job(_load_keys, v2_entry, later)
    assert [k.public_key().public_numbers() for k in keys] == [
        new_public.public_numbers(),
        private_key.public_key().public_numbers(),
    ]
    assert await hass.config_entries.async_reload(v2_entry.entry_id)
    node.challenge = await first_challenge(hass, mqtt_mock)
    async_fire_time_changed(hass, later)
    await hass.async_block_till_done()
    assert CONF_PREVIOUS_PRIVATE_KEY in v2_entry.data
    await hass.services.async_call(
        DOMAIN, "send_command", {"device_id": device_id, "command": "publish_now"}, blocking=True
    )
    counters = StoredCounters(None)
    name, _ = verify_command(
        _last_command(mqtt_mock), private_key.public_key(), "kitchen", counters
    )
    assert name == "publish_now"
    node.ha_key = new_public
    await publish(hass, DATA_TOPIC, node.open_session())
    await publish(hass, DATA_TOPIC, node.seal(v2_reading(5, 25.0)))
    assert CONF_KEY_UNCONFIRMED not in v2_entry.data
    # The node takes the key at last; the old one goes when the grace ends (or at once,
    # had it ended: test_the_previous_key_is_deleted_when_its_grace_ends).
    async_fire_time_changed(hass, later)
    await hass.async_block_till_done()
    assert CONF_PREVIOUS_PRIVATE_KEY not in v2_entry.data


async def test_stores_are_written_private(
    hass: HomeAssistant, v2_entry: MockConfigEntry, tmp_path: Path
) -> None:
    """The store with session keys and the learned baseline are written with mode 0600."""
    v2_entry.add_to_hass(hass)
    hass.config.config_dir = str(tmp_path)
    for store in (state_store(hass, v2_entry), baseline_store(hass, v2_entry)):
        data = {"version": 1, "minor_version": 1, "key": store.key, "data": {"secret": "x"}}
        # Home Assistant's own writer (the tests replace it with an in-memory one).
        if len(inspect.signature(store._write_data).parameters) == 2:
            await hass.async_add_executor_job(store._write_data, store.path, data)
        else:
            await hass.async_add_executor_job(store._write_data, data)
        mode = stat.S_IMODE(Path(store.path).stat().st_mode)
        assert mode == 0o600, f"{store.key} is written with mode {mode:o}"
