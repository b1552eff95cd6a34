"""Binary sensor entities: the node's flame and motion detectors."""

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

from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator
from .entity import IoTShieldEntity
from .protocol import Telemetry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class IoTShieldBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a detector and how to read it from a reading."""

    is_on_fn: Callable[[Telemetry], bool | None]


BINARY_SENSORS: tuple[IoTShieldBinarySensorEntityDescription, ...] = (
    # No device class names an IR flame detector; the translation gives it Detected/Clear.
    IoTShieldBinarySensorEntityDescription(
        key="flame",
        translation_key="flame",
        is_on_fn=lambda telemetry: telemetry.flame,
    ),
    IoTShieldBinarySensorEntityDescription(
        key="motion",
        device_class=BinarySensorDeviceClass.MOTION,
        is_on_fn=lambda telemetry: telemetry.motion,
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

    async def async_added_to_hass(self) -> None:
        """Restore the last state unless a reading is already here."""
        await super().async_added_to_hass()
        if (telemetry := self.coordinator.data.telemetry) is not None:
            self._attr_is_on = self.entity_description.is_on_fn(telemetry)
        elif (last := await self.async_get_last_state()) is not None and last.state in (
            STATE_ON,
            STATE_OFF,
        ):
            self._attr_is_on = last.state == STATE_ON

    @callback
    def _handle_coordinator_update(self) -> None:
        """Take the state of a new reading; availability changes keep the old state."""
        if (telemetry := self.coordinator.data.telemetry) is not None:
            self._attr_is_on = self.entity_description.is_on_fn(telemetry)
        super()._handle_coordinator_update()
