"""Every translation has en.json's keys, placeholders and commands, and passes hassfest's checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
import copy
import json
from pathlib import Path
import re
import string
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers.translation import async_get_translations
import pytest
import voluptuous as vol

from custom_components.iotshield.const import DOMAIN

from .test_hass_validation import TRANSLATIONS

FOLDER = Path(__file__).parent.parent / "custom_components" / "iotshield" / "translations"
ENGLISH: dict[str, Any] = json.loads((FOLDER / "en.json").read_text(encoding="utf-8"))
OTHERS = sorted(path for path in FOLDER.glob("*.json") if path.name != "en.json")
# A fenced block (```...```) or an inline code span (`...`), as Markdown reads them.
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)

Tree = dict[str, Any]
Check = Callable[[Tree, Tree], list[str]]


def load(path: Path) -> Tree:
    """Return one translation file."""
    tree: Tree = json.loads(path.read_text(encoding="utf-8"))
    return tree


def leaves(tree: Tree, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield each leaf of a translation tree with its dotted key path."""
    for name, value in tree.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def texts(tree: Tree) -> dict[str, str]:
    """Return the strings of a translation tree by key path."""
    return {path: value for path, value in leaves(tree) if isinstance(value, str)}


def placeholders(value: str) -> set[str]:
    """Return the names of the {placeholders} in a string; raise ValueError on a stray brace."""
    return {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}


def key_problems(english: Tree, translation: Tree) -> list[str]:
    """Report the key paths the translation lacks and those English does not have."""
    ours, theirs = dict(leaves(english)), dict(leaves(translation))
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    return [f"missing {path}" for path in missing] + [f"extra {path}" for path in extra]


def placeholder_problems(english: Tree, translation: Tree) -> list[str]:
    """Report each string whose {placeholders} differ from its English counterpart."""
    ours = texts(english)
    problems = []
    for path, value in texts(translation).items():
        if path not in ours:
            continue
        try:
            found = placeholders(value)
        except ValueError as err:
            problems.append(f"{path}: {err}")
            continue
        wanted = placeholders(ours[path])
        if found != wanted:
            problems.append(f"{path}: placeholders {sorted(found)}, English has {sorted(wanted)}")
    return problems


def code_span_problems(english: Tree, translation: Tree) -> list[str]:
    """Report each string whose `code` spans are not exactly English's (commands stay as is)."""
    ours = texts(english)
    problems = []
    for path, value in texts(translation).items():
        if path not in ours:
            continue
        found, wanted = CODE_SPAN.findall(value), CODE_SPAN.findall(ours[path])
        if Counter(found) != Counter(wanted):
            problems.append(f"{path}: {len(found)} code spans {found}, English has {wanted}")
    return problems


def markup_problems(english: Tree, translation: Tree) -> list[str]:
    """Report each string with a < or >, which Home Assistant's frontend would read as HTML."""
    del english  # The rule holds for every string on its own.
    return [
        f"{path}: {value!r}"
        for path, value in texts(translation).items()
        if "<" in value or ">" in value
    ]


def validator_problems(english: Tree, translation: Tree) -> list[str]:
    """Report what the validators that test_hass_validation applies to en.json refuse."""
    del english  # The schema is the same for every language.
    try:
        TRANSLATIONS(translation)
    except vol.Invalid as err:
        return [str(err)]
    return []


CHECKS: dict[str, Check] = {
    "keys": key_problems,
    "placeholders": placeholder_problems,
    "code_spans": code_span_problems,
    "no_markup": markup_problems,
    "validators": validator_problems,
}


def test_there_is_a_german_translation() -> None:
    """The checks below run over at least de.json, so they cannot pass on no files at all."""
    assert "de.json" in [path.name for path in OTHERS]


def test_english_passes_its_own_checks() -> None:
    """English against itself has nothing to report: the checks have no false alarms."""
    for name, check in CHECKS.items():
        assert check(ENGLISH, ENGLISH) == [], name


