"""The IoTShield dashboard in the sidebar: made anew from the loaded nodes each time it is opened.

Home Assistant's dashboards are read through `lovelace/config`; this one is a read-only
(YAML-mode) dashboard whose config `dashboard.py` builds from the registries, so that every node
appears on it, nodes added later included, with nothing to edit.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components import frontend
from homeassistant.components.lovelace.const import LOVELACE_DATA, MODE_YAML
from homeassistant.components.lovelace.dashboard import LovelaceConfig
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
from homeassistant.helpers.json import json_bytes, json_fragment

from .const import CONF_NODE_ID, DOMAIN
from .dashboard import ICON, TITLE, URL_PATH, NodeView, dashboard_config
from .home_llm import is_home_entry
from .texts import for_language

LOVELACE = "lovelace"
# A node whose setup is finishing counts: it updates the dashboard as its last step.
SHOWN_STATES = (ConfigEntryState.LOADED, ConfigEntryState.SETUP_IN_PROGRESS)


def node_views(hass: HomeAssistant) -> list[NodeView]:
    """Return every loaded node with its shown entities (not disabled, not hidden)."""
    devices = dr.async_get(hass)
    entities = er.async_get(hass)
    areas = ar.async_get(hass)
    views = []
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.state not in SHOWN_STATES or is_home_entry(entry):
            continue
        node_id: str = entry.data[CONF_NODE_ID]
        shown = {
            item.unique_id.removeprefix(f"{node_id}_"): item.entity_id
            for item in er.async_entries_for_config_entry(entities, entry.entry_id)
            if item.disabled_by is None and item.hidden_by is None
        }
        device = next(iter(dr.async_entries_for_config_entry(devices, entry.entry_id)), None)
        name = entry.title
        area = None
        if device is not None:
            name = device.name_by_user or device.name or name
            if device.area_id is not None and (found := areas.async_get_area(device.area_id)):
                area = found.name
        views.append(NodeView(name, area, shown))
    return views


class IoTShieldDashboard(LovelaceConfig):
    """A dashboard whose config is made from the nodes whenever it is read."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Serve the dashboard at its URL path."""
        super().__init__(hass, URL_PATH, {"mode": MODE_YAML})

    @property
    def mode(self) -> str:
        """Say YAML: the frontend then offers no editor, as the config is made, not stored."""
        return MODE_YAML

    async def async_get_info(self) -> dict[str, Any]:
        """Describe the dashboard as `lovelace/info` does."""
        config = await self.async_load(False)
        return {"mode": self.mode, "resources": 0, "views": len(config["views"])}

    async def async_load(self, force: bool) -> dict[str, Any]:
        """Make the config from the nodes loaded now."""
        texts = for_language(self.hass.config.language)
        return dashboard_config(node_views(self.hass), texts.phrases["what_to_do"])

    async def async_json(self, force: bool) -> json_fragment:
        """Return the config as JSON, as the frontend reads it."""
        return json_fragment(json_bytes(await self.async_load(force)))

    @callback
    def async_changed(self) -> None:
        """Tell open dashboards to read the config again (a node came or went)."""
        self._config_updated()


def _has_nodes(hass: HomeAssistant, removed: str | None) -> bool:
    """Say whether the home has a node entry (enabled, and not the one being removed)."""
    return any(
        not is_home_entry(entry) and entry.disabled_by is None and entry.entry_id != removed
        for entry in hass.config_entries.async_entries(DOMAIN)
    )


@callback
def async_update_dashboard(hass: HomeAssistant, removed: str | None = None) -> None:
    """Show the dashboard while the home has a node, and refresh it when nodes change.

    A node that reloads (its options were saved) or waits to retry its setup leaves its section
    for a moment, but the dashboard stays in the sidebar: it goes with the last node removed.
    """
    lovelace = hass.data.get(LOVELACE_DATA)
    if lovelace is None:
        # No frontend (a minimal or test setup): nothing to show a dashboard in.
        return
    existing = lovelace.dashboards.get(URL_PATH)
    if existing is not None and not isinstance(existing, IoTShieldDashboard):
        # The user has a dashboard of their own at this address; it stays theirs.
        return
    if not _has_nodes(hass, removed):
        if existing is not None:
            lovelace.dashboards.pop(URL_PATH)
            frontend.async_remove_panel(hass, URL_PATH, warn_if_unknown=False)
        return
    if existing is None:
        lovelace.dashboards[URL_PATH] = existing = IoTShieldDashboard(hass)
        frontend.async_register_built_in_panel(
            hass,
            LOVELACE,
            sidebar_title=TITLE,
            sidebar_icon=ICON,
            frontend_url_path=URL_PATH,
            config={"mode": MODE_YAML},
        )
    existing.async_changed()
