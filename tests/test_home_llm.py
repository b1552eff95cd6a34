"""The home's one LLM: set up once for all nodes, old per-node settings moved, AI Task offered."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Event, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import (
    CONF_HOLD_TIME,
    CONF_LLM_COOLDOWN,
    CONF_LLM_ENABLED,
    CONF_LLM_MODEL,
    CONF_LLM_PROMPT,
    CONF_LLM_URL,
    CONF_NODE_ID,
    CONF_PRIVATE_KEY,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from custom_components.iotshield.diagnostics import async_get_config_entry_diagnostics
from custom_components.iotshield.home_llm import LLM_ISSUE_ID, ai_task_available, home_entry
from custom_components.iotshield.keys import generate_private_key, private_key_pem

from .envelope import encrypt, telemetry
from .helpers import publish
from .ollama_server import FakeOllama, free_port, ollama_server  # noqa: F401
from .test_alerts import (
    _form_defaults,
    events,  # noqa: F401
    kinds,
    setup_home_llm,
)

pytestmark = pytest.mark.usefixtures("mqtt_mock")

NODES = ("kitchen", "garage", "hall")
GAS = {"g": 0.5}


def node_entry(node_id: str, key: rsa.RSAPrivateKey, minor_version: int = 2, **options: Any):
    """Return a v1 node's entry with the given options."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=node_id,
        unique_id=node_id,
        version=1,
        minor_version=minor_version,
        data={
            CONF_NODE_ID: node_id,
            CONF_TOPIC_PREFIX: "iotshield",
            CONF_PRIVATE_KEY: private_key_pem(key),
        },
        options={CONF_HOLD_TIME: 0, **options},
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """Make one RSA key per node, once (it takes a while)."""
    return {node: generate_private_key() for node in NODES}


async def add_nodes(
    hass: HomeAssistant, keys: dict[str, rsa.RSAPrivateKey], minor_version: int = 2, **options: Any
) -> list[MockConfigEntry]:
    """Set up every node with the same options."""
    entries = [node_entry(node, keys[node], minor_version, **options) for node in NODES]
    for entry in entries:
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entries


async def gas_at(hass: HomeAssistant, node: str, key: rsa.RSAPrivateKey, seq: int = 1) -> None:
    """Publish a gas reading of one node."""
    doc = telemetry(node_id=node, seq=seq, **GAS)
    await publish(hass, f"iotshield/{node}/sensors/data", encrypt(key.public_key(), doc))


