"""Base entity for IoTShield nodes."""

from __future__ import annotations

import re
from typing import Any

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MANUFACTURER, MODEL
from .coordinator import IoTShieldCoordinator


def device_name(node_id: str, title: str) -> str:
    """Return a node's device name: the entry's title, or its id written as a name."""
    if title != node_id:
        return title
    # Ids are lowercase words joined by - or _: `living_room` reads "Living room".
    return " ".join(part for part in re.split(r"[-_]+", node_id) if part).capitalize()


class IoTShieldEntity(CoordinatorEntity[IoTShieldCoordinator]):
    """An entity of one node's device, unavailable while the node is offline or stale."""

    _attr_has_entity_name = True
    # A reading is reported every time it arrives; what is derived from readings (severity,
    # problems, anomaly, alerts) changes far less often and is written only when it changes,
    # which keeps the cost of a message low.
    _every_reading = False
    _written: tuple[Any, ...] | None = None

    def __init__(self, coordinator: IoTShieldCoordinator, key: str) -> None:
        """Name the entity after its key and attach it to the node's device."""
        super().__init__(coordinator)
        self._attr_unique_id = f"{coordinator.node_id}_{key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, coordinator.node_id)},
            name=device_name(coordinator.node_id, coordinator.config_entry.title),
            manufacturer=MANUFACTURER,
            model=MODEL,
        )

    @property
    def available(self) -> bool:
        """Follow the node's status topic and the staleness clock."""
        return super().available and self.coordinator.node_available

    @callback
    def _handle_coordinator_update(self) -> None:
        """Write the state: a reading always, anything else only when it changed."""
        if not self._every_reading:
            written = (self.available, self.state, self.extra_state_attributes)
            if written == self._written:
                return
            self._written = written
        super()._handle_coordinator_update()
