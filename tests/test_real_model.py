"""A real small language model in the loop: SmolLM2-135M behind an Ollama-compatible server.

scripts/llm_server.py runs the model with llama-cpp-python in the venv `scripts/setup llm`
builds. The integration's own client and Home Assistant talk to it as they would to Ollama.
Only the answer's shape is checked: a 135M model's wording proves nothing about ours.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
import os
from pathlib import Path
import select
import subprocess
import time

from homeassistant.core import Event, HomeAssistant
import httpx
import ollama
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import CONF_LLM_MODEL, CONF_LLM_TIMEOUT
from custom_components.iotshield.explain import DEFAULT_PROMPT, MAX_EXPLANATION, MAX_TITLE, Context
from custom_components.iotshield.incidents import Source
from custom_components.iotshield.llm import LLMSettings, OllamaExplainer, create_connection
from custom_components.iotshield.severity import Level

from .test_alerts import (
    GAS_MEDIUM,
    Feed,
    events,  # noqa: F401
    feed,  # noqa: F401
    kinds,
    llm_entry_options,
    notifications,
    setup_with_options,
)

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("mqtt_mock")]

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2:135m"
# Generous: two CPUs, and an answer may be asked again when malformed.
TIMEOUT = 120.0
STARTUP_SECONDS = 30.0
FIRE_CONTEXT = Context(
    node="Kitchen node",
    room="Kitchen",
    level=Level.CRITICAL,
    readings={"temperature": 52.0, "gas": 0.5, "flame": True},
    rules=("fire",),
)


@dataclass(frozen=True)
class RealModel:
    """Where the real model's server listens."""

    url: str
    log: Path


def _llm_python() -> Path:
    """Return the LLM venv's interpreter, or fail: CI builds it, so its absence is a fault."""
    venv = Path(os.environ.get("IOTSHIELD_LLM_VENV") or ROOT / ".venv" / "llm")
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no LLM server venv at {venv}: run scripts/setup llm")
    return python


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Generator[RealModel]:
    """Start scripts/llm_server.py on a free port for the module; stop it afterwards."""
    python = _llm_python()
    log = tmp_path_factory.mktemp("llm_server") / "stderr.log"
    # The server picks its port and says which (this process may not open sockets yet). A fixed
    # seed makes a failure reproducible; the model still samples at the client's temperature.
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [python, ROOT / "scripts" / "llm_server.py", "--port", "0", "--seed", "1"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    line = ""
    # No reader thread: Home Assistant's test harness fails tests that leave threads behind.
    while not line and process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        process.wait()
        pytest.fail(
            f"the LLM server did not start (scripts/setup llm builds its venv): {line!r}\n"
            f"{log.read_text(errors='replace')}"
        )
    yield RealModel(line.removeprefix("listening on ").strip(), log)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()


def _explainer(url: str, keep_alive: int = 600) -> OllamaExplainer:
    """Return the integration's own client for the real model."""
    settings = LLMSettings(
        url=url, model=MODEL, timeout=TIMEOUT, keep_alive=keep_alive, prompt=DEFAULT_PROMPT
    )
    return OllamaExplainer(settings, create_connection(url, TIMEOUT))


async def test_the_integrations_client_gets_a_schema_valid_answer(
    real_model: RealModel, socket_enabled: None
) -> None:
    """Check, load from cold and explain a fire through OllamaExplainer and the real model."""
    unloader, explainer = _explainer(real_model.url, keep_alive=0), _explainer(real_model.url)
    try:
        await explainer.async_check()
        # Whatever ran before, the model starts cold.
        assert await unloader.async_preload() == 0
        load_seconds = await explainer.async_preload()
        assert load_seconds > 0
        # Loaded: a second preload finds it in memory.
        assert await explainer.async_preload() == 0
        explanation = await explainer.async_explain(FIRE_CONTEXT, "English")
    finally:
        await unloader.async_close()
        await explainer.async_close()
    # parse_answer accepted it: non-empty plain text within the limits.
    assert explanation.source is Source.LLM
    assert 0 < len(explanation.title) <= MAX_TITLE
    assert 0 < len(explanation.explanation) <= MAX_EXPLANATION
    assert explanation.suggested_action


async def test_the_server_speaks_ollamas_api(real_model: RealModel, socket_enabled: None) -> None:
    """Stream, keep-alive, /api/ps and the errors Ollama gives, through the ollama client."""
    client = ollama.AsyncClient(host=real_model.url, timeout=TIMEOUT)
    parts = [
        part
        async for part in await client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            options={"num_predict": 8, "temperature": 0},
            keep_alive="10s",
            stream=True,
        )
    ]
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert 0 < (parts[-1].eval_count or 0) <= 8
    assert "".join(part.message.content or "" for part in parts[:-1]).strip()
    (loaded,) = (await client.ps()).models
    assert loaded.model == MODEL
    await client.generate(model=MODEL, keep_alive=0)
    assert (await client.ps()).models == []
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat(model="llama3.2:1b", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404
    async with httpx.AsyncClient(base_url=real_model.url) as http:
        bad = await http.post("/api/chat", content=b"{not json")
        assert bad.status_code == 400
        too_big = await http.post("/api/chat", content=b"x" * 300_000)
        assert too_big.status_code == 413


async def test_home_assistant_shows_the_real_models_explanation(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    feed: Feed,  # noqa: F811
    events: list[Event],  # noqa: F811
    real_model: RealModel,
    socket_enabled: None,
) -> None:
    """An incident opens with the rules' text; the real model's answer then replaces it."""
    options = llm_entry_options(
        real_model.url, **{CONF_LLM_MODEL: MODEL, CONF_LLM_TIMEOUT: TIMEOUT}
    )
    await setup_with_options(hass, mock_config_entry, options)
    await hass.async_block_till_done(wait_background_tasks=True)
    await feed(GAS_MEDIUM)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert kinds(events) == ["opened", "explained"], real_model.log.read_text(errors="replace")
    opened, explained = (event.data for event in events)
    assert opened["source"] == "rules"
    assert explained["source"] == "llm"
    assert explained["incident_id"] == opened["incident_id"]
    # Below severity high the model's words replace the rules' in full.
    assert explained["title"]
    assert explained["explanation"]
    assert explained["title"] != opened["title"]
    (shown,) = notifications(hass).values()
    assert shown["title"] == explained["title"]
    assert explained["explanation"] in shown["message"]
    assert "local LLM" in shown["message"]