async def test_several_nodes_share_one_llm_set_up_once(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """Three nodes without any LLM option are explained by the home's model, one at a time."""
    await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    await add_nodes(hass, keys)
    for node in NODES:
        await gas_at(hass, node, keys[node])
    await hass.async_block_till_done(wait_background_tasks=True)
    explained = [e for e in events if e.event_type == "iotshield_incident_explained"]
    assert sorted(e.data["node_id"] for e in explained) == sorted(NODES)
    assert all(e.data["source"] == "llm" for e in explained)
    assert len(ollama_server.chats) == len(NODES)
    # One model for the home: never two requests at once, whichever node asks.
    assert ollama_server.max_in_flight == 1
    # Loaded once, ahead, for the whole home.
    assert len(ollama_server.preloads) == 1


async def test_a_node_opts_out_or_names_its_own_model(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """A node's own model is asked for its incidents; a node that opted out asks nothing."""
    ollama_server.models.append("qwen3:0.6b")
    await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    kitchen, garage, hall = await add_nodes(hass, keys)
    hass.config_entries.async_update_entry(
        garage, options={**garage.options, CONF_LLM_MODEL: "qwen3:0.6b"}
    )
    hass.config_entries.async_update_entry(hall, options={**hall.options, CONF_LLM_ENABLED: False})
    await hass.async_block_till_done()
    for node in NODES:
        await gas_at(hass, node, keys[node])
    await hass.async_block_till_done(wait_background_tasks=True)
    models = sorted(chat["model"] for chat in ollama_server.chats)
    assert models == ["llama3.2:1b", "qwen3:0.6b"]
    opened = [e.data["node_id"] for e in events if e.event_type == "iotshield_incident_opened"]
    assert sorted(opened) == sorted(NODES)
    assert kitchen.state is ConfigEntryState.LOADED


async def test_without_a_home_llm_alerts_keep_rule_texts(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    events: list[Event],  # noqa: F811
) -> None:
    """No home LLM: every node alerts with rule-based texts and raises no repair."""
    await add_nodes(hass, keys)
    await gas_at(hass, "kitchen", keys["kitchen"])
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened"]
    assert events[0].data["source"] == "rules"
    assert ir.async_get(hass).async_get_issue(DOMAIN, LLM_ISSUE_ID) is None


async def test_old_per_node_settings_move_to_the_home(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    events: list[Event],  # noqa: F811
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """Minor version 1 nodes: the first one's settings become the home's, nothing else changes."""
    ollama_server.models.append("qwen3:0.6b")
    prompt = "Explain {node} in {room} at {severity}: {readings}. {language}"
    old = {
        CONF_LLM_ENABLED: True,
        CONF_LLM_URL: ollama_server.url,
        CONF_LLM_MODEL: "llama3.2:1b",
        "llm_timeout": 12.0,
        "llm_keep_alive": 60,
        "llm_language": "",
        CONF_LLM_PROMPT: prompt,
        CONF_LLM_COOLDOWN: 30,
    }
    kitchen = node_entry("kitchen", keys["kitchen"], 1, **old)
    garage = node_entry("garage", keys["garage"], 1, **{**old, CONF_LLM_MODEL: "qwen3:0.6b"})
    # Settings made once and switched off again: the node stays off.
    hall = node_entry("hall", keys["hall"], 1, **{**old, CONF_LLM_ENABLED: False})
    # A node that never opened the LLM options had it off, and keeps it off.
    for entry in (kitchen, garage, hall):
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
    home = home_entry(hass)
    assert home is not None
    assert home.state is ConfigEntryState.LOADED
    assert home.options[CONF_LLM_URL] == ollama_server.url
    assert home.options["llm_timeout"] == 12.0
    assert home.options[CONF_LLM_PROMPT] == prompt
    assert home.options[CONF_LLM_MODEL] == "llama3.2:1b"
    assert all(entry.minor_version == 2 for entry in (kitchen, garage, hall))
    assert kitchen.options == {CONF_HOLD_TIME: 0, CONF_LLM_ENABLED: True, CONF_LLM_COOLDOWN: 30}
    assert garage.options[CONF_LLM_MODEL] == "qwen3:0.6b"
    assert CONF_LLM_URL not in garage.options
    assert hall.options == {CONF_HOLD_TIME: 0, CONF_LLM_ENABLED: False, CONF_LLM_COOLDOWN: 30}
    for node in NODES:
        await gas_at(hass, node, keys[node])
    await hass.async_block_till_done(wait_background_tasks=True)
    assert sorted(chat["model"] for chat in ollama_server.chats) == ["llama3.2:1b", "qwen3:0.6b"]
    # The node's own prompt is the home's now.
    assert all(p.startswith("Explain ") for p in ollama_server.prompts())


async def test_an_old_node_without_llm_settings_stays_off(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """A minor version 1 node that never had the LLM does not start using a home LLM."""
    await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    entry = node_entry("kitchen", keys["kitchen"], 1)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.options == {CONF_HOLD_TIME: 0, CONF_LLM_ENABLED: False}
    assert entry.minor_version == 2


async def test_home_llm_options_are_checked_and_reload(
    hass: HomeAssistant,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """The home entry's own options: checked like the first setup, then used at once."""
    home = await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    result = await hass.config_entries.options.async_init(home.entry_id)
    assert result["step_id"] == "home_llm"
    values = _form_defaults(result["data_schema"])
    assert values[CONF_LLM_URL] == ollama_server.url
    refused = f"http://127.0.0.1:{free_port()}"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, CONF_LLM_URL: refused}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, "llm_timeout": 9}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert home.options["llm_timeout"] == 9
    assert home.runtime_data.settings.timeout == 9


async def test_ai_task_is_offered_only_where_home_assistant_has_it(
    hass: HomeAssistant,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """On Home Assistant without AI Task the provider choice is not in the form."""
    home = await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    result = await hass.config_entries.options.async_init(home.entry_id)
    fields = {str(key) for key in result["data_schema"].schema}
    assert ("llm_provider" in fields) is ai_task_available(hass)
    assert "llm_provider" not in fields
    if not await _ai_task_can_load(hass):
        return
    result = await hass.config_entries.options.async_init(home.entry_id)
    fields = {str(key) for key in result["data_schema"].schema}
    assert {"llm_provider", "llm_ai_task_entity"} <= fields


async def _ai_task_can_load(hass: HomeAssistant) -> bool:
    """Load AI Task where this Home Assistant has it (2025.8 and later)."""
    try:
        import homeassistant.components.ai_task  # noqa: F401, PLC0415
    except ImportError:
        return False
    return await async_setup_component(hass, "ai_task", {})


async def test_home_llm_diagnostics(
    hass: HomeAssistant,
    keys: dict[str, rsa.RSAPrivateKey],
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """The home entry's diagnostics show its settings; a node's show its use of them."""
    home = await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    (kitchen, *_) = await add_nodes(hass, keys)
    await hass.async_block_till_done(wait_background_tasks=True)
    found = await async_get_config_entry_diagnostics(hass, home)
    assert found["llm"]["provider"] == "ollama"
    assert found["llm"]["url"] == ollama_server.url
    assert found["llm"]["preload_seconds"] is not None
    node = await async_get_config_entry_diagnostics(hass, kitchen)
    assert node["llm"]["enabled"] is True
    assert node["llm"]["home"]["url"] == ollama_server.url
    assert "BEGIN" not in str(found)
