"""The local LLM: Ollama's async client, bounded calls, and a small queue that never floods it.

No Home Assistant import. A slow, cold, busy or offline model must never delay an alert: callers
always have the rule-based explanation first, and this module only upgrades it when it can.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
import inspect
from typing import Any, Final

import httpx
import ollama

from .explain import ANSWER_SCHEMA, AnswerError, Context, build_prompt, parse_answer
from .incidents import Explanation

DEFAULT_URL: Final = "http://localhost:11434"
DEFAULT_MODEL: Final = "llama3.2:1b"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_KEEP_ALIVE: Final = 600
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

    url: str = DEFAULT_URL
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    keep_alive: int = DEFAULT_KEEP_ALIVE
    # Empty: the caller's language (Home Assistant's).
    language: str = ""
    prompt: str = ""


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


class OllamaExplainer:
    """Asks one Ollama server for explanations, within a timeout and bounded retries."""

    def __init__(self, settings: LLMSettings, connection: Connection) -> None:
        """Use a connection made by `create_connection` for the settings' URL."""
        self.settings = settings
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

    async def async_explain(self, context: Context, language: str = "") -> Explanation:
        """Return the model's explanation of a context in a language, or raise LLMError."""
        answer_in = language or self.settings.language or "English"
        prompt = build_prompt(self.settings.prompt, context, answer_in)
        malformed = server_errors = 0
        while True:
            try:
                return await self._async_ask(prompt)
            except LLMError as err:
                if err.failure is Failure.MALFORMED and malformed < MALFORMED_RETRIES:
                    malformed += 1
                elif err.failure is Failure.SERVER_ERROR and server_errors < SERVER_ERROR_RETRIES:
                    server_errors += 1
                    await asyncio.sleep(RETRY_DELAY)
                else:
                    raise

    async def _async_ask(self, prompt: str) -> Explanation:
        """Make one chat request for a structured answer."""
        extra: dict[str, Any] = {"think": False} if _CHAT_TAKES_THINK else {}
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._client.chat(
                    model=self.settings.model,
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
