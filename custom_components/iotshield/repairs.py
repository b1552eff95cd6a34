"""Repair flows: re-pair a node whose sessions are signed by a new identity key."""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import RepairsFlow
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult
import voluptuous as vol

from .const import CONF_NODE_KEY
from .keys import format_fingerprint
from .protocol_v2 import NodeKeyError, load_node_key, node_key_der_b64, node_key_fingerprint


class RepairNodeKeyFlow(RepairsFlow):
    """Pin the identity key the node now announces, after the user compared its fingerprint."""

    def __init__(self, entry_id: str) -> None:
        """Remember which node's entry to re-pair."""
        self._entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Start at the confirmation (the repairs manager passes the issue as input here)."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Show the announced key's fingerprint and ask to pin it."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        announce = getattr(getattr(entry, "runtime_data", None), "announce", None)
        announced = getattr(announce, "node_key", None)
        if entry is None or announced is None:
            return self.async_abort(reason="no_announced_key")
        try:
            key = node_key_der_b64(load_node_key(announced))
        except NodeKeyError:
            return self.async_abort(reason="no_announced_key")
        if user_input is not None:
            # The entry's update listener reloads it with the new pinned key.
            self.hass.config_entries.async_update_entry(
                entry, data={**entry.data, CONF_NODE_KEY: key}
            )
            return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders={
                "node_id": entry.title,
                "fingerprint": format_fingerprint(node_key_fingerprint(key)),
            },
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """Create the re-pair flow for an impersonation issue."""
    return RepairNodeKeyFlow(str((data or {})["entry_id"]))
