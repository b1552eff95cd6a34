"""The IoTShield dashboard: one section per node, made from the nodes' entities when it is shown.

Plain Python with no Home Assistant import: `panel.py` gathers the nodes and serves the result
as a read-only dashboard, so a node added later appears without anybody editing YAML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

URL_PATH: Final = "iotshield"
TITLE: Final = "IoTShield"
ICON: Final = "mdi:shield-home"

# What a section shows, in this order, by entity key (the end of the entity's unique id).
# First what needs the user (alert, acknowledge), then what is wrong, then the readings.
ALERT_KEYS: Final = ("latest_alert", "severity")
BUTTON_KEYS: Final = ("acknowledge", "test_alarm")
PROBLEM_KEYS: Final = (
    "hazard",
    "fire",
    "gas_problem",
    "overheating",
    "humidity_problem",
    "anomaly",
)
READING_KEYS: Final = ("temperature", "humidity", "gas_level", "illuminance", "flame", "motion")
# The latest alert's tile says what it is, where it stands and since when.
LATEST_ALERT_CONTENT: Final = ("state", "status", "opened_at")
# The latest alert's raw states when there is nothing to explain.
NO_ALERT_STATES: Final = ("none", "unknown", "unavailable")


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the dashboard shows it: its name, room and entity ids by key."""

    name: str
    area: str | None
    entities: Mapping[str, str]


def _tile(entity_id: str, **extra: Any) -> dict[str, Any]:
    """Return a tile card for one entity."""
    return {"type": "tile", "entity": entity_id, **extra}


def _press(entity_id: str) -> dict[str, Any]:
    """Return a tile that presses a button entity when tapped (not its more-info dialog)."""
    action = {
        "action": "perform-action",
        "perform_action": "button.press",
        "target": {"entity_id": entity_id},
    }
    # A button's state is when it was last pressed, which says nothing here.
    return _tile(
        entity_id,
        tap_action=action,
        icon_tap_action=action,
        hold_action={"action": "none"},
        hide_state=True,
    )


def _explanation(entity_id: str, what_to_do: str) -> dict[str, Any]:
    """Return a card with the latest alert's explanation and advice, hidden while there is none."""
    # The entity id is Home Assistant's (letters, digits, _ and .), safe inside the quotes; the
    # texts are plain text already (the LLM's answers are made plain before they are stored).
    content = (
        f"{{{{ state_attr('{entity_id}', 'explanation') }}}}\n\n"
        f"**{what_to_do}** {{{{ state_attr('{entity_id}', 'suggested_action') }}}}"
    )
    return {
        "type": "markdown",
        "content": content,
        "visibility": [
            {"condition": "state", "entity": entity_id, "state_not": list(NO_ALERT_STATES)}
        ],
    }


def node_section(node: NodeView, what_to_do: str = "What to do:") -> dict[str, Any]:
    """Return one node's section: heading, latest alert and controls, problems, readings."""
    entities = node.entities
    heading = node.name if node.area is None else f"{node.name} · {node.area}"
    cards: list[dict[str, Any]] = [{"type": "heading", "heading": heading, "icon": ICON}]
    if (latest := entities.get("latest_alert")) is not None:
        # The whole width: title, status and time must fit on one line.
        cards.append(
            _tile(
                latest,
                state_content=list(LATEST_ALERT_CONTENT),
                grid_options={"columns": "full"},
            )
        )
    cards.extend(_tile(entities[key]) for key in ALERT_KEYS[1:] if key in entities)
    cards.extend(_press(entities[key]) for key in BUTTON_KEYS if key in entities)
    if latest is not None:
        cards.append(_explanation(latest, what_to_do))
    cards.extend(_tile(entities[key]) for key in PROBLEM_KEYS if key in entities)
    cards.extend(_tile(entities[key]) for key in READING_KEYS if key in entities)
    return {"type": "grid", "cards": cards}


def dashboard_config(nodes: Sequence[NodeView], what_to_do: str = "What to do:") -> dict[str, Any]:
    """Return the whole dashboard: one view, a section per node, by room and then name."""
    ordered = sorted(nodes, key=lambda node: (node.area or "", node.name.casefold()))
    return {
        "title": TITLE,
        "views": [
            {
                "title": TITLE,
                "path": "nodes",
                "icon": ICON,
                "type": "sections",
                "max_columns": 4,
                "sections": [node_section(node, what_to_do) for node in ordered],
            }
        ],
    }
