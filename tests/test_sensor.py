"""Tests of the node's entities driven by real ciphertext through Home Assistant's MQTT."""

from __future__ import annotations

from datetime import UTC, datetime
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.sensor import ATTR_STATE_CLASS
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
    EntityCategory,
)
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)

from custom_components.iotshield.const import (
    CONF_ANOMALY_LEVEL,
    CONF_HOLD_TIME,
    CONF_LEGACY_TOPIC,
    CONF_MIN_SEVERITY,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    DOMAIN,
)
from custom_components.iotshield.explain import RULE_ORDER
from custom_components.iotshield.severity import (
    CONTEXT_LABELS,
    DEFAULT_MOTION_FLIP,
    MOTION_COUNTS_OPTION,
    MOTION_WINDOW,
    motion_votes,
)

from .envelope import encrypt, telemetry
from .helpers import publish, setup_entry

pytestmark = pytest.mark.usefixtures("mqtt_mock")

DATA_TOPIC = "iotshield/kitchen/sensors/data"

# entity id -> (unique id suffix, device class, unit, state class, entity category)
EXPECTED = {
    "sensor.kitchen_temperature": ("temperature", "temperature", "°C", "measurement", None),
    "sensor.kitchen_humidity": ("humidity", "humidity", "%", "measurement", None),
    "sensor.kitchen_gas_level": ("gas_level", None, None, "measurement", None),
    "sensor.kitchen_illuminance": ("illuminance", "illuminance", "lx", "measurement", None),
    "binary_sensor.kitchen_flame": ("flame", None, None, None, None),
    "binary_sensor.kitchen_motion": ("motion", "motion", None, None, None),
    "sensor.kitchen_severity": ("severity", "enum", None, None, None),
    # Device classes that read right: a healthy room's humidity is "OK", not "Dry".
    "binary_sensor.kitchen_fire": ("fire", "safety", None, None, None),
    "binary_sensor.kitchen_overheating": ("overheating", "heat", None, None, None),
    "binary_sensor.kitchen_humidity_problem": ("humidity_problem", "problem", None, None, None),
    "binary_sensor.kitchen_gas_problem": ("gas_problem", "gas", None, None, None),
    "binary_sensor.kitchen_hazard": ("hazard", "safety", None, None, None),
    "sensor.kitchen_latest_alert": ("latest_alert", None, None, None, None),
    "binary_sensor.kitchen_anomaly": ("anomaly", "problem", None, None, None),
    # No state class: while the detector learns, its state says so.
    "sensor.kitchen_anomaly_score": ("anomaly_score", None, None, None, None),
    "sensor.kitchen_baseline_learned": ("baseline_learned", None, "%", None, "diagnostic"),
    "button.kitchen_relearn_normal": ("relearn", None, None, None, "config"),
    "button.kitchen_acknowledge_alert": ("acknowledge", None, None, None, None),
    "button.kitchen_test_alarm": ("test_alarm", None, None, None, "diagnostic"),
    "event.kitchen_incident": ("incident", None, None, None, None),
    "sensor.kitchen_rejected_payloads": (
        "rejected_payloads",
        None,
        None,
        "total_increasing",
        "diagnostic",
    ),
}
# One anomaly sensor per reading: there to find a failing sensor, disabled until wanted.
DISABLED = {
    f"binary_sensor.kitchen_{name}_anomaly": f"{name}_anomaly"
    for name in ("temperature", "humidity", "gas", "light", "motion")
} | {
    # A new timestamp with every reading: a recorder row a minute for little news.
    "sensor.kitchen_last_reading": "last_reading",
}


