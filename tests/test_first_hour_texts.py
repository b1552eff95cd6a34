"""What a new user reads in the first hour says what it means (issue 19, finding 8).

Error texts are plain text, errors land on the field that is wrong, titles name the node, number
fields say their range, help names choices as they read, a URL without its scheme works, an
empty key gets its own error, the device is named and described for every node, and the dev
instance prints every login it makes and logs where its configuration is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import json
import os
from pathlib import Path
import re
import signal
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.selector import NumberSelector, SelectSelector
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.iotshield.const import CONF_LLM_URL, CONF_NODE_ID, DOMAIN
from custom_components.iotshield.entity import device_name

from .helpers import setup_entry, setup_home_llm
from .ollama_server import FakeOllama, free_port, ollama_server  # noqa: F401
from .test_alerts import _form_defaults
from .test_config_flow import _pair, _start_user_flow

ROOT = Path(__file__).parent.parent
FOLDER = ROOT / "custom_components" / "iotshield" / "translations"
LANGUAGES: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(FOLDER.glob("*.json"))
}
# Inline code, bold or italics, which the frontend shows as typed in an error.
MARKDOWN = re.compile(r"`|\*\*?\S|\S\*")


def _strings(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield each string of a translation tree with its dotted key path."""
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _strings(value, f"{prefix}{name}.")
        elif isinstance(value, str):
            yield f"{prefix}{name}", value


def test_error_texts_are_plain_text() -> None:
    """Form errors and exceptions show no Markdown: the frontend prints them as they are."""
    assert {"en", "de"} <= set(LANGUAGES)
    found = [
        f"{language}: {path}: {text}"
        for language, tree in LANGUAGES.items()
        for path, text in _strings(tree)
        if re.match(r"(config|options)\.error\.|exceptions\.", path) and MARKDOWN.search(text)
    ]
    assert not found, "\n".join(found)


def test_no_text_points_to_the_thesis() -> None:
    """Help refers to what the user has (the README), not to a table of a thesis."""
    for language, tree in LANGUAGES.items():
        for path, text in _strings(tree):
            assert not re.search(r"thesis|Table 3\.3|Tabelle 3\.3", text), (language, path)


async def _open_options(hass: HomeAssistant, entry: MockConfigEntry, step: str) -> dict[str, Any]:
    """Open one step of a node's options from the menu."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    return dict(
        await hass.config_entries.options.async_configure(result["flow_id"], {"next_step_id": step})
    )


@pytest.mark.usefixtures("mqtt_mock")
@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"temperature_high": 30.0}, "temperature_high", "thresholds_not_ordered"),
        ({"temperature_medium": 50.0}, "temperature_medium", "thresholds_not_ordered"),
        ({"humidity_high": 120.0}, "humidity_high", "thresholds_out_of_range"),
        ({"gas_medium": 0.1}, "gas_medium", "thresholds_not_ordered"),
        ({"light_low": 100.0}, "light_low", "thresholds_not_ordered"),
        ({"temperature_low_under": -60.0}, "temperature_low_under", "thresholds_out_of_range"),
    ],
    ids=["high-below-medium", "medium-above-high", "humidity-120", "gas", "light", "too-cold"],
)
async def test_threshold_error_is_on_the_wrong_field(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    changes: dict[str, float],
    field: str,
    error: str,
) -> None:
    """The error sits on the value the user made wrong, not on the sensor's first field."""
    await setup_entry(hass, mock_config_entry)
    result = await _open_options(hass, mock_config_entry, "thresholds")
    values = _form_defaults(result["data_schema"])
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, **changes}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}


def _title(language: str, step: str) -> str:
    """Return the title of a step of the node's options."""
    title: str = LANGUAGES[language]["options"]["step"][step]["title"]
    return title


