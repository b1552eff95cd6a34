"""scripts/eval_llm: its scoring, a run against the test Ollama server, and the AI Task path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
import importlib.util
import json
from pathlib import Path
import sys
from typing import Any

from aiohttp import web
import pytest

from custom_components.iotshield.explain import ANSWER_SCHEMA, DEFAULT_PROMPT, build_prompt
from custom_components.iotshield.incidents import Explanation, Source
from custom_components.iotshield.llm import AI_TASK_STRUCTURE
from custom_components.iotshield.severity import Level

from .ollama_server import FakeOllama, free_port, ollama_server  # noqa: F401


def _load() -> Any:
    """Import the script as a module."""
    path = Path(__file__).parent.parent / "scripts" / "eval_llm.py"
    spec = importlib.util.spec_from_file_location("eval_llm", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up by name.
    sys.modules["eval_llm"] = module
    spec.loader.exec_module(module)
    return module


eval_llm = _load()

GOOD = {
    "en": {
        "title": "Gas leak in the kitchen",
        "explanation": "The gas sensor in the kitchen reads far above normal; a burner is open.",
        "suggested_action": "Open the windows, do not use light switches, and leave the house.",
    },
    "de": {
        "title": "Gasleck in der Küche",
        "explanation": "Der Gassensor in der Küche misst viel mehr Gas als sonst.",
        "suggested_action": "Fenster öffnen, keine Lichtschalter betätigen und das Haus verlassen.",
    },
}
BAD = {
    "en": {
        "title": "All fine",
        "explanation": "Everything is safe, no danger.",
        "suggested_action": "Switch on the light and carry on.",
    },
    "de": {
        "title": "Alles gut",
        "explanation": "Alles ist sicher, keine Gefahr.",
        "suggested_action": "Licht einschalten und weitermachen.",
    },
}


def answer(title: str, explanation: str, action: str) -> Explanation:
    """Return a model's answer."""
    return Explanation(title, explanation, action, Source.LLM)


