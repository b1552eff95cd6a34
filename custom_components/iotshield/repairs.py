"""Repair flows: re-pair a node whose sessions are signed by a new identity key."""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import RepairsFlow
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult
import voluptuous as vol

from .coordinator import IoTShieldCoordinator
from .keys import format_fingerprint
from .protocol_v2 import NodeKeyError, load_node_key, node_key_der_b64, node_key_fingerprint


class RepairNodeKeyFlow(RepairsFlow):
    """Pin the identity key the user was shown and compared, and no other."""

    def __init__(self, entry_id: str) -> None:
        """Remember which node's entry to re-pair."""
        self._entry_id = entry_id
        # The key whose fingerprint the form shows: the only one submitting may pin.
        self._shown_key: str | None = None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Start at the confirmation (the repairs manager passes the issue as input here)."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Show the announced key's fingerprint and, on submit, pin exactly that key."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        coordinator = getattr(entry, "runtime_data", None)
        if entry is None or not isinstance(coordinator, IoTShieldCoordinator):
            return self.async_abort(reason="no_announced_key")
        if user_input is not None and self._shown_key is not None:
            # Never the key announced now: an attacker may have re-announced since display.
            await coordinator.async_pin_node_key(self._shown_key)
            return self.async_create_entry(data={})
        announce = coordinator.announce
        if announce is None or announce.node_key is None:
            return self.async_abort(reason="no_announced_key")
        try:
            self._shown_key = node_key_der_b64(load_node_key(announce.node_key))
        except NodeKeyError:
            return self.async_abort(reason="no_announced_key")
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders={
                "node_id": entry.title,
                "fingerprint": format_fingerprint(node_key_fingerprint(self._shown_key)),
            },
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """Create the re-pair flow for an impersonation issue."""
    return RepairNodeKeyFlow(str((data or {})["entry_id"]))
