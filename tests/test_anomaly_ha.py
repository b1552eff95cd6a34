"""The anomaly detector in Home Assistant: entities, severity cap, incidents, restarts."""

from __future__ import annotations

from datetime import datetime, timedelta
import random
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.iotshield.anomaly import STATE_VERSION, AnomalyDetector
from custom_components.iotshield.const import (
    CONF_ANOMALY_LEVEL,
    CONF_HOLD_TIME,
    CONF_LEGACY_TOPIC,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
)

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")

DATA_TOPIC = "iotshield/kitchen/sensors/data"
STATUS_TOPIC = "iotshield/kitchen/status"
# Below every threshold (temperature LOW starts above 28 °C) but far from this room's 21.5 °C.
WARM = 26.5


def baseline_key(entry: MockConfigEntry) -> str:
    """Return the storage key of an entry's learned baseline."""
    return f"iotshield.{entry.entry_id}.baseline"


def store_baseline(
    hass_storage: dict[str, Any], entry: MockConfigEntry, data: dict[str, Any]
) -> None:
    """Put a learned baseline into Home Assistant's storage for an entry."""
    hass_storage[baseline_key(entry)] = {
        "version": 1,
        "minor_version": 1,
        "key": baseline_key(entry),
        "data": data,
    }


def calm(rng: random.Random) -> dict[str, Any]:
    """Return one calm reading of this kitchen, with a live sensor's jitter."""
    return {
        "t": round(21.5 + rng.gauss(0, 0.1), 2),
        "h": round(45.0 + rng.gauss(0, 0.5), 1),
        "g": round(0.05 + rng.gauss(0, 0.003), 3),
        "l": round(320.0 + rng.gauss(0, 5.0), 1),
        "f": 0,
        "m": 0,
    }


def learned_days(days: int, until: datetime) -> dict[str, Any]:
    """Return the stored form of a detector that watched a calm kitchen for `days` days."""
    detector = AnomalyDetector()
    rng = random.Random(7)
    when = until - timedelta(days=days)
    while when < until:
        readings = calm(rng)
        detector.add(when, {**readings, "m": False})
        when += timedelta(minutes=1)
    return detector.as_dict()


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Resolve incidents at once, so that tests need no clock for that."""
    return {
        CONF_PUBLISH_INTERVAL: 5,
        CONF_STALE_INTERVALS: 3,
        CONF_LEGACY_TOPIC: False,
        CONF_HOLD_TIME: 0,
    }


@pytest.fixture
def now(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, freezer: FrozenDateTimeFactory
) -> datetime:
    """Freeze the clock on a Friday morning, local time, after four workdays of learning.

    MQTT is set up first: modules imported while the clock is frozen break.
    """
    moment = datetime(2026, 6, 5, 10, 0, 30, tzinfo=dt_util.get_default_time_zone())
    freezer.move_to(moment)
    return moment


class Node:
    """A node publishing one reading a minute while the clock moves on."""

    def __init__(
        self, hass: HomeAssistant, key: rsa.RSAPublicKey, freezer: FrozenDateTimeFactory
    ) -> None:
        """Remember where and how to publish."""
        self.hass, self.key, self.freezer = hass, key, freezer
        self.seq = 0
        self.rng = random.Random(3)

    async def minutes(self, count: int, **override: Any) -> None:
        """Publish `count` readings, a minute apart; each closes the previous minute."""
        for _ in range(count):
            self.seq += 1
            readings = {**calm(self.rng), **override}
            await publish(
                self.hass, DATA_TOPIC, encrypt(self.key, telemetry(seq=self.seq, **readings))
            )
            self.freezer.tick(timedelta(minutes=1))


@pytest.fixture
def node(
    hass: HomeAssistant, public_key: rsa.RSAPublicKey, now: datetime, freezer: FrozenDateTimeFactory
) -> Node:
    """Return the publishing node."""
    return Node(hass, public_key, freezer)


@pytest.fixture
def learned(
    hass_storage: dict[str, Any], mock_config_entry: MockConfigEntry, now: datetime
) -> dict[str, Any]:
    """Store four days of a calm kitchen as the entry's learned baseline."""
    data = learned_days(4, now.replace(second=0))
    store_baseline(hass_storage, mock_config_entry, data)
    return data


