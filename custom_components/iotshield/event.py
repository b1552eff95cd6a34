"""Event entity: each change of a node's incident, for dashboards and automations."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .const import EVENT_PREFIX
from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator
from .entity import IoTShieldEntity
from .incidents import Transition

PARALLEL_UPDATES = 0

INCIDENT = EventEntityDescription(
    key="incident",
    translation_key="incident",
    event_types=[transition.value for transition in Transition],
)
# What of the bus event the entity keeps (the readings and rules stay on the bus event).
ATTRIBUTES = ("incident_id", "severity", "current_severity", "title", "acknowledged")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IoTShieldConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the node's incident event entity."""
    async_add_entities([IoTShieldIncidentEvent(entry.runtime_data)])


class IoTShieldIncidentEvent(IoTShieldEntity, EventEntity):
    """Fires with every `iotshield_incident_*` transition of this node."""

    entity_description = INCIDENT

    def __init__(self, coordinator: IoTShieldCoordinator) -> None:
        """Attach to the node's device."""
        super().__init__(coordinator, INCIDENT.key)

    @property
    def available(self) -> bool:
        """Stay available: incidents are Home Assistant's, and outlive an offline node."""
        return self.coordinator.last_update_success

    async def async_added_to_hass(self) -> None:
        """Follow the node's incident events on the bus."""
        await super().async_added_to_hass()
        for transition in Transition:
            self.async_on_remove(
                self.hass.bus.async_listen(f"{EVENT_PREFIX}{transition.value}", self._on_incident)
            )

    @callback
    def _on_incident(self, event: Event) -> None:
        """Record one transition of this node's incident."""
        if event.data.get("node_id") != self.coordinator.node_id:
            return
        transition = str(event.event_type).removeprefix(EVENT_PREFIX)
        self._trigger_event(transition, {key: event.data.get(key) for key in ATTRIBUTES})
        self.async_write_ha_state()

    @callback
    def _handle_coordinator_update(self) -> None:
        """Change only when an incident does, not with every reading."""