async def test_entities_and_device(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """One device per node carries the six readings and two diagnostics, fully described."""
    await setup_entry(hass, mock_config_entry)
    (device,) = dr.async_entries_for_config_entry(device_registry, mock_config_entry.entry_id)
    assert device.identifiers == {(DOMAIN, "kitchen")}
    assert (device.name, device.manufacturer, device.model) == (
        "Kitchen",
        "IoTShield",
        "Safety node",
    )
    entries = er.async_entries_for_config_entry(entity_registry, mock_config_entry.entry_id)
    assert {entry.entity_id for entry in entries} == set(EXPECTED) | set(DISABLED)
    for entity_id, key in DISABLED.items():
        entry = entity_registry.async_get(entity_id)
        assert entry is not None
        assert entry.unique_id == f"kitchen_{key}"
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert hass.states.get(entity_id) is None
    for entity_id, (key, device_class, unit, state_class, category) in EXPECTED.items():
        entry = entity_registry.async_get(entity_id)
        assert entry is not None
        assert entry.unique_id == f"kitchen_{key}"
        assert entry.device_id == device.id
        assert entry.entity_category == (EntityCategory(category) if category else None)
        state = hass.states.get(entity_id)
        assert state is not None
        assert state.attributes.get(ATTR_DEVICE_CLASS) == device_class, entity_id
        assert state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) == unit, entity_id
        assert state.attributes.get(ATTR_STATE_CLASS) == state_class, entity_id
    assert entity_registry.async_get("sensor.kitchen_gas_level").translation_key == "gas_level"
    assert hass.states.get("binary_sensor.kitchen_flame").name == "Kitchen Flame"


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_readings_become_states(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A reading encrypted as a node does shows up in every entity."""
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get("sensor.kitchen_temperature").state == STATE_UNKNOWN
    public = private_key.public_key()
    await publish(
        hass, DATA_TOPIC, encrypt(public, telemetry(t=23.47, h=51.2, g=0.123, l=420.5, f=1, m=1))
    )
    states = {entity_id: hass.states.get(entity_id).state for entity_id in EXPECTED}
    assert states["sensor.kitchen_temperature"] == "23.47"
    assert states["sensor.kitchen_humidity"] == "51.2"
    assert states["sensor.kitchen_gas_level"] == "0.123"
    assert states["sensor.kitchen_illuminance"] == "420.5"
    assert states["binary_sensor.kitchen_flame"] == STATE_ON
    # One reading with motion may be the node's random flip: Motion waits for more.
    assert states["binary_sensor.kitchen_motion"] == STATE_OFF
    assert states["sensor.kitchen_rejected_payloads"] == "0"
    received = datetime.fromisoformat(hass.states.get("sensor.kitchen_last_reading").state)
    assert abs((datetime.now(UTC) - received).total_seconds()) < 60

    # The fire is over: a new severity, shown at once on the readings too.
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, t=19.0, f=0, m=0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "19.0"
    assert hass.states.get("binary_sensor.kitchen_flame").state == STATE_OFF
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_OFF


async def test_motion_shows_more_than_random_flips(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Motion is on when 9 of the last 12 readings show it, off when 2 or fewer do."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    seq = 0
    changes: list[str] = []
    hass.bus.async_listen(
        "state_changed",
        lambda event: changes.append(event.data["new_state"].state)
        if event.data["entity_id"] == "binary_sensor.kitchen_motion"
        else None,
    )

    async def send(motion: int, times: int) -> None:
        nonlocal seq
        for _ in range(times):
            seq += 1
            # At the node's pace: faster readings would be refused as a flood.
            freezer.tick(5)
            await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, m=motion)))

    # An empty room whose node flips one reading in eight: never motion.
    for _ in range(4):
        await send(0, 7)
        await send(1, 1)
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_OFF
    # Someone walks in: 8 of the last 12 readings are not enough, the 9th is.
    await send(1, 7)
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_OFF
    await send(1, 1)
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_ON
    await send(0, 9)
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_ON
    await send(0, 1)
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_OFF
    # One row for each real change, none for the flips.
    assert changes.count(STATE_ON) == 1


async def test_unread_sensor_is_unknown(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A sensor the node could not read (null) is unknown at once; the others keep their mean."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(t=20.0, m=1)))
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, t=None, h=40.0, m=None)))
    assert hass.states.get("sensor.kitchen_temperature").state == STATE_UNKNOWN
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_UNKNOWN
    # Written at most once a minute: the first reading's humidity still shows.
    assert hass.states.get("sensor.kitchen_humidity").state == "45.0"


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_values_restored_until_fresh_data(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """After a restart the last values show until the node sends new ones."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("sensor.kitchen_temperature", "24.5"),
                {"native_value": 24.5, "native_unit_of_measurement": "°C"},
            ),
            (
                State("sensor.kitchen_last_reading", "2026-11-20T10:00:00+00:00"),
                {
                    "native_value": {
                        "__type": "<class 'datetime.datetime'>",
                        "isoformat": "2026-11-20T10:00:00+00:00",
                    },
                    "native_unit_of_measurement": None,
                },
            ),
            (State("binary_sensor.kitchen_motion", STATE_ON), {}),
        ],
    )
    await setup_entry(hass, mock_config_entry)
    assert hass.states.get("sensor.kitchen_temperature").state == "24.5"
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_ON
    assert hass.states.get("sensor.kitchen_last_reading").state == "2026-11-20T10:00:00+00:00"
    assert hass.states.get("sensor.kitchen_humidity").state == STATE_UNKNOWN

    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(t=21.0, m=0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "21.0"
    assert hass.states.get("binary_sensor.kitchen_motion").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_last_reading").state != "2026-11-20T10:00:00+00:00"


async def test_announce_sets_firmware_version(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """The firmware a node announces is shown on its device; its interval changes nothing.

    The announce also reaches MQTT discovery, which must not reload the entry.
    """
    await setup_entry(hass, mock_config_entry)
    coordinator = mock_config_entry.runtime_data
    await publish(
        hass,
        "iotshield/kitchen/status",
        b'{"state":"online","node":"kitchen","fw":"1.4.2","interval":20}',
    )
    (device,) = dr.async_entries_for_config_entry(device_registry, mock_config_entry.entry_id)
    assert device.sw_version == "1.4.2"
    assert mock_config_entry.runtime_data is coordinator
    # Staleness follows the configured interval, never the unsigned announce (5 s × 3).
    assert coordinator.stale_after == 15.0


@pytest.mark.parametrize(
    "entry_options", [{"publish_interval": 5, "stale_intervals": 3, "legacy_topic": True}]
)
async def test_legacy_flat_topic(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    private_key: rsa.RSAPrivateKey,
) -> None:
    """With the flat topic enabled, this node's readings count and other nodes' are ignored."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, "iotshield/sensors/data", encrypt(public, telemetry(t=26.0)))
    assert hass.states.get("sensor.kitchen_temperature").state == "26.0"
    await publish(
        hass, "iotshield/sensors/data", encrypt(public, telemetry(node_id="garage", t=35.0))
    )
    assert hass.states.get("sensor.kitchen_temperature").state == "26.0"
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == "0"
    # On the node's own topic another node's id is an error.
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(node_id="garage", t=35.0)))
    assert hass.states.get("sensor.kitchen_rejected_payloads").state == "1"


async def test_severity_and_problem_entities(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """Readings become a severity with its reasons, and the fitting problem sensors turn on."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(t=22.0, g=0.05)))
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "normal"
    assert severity.attributes["options"] == ["normal", "low", "medium", "high", "critical"]
    assert severity.attributes["rules"] == []
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_OFF

    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, t=22.0, g=0.5)))
    assert hass.states.get("sensor.kitchen_severity").state == "medium"
    assert hass.states.get("binary_sensor.kitchen_gas_problem").state == STATE_ON
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_ON
    assert hass.states.get("binary_sensor.kitchen_fire").state == STATE_OFF

    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=3, t=47.0, g=0.5, f=1)))
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "critical"
    assert "fire" in severity.attributes["rules"]
    assert severity.attributes["sensor_levels"]["temperature"] == "high"
    for key in ("fire", "overheating", "gas_problem", "hazard"):
        assert hass.states.get(f"binary_sensor.kitchen_{key}").state == STATE_ON
    assert hass.states.get("binary_sensor.kitchen_humidity_problem").state == STATE_OFF