async def evaluate(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the script with arguments; return what it wrote to --json."""
    path = tmp_path / "eval.json"
    assert await eval_llm.async_main([*args, "--timeout", "5", "--json", str(path)]) == 0
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def ollama_args(fake: FakeOllama, *args: str) -> list[str]:
    """Return the arguments that point the script at the test server."""
    return ["--url", fake.url, "--model", "llama3.2:1b", *args]


@pytest.mark.parametrize(("language", "name"), [("en", "English"), ("de", "German")])
async def test_good_and_bad_answers_score_apart(
    ollama_server: FakeOllama,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    language: str,
    name: str,
) -> None:
    """A sound answer passes every check; "everything is safe" with unsafe advice fails them."""
    ollama_server.load_seconds = 0.05
    ollama_server.answer = GOOD[language]
    args = ollama_args(ollama_server, "--scenarios", "gas_leak", "--languages", language)
    good = await evaluate(tmp_path, *args, "--repeats", "2", "--markdown")
    table = capsys.readouterr().out
    ollama_server.answer = BAD[language]
    bad = await evaluate(tmp_path, *args, "--repeats", "2")

    assert good["total"]["checks"] == {
        "hazard_named": [2, 2],
        "room_named": [2, 2],
        "no_contradiction": [2, 2],
        "action_safe": [2, 2],
    }
    assert good["total"]["all_passed"] == 2
    assert bad["total"]["checks"] == {
        "hazard_named": [0, 2],
        "room_named": [0, 2],
        "no_contradiction": [0, 2],
        "action_safe": [0, 2],
    }
    assert bad["total"]["all_passed"] == 0
    # Both are well-formed, so both count as schema valid and would be shown.
    for result in (good, bad):
        assert result["total"]["schema_valid"] == result["total"]["shown"] == 2
        assert result["total"]["retries"] == 0
    row = (
        f"| gas_leak | {language} | high | 2 | 100% | 100% | 0 | 100% | 100% | 100% | 100% | 100% |"
    )
    assert row in table
    assert "| **all** |  |  | 2 | 100% | 100% | 0 |" in table
    assert "The integration would show 2 of 2 answers (100%)" in table

    # The integration's prompt and request, in the language's name as alerts.py asks for it.
    context = eval_llm.context_of(eval_llm.SCENARIOS["gas_leak"], language)
    assert ollama_server.prompts()[0] == build_prompt(DEFAULT_PROMPT, context, name)
    assert ollama_server.chats[0]["format"] == ANSWER_SCHEMA
    # From high up, the shown text keeps the rules' title and advice and adds the model's words.
    shown = good["answers"][0]["shown"]
    assert shown["title"] != GOOD[language]["title"]
    assert GOOD[language]["explanation"] in shown["explanation"]
    # The model was unloaded before the first answer of each run, which then paid the load.
    unloads = [p for p in ollama_server.preloads if p.get("keep_alive") == 0]
    assert len(unloads) == 2
    first, second = good["answers"]
    assert first["first"]
    assert first["unloaded"]
    assert first["seconds"] >= 0.05
    assert not second["first"]
    assert second["seconds"] < first["seconds"]


async def test_every_scenario_and_language_is_tabled(
    ollama_server: FakeOllama,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """All seven scenarios run in both languages; one fixed answer fits only the gas leak."""
    result = await evaluate(tmp_path, *ollama_args(ollama_server, "--repeats", "1"))
    out = capsys.readouterr().out
    rows = {(row["scenario"], row["language"]): row for row in result["rows"]}
    assert list(rows) == [(key, lang) for key in eval_llm.SCENARIOS for lang in ("en", "de")]
    assert len(ollama_server.chats) == 14
    assert result["total"]["shown"] == 14
    assert rows["gas_leak", "en"]["all_passed"] == 1
    # The test server's English gas-leak answer names neither a fire nor the Wohnzimmer.
    assert rows["fire", "de"]["checks"]["hazard_named"] == [0, 1]
    assert rows["fire", "de"]["checks"]["room_named"] == [0, 1]
    # Below high, no contradiction is judged; after the all-clear, no action is.
    assert rows["anomaly_only", "en"]["checks"]["no_contradiction"] == [0, 0]
    assert rows["resolution", "en"]["checks"]["action_safe"] == [0, 0]
    for key in eval_llm.SCENARIOS:
        for lang in ("en", "de"):
            assert f"\n{key}" in out
            assert len(rows[key, lang]["cold"]) == 1
            assert rows[key, lang]["warm"] == []


async def test_malformed_answers_count_as_retries_and_failures(
    ollama_server: FakeOllama,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Only the first answer decides schema validity; what the retries save is counted apart."""
    ollama_server.mode = "malformed"
    # The first request is asked three times in vain; the second gets a good answer on retry.
    ollama_server.bad_answers = 4
    args = ("--scenarios", "gas_leak", "--languages", "en", "--repeats", "2")
    result = await evaluate(tmp_path, *ollama_args(ollama_server, *args))
    failed, saved = result["answers"]
    assert failed["failure"] == "llm_malformed"
    assert failed["requests"] == 3
    assert failed["checks"] is None
    assert failed["first_raw"] == '{"title": "Gas leak", "explanation": '
    assert saved["failure"] is None
    assert saved["requests"] == 2
    assert not saved["schema_valid"]
    total = result["total"]
    assert (total["schema_valid"], total["shown"], total["retries"]) == (0, 1, 3)


async def test_unreachable_server_is_reported(
    socket_enabled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a server the script says so and fails."""
    url = f"http://127.0.0.1:{free_port()}"
    assert await eval_llm.async_main(["--url", url, "--timeout", "2"]) == 1
    assert "Cannot ask llama3.2:1b" in capsys.readouterr().err


def test_contexts_are_the_integrations() -> None:
    """The readings lead through the severity engine and incident tracker to these contexts."""
    expected = {
        "fire": (Level.CRITICAL, ("temperature_high", "gas_low", "flame_high", "fire")),
        "gas_leak": (Level.HIGH, ("gas_high",)),
        "overheating": (Level.HIGH, ("temperature_high",)),
        "humidity": (Level.HIGH, ("humidity_high",)),
        "anomaly_only": (Level.MEDIUM, ("anomaly_temperature",)),
        "escalation": (Level.CRITICAL, ("gas_medium", "flame_high", "fire")),
        "resolution": (Level.NORMAL, ()),
    }
    for key, (level, rules) in expected.items():
        context = eval_llm.context_of(eval_llm.SCENARIOS[key], "de")
        assert (context.level, context.rules) == (level, rules), key
    anomaly = eval_llm.context_of(eval_llm.SCENARIOS["anomaly_only"], "en")
    assert anomaly.anomalies == {"temperature": 1}
    assert anomaly.room == "Bedroom"
    assert anomaly.trend["temperature"].last > anomaly.trend["temperature"].first
    assert eval_llm.context_of(eval_llm.SCENARIOS["fire"], "de").room == "Wohnzimmer"


def checks(key: str, language: str, given: Explanation) -> Any:
    """Score an answer to a scenario."""
    scenario = eval_llm.SCENARIOS[key]
    level = eval_llm.context_of(scenario, language).level
    return eval_llm.score(scenario, level, language, given)


@pytest.mark.parametrize(
    ("key", "language", "given", "hazard", "room", "consistent", "safe"),
    [
        (
            "fire",
            "en",
            answer(
                "Fire in the living room",
                "Something is burning in the living room.",
                "Get everyone out, don't use the elevator, and call the fire brigade.",
            ),
            True,
            True,
            True,
            True,
        ),
        (
            "fire",
            "en",
            answer("Heat", "It is not safe here. Stay out until it is safe.", "Leave now."),
            False,
            False,
            True,
            True,
        ),
        ("fire", "en", answer("Fire", "No danger.", "Take the lift."), True, False, False, False),
        ("fire", "en", answer("Fire", "A fire.", "Go back inside."), True, False, True, False),
        ("fire", "en", answer("Fire", "A fire.", "Stay calm."), True, False, True, False),
        (
            "fire",
            "de",
            answer(
                "Brand im Wohnzimmer",
                "Im Wohnzimmer brennt es.",
                "Verlassen Sie das Haus, nehmen Sie keinen Aufzug und rufen Sie die 112.",
            ),
            True,
            True,
            True,
            True,
        ),
        (
            "fire",
            "de",
            answer("Feuer", "Kein Grund zur Sorge.", "Mit dem Aufzug fahren."),
            True,
            False,
            False,
            False,
        ),
        (
            "gas_leak",
            "en",
            answer(
                "Gas in the kitchen",
                "Gas is leaking.",
                "Avoid light switches, matches or lighters and open the windows.",
            ),
            True,
            True,
            True,
            True,
        ),
        (
            "gas_leak",
            "en",
            answer("Gas", "Gas in the kitchen.", "Light a candle and open the windows."),
            True,
            True,
            True,
            False,
        ),
        (
            "gas_leak",
            "de",
            answer("Gas", "Gas in der Küche.", "Lichtschalter nicht betätigen, lüften."),
            True,
            True,
            True,
            True,
        ),
        (
            "gas_leak",
            "de",
            answer("Gas", "Es ist ungefährlich.", "Ignorieren Sie die Meldung."),
            True,
            False,
            False,
            False,
        ),
        (
            "humidity",
            "de",
            answer("Feuchtigkeit im Badezimmer", "Die Luft ist sehr feucht.", "Bitte lüften."),
            True,
            True,
            True,
            True,
        ),
        (
            "overheating",
            "en",
            answer("Hot office", "The office is very hot.", "Switch the heater off."),
            True,
            True,
            True,
            True,
        ),
        (
            "resolution",
            "en",
            answer("Kitchen is back to normal", "There is no fire; the gas has cleared.", "None."),
            True,
            True,
            True,
            None,
        ),
        (
            "resolution",
            "en",
            answer("Fire!", "Fire in the kitchen.", "Evacuate the house."),
            False,
            True,
            False,
            None,
        ),
        (
            "resolution",
            "de",
            answer("Küche wieder normal", "Kein Brand, das Gas ist verflogen.", "Nichts."),
            True,
            True,
            True,
            None,
        ),
        (
            "resolution",
            "de",
            answer("Brand", "Es brennt.", "Verlassen Sie sofort das Haus."),
            False,
            False,
            False,
            None,
        ),
        # Echoes of the prompt are no all-clear: "Sicherheit" is not "sicher", "over 300 s" not
        # "it is over".
        (
            "resolution",
            "de",
            answer("Sicherheit: 20000", "Sicherheit: Gas 0,06", "Sicherheit."),
            False,
            False,
            True,
            None,
        ),
        (
            "resolution",
            "en",
            answer("Trend", "Gas 0.06 → 0.05 over 300 s in the kitchen.", "Check."),
            False,
            True,
            True,
            None,
        ),
        (
            "anomaly_only",
            "de",
            answer("Warmes Schlafzimmer", "Es ist wärmer als sonst.", "Heizung prüfen."),
            True,
            True,
            None,
            True,
        ),
    ],
)
def test_scoring(
    key: str,
    language: str,
    given: Explanation,
    hazard: bool,
    room: bool,
    consistent: bool | None,
    safe: bool | None,
) -> None:
    """The word lists find hazards, rooms, contradictions and unsafe or missing advice."""
    assert checks(key, language, given) == eval_llm.Checks(hazard, room, consistent, safe)


@dataclass
class FakeHomeAssistant:
    """What the test's Home Assistant answers and what it saw."""

    url: str = ""
    token: str = "secret-token"
    # Answered as service_response.data, one after the other (the last one repeats).
    data: list[Any] = field(default_factory=list)
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def state(self, request: web.Request) -> web.Response:
        """Answer GET /api/states/<entity>."""
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.match_info["entity"] != "ai_task.test":
            return web.json_response({"message": "Entity not found."}, status=404)
        return web.json_response({"entity_id": "ai_task.test", "state": "unknown"})

    async def generate(self, request: web.Request) -> web.Response:
        """Answer POST /api/services/ai_task/generate_data?return_response."""
        self.requests.append(
            {
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "body": await request.json(),
            }
        )
        if self.status != 200:
            return web.Response(status=self.status, text="500 Internal Server Error")
        data = self.data.pop(0) if len(self.data) > 1 else self.data[0]
        return web.json_response(
            {"changed_states": [], "service_response": {"conversation_id": "x", "data": data}}
        )


@pytest.fixture
async def home_assistant(socket_enabled: None) -> AsyncIterator[FakeHomeAssistant]:
    """Start a stand-in for Home Assistant's REST API on a loopback port."""
    fake = FakeHomeAssistant()
    app = web.Application()
    app.router.add_get("/api/states/{entity}", fake.state)
    app.router.add_post("/api/services/ai_task/generate_data", fake.generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


def ai_task_args(fake: FakeHomeAssistant, *args: str) -> list[str]:
    """Return the arguments that point the script at the test's Home Assistant."""
    return [
        "--ha-url",
        fake.url,
        "--ha-token",
        fake.token,
        "--ai-task-entity",
        "ai_task.test",
        "--scenarios",
        "gas_leak",
        "--languages",
        "de",
        *args,
    ]


async def test_ai_task_is_asked_with_the_integrations_prompt(
    home_assistant: FakeHomeAssistant, tmp_path: Path
) -> None:
    """The AI Task gets the same prompt and a structure of the three fields, and is scored."""
    # A structure missing a field is malformed and asked again, as the integration would.
    home_assistant.data = [{"title": "Gas"}, GOOD["de"]]
    result = await evaluate(tmp_path, *ai_task_args(home_assistant, "--repeats", "2"))
    context = eval_llm.context_of(eval_llm.SCENARIOS["gas_leak"], "de")
    first = home_assistant.requests[0]
    assert first["query"] == {"return_response": ""}
    assert first["authorization"] == "Bearer secret-token"
    assert first["body"] == {
        "task_name": "IoTShield incident explanation",
        "entity_id": "ai_task.test",
        "instructions": build_prompt(DEFAULT_PROMPT, context, "German"),
        "structure": AI_TASK_STRUCTURE,
    }
    for spec in first["body"]["structure"].values():
        assert spec["required"]
        assert spec["selector"] == {"text": {}}
    assert set(first["body"]["structure"]) == {"title", "explanation", "suggested_action"}
    first_answer, second_answer = result["answers"]
    assert first_answer["requests"] == 2
    assert not first_answer["schema_valid"]
    assert second_answer["schema_valid"]
    assert result["total"]["shown"] == 2
    assert result["total"]["all_passed"] == 2
    # Home Assistant cannot unload the entity's model.
    assert not first_answer["unloaded"]


async def test_ai_task_failures(
    home_assistant: FakeHomeAssistant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server error is asked again once; a wrong token or entity stops the run."""
    home_assistant.status = 500
    result = await evaluate(tmp_path, *ai_task_args(home_assistant, "--repeats", "1"))
    assert result["answers"][0]["failure"] == "llm_server_error"
    assert result["answers"][0]["requests"] == 2
    assert len(home_assistant.requests) == 2

    args = ai_task_args(home_assistant)
    args[args.index("secret-token")] = "wrong"
    assert await eval_llm.async_main(args) == 1
    assert "refused the token" in capsys.readouterr().err
    args = ai_task_args(home_assistant)
    args[args.index("ai_task.test")] = "ai_task.missing"
    assert await eval_llm.async_main(args) == 1
    assert "llm_model_missing" in capsys.readouterr().err
