"""The LLM path through the real `ollama` client against an Ollama-compatible test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from custom_components.iotshield import llm
from custom_components.iotshield.explain import Context
from custom_components.iotshield.incidents import Explanation, Source
from custom_components.iotshield.llm import (
    AI_TASK_STRUCTURE,
    AiTaskExplainer,
    ExplanationQueue,
    Failure,
    LLMError,
    LLMSettings,
    OllamaExplainer,
    create_connection,
)
from custom_components.iotshield.severity import Level

from .ollama_server import ANSWER, FakeOllama, free_port, ollama_server  # noqa: F401

CONTEXT = Context(
    node="Kitchen node",
    room="Kitchen",
    level=Level.HIGH,
    readings={"temperature": 22.0, "gas": 0.71},
    rules=("gas_high",),
)
type MakeExplainer = Callable[..., OllamaExplainer]


@pytest.fixture
async def make_explainer(ollama_server: FakeOllama) -> AsyncIterator[MakeExplainer]:  # noqa: F811
    """Return a factory of explainers pointed at the test server; all are closed afterwards."""
    made: list[OllamaExplainer] = []

    def make(**overrides: Any) -> OllamaExplainer:
        settings: dict[str, Any] = {"url": ollama_server.url, "timeout": 2.0, "prompt": "{rules}"}
        settings.update(overrides)
        explainer = OllamaExplainer(
            LLMSettings(**settings), create_connection(settings["url"], settings["timeout"])
        )
        made.append(explainer)
        return explainer

    yield make
    for explainer in made:
        await explainer.async_close()


async def test_normal_answer(ollama_server: FakeOllama, make_explainer: MakeExplainer) -> None:  # noqa: F811
    """A structured answer becomes an LLM explanation; the request asks for the schema."""
    explanation = await make_explainer(keep_alive=120).async_explain(CONTEXT)
    assert explanation == Explanation(
        ANSWER["title"], ANSWER["explanation"], ANSWER["suggested_action"], Source.LLM
    )
    (chat,) = ollama_server.chats
    assert chat["model"] == "llama3.2:1b"
    assert chat["stream"] is False
    assert chat["keep_alive"] == 120
    assert chat["format"]["required"] == ["title", "explanation", "suggested_action"]
    assert ollama_server.prompts() == ["gas_high"]


async def test_check_server_and_model(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """The check passes with the model installed (tag `latest` implied) and says when it is not."""
    await make_explainer().async_check()
    ollama_server.models = ["llama3.2:latest"]
    await make_explainer(model="llama3.2").async_check()
    with pytest.raises(LLMError) as err:
        await make_explainer(model="llama3.2:1b").async_check()
    assert err.value.failure is Failure.MODEL_MISSING


async def test_model_not_found_on_chat(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """A 404 for the model is reported as a missing model, without retrying."""
    with pytest.raises(LLMError) as err:
        await make_explainer(model="mistral:7b").async_explain(CONTEXT)
    assert err.value.failure is Failure.MODEL_MISSING
    assert len(ollama_server.chats) == 1


async def test_slower_than_the_timeout(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """A slow model is given up on at the timeout, once."""
    ollama_server.delay = 5.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LLMError) as err:
        await make_explainer(timeout=0.3).async_explain(CONTEXT)
    assert err.value.failure is Failure.TIMEOUT
    assert loop.time() - started < 3.0
    assert len(ollama_server.chats) == 1


async def test_server_error_is_retried_once(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP 500 is retried once after a pause, then reported."""
    monkeypatch.setattr(llm, "RETRY_DELAY", 0.01)
    ollama_server.mode = "error"
    with pytest.raises(LLMError) as err:
        await make_explainer().async_explain(CONTEXT)
    assert err.value.failure is Failure.SERVER_ERROR
    assert len(ollama_server.chats) == 1 + llm.SERVER_ERROR_RETRIES


async def test_connection_refused(make_explainer: MakeExplainer) -> None:
    """Nothing listening is reported as unreachable, for the check and for a request."""
    explainer = make_explainer(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LLMError) as err:
        await explainer.async_explain(CONTEXT)
    assert err.value.failure is Failure.UNREACHABLE
    with pytest.raises(LLMError) as err:
        await explainer.async_check()
    assert err.value.failure is Failure.UNREACHABLE


