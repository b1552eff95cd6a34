"""Diagnostics download for an IoTShield node, with the private key redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_PREVIOUS_PRIVATE_KEY, CONF_PRIVATE_KEY
from .coordinator import IoTShieldConfigEntry
from .home_llm import HomeLLM, is_home_entry

TO_REDACT = {CONF_PRIVATE_KEY, CONF_PREVIOUS_PRIVATE_KEY}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: IoTShieldConfigEntry
) -> dict[str, Any]:
    """Return the entry, the node's state, rejection counters, open incident and LLM state."""
    if is_home_entry(entry):
        home: HomeLLM = entry.runtime_data  # type: ignore[assignment]
        return {"entry": entry.as_dict(), "llm": home.summary()}
    coordinator = entry.runtime_data
    data = coordinator.data
    return {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "key_fingerprint": coordinator.key_fingerprint,
        "node": {
            "available": coordinator.node_available,
            "announce": asdict(coordinator.announce) if coordinator.announce else None,
            "publish_interval": coordinator.interval,
            # What the node says it publishes at: signed (revision 1) or announced.
            "node_interval": coordinator.node_interval,
            "wire_revision": coordinator.revision,
            "signed_session_info": asdict(coordinator.session_info)
            if coordinator.session_info
            else None,
            "stale_after": coordinator.stale_after,
            "last_reading": asdict(data.telemetry) if data.telemetry else None,
            "received_at": data.received_at.isoformat() if data.received_at else None,
        },
        "rejections": coordinator.rejections.as_dict(),
        # Session ids and counters only: session keys never leave Home Assistant's storage.
        "sessions": coordinator.session_summary(),
        "incident": coordinator.alerts.tracker.as_dict(),
        "llm": coordinator.alerts.llm_summary(),
        "anomaly": {
            "baseline_learned": round(data.learned, 3),
            "minutes_seen": coordinator.anomaly.minutes,
            "latest": None
            if data.anomaly is None
            else {
                "score": data.anomaly.score,
                "findings": [asdict(finding) for finding in data.anomaly.findings],
            },
        },
    }
