"""Long-term statistics of the throttled readings, with Home Assistant's real recorder."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any
from unittest.mock import MagicMock

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.components.recorder.history import get_significant_states
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.components.recorder.tasks import StatisticsTask
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from iotshield_node.privacy import NoiseSource, PrivacyConfig, privatize
from iotshield_node.readings import Readings
from iotshield_node.telemetry import encode_telemetry
from iotshield_node.v2 import V2Sender
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from .helpers import first_challenge, publish, setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")

DATA_TOPIC = "iotshield/kitchen/sensors/data"
TEMPERATURE = "sensor.kitchen_temperature"
STEADY = Readings(21.5, 45.0, 0.05, 300.0, False, False)
HOURS = 2


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Patch the recorder's test hooks in before Home Assistant starts."""


async def test_statistics_of_a_steady_noisy_room(
    hass: HomeAssistant,
    recorder_mock: Recorder,
    v2_entry: MockConfigEntry,
    node: V2Sender,
    mqtt_mock: MagicMock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Two hours of noised readings every 5 s: right 5-minute mean, min and max; few rows."""
    await setup_entry(hass, v2_entry)
    node.challenge = await first_challenge(hass, mqtt_mock)
    privacy = PrivacyConfig()
    await publish(hass, DATA_TOPIC, node.open_session(interval=5, privacy=privacy.announce()))
    # Whole five-minute periods from here on.
    freezer.move_to(
        dt_util.utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    )
    start = dt_util.utcnow()
    noise = NoiseSource(seed=5)
    for seq in range(1, HOURS * 720 + 1):
        freezer.tick(timedelta(seconds=5))
        body = encode_telemetry(
            "kitchen", seq, 1763900000 + seq * 5, privatize(STEADY, privacy, noise), privacy
        )
        async_fire_mqtt_message(hass, DATA_TOPIC, node.seal(body))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
    end = dt_util.utcnow()
    await async_wait_recording_done(hass)

    history = await recorder_mock.async_add_executor_job(
        partial(get_significant_states, hass, start, end, [TEMPERATURE])
    )
    # Against 1,440 readings: about one state every five minutes, a few more when noise looks
    # like a change.
    assert 20 <= len(history[TEMPERATURE]) <= 2 * HOURS * 12 * 1.5

    # The first reading is shown as it comes (nothing was shown before): steady from then on.
    periods = await compiled(hass, recorder_mock, start + timedelta(minutes=5), end)
    assert len(periods) == HOURS * 12 - 1
    means = [row["mean"] for row in periods]
    # The noise (σ 0.97 °C a reading) averages out: right on average, and no 5-minute period's
    # min or max strays as a single noised reading would (by several σ).
    assert sum(means) / len(means) == pytest.approx(21.5, abs=0.1)
    assert min(row["min"] for row in periods) >= 21.5 - 1.0
    assert max(row["max"] for row in periods) <= 21.5 + 1.0


async def compiled(
    hass: HomeAssistant, recorder: Recorder, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Compile the 5-minute statistics from start to end and return the temperature's."""
    period = start
    while period + timedelta(minutes=5) <= end:
        recorder.queue_task(StatisticsTask(period, False))
        period += timedelta(minutes=5)
    await async_wait_recording_done(hass)
    rows = await recorder.async_add_executor_job(
        partial(
            statistics_during_period,
            hass,
            start,
            end,
            {TEMPERATURE},
            "5minute",
            None,
            {"mean", "min", "max"},
        )
    )
    periods: list[dict[str, Any]] = rows[TEMPERATURE]
    return periods
