"""The home's one LLM: the settings every node shares, its explainer, warm start and repairs.

A home has one model, so it has one setup (a config entry of its own) and one request at a
time, whichever node asks. The decisions live in `llm`; this is the Home Assistant side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceNotFound
from homeassistant.helpers import issue_registry as ir
from homeassistant.util.hass_dict import HassKey
import voluptuous as vol

from .const import (
    CONF_KIND,
    CONF_LLM_AI_TASK_ENTITY,
    CONF_LLM_KEEP_ALIVE,
    CONF_LLM_LANGUAGE,
    CONF_LLM_MODEL,
    CONF_LLM_PROMPT,
    CONF_LLM_PROVIDER,
    CONF_LLM_TIMEOUT,
    CONF_LLM_URL,
    DEFAULT_LLM_LANGUAGE,
    DOMAIN,
    KIND_HOME,
    LLM_UNREACHABLE_AFTER,
    LOGGER,
)
from .explain import DEFAULT_PROMPT, Context
from .incidents import Explanation
from .llm import (
    DEFAULT_KEEP_ALIVE,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    PROVIDER_AI_TASK,
    PROVIDER_OLLAMA,
    AiTaskExplainer,
    Explainer,
    Failure,
    LLMError,
    LLMSettings,
    OllamaExplainer,
    create_connection,
)

AI_TASK_DOMAIN: Final = "ai_task"
LLM_ISSUE_ID: Final = "llm_unavailable"


def is_home_entry(entry: ConfigEntry) -> bool:
    """Say whether an entry of this integration is the home's LLM rather than a node."""
    return entry.data.get(CONF_KIND) == KIND_HOME


def home_entry(hass: HomeAssistant) -> ConfigEntry | None:
    """Return the home's LLM entry, if the user set one up."""
    for entry in hass.config_entries.async_entries(DOMAIN):
        if is_home_entry(entry):
            return entry
    return None


def ai_task_available(hass: HomeAssistant) -> bool:
    """Say whether Home Assistant runs its AI Task integration (2025.8 and later)."""
    return AI_TASK_DOMAIN in hass.config.components


def llm_settings(options: Mapping[str, Any]) -> LLMSettings:
    """Return the LLM settings of the home entry's options, with defaults."""
    return LLMSettings(
        provider=str(options.get(CONF_LLM_PROVIDER) or PROVIDER_OLLAMA),
        url=str(options.get(CONF_LLM_URL, DEFAULT_URL)),
        model=str(options.get(CONF_LLM_MODEL, DEFAULT_MODEL)),
        timeout=float(options.get(CONF_LLM_TIMEOUT, DEFAULT_TIMEOUT)),
        keep_alive=int(options.get(CONF_LLM_KEEP_ALIVE, DEFAULT_KEEP_ALIVE)),
        language=str(options.get(CONF_LLM_LANGUAGE) or DEFAULT_LLM_LANGUAGE),
        prompt=str(options.get(CONF_LLM_PROMPT) or DEFAULT_PROMPT),
        ai_task_entity=str(options.get(CONF_LLM_AI_TASK_ENTITY) or ""),
    )


async def _async_generate_data(hass: HomeAssistant, request: dict[str, Any]) -> Any:
    """Call `ai_task.generate_data`; what Home Assistant raises becomes an LLMError."""
    entity_id = str(request["entity_id"])
    if hass.states.get(entity_id) is None:
        raise LLMError(Failure.MODEL_MISSING, entity_id)
    try:
        return await hass.services.async_call(
            AI_TASK_DOMAIN, "generate_data", request, blocking=True, return_response=True
        )
    except ServiceNotFound as err:
        raise LLMError(Failure.UNREACHABLE, "AI Task is not set up") from err
    except (HomeAssistantError, vol.Invalid) as err:
        raise LLMError(Failure.SERVER_ERROR, str(err) or type(err).__name__) from err


class _AiTaskCheck(AiTaskExplainer):
    """An AI Task explainer that checks its entity exists before it is used."""

    def __init__(self, hass: HomeAssistant, settings: LLMSettings) -> None:
        """Ask through Home Assistant's service."""
        super().__init__(settings, partial(_async_generate_data, hass))
        self._hass = hass

    async def async_check(self) -> None:
        """Raise LLMError when AI Task is missing or the entity does not exist."""
        if not ai_task_available(self._hass):
            raise LLMError(Failure.UNREACHABLE, "AI Task is not set up")
        if self._hass.states.get(self.settings.ai_task_entity) is None:
            raise LLMError(Failure.MODEL_MISSING, self.settings.ai_task_entity)


