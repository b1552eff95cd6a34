"""AI Task as the home's LLM (Home Assistant 2025.8 and later): any model Home Assistant knows."""

from __future__ import annotations

from typing import Any

from homeassistant.core import Event, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

ai_task = pytest.importorskip(
    "homeassistant.components.ai_task", reason="AI Task exists from Home Assistant 2025.8"
)

from homeassistant.components.ai_task import (  # noqa: E402
    AITaskEntity,
    AITaskEntityFeature,
    GenDataTask,
    GenDataTaskResult,
)
from homeassistant.components.ai_task.const import DATA_COMPONENT  # noqa: E402
from homeassistant.components.conversation import ChatLog  # noqa: E402

from custom_components.iotshield.const import (  # noqa: E402
    CONF_HOLD_TIME,
    CONF_LLM_AI_TASK_ENTITY,
    CONF_LLM_COOLDOWN,
    CONF_LLM_PROVIDER,
    DOMAIN,
)
from custom_components.iotshield.home_llm import LLM_ISSUE_ID, home_entry  # noqa: E402
from custom_components.iotshield.llm import AI_TASK_STRUCTURE  # noqa: E402

from .test_alerts import (  # noqa: E402
    FIRE,
    GAS_MEDIUM,
    Feed,
    _form_defaults,
    events,  # noqa: F401
    feed,  # noqa: F401
    kinds,
    notifications,
    setup_home_llm,
    setup_with_options,
)

pytestmark = pytest.mark.usefixtures("mqtt_mock")

ANSWER = {
    "title": "Gas in the kitchen",
    "explanation": "The gas sensor reads high. A burner may be open.",
    "suggested_action": "Open the windows and close the gas valve.",
}


class ScriptedAITask(AITaskEntity):
    """An AI Task entity that answers what the test scripts and keeps what it was asked."""

    _attr_name = "Scripted"
    _attr_unique_id = "scripted"
    _attr_supported_features = AITaskEntityFeature.GENERATE_DATA

    def __init__(self) -> None:
        """Answer well until told otherwise."""
        self.data: Any = dict(ANSWER)
        self.fail: Exception | None = None
        self.tasks: list[GenDataTask] = []

    async def _async_generate_data(self, task: GenDataTask, chat_log: ChatLog) -> GenDataTaskResult:
        """Record the task and answer the scripted data."""
        self.tasks.append(task)
        if self.fail is not None:
            raise self.fail
        return GenDataTaskResult(conversation_id=chat_log.conversation_id, data=self.data)


@pytest.fixture
async def ai_entity(hass: HomeAssistant) -> ScriptedAITask:
    """Set up AI Task with one scripted entity, as an LLM integration would provide it."""
    # Conversation, which AI Task needs, reads the entities exposed by the core integration.
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "ai_task", {})
    entity = ScriptedAITask()
    # Added the way an LLM integration's platform adds it, to AI Task's entity component.
    await hass.data[DATA_COMPONENT].async_add_entities([entity])
    await hass.async_block_till_done()
    assert entity.entity_id is not None
    return entity


def ai_task_options(entity_id: str) -> dict[str, Any]:
    """Return node options with the home's LLM being an AI Task entity."""
    return {
        CONF_HOLD_TIME: 0,
        CONF_LLM_COOLDOWN: 0,
        CONF_LLM_PROVIDER: "ai_task",
        CONF_LLM_AI_TASK_ENTITY: entity_id,
    }


async def test_an_ai_task_entity_explains_incidents(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ai_entity: ScriptedAITask,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
) -> None:
    """The same prompt and structure go to the entity; its answer is checked and delivered."""
    assert ai_entity.entity_id is not None
    await setup_with_options(hass, mock_config_entry, ai_task_options(ai_entity.entity_id))
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "explained"]
    assert events[1].data["source"] == "llm"
    assert events[1].data["title"] == ANSWER["title"]
    assert "Open the windows" in next(iter(notifications(hass).values()))["message"]
    task = ai_entity.tasks[0]
    assert "Readings" in task.instructions
    assert task.structure is not None
    assert set(AI_TASK_STRUCTURE) <= {str(key) for key in task.structure.schema}


@pytest.mark.parametrize(
    "data",
    [
        "no JSON at all",
        {"title": "Only a title"},
        {"title": ["not", "text"], "explanation": 1, "suggested_action": None},
        {"title": "x" * 100_000, "explanation": "e", "suggested_action": "a"},
        ["a", "list"],
        None,
    ],
    ids=["text", "missing", "types", "huge", "list", "none"],
)
async def test_a_hostile_ai_task_answer_changes_nothing(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ai_entity: ScriptedAITask,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    data: Any,
) -> None:
    """A malformed answer is asked again a bounded number of times, then the rules' text stays."""
    ai_entity.data = data
    assert ai_entity.entity_id is not None
    await setup_with_options(hass, mock_config_entry, ai_task_options(ai_entity.entity_id))
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened"]
    assert events[0].data["source"] == "rules"
    # The first try and two retries, never more.
    assert len(ai_entity.tasks) == 3
    # A model that talks nonsense is not something the user must repair.
    assert ir.async_get(hass).async_get_issue(DOMAIN, LLM_ISSUE_ID) is None


async def test_a_failing_or_removed_entity_raises_a_repair(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    ai_entity: ScriptedAITask,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
) -> None:
    """Errors keep the rules' text; an entity that is gone raises the AI Task repair."""
    from homeassistant.exceptions import HomeAssistantError  # noqa: PLC0415

    ai_entity.fail = HomeAssistantError("quota exceeded")
    assert ai_entity.entity_id is not None
    await setup_with_options(hass, mock_config_entry, ai_task_options(ai_entity.entity_id))
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened"]
    # A server error is tried once more.
    assert len(ai_entity.tasks) == 2
    hass.states.async_remove(ai_entity.entity_id)
    await feed(FIRE)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "escalated"]
    issue = ir.async_get(hass).async_get_issue(DOMAIN, LLM_ISSUE_ID)
    assert issue is not None
    assert issue.translation_key == "llm_ai_task_unavailable"
    assert issue.translation_placeholders == {
        "url": "http://localhost:11434",
        "model": "llama3.2:1b",
        "entity_id": ai_entity.entity_id,
    }


async def test_home_llm_form_offers_ai_task_and_checks_the_entity(
    hass: HomeAssistant, ai_entity: ScriptedAITask
) -> None:
    """Where AI Task runs, the form offers it; no entity or a missing one is an error."""
    home = await setup_home_llm(hass, {CONF_LLM_PROVIDER: "ai_task"})
    assert home_entry(hass) is home
    result = await hass.config_entries.options.async_init(home.entry_id)
    values = _form_defaults(result["data_schema"])
    assert values[CONF_LLM_PROVIDER] == "ai_task"
    result = await hass.config_entries.options.async_configure(result["flow_id"], values)
    assert result["errors"] == {CONF_LLM_AI_TASK_ENTITY: "ai_task_entity_missing"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, CONF_LLM_AI_TASK_ENTITY: "ai_task.gone"}
    )
    assert result["errors"] == {CONF_LLM_AI_TASK_ENTITY: "ai_task_entity_missing"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, CONF_LLM_AI_TASK_ENTITY: ai_entity.entity_id}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert home.options[CONF_LLM_AI_TASK_ENTITY] == ai_entity.entity_id
    # No Ollama server is asked to preload for an AI Task.
    assert home.runtime_data.preloaded is None
