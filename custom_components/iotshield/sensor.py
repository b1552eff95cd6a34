"""Sensor entities: the node's continuous readings and two diagnostics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
import time
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import LIGHT_LUX, PERCENTAGE, EntityCategory, UnitOfTemperature
from homeassistant.core import CALLBACK_TYPE, Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.event import async_call_later, async_track_state_change_event
from homeassistant.util import dt as dt_util

from . import display
from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator, IoTShieldData
from .display import ReadingMean, WriteThrottle
from .entity import IoTShieldEntity
from .protocol import Rejection
from .severity import (
    MOTION_COUNTS_OPTION,
    SENSOR_NAMES,
    Level,
    SeverityEngine,
    Thresholds,
    context,
    motion_counts_in,
)

# A flood of rejected payloads writes the Rejected payloads entity at most this often.
REJECTIONS_WRITE_INTERVAL = 1.0
# The Latest alert's state before any incident (translated), and the anomaly score's while the
# detector learns what is usual for this home (the percent is its `baseline_learned` attribute).
NO_ALERT = "none"
LEARNING = "learning"

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IoTShieldSensorEntityDescription(SensorEntityDescription):
    """Describes a sensor and how to take its value from the node's latest reading."""

    value_fn: Callable[[IoTShieldData], float | str | datetime | None]
    attributes_fn: Callable[[IoTShieldData, Thresholds], dict[str, Any]] | None = None
    # Diagnostics about Home Assistant's side stay visible while the node is lost.
    available_without_node: bool = False
    # The value is Home Assistant's own knowledge, current even before a reading arrives.
    own_value: bool = False
    # A noised continuous reading: shows a throttled mean (display.py), not every reading.
    averaged: bool = False
    # Changes with every reading: written at most once a minute, and at once when it matters.
    throttled: bool = False
    # The (translated) state while nothing has happened yet, instead of unknown; once something
    # has, no news (None) keeps the value shown before, a restored one too, with these attributes.
    nothing_yet: str | None = None
    kept_attributes: tuple[str, ...] = ()


def _severity_attributes(data: IoTShieldData, thresholds: Thresholds) -> dict[str, Any]:
    """Name the rules that tripped, the context, each sensor's level and the open incident."""
    incident = data.incident
    attributes: dict[str, Any] = {
        "incident_id": None if incident is None else incident.incident_id,
        "incident_severity": None if incident is None else incident.level.label,
        "incident_acknowledged": None if incident is None else incident.acknowledged,
    }
    if data.assessment is not None:
        attributes["rules"] = [rule.rule_id for rule in data.assessment.rules]
        telemetry = data.telemetry
        readings = (
            {}
            if telemetry is None
            else {"t": telemetry.temperature, "h": telemetry.humidity, "l": telemetry.light}
        )
        attributes["context"] = list(context(data.assessment, readings, thresholds))
        attributes["sensor_levels"] = {
            SENSOR_NAMES[key]: level.label for key, level in data.assessment.counted.items()
        }
    return attributes


def _latest_alert_title(data: IoTShieldData) -> str | None:
    """Return the title of the latest incident's explanation (None: no incident to show)."""
    incident = data.latest_incident
    if incident is None or incident.explanation is None:
        return None
    return incident.explanation.title


LATEST_ALERT_ATTRIBUTES = (
    "incident_id",
    "severity",
    "status",
    "opened_at",
    "resolved_at",
    "test",
    "resolved",
    "explanation",
    "suggested_action",
    "source",
)