async def test_announced_noise_widens_hysteresis(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """With the node's announced σ, a reading just under a threshold does not clear a problem."""
    await setup_entry(hass, mock_config_entry)
    await publish(
        hass,
        "iotshield/kitchen/status",
        b'{"state":"online","interval":5,"privacy":{"e":0.5,"d":1e-05,"sigma":{"t":0.969}}}',
    )
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(t=36.0)))
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_ON
    for seq in range(2, 8):
        # 1 °C under the threshold is within three σ of the announced noise.
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, t=34.0)))
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_ON
    for seq in range(8, 11):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, t=25.0)))
    assert hass.states.get("binary_sensor.kitchen_overheating").state == STATE_OFF
    assert hass.states.get("sensor.kitchen_severity").state == "normal"


async def test_entities_are_written_only_when_needed(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A calm reading writes nothing new; a hazard writes severity, problems, readings at once."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=1, t=21.0)))
    watched = (
        "sensor.kitchen_severity",
        "binary_sensor.kitchen_hazard",
        "sensor.kitchen_humidity",
        "sensor.kitchen_temperature",
    )
    # Home Assistant updates `last_reported` in place: keep the times, not the states.
    reported = {entity_id: hass.states.get(entity_id).last_reported for entity_id in watched}
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, t=21.5)))
    for entity_id in watched:
        assert hass.states.get(entity_id).last_reported == reported[entity_id], entity_id
    assert hass.states.get("sensor.kitchen_temperature").state == "21.0"
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=3, g=0.5)))
    assert hass.states.get("sensor.kitchen_severity").state == "medium"
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_ON
    assert hass.states.get("sensor.kitchen_gas_level").state == "0.5"


