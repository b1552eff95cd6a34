"""Base entity for IoTShield nodes."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MANUFACTURER, MODEL
from .coordinator import IoTShieldCoordinator


class IoTShieldEntity(CoordinatorEntity[IoTShieldCoordinator]):
    """An entity of one node's device, unavailable while the node is offline or stale."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: IoTShieldCoordinator, key: str) -> None:
        """Name the entity after its key and attach it to the node's device."""
        super().__init__(coordinator)
        self._attr_unique_id = f"{coordinator.node_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, coordinator.node_id)},
            name=coordinator.config_entry.title,
            manufacturer=MANUFACTURER,
            model=MODEL,
        )

    @property
    def available(self) -> bool:
        """Follow the node's status topic and the staleness clock."""
        return super().available and self.coordinator.node_available