@pytest.mark.usefixtures("mqtt_mock")
async def test_options_titles_name_the_node(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Each step of a node's options says which node it is about."""
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    steps = [(result["step_id"], result)]
    steps += [
        (step, await _open_options(hass, mock_config_entry, step))
        for step in result["menu_options"]
    ]
    for step, shown in steps:
        assert shown["step_id"] == step
        assert shown["description_placeholders"]["node_id"] == "kitchen", step
        for language in LANGUAGES:
            assert "{node_id}" in _title(language, step), (language, step)


def _number(value: float) -> str:
    """Write a bound as the help text does."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _help(language: str, step: str, field: str, placeholders: dict[str, str]) -> str:
    """Return a field's help text in a language, its placeholders filled in."""
    text: str = LANGUAGES[language]["options"]["step"][step]["data_description"][field]
    return text.format_map(placeholders)


def _names(text: str, number: float) -> bool:
    """Say whether a text names a number (not as part of a longer one)."""
    return re.search(rf"(?<![\d.]){re.escape(_number(number))}(?![\d.])", text) is not None


def _range_problems(result: dict[str, Any]) -> list[str]:
    """Report each number field whose help does not name its minimum and maximum."""
    step, placeholders = result["step_id"], result.get("description_placeholders") or {}
    return [
        f"{language}: {step}.{key} lacks its {bound}"
        for key, selector in result["data_schema"].schema.items()
        if isinstance(selector, NumberSelector)
        for language in LANGUAGES
        for bound in ("min", "max")
        if bound in selector.config
        and not _names(_help(language, step, str(key), placeholders), selector.config[bound])
    ]


@pytest.mark.usefixtures("mqtt_mock")
async def test_number_fields_say_their_range(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Home Assistant answers a number out of range with "Value 0.0 is too small": help names it."""
    await setup_entry(hass, mock_config_entry)
    forms = [await _open_options(hass, mock_config_entry, step) for step in ("node", "alerts")]
    llm = await _open_options(hass, mock_config_entry, "llm")
    forms.append(llm)
    # With no LLM for the home yet, switching it on leads to the home LLM's own form.
    values = {**_form_defaults(llm["data_schema"]), "llm_enabled": True}
    home_llm = await hass.config_entries.options.async_configure(llm["flow_id"], values)
    assert home_llm["step_id"] == "home_llm"
    forms.append(dict(home_llm))
    numbers = [
        str(key)
        for form in forms
        for key, selector in form["data_schema"].schema.items()
        if isinstance(selector, NumberSelector)
    ]
    assert {"publish_interval", "stale_intervals", "llm_timeout", "llm_keep_alive"} <= set(numbers)
    problems = [problem for form in forms for problem in _range_problems(form)]
    assert not problems, "\n".join(problems)


@pytest.mark.usefixtures("mqtt_mock")
async def test_help_names_choices_as_they_read(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """A help text that says which option to choose names it by the label the list shows."""
    await setup_entry(hass, mock_config_entry)
    result = await _open_options(hass, mock_config_entry, "alerts")
    checked = 0
    for key, selector in result["data_schema"].schema.items():
        if not isinstance(selector, SelectSelector):
            continue
        translation_key = selector.config["translation_key"]
        for language, tree in LANGUAGES.items():
            labels = set(tree["selector"][translation_key]["options"].values())
            help_text = tree["options"]["step"]["alerts"]["data_description"][str(key)]
            for choice in re.findall(r"(?:Choose|Wähle) (\S[^.,;:]*)", help_text):
                checked += 1
                assert choice.startswith("*"), (language, key, choice)
                named = choice.split("*")[1]
                assert named in labels, (language, key, named, labels)
    # The anomaly level's help tells which choice keeps the entities only, in each language.
    assert checked >= len(LANGUAGES)


async def test_ollama_url_without_its_scheme(
    hass: HomeAssistant,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """`host:port` reaches Ollama (its own tools take it) and is stored with http://."""
    home = await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    result = await hass.config_entries.options.async_init(home.entry_id)
    values = _form_defaults(result["data_schema"])
    bare = ollama_server.url.removeprefix("http://")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, CONF_LLM_URL: bare, "llm_timeout": 7}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY, result.get("errors")
    await hass.async_block_till_done()
    assert home.options[CONF_LLM_URL] == ollama_server.url


async def test_ollama_url_that_is_no_url(
    hass: HomeAssistant,
    ollama_server: FakeOllama,  # noqa: F811
) -> None:
    """What cannot be a web address is refused as such, not as an unreachable server."""
    home = await setup_home_llm(hass, {CONF_LLM_URL: ollama_server.url})
    result = await hass.config_entries.options.async_init(home.entry_id)
    values = _form_defaults(result["data_schema"])
    for wrong in ("ftp://127.0.0.1:11434", "http://", "my ollama box", ""):
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**values, CONF_LLM_URL: wrong}
        )
        assert result["type"] is FlowResultType.FORM, wrong
        assert result["errors"] == {CONF_LLM_URL: "invalid_url"}, wrong
    unreachable = f"127.0.0.1:{free_port()}"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, CONF_LLM_URL: unreachable}
    )
    assert result["errors"] == {"base": "cannot_connect"}