TRANSLATIONS = Path(__file__).parent.parent / "custom_components" / "iotshield" / "translations"
# Enough motion readings in a row for the vote at the node's default noise.
MOTION_READINGS = motion_votes(MOTION_WINDOW, DEFAULT_MOTION_FLIP)


async def test_a_dark_night_with_people_about_is_normal(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """Darkness and motion are noticed on the Severity sensor, never a severity by themselves."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    for seq in range(1, MOTION_READINGS + 1):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, l=3.0, m=1)))
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "normal"
    assert severity.attributes["rules"] == []
    assert severity.attributes["context"] == ["dark", "motion"]
    assert set(severity.attributes["sensor_levels"].values()) == {"normal"}
    assert hass.states.get("binary_sensor.kitchen_hazard").state == STATE_OFF


@pytest.mark.parametrize(
    "entry_options",
    [
        {
            CONF_PUBLISH_INTERVAL: 5,
            CONF_STALE_INTERVALS: 3,
            CONF_LEGACY_TOPIC: False,
            MOTION_COUNTS_OPTION: "alarm_control_panel.home",
        }
    ],
)
async def test_motion_counts_while_the_alarm_is_armed(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """With the option, motion is low while the chosen alarm is armed away, context otherwise."""
    hass.states.async_set("alarm_control_panel.home", "armed_away")
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    for seq in range(1, MOTION_READINGS + 1):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, m=1)))
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "low"
    assert severity.attributes["rules"] == ["motion_low"]
    assert severity.attributes["context"] == []

    hass.states.async_set("alarm_control_panel.home", "disarmed")
    await hass.async_block_till_done()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=MOTION_READINGS + 1, m=1)))
    severity = hass.states.get("sensor.kitchen_severity")
    assert severity.state == "normal"
    assert severity.attributes["context"] == ["motion"]


async def test_the_motion_option_is_chosen_in_the_incidents_step(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """The incidents options name the entity; after the reload motion counts while it is on."""
    hass.states.async_set("input_boolean.away", "on")
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "alerts"}
    )
    assert MOTION_COUNTS_OPTION in {str(key) for key in result["data_schema"].schema}
    choice: dict[str, Any] = {
        CONF_MIN_SEVERITY: "medium",
        CONF_HOLD_TIME: 300.0,
        CONF_ANOMALY_LEVEL: "medium",
    }
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**choice, MOTION_COUNTS_OPTION: "input_boolean.away"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert mock_config_entry.options[MOTION_COUNTS_OPTION] == "input_boolean.away"
    public = private_key.public_key()
    for seq in range(1, MOTION_READINGS + 1):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, m=1)))
    assert hass.states.get("sensor.kitchen_severity").state == "low"

    # Left empty, motion is context again.
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "alerts"}
    )
    result = await hass.config_entries.options.async_configure(result["flow_id"], choice)
    await hass.async_block_till_done()
    assert mock_config_entry.options[MOTION_COUNTS_OPTION] is None
    for seq in range(MOTION_READINGS + 1, 2 * MOTION_READINGS + 1):
        await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=seq, m=1)))
    assert hass.states.get("sensor.kitchen_severity").state == "normal"


async def test_latest_alert_says_none_until_there_is_one(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """Before any incident the Latest alert is None, not unknown; then it names the incident."""
    await setup_entry(hass, mock_config_entry)
    public = private_key.public_key()
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=1)))
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest.state == "none"
    assert "incident_id" not in latest.attributes
    await publish(hass, DATA_TOPIC, encrypt(public, telemetry(seq=2, g=0.5)))
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest.state == "Gas level raised – kitchen"
    assert latest.attributes["severity"] == "medium"


async def test_latest_alert_is_kept_across_a_restart(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A resolved alert from before a restart is still the latest one, not None."""
    title = "Gas level raised – kitchen"
    attributes = {"incident_id": "a1b2", "severity": "medium", "resolved": True}
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State("sensor.kitchen_latest_alert", title, {**attributes, "friendly_name": "x"}),
                {"native_value": title, "native_unit_of_measurement": None},
            )
        ],
    )
    await setup_entry(hass, mock_config_entry)
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(seq=1)))
    latest = hass.states.get("sensor.kitchen_latest_alert")
    assert latest.state == title
    assert {key: latest.attributes[key] for key in attributes} == attributes
    assert latest.attributes["friendly_name"] == "Kitchen Latest alert"