def incident_events(hass: HomeAssistant) -> list[Event]:
    """Collect the incident-opened events."""
    seen: list[Event] = []
    hass.bus.async_listen("iotshield_incident_opened", callback(lambda event: seen.append(event)))
    return seen


@pytest.mark.usefixtures("learned")
async def test_unusual_warmth_opens_a_medium_incident_but_no_hazard(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, node: Node
) -> None:
    """26.5 °C in a 21.5 °C kitchen breaks no threshold; the detector sees it, at most MEDIUM."""
    opened = incident_events(hass)
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get("sensor.kitchen_baseline_learned").state == "100"
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_UNKNOWN
    await node.minutes(5)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    score = hass.states.get("sensor.kitchen_anomaly_score")
    assert float(score.state) < 1.0
    assert score.attributes["unusual"] == []
    assert set(score.attributes["scores"]) == {"temperature", "humidity", "gas", "light", "motion"}
    assert hass.states.get("sensor.kitchen_severity").state == "normal"

    await node.minutes(8, t=WARM)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_ON
    score = hass.states.get("sensor.kitchen_anomaly_score")
    assert float(score.state) >= 2.0
    assert score.attributes["unusual"] == ["temperature"]
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "medium"
    assert severity.attributes["rules"] == ["anomaly_temperature"]
    # Thresholds alone make hazards.
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_OFF
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_OFF
    (event,) = opened
    assert event.data["severity"] == "medium"
    assert event.data["rules"] == ["anomaly_temperature"]
    assert event.data["anomalies"] == {"temperature": "higher"}
    assert event.data["title"] == "Unusual temperature – kitchen"
    assert "temperature higher than usual" in event.data["explanation"]

    # Back to normal: the anomaly clears and the incident resolves.
    await node.minutes(30)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_severity").state == "normal"
    assert hass.states.get("sensor.kitchen_latest_alert").attributes["resolved"] is True


@pytest.mark.usefixtures("learned")
async def test_a_fire_stays_critical_with_an_anomaly_on_top(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, node: Node
) -> None:
    """Anomalies never lower a hazard: a fire is critical and named as a fire."""
    await setup_entry(hass, mock_config_entry)
    await node.minutes(3)
    await node.minutes(6, t=WARM)
    await node.minutes(1, t=55.0, g=0.7, f=1)
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "critical"
    assert "anomaly_temperature" in severity.attributes["rules"]
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_ON
    assert hass.states.get("sensor.kitchen_latest_alert").state.startswith(
        ("Fire detected", "Explosion risk")
    )


@pytest.mark.parametrize(("cap", "expected"), [("off", "normal"), ("low", "low")])
@pytest.mark.usefixtures("learned")
async def test_the_anomaly_level_option_caps_severity(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    node: Node,
    entry_options: dict[str, Any],
    cap: str,
    expected: str,
) -> None:
    """Off keeps the entities but never an incident; low never reaches the default minimum."""
    opened = incident_events(hass)
    mock_config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        mock_config_entry, options={**entry_options, CONF_ANOMALY_LEVEL: cap}
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    await node.minutes(3)
    await node.minutes(8, t=WARM)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_ON
    assert hass.states.get("sensor.kitchen_severity").state == expected
    assert opened == []


async def test_learning_from_scratch_shows_progress_and_no_verdict(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, node: Node, now: datetime
) -> None:
    """A new node is learned first: no verdict, no alarm, progress that grows."""
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get("sensor.kitchen_baseline_learned").state == "0"
    await node.minutes(130, t=WARM)
    # Two hours of its first day: nothing is judged yet, however odd the values; the score
    # says that the detector is learning, and Anomaly raises nothing.
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_anomaly_score").state == "learning"
    assert hass.states.get("sensor.kitchen_severity").state == "normal"
    learned = int(hass.states.get("sensor.kitchen_baseline_learned").state)
    # 129 closed minutes (the last is still open) of the 24 × 120 that complete the baseline.
    assert learned == round(100 * 129 / (24 * 120))


