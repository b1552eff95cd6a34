"""Button entities: acknowledge the node's alert, run a test alarm, learn the node's normal anew."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .coordinator import IoTShieldConfigEntry, IoTShieldCoordinator
from .entity import IoTShieldEntity
from .services import async_acknowledge_node, async_test_alarm

PARALLEL_UPDATES = 0

RELEARN = ButtonEntityDescription(
    key="relearn", translation_key="relearn", entity_category=EntityCategory.CONFIG
)
ACKNOWLEDGE = ButtonEntityDescription(key="acknowledge", translation_key="acknowledge")
# A diagnostic control, as a smoke alarm's test button: checks the path, changes nothing.
TEST_ALARM = ButtonEntityDescription(
    key="test_alarm", translation_key="test_alarm", entity_category=EntityCategory.DIAGNOSTIC
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: IoTShieldConfigEntry,
    async_add_entities: AddEntitiesCallback,
) -> None:
    """Add the node's buttons."""
    coordinator = entry.runtime_data
    async_add_entities(
        [
            IoTShieldAcknowledgeButton(coordinator),
            IoTShieldTestAlarmButton(coordinator),
            IoTShieldRelearnButton(coordinator),
        ]
    )


class IoTShieldButton(IoTShieldEntity, ButtonEntity):
    """A button of the node's device that acts in Home Assistant, not on the node."""

    def __init__(self, coordinator: IoTShieldCoordinator) -> None:
        """Attach to the node's device."""
        super().__init__(coordinator, self.entity_description.key)

    @property
    def available(self) -> bool:
        """Stay available: alerts and the baseline are Home Assistant's, not the node's."""
        return self.coordinator.last_update_success


class IoTShieldAcknowledgeButton(IoTShieldButton):
    """Silences the node's open incident or ends its test alarm."""

    entity_description = ACKNOWLEDGE

    async def async_press(self) -> None:
        """Acknowledge the open incident, or say that there is none."""
        async_acknowledge_node(self.coordinator.config_entry)


class IoTShieldTestAlarmButton(IoTShieldButton):
    """Runs a drill through notification, events and device triggers, flagged as a test."""

    entity_description = TEST_ALARM

    async def async_press(self) -> None:
        """Start the drill, or say why it cannot start."""
        async_test_alarm(self.coordinator.config_entry)


class IoTShieldRelearnButton(IoTShieldButton):
    """Forgets the learned baseline, after the node moved or the household changed."""

    entity_description = RELEARN

    async def async_press(self) -> None:
        """Learn the node's normal anew."""
        self.coordinator.async_relearn()