async def test_anomaly_entities_say_they_are_learning(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """A new node's anomaly score is Learning with the percent learned; Anomaly raises nothing."""
    await setup_entry(hass, mock_config_entry)
    await publish(hass, DATA_TOPIC, encrypt(private_key.public_key(), telemetry(seq=1)))
    score = hass.states.get("sensor.kitchen_anomaly_score")
    assert score.state == "learning"
    assert score.attributes["baseline_learned"] == 0
    assert hass.states.get("binary_sensor.kitchen_anomaly").state == STATE_OFF


@pytest.mark.parametrize("language", ["en", "de"])
def test_rule_context_and_state_names_are_translated(language: str) -> None:
    """Tripped rules, what is noticed, None and Learning show as words in the UI."""
    strings: dict[str, Any] = json.loads((TRANSLATIONS / f"{language}.json").read_text("utf-8"))
    sensors = strings["entity"]["sensor"]
    attributes = sensors["severity"]["state_attributes"]
    assert set(attributes["rules"]["state"]) == set(RULE_ORDER)
    assert set(attributes["context"]["state"]) == set(CONTEXT_LABELS)
    assert set(sensors["latest_alert"]["state"]) == {"none"}
    assert set(sensors["anomaly_score"]["state"]) == {"learning"}
    alerts = strings["options"]["step"]["alerts"]
    assert MOTION_COUNTS_OPTION in alerts["data"]
    assert MOTION_COUNTS_OPTION in alerts["data_description"]
    for names in (attributes["rules"]["state"], attributes["context"]["state"]):
        assert all(name.strip() for name in names.values())