@pytest.mark.usefixtures("mqtt_mock")
async def test_empty_identity_key_asks_for_it(hass: HomeAssistant) -> None:
    """Submitting the pairing step without a key asks for one; it is not "not a P-256 key"."""
    result = await _start_user_flow(hass)
    result = await _pair(hass, result, "paste")
    assert result["errors"] == {"node_key": "node_key_missing"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"pairing": "paste", "node_key": "  \n"}
    )
    assert result["errors"] == {"node_key": "node_key_missing"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"pairing": "paste", "node_key": "not a key"}
    )
    assert result["errors"] == {"node_key": "invalid_node_key"}


@pytest.mark.parametrize(
    ("node_id", "name"),
    [("kitchen", "Kitchen"), ("living_room", "Living room"), ("node-2", "Node 2"), ("a__b", "A b")],
)
def test_device_name_from_node_id(node_id: str, name: str) -> None:
    """A node id becomes a name a person would write."""
    assert device_name(node_id, node_id) == name


def test_device_name_keeps_a_renamed_entry() -> None:
    """An entry the user renamed names its device as the user wrote it."""
    assert device_name("kitchen", "Kitchen by the door") == "Kitchen by the door"


@pytest.mark.usefixtures("mqtt_mock")
async def test_device_is_named_and_fits_every_node(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """The device reads "Kitchen", and its model is true of the ESP32 and the Python node alike."""
    await setup_entry(hass, mock_config_entry)
    (device,) = dr.async_entries_for_config_entry(device_registry, mock_config_entry.entry_id)
    assert device.identifiers == {(DOMAIN, mock_config_entry.data[CONF_NODE_ID])}
    assert device.name == "Kitchen"
    assert device.model is not None
    assert "ESP32" not in device.model
    assert device.manufacturer == "IoTShield"
    # Entity ids stay what they were for the lowercase id.
    state = hass.states.get("sensor.kitchen_temperature")
    assert state is not None
    assert state.name == "Kitchen Temperature"


async def _read_until(stream: asyncio.StreamReader, marker: str, seconds: float) -> str:
    """Collect a process's output until a line holds `marker`."""
    lines: list[str] = []
    async with asyncio.timeout(seconds):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("scripts/develop ended early:\n" + "".join(lines))
            lines.append(raw.decode(errors="replace"))
            if marker in lines[-1]:
                return "".join(lines)


@pytest.mark.dev_stack
@pytest.mark.usefixtures("socket_enabled")
async def test_develop_prints_both_logins_and_its_logs(tmp_path: Path) -> None:
    """Both MQTT logins are printed, and each log path printed is where that log is."""
    config = tmp_path / "config"
    env = {
        **os.environ,
        "IOTSHIELD_CONFIG_DIR": str(config),
        "IOTSHIELD_HA_PORT": str(free_port()),
        "IOTSHIELD_MQTT_PORT": str(free_port()),
        "IOTSHIELD_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
    }
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "develop"),
        "--check",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        output = await _read_until(proc.stdout, "Demo nodes:", 600)
        output += (await asyncio.wait_for(proc.stdout.read(), 120)).decode(errors="replace")
        assert await asyncio.wait_for(proc.wait(), 60) == 0, output
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)
            await proc.wait()
    secrets = config / ".dev"
    for user, secret in (("homeassistant", "mqtt_password"), ("node", "node_password")):
        password = (secrets / secret).read_text().strip()
        assert re.search(rf"user: {user}\s+password: {re.escape(password)}", output), output
    # Every log named is a path that exists, in the configuration folder the run was given.
    logs = re.findall(r"[\w./-]+\.log\b", output)
    assert {Path(log).name for log in logs} >= {"home-assistant.log", "nodes.log"}, output
    for log in logs:
        assert Path(log).parent == config, (log, output)
        assert Path(log).is_file(), (log, output)
