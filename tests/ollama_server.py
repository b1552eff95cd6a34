"""An HTTP server that speaks the parts of Ollama's API the integration uses, with faults on demand.

The real `ollama` client talks to it over loopback, so the tests exercise the client's own
request and error handling. It checks our handling only, never the quality of any language.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
import json
import math
import re
import socket
import time
from typing import Any

from aiohttp import web
import pytest

ANSWER: dict[str, str] = {
    "title": "Gas leak in the kitchen",
    "explanation": "The gas sensor reads far above normal. A burner may be open.",
    "suggested_action": "Open the windows and close the gas valve.",
}


@dataclass
class FakeOllama:
    """What the server answers and what it saw."""

    models: list[str] = field(default_factory=lambda: ["llama3.2:1b"])
    # normal | slow | error | malformed | thinking | garbage
    mode: str = "normal"
    delay: float = 0.0
    # For "malformed": this many bad answers, then good ones.
    bad_answers: int = 1_000_000
    answer: dict[str, str] = field(default_factory=lambda: dict(ANSWER))
    # Set to answer this message content as it is, instead of `answer` as JSON.
    content: str | None = None
    chats: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    # Set to make every chat wait until the test lets it go.
    gate: asyncio.Event | None = None
    # Set when the first chat request arrives.
    received: asyncio.Event = field(default_factory=asyncio.Event)
    # Loading a model that is not in memory takes this long, as a cold start does.
    load_seconds: float = 0.0
    # Models in memory and until when (time.monotonic(); inf: for ever), and how many loads.
    loaded: dict[str, float] = field(default_factory=dict)
    loads: int = 0
    preloads: list[dict[str, Any]] = field(default_factory=list)

    def prompts(self) -> list[str]:
        """Return the user prompts of every chat request so far."""
        return [chat["messages"][-1]["content"] for chat in self.chats]

    async def _load(self, model: str, keep_alive: Any) -> float:
        """Load a model unless it is in memory; return the seconds the load took."""
        now = time.monotonic()
        took = 0.0
        if self.loaded.get(model, -math.inf) <= now:
            if self.load_seconds:
                await asyncio.sleep(self.load_seconds)
            self.loads += 1
            took = self.load_seconds
        seconds = keep_alive_seconds(keep_alive)
        self.loaded[model] = math.inf if seconds < 0 else time.monotonic() + seconds
        return took

    async def generate(self, request: web.Request) -> web.Response:
        """Answer /api/generate without a prompt: load (or with keep_alive 0, unload) a model."""
        body = await request.json()
        self.preloads.append(body)
        model = body.get("model")
        if model not in self.models:
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        if keep_alive_seconds(body.get("keep_alive")) == 0:
            self.loaded.pop(model, None)
            reason, took = "unload", 0.0
        else:
            reason, took = "load", await self._load(model, body.get("keep_alive"))
        return web.json_response(
            {
                "model": model,
                "created_at": "2026-11-01T00:00:00Z",
                "response": "",
                "done": True,
                "done_reason": reason,
                "load_duration": int(took * 1e9),
            }
        )

    async def ps(self, _request: web.Request) -> web.Response:
        """List the models in memory as /api/ps does."""
        now = time.monotonic()
        return web.json_response(
            {"models": [{"name": m, "model": m} for m, until in self.loaded.items() if until > now]}
        )

    async def tags(self, _request: web.Request) -> web.Response:
        """List the installed models as /api/tags does."""
        return web.json_response(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": "2026-11-01T00:00:00Z",
                        "size": 1321098329,
                        "digest": "a" * 64,
                        "details": {"format": "gguf", "family": "llama"},
                    }
                    for name in self.models
                ]
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """Answer /api/chat (non-streaming) according to the mode."""
        body = await request.json()
        self.chats.append(body)
        self.received.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if body.get("model") not in self.models:
                return web.json_response(
                    {"error": f"model '{body.get('model')}' not found"}, status=404
                )
            if self.mode == "error":
                return web.json_response({"error": "server overloaded"}, status=500)
            took = await self._load(body["model"], body.get("keep_alive"))
            if self.mode == "garbage":
                return web.Response(text="<html>proxy error</html>", content_type="text/html")
            content = json.dumps(self.answer) if self.content is None else self.content
            if self.mode == "malformed" and self.bad_answers > 0:
                self.bad_answers -= 1
                content = '{"title": "Gas leak", "explanation": '
            elif self.mode == "thinking":
                content = f"<think>The gas is high, so the answer is a leak.</think>\n{content}"
            return web.json_response(
                {
                    "model": body["model"],
                    "created_at": "2026-11-01T00:00:00Z",
                    "message": {"role": "assistant", "content": content},
                    "done": True,
                    "done_reason": "stop",
                    "load_duration": int(took * 1e9),
                }
            )
        finally:
            self.in_flight -= 1


def keep_alive_seconds(value: Any) -> float:
    """Return Ollama's keep_alive in seconds: a number, a duration such as "5m", or the default."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"(-?[\d.]+)(ms|s|m|h)?", str(value))
    if match is None:
        return 300.0
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * unit


def free_port() -> int:
    """Return a loopback port nothing listens on (for "connection refused")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def ollama_server(socket_enabled: None) -> AsyncIterator[FakeOllama]:
    """Start the fake Ollama on a loopback port for one test."""
    fake = FakeOllama()
    app = web.Application()
    app.router.add_get("/api/tags", fake.tags)
    app.router.add_post("/api/chat", fake.chat)
    app.router.add_post("/api/generate", fake.generate)
    app.router.add_get("/api/ps", fake.ps)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    if fake.gate is not None:
        fake.gate.set()
    await runner.cleanup()
