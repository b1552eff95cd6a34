"""Pairing without dead ends: fingerprints offered by hand, a way back from import, keys shown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import re
import subprocess
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from custom_components.iotshield.const import (
    CONF_KEY_SOURCE,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_PROTOCOL,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from custom_components.iotshield.keys import public_key_pem
from custom_components.iotshield.protocol_v2 import node_key_fingerprint

from .broker import (  # noqa: F401
    Broker,
    StartNode,
    connect_home_assistant,
    mosquitto,
    mqtt_node,
    start_node,
    wait_until,
)
from .test_config_flow import NODE_KEY_B64, _discovery

FINGERPRINT_LINE = re.compile(r"identity fingerprint:? ((?:[0-9a-f]{4} ){15}[0-9a-f]{4})")
NODE_KEY_LINE = re.compile(r"identity key \(node_key\):? ([A-Za-z0-9+/=]+)")
HA_KEY_LINE = re.compile(r"Home Assistant key fingerprint ((?:[0-9a-f]{4} ){15}[0-9a-f]{4})")


def _announce(node_id: str = "garage") -> str:
    """Return a v2 node's retained announce."""
    doc = {
        "state": "online",
        "node": node_id,
        "fw": "1.0.0",
        "interval": 5,
        "proto": 2,
        "node_key": NODE_KEY_B64,
    }
    return json.dumps(doc)


async def _user_flow(hass: HomeAssistant, source: str = "generate") -> dict[str, Any]:
    """Open the wizard by hand for node garage."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {CONF_NODE_ID: "garage", CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: source},
        )
    )


@pytest.mark.usefixtures("mqtt_mock")
async def test_adding_by_hand_offers_the_announced_fingerprint(hass: HomeAssistant) -> None:
    """A node that announced itself is paired by comparing fingerprints, not by pasting a key."""
    flow = asyncio.ensure_future(_user_flow(hass))
    # The retained announce reaches the wizard's subscription as the broker would send it.
    while not flow.done():
        async_fire_mqtt_message(hass, "iotshield/garage/status", _announce(), retain=True)
        await asyncio.sleep(0.05)
    result = flow.result()
    assert result["step_id"] == "show_key"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_confirm"
    assert result["description_placeholders"]["node_fingerprint"] == " ".join(
        re.findall("....", node_key_fingerprint(NODE_KEY_B64))
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"pairing": "pin"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_NODE_KEY] == NODE_KEY_B64


@pytest.mark.usefixtures("mqtt_mock")
async def test_a_node_started_while_the_key_is_shown_is_paired_by_fingerprint(
    hass: HomeAssistant,
) -> None:
    """The user gives the node the shown key and starts it: its announce is read then."""
    result = await _user_flow(hass)
    assert result["step_id"] == "show_key"
    flow = asyncio.ensure_future(hass.config_entries.flow.async_configure(result["flow_id"], {}))
    while not flow.done():
        async_fire_mqtt_message(hass, "iotshield/garage/status", _announce(), retain=True)
        await asyncio.sleep(0.05)
    result = flow.result()
    assert result["step_id"] == "pair_confirm"
    assert result["description_placeholders"]["node_fingerprint"] == " ".join(
        re.findall("....", node_key_fingerprint(NODE_KEY_B64))
    )


@pytest.mark.usefixtures("mqtt_mock")
async def test_without_an_announce_the_key_is_pasted(hass: HomeAssistant) -> None:
    """No retained announce (a v1 node, or one not yet started): the paste step, as before."""
    result = await _user_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "pair_manual"


@pytest.mark.usefixtures("mqtt_mock")
async def test_a_stuck_discovery_has_a_way_back_and_does_not_block_adding_by_hand(
    hass: HomeAssistant,
) -> None:
    """Import chosen on a discovered card can go back to generating; adding by hand still works."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("garage")
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY_SOURCE: "import"}
    )
    assert result["step_id"] == "import_key"
    # The dialog is closed and the card accepted again: the flow resumes at this step.
    (progress,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert progress["step_id"] == "import_key"
    back = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_KEY_SOURCE: "generate"}
    )
    assert back["step_id"] == "show_key"
    # The same stuck card, and the user adds the node by hand instead.
    await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=_discovery("hall")
    )
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_NODE_ID: "hall", CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "generate"},
    )
    assert result["step_id"] == "show_key"
    # The discovery card of that node is gone; the other node's stays.
    left = {
        flow["context"]["unique_id"]
        for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if flow["context"]["source"] == SOURCE_MQTT
    }
    assert left == {"garage"}


@pytest.mark.usefixtures("mqtt_mock")
async def test_reconfigure_can_always_show_the_key_again(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, private_key: rsa.RSAPrivateKey
) -> None:
    """Keeping the key still shows it, as the wrong-key repair promises."""
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "keep"}
    )
    assert result["step_id"] == "show_key"
    assert result["description_placeholders"]["public_key"] == public_key_pem(private_key).strip()


@pytest.mark.broker
@pytest.mark.usefixtures("socket_enabled", "mock_hass_config")
async def test_both_nodes_print_what_the_wizard_shows(
    hass: HomeAssistant,
    mosquitto: Broker,  # noqa: F811
    start_node: StartNode,  # noqa: F811
    private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """A running node is added by hand: the wizard offers its fingerprint, as the node prints it."""
    await connect_home_assistant(hass, mosquitto)
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    log = tmp_path / "node.log"
    node: subprocess.Popen[bytes] = start_node(
        mosquitto, key, "--interval", "600", "--state-dir", str(tmp_path), log=log
    )
    try:
        await wait_until(
            hass, lambda: log.exists() and FINGERPRINT_LINE.search(log.read_text()), "the node"
        )
        await wait_until(
            hass,
            lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)),
            "its announce (discovery)",
        )
        printed = log.read_text()
        fingerprint_match = FINGERPRINT_LINE.search(printed)
        node_key_match = NODE_KEY_LINE.search(printed)
        ha_key_match = HA_KEY_LINE.search(printed)
        assert fingerprint_match, printed
        assert node_key_match, printed
        assert ha_key_match, printed
        # The node's printed identity key is the one its fingerprint is of.
        assert node_key_fingerprint(node_key_match.group(1)) == fingerprint_match.group(1).replace(
            " ", ""
        )
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {CONF_NODE_ID: "kitchen", CONF_TOPIC_PREFIX: "iotshield", CONF_KEY_SOURCE: "generate"},
        )
        assert result["step_id"] == "show_key"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert result["step_id"] == "pair_confirm"
        assert result["description_placeholders"]["node_fingerprint"] == fingerprint_match.group(1)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"pairing": "pin"}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"][CONF_PROTOCOL] == 2
        await hass.async_block_till_done()
        entry = hass.config_entries.async_get_entry(result["result"].entry_id)
        assert entry is not None
        assert entry.state is ConfigEntryState.LOADED
        # The node's discovery card went with it.
        assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    finally:
        node.terminate()
        node.wait(timeout=15)
