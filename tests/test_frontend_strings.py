"""Every translation string survives the frontend's ICU message formatting (intl-messageformat).

Home Assistant's frontend reads each string as an ICU message: `<word>` is a tag and `{name}` a
placeholder, and a string it cannot parse shows as "Translation error: INVALID_TAG" instead of
the text. tests/frontend_strings.mjs formats the strings with the intl-messageformat release of
the oldest supported frontend, which scripts/setup installs; without it these tests fail.
"""

from __future__ import annotations

from collections.abc import Callable
import copy
import json
import os
from pathlib import Path
import shutil
import subprocess
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "tests" / "frontend_strings.mjs"
FOLDER = ROOT / "custom_components" / "iotshield" / "translations"
NODE_TOOLS = Path(os.environ.get("IOTSHIELD_NODE_TOOLS", ROOT / ".venv" / "node"))

Tree = dict[str, Any]


def _string_count(tree: Tree) -> int:
    """Count the strings in a translation tree."""
    return sum(
        _string_count(value) if isinstance(value, dict) else isinstance(value, str)
        for value in tree.values()
    )


def _format(*files: Path) -> tuple[list[dict[str, str]], int]:
    """Format the files' strings in node; return the problems and how many strings it read."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/setup")
    if not (NODE_TOOLS / "node_modules" / "intl-messageformat").is_dir():
        pytest.fail(f"intl-messageformat is not installed in {NODE_TOOLS}: run scripts/setup")
    result = subprocess.run(
        [node, str(SCRIPT), str(NODE_TOOLS), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    *problems, summary = lines
    assert (result.returncode == 1) == bool(problems), result.stdout
    return problems, int(summary["checked"])


def test_every_translation_string_formats() -> None:
    """No string of en.json, de.json or any other translation is a translation error."""
    files = sorted(FOLDER.glob("*.json"))
    assert {"en.json", "de.json"} <= {path.name for path in files}
    problems, checked = _format(*files)
    report = "\n".join(f"{p['file']}: {p['key']}: {p['error']}" for p in problems)
    assert not problems, report
    expected = sum(_string_count(json.loads(path.read_text(encoding="utf-8"))) for path in files)
    assert checked == expected


def _topic_in_brackets(tree: Tree) -> None:
    """Write a topic's variable parts in angle brackets, as the node id's help once did."""
    tree["config"]["step"]["user"]["data_description"]["node_id"] = (
        "Die Mitte der Topics <prefix>/<node id>/sensors/data."
    )


def _unclosed_tag(tree: Tree) -> None:
    """Open a tag and never close it."""
    tree["options"]["step"]["node"]["data_description"]["legacy_topic"] = (
        "Liest auch <prefix>/sensors/data."
    )


def _html(tree: Tree) -> None:
    """Use HTML, a tag the frontend gives no value."""
    tree["services"]["explain"]["name"] = "<b>Erklären</b>"


def _open_placeholder(tree: Tree) -> None:
    """Leave a placeholder's brace open."""
    step = tree["config"]["step"]["reconfigure"]
    step["title"] = step["title"].replace("{node_id}", "{node_id")


@pytest.mark.parametrize(
    ("breakage", "key", "error"),
    [
        (_topic_in_brackets, "config.step.user.data_description.node_id", "INVALID_TAG"),
        (_unclosed_tag, "options.step.node.data_description.legacy_topic", "UNCLOSED_TAG"),
        (_html, "services.explain.name", "was not provided"),
        (_open_placeholder, "config.step.reconfigure.title", "MALFORMED_ARGUMENT"),
    ],
    ids=["topic-in-brackets", "unclosed-tag", "html", "open-placeholder"],
)
def test_a_broken_string_is_reported(
    tmp_path: Path, breakage: Callable[[Tree], None], key: str, error: str
) -> None:
    """A copy of de.json broken in one place is reported with that key and the frontend's error."""
    german: Tree = json.loads((FOLDER / "de.json").read_text(encoding="utf-8"))
    broken = copy.deepcopy(german)
    breakage(broken)
    # The file name is the language the script formats in.
    path = tmp_path / "de.json"
    path.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
    problems, checked = _format(path)
    assert [(p["file"], p["key"]) for p in problems] == [("de.json", key)]
    assert error in problems[0]["error"]
    assert checked == _string_count(german)