@pytest.mark.usefixtures("learned")
async def test_the_baseline_survives_a_reload_and_a_stop(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    node: Node,
) -> None:
    """What was learned is written at unload and at stop, and taken back on setup."""
    await setup_entry(hass, mock_config_entry)
    await node.minutes(4)
    coordinator = mock_config_entry.runtime_data
    minutes_seen = coordinator.anomaly.minutes
    assert minutes_seen == 3  # the fourth minute is still open
    state = coordinator.anomaly.as_dict()
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
    assert hass_storage[baseline_key(mock_config_entry)]["data"] == state

    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.runtime_data.anomaly.as_dict() == state
    # The restored baseline judges at once: no second warm-up.
    await node.minutes(2)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF

    await node.minutes(3)
    expected = mock_config_entry.runtime_data.anomaly.as_dict()
    assert expected != state
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    assert hass_storage[baseline_key(mock_config_entry)]["data"] == expected


async def test_a_broken_baseline_is_learned_anew(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stored baseline of another shape is dropped with a warning, never a failed setup."""
    broken = AnomalyDetector().as_dict()
    broken["continuous"]["t"]["mean"] = [0.0] * 5
    assert broken["version"] == STATE_VERSION
    store_baseline(hass_storage, mock_config_entry, broken)
    await setup_entry(hass, mock_config_entry)
    assert mock_config_entry.state is ConfigEntryState.LOADED
    assert "learned baseline of kitchen could not be read" in caplog.text
    assert hass.states.get("sensor.kitchen_baseline_learned").state == "0"


async def test_the_announced_noise_reaches_the_detector(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Minutes are judged against the privacy noise the node says it adds."""
    await setup_entry(hass, mock_config_entry)
    await publish(
        hass,
        STATUS_TOPIC,
        b'{"state":"online","interval":5,"privacy":{"e":0.5,"d":1e-05,'
        b'"sigma":{"t":0.969,"h":2.42,"g":0.0194,"l":48.4},"motion":{"flip":0.1192}}}',
    )
    sigma, flip = mock_config_entry.runtime_data.anomaly.noise
    assert sigma == {"t": 0.969, "h": 2.42, "g": 0.0194, "l": 48.4}
    assert flip == pytest.approx(0.1192)
    # A node that flips motion more often needs more of the window to show motion.
    await publish(
        hass,
        STATUS_TOPIC,
        b'{"state":"online","interval":5,"privacy":{"e":0.5,"d":1e-05,'
        b'"sigma":{"t":0.969,"h":2.42,"g":0.0194,"l":48.4},"motion":{"flip":0.27}}}',
    )
    assert mock_config_entry.runtime_data.severity.motion_flip == pytest.approx(0.27)


async def test_diagnostics_describe_the_detector(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, node: Node, now: datetime
) -> None:
    """Diagnostics show how much is learned and the latest verdict."""
    from custom_components.iotshield.diagnostics import (  # noqa: PLC0415
        async_get_config_entry_diagnostics,
    )

    await setup_entry(hass, mock_config_entry)
    await node.minutes(3)
    diagnostics = await async_get_config_entry_diagnostics(hass, mock_config_entry)
    assert diagnostics["anomaly"]["minutes_seen"] == 2
    assert diagnostics["anomaly"]["latest"] is None
    assert 0 < diagnostics["anomaly"]["baseline_learned"] < 0.01


@pytest.mark.usefixtures("learned")
async def test_relearn_forgets_the_baseline(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    node: Node,
) -> None:
    """After the node moved, one press starts learning its new room from scratch."""
    await setup_entry(hass, mock_config_entry)
    await node.minutes(3)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    await hass.services.async_call(
        "button", "press", {"entity_id": "button.kitchen_relearn_normal"}, blocking=True
    )
    assert hass.states.get("sensor.kitchen_baseline_learned").state == "0"
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_anomaly_score").state == "learning"
    # The new room is 26.5 °C: learned, never an alarm.
    await node.minutes(10, t=WARM)
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_anomaly_score").state == "learning"
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    stored = hass_storage[baseline_key(mock_config_entry)]["data"]
    assert sum(stored["continuous"]["t"]["n"][48:]) == 9
