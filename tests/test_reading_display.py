"""What reading entities write in Home Assistant: a throttled mean, hazards and outages at once."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import MagicMock

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED, STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import V2Sender
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from .helpers import publish, running_v2_node

pytestmark = pytest.mark.usefixtures("mqtt_mock")

DATA_TOPIC = "iotshield/kitchen/sensors/data"
TEMPERATURE = "sensor.kitchen_temperature"
GAS = "sensor.kitchen_gas_level"


def reading(seq: int, t: float = 21.5, g: float = 0.05) -> bytes:
    """Return node kitchen's telemetry plaintext with this temperature and gas."""
    return encode_telemetry(
        "kitchen", seq, 1763900000 + seq, Readings(t, 45.0, g, 300.0, False, False), None
    )


def writes_of(hass: HomeAssistant, entity_id: str) -> list[str]:
    """Collect the states written to an entity from now on."""
    written: list[str] = []

    @callback
    def on_state(event: Event[EventStateChangedData]) -> None:
        if event.data["entity_id"] == entity_id and (new := event.data["new_state"]) is not None:
            written.append(new.state)

    hass.bus.async_listen(EVENT_STATE_CHANGED, on_state)
    return written


async def test_a_state_a_minute_with_the_mean(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MagicMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Readings every 5 s write the temperature once a minute, as the mean of that minute."""
    await running_v2_node(hass, v2_entry, node, mqtt_mock)
    written = writes_of(hass, TEMPERATURE)
    # A warmer room: 22 and 23 °C in turn, a minute long.
    for seq in range(2, 14):
        freezer.tick(timedelta(seconds=5))
        await publish(hass, DATA_TOPIC, node.seal(reading(seq, t=22.0 + seq % 2)))
        if seq < 13:
            assert written == [], f"written before a minute passed (reading {seq})"
    assert written == ["22.5"]
    assert hass.states.get(TEMPERATURE).state == "22.5"
    # The severity and its entity saw every reading at once: nothing is throttled there.
    assert v2_entry.runtime_data.data.telemetry is not None
    assert v2_entry.runtime_data.data.telemetry.temperature == 23.0


async def test_a_hazard_is_written_at_once(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MagicMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Gas beyond its threshold shows at once, undiluted by the calm minute before it."""
    await running_v2_node(hass, v2_entry, node, mqtt_mock)
    written = writes_of(hass, GAS)
    freezer.tick(timedelta(seconds=5))
    await publish(hass, DATA_TOPIC, node.seal(reading(2, g=0.06)))
    assert written == []
    freezer.tick(timedelta(seconds=5))
    await publish(hass, DATA_TOPIC, node.seal(reading(3, g=0.5)))
    assert hass.states.get("sensor.kitchen_severity").state == "medium"
    assert written == ["0.5"]
    # The temperature is written at once too: the whole picture of the hazard is current.
    assert hass.states.get(TEMPERATURE).last_reported == hass.states.get(GAS).last_updated
    # Back to calm, once the hysteresis lets the severity drop: written at once as well.
    for seq in range(4, 10):
        freezer.tick(timedelta(seconds=5))
        await publish(hass, DATA_TOPIC, node.seal(reading(seq, g=0.05)))
        if hass.states.get("sensor.kitchen_severity").state == "normal":
            break
        assert written == ["0.5"]
    assert hass.states.get("sensor.kitchen_severity").state == "normal"
    assert written == ["0.5", "0.05"]


async def test_unavailability_is_written_at_once(
    hass: HomeAssistant,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MagicMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A silent node's readings turn unavailable at once; its first reading back shows at once."""
    await running_v2_node(hass, v2_entry, node, mqtt_mock)
    freezer.tick(timedelta(seconds=5))
    await publish(hass, DATA_TOPIC, node.seal(reading(2, t=21.7)))
    written = writes_of(hass, TEMPERATURE)
    # Silent beyond 3 intervals of 5 s.
    freezer.tick(timedelta(seconds=16))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert written == [STATE_UNAVAILABLE]
    freezer.tick(timedelta(seconds=5))
    await publish(hass, DATA_TOPIC, node.seal(reading(3, t=25.0)))
    # Not averaged with the readings before the outage.
    assert written == [STATE_UNAVAILABLE, "25.0"]