def _latest_alert_attributes(data: IoTShieldData, _thresholds: Thresholds) -> dict[str, Any]:
    """Return the latest incident's explanation and state, for dashboards."""
    incident = data.latest_incident
    if incident is None:
        return {}
    explanation = incident.explanation
    return {
        "incident_id": incident.incident_id,
        "severity": incident.level.label,
        "status": incident.status,
        "opened_at": dt_util.utc_from_timestamp(incident.opened_at).isoformat(),
        "resolved_at": None
        if incident.resolved_at is None
        else dt_util.utc_from_timestamp(incident.resolved_at).isoformat(),
        # A drill from the Test alarm button or service, not a hazard.
        "test": incident.test,
        "resolved": incident.resolved_at is not None,
        "explanation": None if explanation is None else explanation.explanation,
        "suggested_action": None if explanation is None else explanation.suggested_action,
        "source": None if explanation is None else explanation.source.value,
    }


def _hazards(data: IoTShieldData) -> tuple[Level, frozenset[str]] | None:
    """Return what a reading entity writes at once when it changes: severity and tripped rules."""
    if data.assessment is None:
        return None
    return data.assessment.level, frozenset(rule.rule_id for rule in data.assessment.rules)


def _anomaly_score(data: IoTShieldData) -> float | str | None:
    """Return the last minute's anomaly score (1.0 is the alarm threshold), or that it learns."""
    if data.anomaly is not None:
        return round(data.anomaly.score, 2)
    return LEARNING if data.learned < 1 else None


def _anomaly_attributes(data: IoTShieldData, _thresholds: Thresholds) -> dict[str, Any]:
    """Name the sensors that alarm and give each sensor's score and the learning progress."""
    attributes: dict[str, Any] = {"baseline_learned": round(data.learned * 100)}
    if data.anomaly is not None:
        attributes["unusual"] = [SENSOR_NAMES[key] for key in data.anomaly.sensors]
        attributes["scores"] = {
            SENSOR_NAMES[finding.sensor]: round(finding.score, 2)
            for finding in data.anomaly.findings
        }
    return attributes


SENSORS: tuple[IoTShieldSensorEntityDescription, ...] = (
    IoTShieldSensorEntityDescription(
        key="temperature",
        averaged=True,
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda data: data.telemetry.temperature if data.telemetry else None,
    ),
    IoTShieldSensorEntityDescription(
        key="humidity",
        averaged=True,
        device_class=SensorDeviceClass.HUMIDITY,
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda data: data.telemetry.humidity if data.telemetry else None,
    ),
    IoTShieldSensorEntityDescription(
        key="gas_level",
        averaged=True,
        translation_key="gas_level",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda data: data.telemetry.gas if data.telemetry else None,
    ),
    IoTShieldSensorEntityDescription(
        key="illuminance",
        averaged=True,
        device_class=SensorDeviceClass.ILLUMINANCE,
        native_unit_of_measurement=LIGHT_LUX,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda data: data.telemetry.light if data.telemetry else None,
    ),
    IoTShieldSensorEntityDescription(
        key="severity",
        translation_key="severity",
        device_class=SensorDeviceClass.ENUM,
        options=[level.label for level in Level],
        value_fn=lambda data: data.assessment.level.label if data.assessment else None,
        attributes_fn=_severity_attributes,
    ),
    IoTShieldSensorEntityDescription(
        key="latest_alert",
        translation_key="latest_alert",
        value_fn=_latest_alert_title,
        attributes_fn=_latest_alert_attributes,
        # The last word on a hazard stays readable when the node goes silent, and after a
        # restart (resolved incidents are not stored).
        available_without_node=True,
        # Incidents are Home Assistant's own: a test alarm shows before the node's first reading.
        own_value=True,
        nothing_yet=NO_ALERT,
        kept_attributes=LATEST_ALERT_ATTRIBUTES,
    ),
    IoTShieldSensorEntityDescription(
        key="anomaly_score",
        translation_key="anomaly_score",
        # No state class: while the detector learns, the state says so instead of a number.
        value_fn=_anomaly_score,
        attributes_fn=_anomaly_attributes,
    ),
    IoTShieldSensorEntityDescription(
        key="baseline_learned",
        translation_key="baseline_learned",
        native_unit_of_measurement=PERCENTAGE,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda data: round(data.learned * 100),
        # What Home Assistant has learned stays true while the node is silent.
        available_without_node=True,
        own_value=True,
    ),
    IoTShieldSensorEntityDescription(
        key="last_reading",
        throttled=True,
        translation_key="last_reading",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        # A new timestamp with every reading: a recorder row each minute for little news (the
        # node's availability says when readings stop), so it is opt-in.
        entity_registry_enabled_default=False,
        value_fn=lambda data: data.received_at,
        available_without_node=True,
    ),
)

