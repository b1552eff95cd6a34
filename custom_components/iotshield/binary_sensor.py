"""Binary sensor entities: the node's detectors, its problems and what is unusual."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator, IoTShieldData
from .entity import IoTShieldEntity
from .severity import Assessment, Level

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IoTShieldBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a detector or a problem and how to read it from the node's latest data."""

    is_on_fn: Callable[[IoTShieldData], bool | None]
    # Written with every reading (the node's detectors), not only when it changes.
    every_reading: bool = False


# A problem is reported from MEDIUM up, where the thesis starts raising alerts.
PROBLEM_LEVEL = Level.MEDIUM
FIRE_RULES = frozenset({"fire", "fire_suspected", "explosion_risk"})


def _sensor_problem(key: str) -> Callable[[IoTShieldData], bool | None]:
    """Return an is_on_fn: this sensor's own severity is a problem."""

    def is_on(data: IoTShieldData) -> bool | None:
        return None if data.assessment is None else data.assessment.sensors[key] >= PROBLEM_LEVEL

    return is_on


def _anomalous(data: IoTShieldData) -> bool | None:
    """Say whether the anomaly detector alarms; off while it learns (it raises nothing yet)."""
    if data.anomaly is None:
        return False if data.learned < 1 else None
    return data.anomaly.anomalous


def _unusual(key: str) -> Callable[[IoTShieldData], bool | None]:
    """Return an is_on_fn: the anomaly detector finds this sensor unusual."""

    def is_on(data: IoTShieldData) -> bool | None:
        if data.anomaly is None:
            return _anomalous(data)
        return any(f.sensor == key and f.anomalous for f in data.anomaly.findings)

    return is_on


def _motion(data: IoTShieldData) -> bool | None:
    """Say whether motion is more than the node's random flips; unknown when it went unread."""
    if data.telemetry is None or data.telemetry.motion is None or data.assessment is None:
        return None
    return data.assessment.sensors["m"] > Level.NORMAL


def _fire(assessment: Assessment) -> bool:
    """Say whether the readings point at a fire."""
    return assessment.sensors["f"] > Level.NORMAL or any(
        rule.rule_id in FIRE_RULES for rule in assessment.rules
    )


BINARY_SENSORS: tuple[IoTShieldBinarySensorEntityDescription, ...] = (
    # No device class names an IR flame detector; the translation gives it Detected/Clear.
    IoTShieldBinarySensorEntityDescription(
        key="flame",
        every_reading=True,
        translation_key="flame",
        is_on_fn=lambda data: data.telemetry.flame if data.telemetry else None,
    ),
    IoTShieldBinarySensorEntityDescription(
        key="motion",
        device_class=BinarySensorDeviceClass.MOTION,
        # The node flips its motion flag at random (randomized response, one reading in eight
        # at ε_m = 2): shown raw, an empty room "moves" every few readings, for every automation
        # and as a recorder row each time. Shown is the vote the severity engine takes over the
        # last readings, which chance alone passes less than once in a million windows.
        is_on_fn=_motion,
    ),
    IoTShieldBinarySensorEntityDescription(
        key="fire",
        translation_key="fire",
        # Not smoke: it is judged from flame, heat and gas together. Unsafe / Safe.
        device_class=BinarySensorDeviceClass.SAFETY,
        is_on_fn=lambda data: None if data.assessment is None else _fire(data.assessment),
    ),
    IoTShieldBinarySensorEntityDescription(
        key="overheating",
        translation_key="overheating",
        device_class=BinarySensorDeviceClass.HEAT,
        is_on_fn=_sensor_problem("t"),
    ),
    IoTShieldBinarySensorEntityDescription(
        key="humidity_problem",
        translation_key="humidity_problem",
        # Too dry or too damp: moisture would show a healthy room as "Dry".
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=_sensor_problem("h"),
    ),
    IoTShieldBinarySensorEntityDescription(
        key="gas_problem",
        translation_key="gas_problem",
        device_class=BinarySensorDeviceClass.GAS,
        is_on_fn=_sensor_problem("g"),
    ),
    IoTShieldBinarySensorEntityDescription(
        key="hazard",
        translation_key="hazard",
        device_class=BinarySensorDeviceClass.SAFETY,
        # Thresholds only: something unusual for this home is not by itself a hazard.
        is_on_fn=lambda data: (
            None if data.assessment is None else data.assessment.hazard_level >= PROBLEM_LEVEL
        ),
    ),
    IoTShieldBinarySensorEntityDescription(
        key="anomaly",
        translation_key="anomaly",
        device_class=BinarySensorDeviceClass.PROBLEM,
        is_on_fn=_anomalous,
    ),
    # One per sensor: useful to find a failing sensor, too noisy to record by default.
    *(
        IoTShieldBinarySensorEntityDescription(
            key=f"{name}_anomaly",
            translation_key=f"{name}_anomaly",
            device_class=BinarySensorDeviceClass.PROBLEM,
            entity_registry_enabled_default=False,
            is_on_fn=_unusual(key),
        )
        for key, name in (
            ("t", "temperature"),
            ("h", "humidity"),
            ("g", "gas"),
            ("l", "light"),
            ("m", "motion"),
        )
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IoTShieldConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the node's detectors."""
    coordinator = entry.runtime_data
    async_add_entities(
        IoTShieldBinarySensor(coordinator, description) for description in BINARY_SENSORS
    )


class IoTShieldBinarySensor(IoTShieldEntity, BinarySensorEntity, RestoreEntity):
    """A detector of the node, restored after a restart until fresh data arrives."""

    entity_description: IoTShieldBinarySensorEntityDescription

    def __init__(
        self,
        coordinator: IoTShieldCoordinator,
        description: IoTShieldBinarySensorEntityDescription,
    ) -> None:
        """Bind the description."""
        super().__init__(coordinator, description.key)
        self.entity_description = description
        self._every_reading = description.every_reading

    async def async_added_to_hass(self) -> None:
        """Restore the last state unless a reading is already here."""
        await super().async_added_to_hass()
        if self.coordinator.data.telemetry is not None:
            self._attr_is_on = self.entity_description.is_on_fn(self.coordinator.data)
        elif (last := await self.async_get_last_state()) is not None and last.state in (
            STATE_ON,
            STATE_OFF,
        ):
            self._attr_is_on = last.state == STATE_ON

    @callback
    def _handle_coordinator_update(self) -> None:
        """Take the state of a new reading; availability changes keep the old state."""
        if self.coordinator.data.telemetry is not None:
            self._attr_is_on = self.entity_description.is_on_fn(self.coordinator.data)
        super()._handle_coordinator_update()