async def async_create_explainer(hass: HomeAssistant, settings: LLMSettings) -> Explainer:
    """Create the provider's explainer; an HTTP client is built in the executor (certificates)."""
    if settings.provider == PROVIDER_AI_TASK:
        return _AiTaskCheck(hass, settings)
    connection = await hass.async_add_executor_job(
        create_connection, settings.url, settings.timeout
    )
    return OllamaExplainer(settings, connection)


type HomeConfigEntry = ConfigEntry[HomeLLM]
HOME_LLM: HassKey[HomeLLM] = HassKey(f"{DOMAIN}_home_llm")


class HomeLLM:
    """The model every node's alerts ask, one request at a time."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, explainer: Explainer) -> None:
        """Serve the entry's settings through its explainer."""
        self.hass = hass
        self.entry = entry
        self.explainer = explainer
        self._lock = asyncio.Lock()
        self._failures = 0
        self.preloaded: float | None = None

    @property
    def settings(self) -> LLMSettings:
        """Return the settings the explainer was made from."""
        return self.explainer.settings

    async def async_start(self) -> None:
        """Load an Ollama model ahead, so the first incident does not wait for a cold start."""
        if self.settings.provider == PROVIDER_OLLAMA and self.settings.keep_alive != 0:
            self.entry.async_create_background_task(
                self.hass, self._async_preload(), f"{DOMAIN} llm preload"
            )

    async def _async_preload(self) -> None:
        """Load the model now; a failure is only logged (the first request will say more)."""
        async with self._lock:
            try:
                seconds = await self.explainer.async_preload()
            except LLMError as err:
                LOGGER.debug("Could not load the model ahead: %s", err)
            else:
                self.preloaded = seconds
                LOGGER.debug("Model loaded ahead in %.1f s", seconds)

    async def async_explain(self, context: Context, language: str, model: str = "") -> Explanation:
        """Explain one context; an explicit language option wins over the alerts' language."""
        async with self._lock:
            return await self.explainer.async_explain(
                context, self.settings.language or language, model
            )

    def worked(self) -> None:
        """Forget earlier failures and withdraw the repair issue."""
        self._failures = 0
        ir.async_delete_issue(self.hass, DOMAIN, LLM_ISSUE_ID)

    def failed(self, err: LLMError) -> None:
        """Count failures a user must fix; raise a repair issue when the model stays unusable."""
        if err.failure in (Failure.MALFORMED, Failure.SERVER_ERROR):
            return
        self._failures += 1
        if err.failure is not Failure.MODEL_MISSING and self._failures < LLM_UNREACHABLE_AFTER:
            return
        settings = self.settings
        ai_task = settings.provider == PROVIDER_AI_TASK
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            LLM_ISSUE_ID,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="llm_ai_task_unavailable" if ai_task else err.failure.value,
            translation_placeholders={
                "url": settings.url,
                "model": settings.model,
                "entity_id": settings.ai_task_entity,
            },
        )

    def summary(self) -> dict[str, Any]:
        """Describe the settings and state, for diagnostics (the prompt is the user's)."""
        settings = self.settings
        return {
            "provider": settings.provider,
            "url": settings.url,
            "model": settings.model,
            "ai_task_entity": settings.ai_task_entity,
            "timeout": settings.timeout,
            "keep_alive": settings.keep_alive,
            "busy": self._lock.locked(),
            "failures_in_a_row": self._failures,
            "preload_seconds": self.preloaded,
        }


async def async_setup_home(hass: HomeAssistant, entry: HomeConfigEntry) -> None:
    """Create the home's explainer and offer it to every node."""
    # New settings are judged afresh: an old repair would speak of the old server.
    ir.async_delete_issue(hass, DOMAIN, LLM_ISSUE_ID)
    explainer = await async_create_explainer(hass, llm_settings(entry.options))
    entry.async_on_unload(explainer.async_close)
    home = HomeLLM(hass, entry, explainer)
    entry.runtime_data = home
    hass.data[HOME_LLM] = home
    await home.async_start()


def async_unload_home(hass: HomeAssistant, entry: HomeConfigEntry) -> None:
    """Stop offering the home's explainer; nodes keep their rule-based explanations."""
    if hass.data.get(HOME_LLM) is entry.runtime_data:
        hass.data.pop(HOME_LLM)