REJECTED_PAYLOADS = SensorEntityDescription(
    key="rejected_payloads",
    translation_key="rejected_payloads",
    entity_category=EntityCategory.DIAGNOSTIC,
    state_class=SensorStateClass.TOTAL_INCREASING,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IoTShieldConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the node's sensors."""
    coordinator = entry.runtime_data
    _follow_motion_option(hass, entry, coordinator.severity)
    async_add_entities(
        [
            *(IoTShieldSensor(coordinator, description) for description in SENSORS),
            IoTShieldRejectedPayloadsSensor(coordinator),
        ]
    )


def _follow_motion_option(
    hass: HomeAssistant, entry: IoTShieldConfigEntry, severity: SeverityEngine
) -> None:
    """Make motion count while the entity the user chose says nobody is home."""
    entity_id = entry.options.get(MOTION_COUNTS_OPTION)
    if not entity_id:
        return

    @callback
    def follow(_event: Event[EventStateChangedData] | None = None) -> None:
        state = hass.states.get(entity_id)
        severity.motion_counts = motion_counts_in(None if state is None else state.state)

    follow()
    entry.async_on_unload(async_track_state_change_event(hass, [entity_id], follow))


class IoTShieldSensor(IoTShieldEntity, RestoreSensor):
    """A value of the node's latest data, restored after a restart until fresh data arrives.

    Noised continuous readings show a throttled mean (display.py); severity, incidents and the
    anomaly detector take every reading in the coordinator, unthrottled.
    """

    entity_description: IoTShieldSensorEntityDescription

    def __init__(
        self, coordinator: IoTShieldCoordinator, description: IoTShieldSensorEntityDescription
    ) -> None:
        """Bind the description."""
        super().__init__(coordinator, description.key)
        self.entity_description = description
        # When the reading this entity last took was received.
        self._taken: datetime | None = None
        self._mean: ReadingMean | None = None
        self._throttle: WriteThrottle | None = None
        if description.averaged:
            precision = description.suggested_display_precision or 0
            # The node's own resolution (two decimals), and one more than displayed: compact
            # states that keep what averaging gains.
            self._mean = ReadingMean(
                step=10.0**-precision,
                digits=max(precision + 1, 2),
                window=display.WINDOW,
                heartbeat=display.HEARTBEAT,
            )
        elif description.throttled:
            self._throttle = WriteThrottle(interval=display.WINDOW)

    @property
    def available(self) -> bool:
        """Follow the node, unless this value is about Home Assistant's side."""
        if self.entity_description.available_without_node:
            return self.coordinator.last_update_success
        return super().available

    async def async_added_to_hass(self) -> None:
        """Restore the last value unless a reading is already here."""
        await super().async_added_to_hass()
        description = self.entity_description
        if (last := await self.async_get_last_sensor_data()) is not None:
            self._attr_native_value = last.native_value
            if description.kept_attributes and (state := await self.async_get_last_state()):
                self._attr_extra_state_attributes = {
                    key: state.attributes[key]
                    for key in description.kept_attributes
                    if key in state.attributes
                }
        if self._mean is not None:
            # Home Assistant writes the state once the entity is added.
            self._follow(self.coordinator.data)
        elif self._current(self.coordinator.data):
            self._take(self.coordinator.data)

    @callback
    def _handle_coordinator_update(self) -> None:
        """Take the value of a new reading; availability changes keep the old value."""
        data = self.coordinator.data
        if self._mean is not None or self._throttle is not None:
            if self._follow(data):
                self.async_write_ha_state()
            return
        if self._current(data):
            self._take(data)
        super()._handle_coordinator_update()

    def _follow(self, data: IoTShieldData) -> bool:
        """Take a new reading into a throttled value; say whether the state must be written."""
        received = data.received_at if data.telemetry is not None else None
        fresh = received is not None and received != self._taken
        if self._throttle is not None:
            # Written at once when the node goes or comes back, so it tells when readings stopped.
            if fresh:
                self._taken = received
                self._attr_native_value = received
            return self._throttle.due(dt_util.utcnow().timestamp(), self.available)
        assert self._mean is not None
        urgent = (self.available, _hazards(data))
        if received is None or not fresh:
            return self._mean.change(urgent)
        self._taken = received
        value = self.entity_description.value_fn(data)
        decision = self._mean.add(
            received.timestamp(), value if isinstance(value, float | int) else None, urgent
        )
        if decision.write:
            self._attr_native_value = decision.value
        return decision.write

    def _current(self, data: IoTShieldData) -> bool:
        """Say whether the data holds this sensor's value (else a restored one stands)."""
        return data.telemetry is not None or self.entity_description.own_value

    def _take(self, data: IoTShieldData) -> None:
        """Set value and attributes from the node's latest data."""
        description = self.entity_description
        value = description.value_fn(data)
        if value is None and description.nothing_yet is not None:
            if self._attr_native_value is not None:
                return
            value = description.nothing_yet
        self._attr_native_value = value
        if (attributes_fn := description.attributes_fn) is not None:
            thresholds = self.coordinator.severity.thresholds
            self._attr_extra_state_attributes = attributes_fn(data, thresholds)


class IoTShieldRejectedPayloadsSensor(IoTShieldEntity, SensorEntity):
    """How many payloads were refused since the entry was loaded, by reason in attributes."""

    entity_description = REJECTED_PAYLOADS
    # The per-reason counts change with every rejection: the recorder keeps only the total.
    _unrecorded_attributes = frozenset(reason.value for reason in Rejection)

    def __init__(self, coordinator: IoTShieldCoordinator) -> None:
        """Attach to the node's device."""
        super().__init__(coordinator, REJECTED_PAYLOADS.key)
        self._written_at = -REJECTIONS_WRITE_INTERVAL
        self._cancel_write: CALLBACK_TYPE | None = None

    @callback
    def _rejected(self) -> None:
        """Write the count at most once a second, so a flood costs a bounded number of writes."""
        if self._cancel_write is not None:
            return
        wait = self._written_at + REJECTIONS_WRITE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._write_now()
            return
        self._cancel_write = async_call_later(self.hass, wait, self._write_later)

    @callback
    def _write_later(self, _now: datetime) -> None:
        """Write the count the throttle held back."""
        self._cancel_write = None
        self._write_now()

    @callback
    def _write_now(self) -> None:
        """Write the current count."""
        self._written_at = time.monotonic()
        self.async_write_ha_state()

    @callback
    def _cancel_pending_write(self) -> None:
        """Drop a held-back write when the entity goes away."""
        if self._cancel_write is not None:
            self._cancel_write()
            self._cancel_write = None

    @property
    def available(self) -> bool:
        """Stay available: rejections are counted by Home Assistant, not by the node."""
        return self.coordinator.last_update_success

    @property
    def native_value(self) -> int:
        """Return the total count."""
        return self.coordinator.rejections.total

    @property
    def extra_state_attributes(self) -> dict[str, int]:
        """Return the count per reason."""
        return self.coordinator.rejections.as_dict()

    async def async_added_to_hass(self) -> None:
        """Also update when a payload is rejected (which changes no other entity)."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.async_add_rejection_listener(self._rejected))
        self.async_on_remove(self._cancel_pending_write)
