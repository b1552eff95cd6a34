"""The home's LLM: Ollama's client or an AI Task, bounded calls, and a queue that never floods it.

No Home Assistant import. A slow, cold, busy or offline model must never delay an alert: callers
always have the rule-based explanation first, and this module only upgrades it when it can.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
import inspect
import json
from typing import Any, Final

import httpx
import ollama

from .explain import ANSWER_SCHEMA, DEFAULT_PROMPT, AnswerError, Context, build_prompt, parse_answer
from .incidents import Explanation

DEFAULT_URL: Final = "http://localhost:11434"
DEFAULT_MODEL: Final = "llama3.2:1b"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_KEEP_ALIVE: Final = 600
# Who writes the explanations: Ollama through its client, or an AI Task entity of Home Assistant.
PROVIDER_OLLAMA: Final = "ollama"
PROVIDER_AI_TASK: Final = "ai_task"
PROVIDERS: Final = (PROVIDER_OLLAMA, PROVIDER_AI_TASK)
# A malformed answer is asked again this many times; other failures are not retried.
MALFORMED_RETRIES: Final = 2
SERVER_ERROR_RETRIES: Final = 1
RETRY_DELAY: Final = 0.5
# Incidents waiting for the model; beyond this the oldest request is dropped (it keeps its
# rule-based explanation).
QUEUE_SIZE: Final = 4


class Failure(StrEnum):
    """Why the model gave no explanation (values are translation keys)."""

    UNREACHABLE = "llm_unreachable"
    TIMEOUT = "llm_timeout"
    SERVER_ERROR = "llm_server_error"
    MODEL_MISSING = "llm_model_missing"
    MALFORMED = "llm_malformed"


class LLMError(Exception):
    """The model could not explain; `failure` says why."""

    def __init__(self, failure: Failure, detail: str) -> None:
        """Keep the reason and a short detail for the log."""
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """How to reach the model and what to ask it."""

    provider: str = PROVIDER_OLLAMA
    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    keep_alive: int = DEFAULT_KEEP_ALIVE
    # Empty: the caller's language (Home Assistant's).
    language: str = ""
    prompt: str = ""
    # The AI Task entity asked when the provider is `ai_task`.
    ai_task_entity: str = ""


@dataclass(frozen=True, slots=True)
class Connection:
    """An Ollama client and the transport it owns, which must be closed when done."""

    client: ollama.AsyncClient
    transport: httpx.AsyncHTTPTransport


def create_connection(url: str, timeout: float) -> Connection:
    """Create the client; it loads TLS certificates, so call it in an executor."""
    transport = httpx.AsyncHTTPTransport()
    return Connection(ollama.AsyncClient(host=url, timeout=timeout, transport=transport), transport)


# Reasoning models think before answering unless told not to; older clients lack the switch.
_CHAT_TAKES_THINK: Final = "think" in inspect.signature(ollama.AsyncClient.chat).parameters


def _same_model(installed: str, wanted: str) -> bool:
    """Compare model names the way Ollama does: a missing tag means `latest`."""

    def full(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    return full(installed) == full(wanted)


def _failure_of(err: Exception) -> LLMError:
    """Classify what the client raised."""
    if isinstance(err, ollama.ResponseError):
        if err.status_code == 404:  # noqa: PLR2004 - HTTP "not found": the model is missing
            return LLMError(Failure.MODEL_MISSING, err.error)
        return LLMError(Failure.SERVER_ERROR, str(err))
    if isinstance(err, (TimeoutError, httpx.TimeoutException)):
        return LLMError(Failure.TIMEOUT, "no answer in time")
    if isinstance(err, (ConnectionError, httpx.TransportError)):
        return LLMError(Failure.UNREACHABLE, str(err) or type(err).__name__)
    # A body that is not Ollama's JSON, or JSON of another shape.
    return LLMError(Failure.MALFORMED, str(err) or type(err).__name__)


_CLIENT_ERRORS: Final = (
    ollama.ResponseError,
    TimeoutError,
    ConnectionError,
    httpx.HTTPError,
    ValueError,
)


class Explainer(ABC):
    """Asks a model for explanations with the integration's prompt, within bounded retries."""

    def __init__(self, settings: LLMSettings) -> None:
        """Keep the settings the prompt and the calls are made from."""
        self.settings = settings

    async def async_close(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release what the explainer holds; nothing by default."""

    async def async_check(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Raise LLMError when the model cannot be used."""

    async def async_preload(self) -> float:
        """Load the model ahead; return the seconds it took (0 when there is nothing to load)."""
        return 0.0

    async def async_explain(
        self, context: Context, language: str = "", model: str = ""
    ) -> Explanation:
        """Return the model's explanation of a context in a language, or raise LLMError.

        `model` overrides the settings' model for this request (a node may use its own).
        """
        answer_in = language or self.settings.language or "English"
        # Settings made without a prompt (a script, a test) ask with the default one.
        prompt = build_prompt(self.settings.prompt or DEFAULT_PROMPT, context, answer_in)
        malformed = server_errors = 0
        while True:
            try:
                return await self._async_ask(prompt, model or self.settings.model)
            except LLMError as err:
                if err.failure is Failure.MALFORMED and malformed < MALFORMED_RETRIES:
                    malformed += 1
                elif err.failure is Failure.SERVER_ERROR and server_errors < SERVER_ERROR_RETRIES:
                    server_errors += 1
                    await asyncio.sleep(RETRY_DELAY)
                else:
                    raise

    @abstractmethod
    async def _async_ask(self, prompt: str, model: str) -> Explanation:
        """Make one request for a structured answer (each provider asks its own way)."""


class OllamaExplainer(Explainer):
    """Asks one Ollama server for explanations, within a timeout and bounded retries."""

    def __init__(self, settings: LLMSettings, connection: Connection) -> None:
        """Use a connection made by `create_connection` for the settings' URL."""
        super().__init__(settings)
        self._client = connection.client
        self._transport = connection.transport

    async def async_close(self) -> None:
        """Close the connections to the server."""
        await self._transport.aclose()

    async def async_check(self) -> None:
        """Raise LLMError when the server cannot be reached or lacks the model."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                listed = await self._client.list()
        except _CLIENT_ERRORS as err:
            raise _failure_of(err) from err
        names = [model.model or "" for model in listed.models]
        if not any(_same_model(name, self.settings.model) for name in names):
            raise LLMError(Failure.MODEL_MISSING, self.settings.model)

    async def async_preload(self) -> float:
        """Load the model into the server's memory now; return the seconds the load took.

        A cold model costs its load time on the first request; loading it ahead (at start-up)
        keeps that off the first incident's explanation. Raises LLMError.
        """
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._client.generate(
                    model=self.settings.model, keep_alive=self.settings.keep_alive
                )
        except _CLIENT_ERRORS as err:
            raise _failure_of(err) from err
        return (response.load_duration or 0) / 1e9

    async def _async_ask(self, prompt: str, model: str) -> Explanation:
        """Make one chat request for a structured answer."""
        extra: dict[str, Any] = {"think": False} if _CHAT_TAKES_THINK else {}
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._client.chat(
                    model=model,
                    messages=[{"role": "user", "content": prompt}],
                    format=ANSWER_SCHEMA,
                    options={"temperature": 0.2},
                    keep_alive=self.settings.keep_alive,
                    stream=False,
                    **extra,
                )
        except _CLIENT_ERRORS as err:
            raise _failure_of(err) from err
        try:
            return parse_answer(response.message.content or "")
        except AnswerError as err:
            raise LLMError(Failure.MALFORMED, str(err)) from err


# What an AI Task is asked to fill in: the same three fields as ANSWER_SCHEMA, as text.
AI_TASK_STRUCTURE: Final[dict[str, dict[str, Any]]] = {
    "title": {"description": "A short title", "required": True, "selector": {"text": {}}},
    "explanation": {
        "description": "Two sentences for a non-expert: what is probably happening",
        "required": True,
        "selector": {"text": {}},
    },
    "suggested_action": {
        "description": "One concrete suggested action",
        "required": True,
        "selector": {"text": {}},
    },
}
# An AI Task's answer field longer than this is refused unread (every field is far shorter).
MAX_AI_TASK_FIELD: Final = 4_096

type GenerateData = Callable[[dict[str, Any]], Awaitable[Any]]


class AiTaskExplainer(Explainer):
    """Asks an AI Task entity (any model Home Assistant knows) for the same structured answer."""

    def __init__(self, settings: LLMSettings, generate: GenerateData) -> None:
        """Use `generate`, which calls `ai_task.generate_data` and returns its response.

        It raises LLMError for what Home Assistant raised; anything it returns is hostile.
        """
        super().__init__(settings)
        self._generate = generate

    async def _async_ask(self, prompt: str, model: str) -> Explanation:
        """Make one generate_data request; the entity's own model is used, not `model`."""
        request = {
            "task_name": "IoTShield incident explanation",
            "entity_id": self.settings.ai_task_entity,
            "instructions": prompt,
            "structure": AI_TASK_STRUCTURE,
        }
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._generate(request)
        except TimeoutError as err:
            raise LLMError(Failure.TIMEOUT, "no answer in time") from err
        return explanation_from_data(response)


def explanation_from_data(response: Any) -> Explanation:
    """Read an AI Task's response (`{"data": {...}}`) as a checked explanation; raise LLMError."""
    data = response.get("data") if isinstance(response, Mapping) else None
    if isinstance(data, str):
        # A provider without structured output answers text, which may still be the JSON.
        text = data[: MAX_AI_TASK_FIELD * len(AI_TASK_STRUCTURE)]
    elif isinstance(data, Mapping):
        # Only the asked-for fields are read, and only when they are text of a sane size.
        fields = {name: data.get(name) for name in AI_TASK_STRUCTURE}
        for name, value in fields.items():
            if not isinstance(value, str) or len(value) > MAX_AI_TASK_FIELD:
                raise LLMError(Failure.MALFORMED, f"{name} is not a short text")
        text = json.dumps(fields, ensure_ascii=False)
    else:
        raise LLMError(Failure.MALFORMED, f"data is {type(data).__name__}")
    try:
        return parse_answer(text)
    except AnswerError as err:
        raise LLMError(Failure.MALFORMED, str(err)) from err


class ExplanationQueue:
    """One request at a time; a bounded backlog where a newer request replaces an older one."""

    def __init__(
        self,
        explain: Callable[[Context], Awaitable[Explanation]],
        on_result: Callable[[str, Context, Explanation], None],
        on_failure: Callable[[str, LLMError], None],
        start: Callable[[Coroutine[Any, Any, None]], object],
        size: int = QUEUE_SIZE,
    ) -> None:
        """Deliver results (with the context asked about) and failures; `start` runs the worker."""
        self._explain = explain
        self._on_result = on_result
        self._on_failure = on_failure
        self._start = start
        self._size = size
        self._pending: OrderedDict[str, Context] = OrderedDict()
        self._busy = False
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Return how many requests wait for the model."""
        return len(self._pending)

    @property
    def busy(self) -> bool:
        """Say whether a request is with the model now."""
        return self._busy

    def submit(self, key: str, context: Context) -> None:
        """Ask for an explanation of `key` (an incident id), replacing an older request for it."""
        if key in self._pending:
            self._pending[key] = context
        else:
            if len(self._pending) >= self._size:
                self._pending.popitem(last=False)
                self.dropped += 1
            self._pending[key] = context
        if not self._busy:
            self._busy = True
            self._start(self._work())

    async def _work(self) -> None:
        """Explain queued contexts one after another."""
        try:
            while self._pending:
                key, context = self._pending.popitem(last=False)
                try:
                    explanation = await self._explain(context)
                except LLMError as err:
                    self._on_failure(key, err)
                else:
                    self._on_result(key, context, explanation)
        finally:
            self._busy = False
