"""Button entity: learn a node's normal anew."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator
from .entity import IoTShieldEntity

PARALLEL_UPDATES = 0

RELEARN = ButtonEntityDescription(
    key="relearn", translation_key="relearn", entity_category=EntityCategory.CONFIG
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IoTShieldConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the node's button."""
    async_add_entities([IoTShieldRelearnButton(entry.runtime_data)])


class IoTShieldRelearnButton(IoTShieldEntity, ButtonEntity):
    """Forgets the learned baseline, after the node moved or the household changed."""

    entity_description = RELEARN

    def __init__(self, coordinator: IoTShieldCoordinator) -> None:
        """Attach to the node's device."""
        super().__init__(coordinator, RELEARN.key)

    @property
    def available(self) -> bool:
        """Stay available: the baseline is Home Assistant's, not the node's."""
        return self.coordinator.last_update_success

    async def async_press(self) -> None:
        """Learn the node's normal anew."""
        self.coordinator.async_relearn()