@pytest.mark.parametrize("check", CHECKS.values(), ids=list(CHECKS))
@pytest.mark.parametrize("path", OTHERS, ids=[path.name for path in OTHERS])
def test_translation_matches_english(path: Path, check: Check) -> None:
    """Each translation has nothing for any check to report."""
    problems = check(ENGLISH, load(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def _drop(tree: Tree) -> None:
    """Drop the title of the first config step."""
    del tree["config"]["step"]["user"]["title"]


def _add(tree: Tree) -> None:
    """Add a menu option English does not have."""
    tree["options"]["step"]["init"]["menu_options"]["extra"] = "Extra"


def _rename_placeholder(tree: Tree) -> None:
    """Translate a placeholder's name."""
    issue = tree["issues"]["key_mismatch"]
    issue["description"] = issue["description"].replace("{count}", "{anzahl}")


def _drop_placeholder(tree: Tree) -> None:
    """Leave a placeholder out."""
    step = tree["config"]["step"]["reconfigure"]
    step["title"] = step["title"].replace("{node_id}", "Knoten")


def _stray_brace(tree: Tree) -> None:
    """Leave a placeholder's brace open."""
    step = tree["config"]["step"]["reconfigure"]
    step["title"] = step["title"].replace("{node_id}", "{node_id")


def _translate_command(tree: Tree) -> None:
    """Translate a command inside backticks."""
    llm = tree["options"]["step"]["llm"]["data_description"]
    llm["llm_model"] = llm["llm_model"].replace("ollama pull", "ollama hole")


def _drop_code_span(tree: Tree) -> None:
    """Write a command without its backticks."""
    home_llm = tree["options"]["step"]["home_llm"]["data_description"]
    home_llm["llm_model"] = home_llm["llm_model"].replace("`", "")


def _markup(tree: Tree) -> None:
    """Put HTML into a string."""
    tree["services"]["explain"]["name"] = "<b>Erklären</b>"


def _leading_space(tree: Tree) -> None:
    """Put a space in front of a string, which hassfest refuses."""
    tree["services"]["acknowledge"]["name"] = " Vorfall bestätigen"


def _describe_missing_field(tree: Tree) -> None:
    """Describe a field the step does not have."""
    tree["config"]["step"]["user"]["data_description"]["no_such_field"] = "Ein Feld."


def _url(tree: Tree) -> None:
    """Write a URL into a string instead of a placeholder."""
    tree["exceptions"]["mqtt_not_ready"]["message"] = "Siehe https://example.com."


@pytest.mark.parametrize(
    ("breakage", "check", "reported"),
    [
        (_drop, key_problems, "missing config.step.user.title"),
        (_add, key_problems, "extra options.step.init.menu_options.extra"),
        (_rename_placeholder, placeholder_problems, "issues.key_mismatch.description"),
        (_drop_placeholder, placeholder_problems, "config.step.reconfigure.title"),
        (_stray_brace, placeholder_problems, "config.step.reconfigure.title"),
        (_translate_command, code_span_problems, "data_description.llm_model"),
        (_drop_code_span, code_span_problems, "home_llm.data_description.llm_model"),
        (_markup, markup_problems, "services.explain.name"),
        (_leading_space, validator_problems, "leading or trailing spaces"),
        (_url, validator_problems, "a URL belongs in a placeholder"),
        (_describe_missing_field, validator_problems, "no_such_field"),
    ],
    ids=[
        "dropped-key",
        "extra-key",
        "renamed-placeholder",
        "dropped-placeholder",
        "stray-brace",
        "translated-command",
        "dropped-code-span",
        "html",
        "leading-space",
        "url",
        "description-of-no-field",
    ],
)
def test_each_check_reports_a_broken_file(
    breakage: Callable[[Tree], None], check: Check, reported: str
) -> None:
    """A copy of de.json broken in one place is reported by the check for that rule."""
    german = load(FOLDER / "de.json")
    assert check(ENGLISH, german) == []
    broken = copy.deepcopy(german)
    breakage(broken)
    problems = check(ENGLISH, broken)
    assert any(reported in problem for problem in problems), problems


async def test_home_assistant_reads_the_german_file(hass: HomeAssistant) -> None:
    """Home Assistant's own loader finds de.json where it looks and returns its texts."""
    german = load(FOLDER / "de.json")
    loaded = await async_get_translations(hass, "de", "config", {DOMAIN})
    assert loaded[f"component.{DOMAIN}.config.step.user.title"] == "IoTShield-Knoten hinzufügen"
    expected = {
        f"component.{DOMAIN}.config.{path}": value
        for path, value in texts(german["config"]).items()
    }
    assert {key: loaded.get(key) for key in expected} == expected