async def test_malformed_json_is_retried_within_bounds(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """One malformed answer is asked again; a model that never complies is given up on."""
    ollama_server.mode, ollama_server.bad_answers = "malformed", 1
    explanation = await make_explainer().async_explain(CONTEXT)
    assert explanation.title == ANSWER["title"]
    assert len(ollama_server.chats) == 2
    ollama_server.chats.clear()
    ollama_server.bad_answers = 100
    with pytest.raises(LLMError) as err:
        await make_explainer().async_explain(CONTEXT)
    assert err.value.failure is Failure.MALFORMED
    assert len(ollama_server.chats) == 1 + llm.MALFORMED_RETRIES


async def test_not_ollama_at_all(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """A server answering HTML instead of Ollama's JSON is a malformed answer, not a crash."""
    ollama_server.mode = "garbage"
    with pytest.raises(LLMError) as err:
        await make_explainer().async_explain(CONTEXT)
    assert err.value.failure is Failure.MALFORMED


async def test_thinking_preamble(ollama_server: FakeOllama, make_explainer: MakeExplainer) -> None:  # noqa: F811
    """A reasoning model's thinking text is stripped from the answer."""
    ollama_server.mode = "thinking"
    explanation = await make_explainer().async_explain(CONTEXT)
    assert explanation.title == ANSWER["title"]
    assert "think" not in explanation.explanation


async def test_burst_is_bounded_one_at_a_time(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """A burst of incidents: one request at a time, a bounded backlog, newest kept."""
    explainer = make_explainer()
    ollama_server.gate = asyncio.Event()
    results: dict[str, Explanation] = {}
    failures: dict[str, LLMError] = {}
    tasks: list[asyncio.Task[None]] = []
    queue = ExplanationQueue(
        explainer.async_explain,
        lambda key, _context, explanation: results.__setitem__(key, explanation),
        failures.__setitem__,
        lambda coro: tasks.append(asyncio.ensure_future(coro)),
        size=3,
    )
    for n in range(20):
        queue.submit(f"incident{n}", CONTEXT)
        # A newer request for the same incident replaces the waiting one.
        queue.submit(f"incident{n}", CONTEXT)
        await asyncio.sleep(0)
        assert queue.pending <= 3
    assert len(tasks) == 1
    await asyncio.wait_for(ollama_server.received.wait(), 10)
    ollama_server.gate.set()
    await asyncio.wait_for(tasks[0], 10)
    assert ollama_server.max_in_flight == 1
    # The first went to the model at once; of the rest only the three newest waited.
    assert sorted(results) == sorted(["incident0", "incident17", "incident18", "incident19"])
    assert queue.dropped == 16
    assert not failures
    assert not queue.busy


async def test_queue_reports_failures_and_goes_on(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """A failed request does not stop the worker."""
    explainer = make_explainer(model="missing:1b")
    results: dict[str, Explanation] = {}
    failures: dict[str, LLMError] = {}
    tasks: list[asyncio.Task[None]] = []
    queue = ExplanationQueue(
        explainer.async_explain,
        lambda key, _context, explanation: results.__setitem__(key, explanation),
        failures.__setitem__,
        lambda coro: tasks.append(asyncio.ensure_future(coro)),
    )
    queue.submit("a", CONTEXT)
    queue.submit("b", CONTEXT)
    await asyncio.wait_for(tasks[0], 10)
    assert set(failures) == {"a", "b"}
    assert all(f.failure is Failure.MODEL_MISSING for f in failures.values())


async def test_preload_keeps_the_cold_load_off_the_first_answer(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """Loaded ahead, the first explanation finds the model in memory: one load in all."""
    ollama_server.load_seconds = 0.2
    explainer = make_explainer(keep_alive=600)
    assert await explainer.async_preload() == pytest.approx(0.2)
    (preload,) = ollama_server.preloads
    assert (preload["model"], preload["keep_alive"]) == ("llama3.2:1b", 600)
    assert "llama3.2:1b" in ollama_server.loaded
    await explainer.async_explain(CONTEXT)
    assert ollama_server.loads == 1
    # Preloading a model already in memory costs nothing.
    assert await explainer.async_preload() == 0.0


async def test_without_preload_the_first_answer_pays_the_load(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """The fake server's cold start is real: the first chat loads, the second does not."""
    ollama_server.load_seconds = 0.2
    explainer = make_explainer(keep_alive=600)
    await explainer.async_explain(CONTEXT)
    await explainer.async_explain(CONTEXT)
    assert ollama_server.loads == 1


async def test_preload_of_a_missing_model(make_explainer: MakeExplainer) -> None:
    """A model the server lacks is reported as missing, as for a chat."""
    with pytest.raises(LLMError) as err:
        await make_explainer(model="mistral:7b").async_preload()
    assert err.value.failure is Failure.MODEL_MISSING


async def test_a_node_s_own_model_is_asked(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """The model named with a request wins over the settings' model, for that request only."""
    ollama_server.models.append("qwen3:0.6b")
    explainer = make_explainer()
    await explainer.async_explain(CONTEXT, "English", "qwen3:0.6b")
    await explainer.async_explain(CONTEXT)
    assert [chat["model"] for chat in ollama_server.chats] == ["qwen3:0.6b", "llama3.2:1b"]


class ScriptedGenerate:
    """Stands in for `ai_task.generate_data`: answers in turn, records the requests."""

    def __init__(self, *answers: Any) -> None:
        """Answer these in turn (an exception is raised), repeating the last."""
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: dict[str, Any]) -> Any:
        """Return or raise the next answer."""
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
        return answer


def ai_task(generate: ScriptedGenerate, **overrides: Any) -> AiTaskExplainer:
    """Return an AI Task explainer for entity ai_task.home with a short timeout."""
    settings: dict[str, Any] = {
        "provider": "ai_task",
        "ai_task_entity": "ai_task.home",
        "timeout": 0.5,
        "prompt": "{rules} in {language}",
    }
    settings.update(overrides)
    return AiTaskExplainer(LLMSettings(**settings), generate)


async def test_ai_task_gets_the_prompt_and_a_structure() -> None:
    """The request names the entity, carries the prompt and asks for the three text fields."""
    generate = ScriptedGenerate({"conversation_id": "c", "data": dict(ANSWER)})
    explanation = await ai_task(generate).async_explain(CONTEXT, "German")
    assert explanation.title == ANSWER["title"]
    assert explanation.source is Source.LLM
    (request,) = generate.requests
    assert request["entity_id"] == "ai_task.home"
    assert request["instructions"] == "gas_high in German"
    assert request["structure"] == AI_TASK_STRUCTURE
    assert all(field["required"] for field in AI_TASK_STRUCTURE.values())


async def test_ai_task_text_answer_holding_json_is_read() -> None:
    """A provider without structured output answers text; JSON inside it is still read."""
    text = 'Sure! {"title": "T", "explanation": "E", "suggested_action": "A"}'
    explanation = await ai_task(ScriptedGenerate({"data": text})).async_explain(CONTEXT)
    assert (explanation.title, explanation.explanation) == ("T", "E")


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "no data key",
        {"data": None},
        {"data": ["a"]},
        {"data": {"title": "only"}},
        {"data": {"title": 1, "explanation": "e", "suggested_action": "a"}},
        {"data": {"title": "t" * 5000, "explanation": "e", "suggested_action": "a"}},
        {"data": "words, no JSON"},
    ],
)
async def test_ai_task_hostile_answers_are_malformed_and_bounded(answer: Any) -> None:
    """Anything but three short texts is malformed: asked again twice, then refused."""
    generate = ScriptedGenerate(answer)
    with pytest.raises(LLMError) as caught:
        await ai_task(generate).async_explain(CONTEXT)
    assert caught.value.failure is Failure.MALFORMED
    assert len(generate.requests) == 1 + llm.MALFORMED_RETRIES


async def test_ai_task_errors_and_timeouts() -> None:
    """A slow entity times out (not retried); a server error is retried once, then raised."""
    slow = ScriptedGenerate(5.0)
    with pytest.raises(LLMError) as caught:
        await ai_task(slow, timeout=0.05).async_explain(CONTEXT)
    assert caught.value.failure is Failure.TIMEOUT
    assert len(slow.requests) == 1
    failing = ScriptedGenerate(LLMError(Failure.SERVER_ERROR, "quota"))
    with pytest.raises(LLMError) as caught:
        await ai_task(failing).async_explain(CONTEXT)
    assert caught.value.failure is Failure.SERVER_ERROR
    assert len(failing.requests) == 1 + llm.SERVER_ERROR_RETRIES
    recovering = ScriptedGenerate(LLMError(Failure.SERVER_ERROR, "busy"), {"data": dict(ANSWER)})
    assert (await ai_task(recovering).async_explain(CONTEXT)).title == ANSWER["title"]


async def test_settings_without_a_prompt_ask_with_the_default_one(
    ollama_server: FakeOllama,  # noqa: F811
    make_explainer: MakeExplainer,
) -> None:
    """An empty prompt setting is the default prompt, never an empty request."""
    await make_explainer(prompt="").async_explain(CONTEXT, "English")
    (prompt,) = ollama_server.prompts()
    assert prompt.startswith("You are the safety assistant of a smart home.")
    assert "gas_high" in prompt
