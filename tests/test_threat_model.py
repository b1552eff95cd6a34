"""The threat model's claims name tests that exist: a "cannot" without a test is not a claim."""

from __future__ import annotations

import ast
import os
from pathlib import Path
import re

ROOT = Path(__file__).parent.parent
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
# `tests/file.py::test_name`, or `::test_name` continuing the file named just before.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")


def _test_functions(path: Path) -> set[str]:
    """Return the names of the test functions defined in a test module."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def _references() -> list[tuple[str, str]]:
    """Return every (file, test) the threat model names."""
    found = []
    for line in THREAT_MODEL.read_text().splitlines():
        current: str | None = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            assert current is not None, f"a test named without its file: {line}"
            found.append((current, match.group(2)))
    return found


def test_every_named_test_exists() -> None:
    """Each `file::test` in docs/threat-model.md is a test function in that file."""
    references = _references()
    assert len(references) >= 30
    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).exists() or name not in _test_functions(ROOT / file)
    ]
    assert missing == []


def test_every_cannot_row_names_a_test() -> None:
    """Every row of a "cannot" table names at least one test."""
    rows = [
        line
        for line in THREAT_MODEL.read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| cannot", "| what", "|---"))
    ]
    claims = [row for row in rows if row.count("|") == 3]
    assert claims
    assert [row for row in claims if not REFERENCE.search(row) and "tests/" not in row] == []


def test_protocol_links_the_threat_model() -> None:
    """PROTOCOL.md points readers to the threat model."""
    assert "docs/threat-model.md" in (ROOT / "firmware" / "PROTOCOL.md").read_text()


def _repository_files() -> list[Path]:
    """Return the files git would commit: the tree without what .gitignore leaves out.

    Walked by hand, as the current test lane's chroot has no git.
    """
    ignored_dirs = {
        ".git",
        ".venv",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        ".iotshield-node",
    }
    files = []
    for folder, dirs, names in os.walk(ROOT):
        here = Path(folder)
        relative = here.relative_to(ROOT)
        # Pruned in place, so ignored trees (virtual environments above all) are never walked.
        dirs[:] = [
            name
            for name in dirs
            if name not in ignored_dirs
            and not (relative == Path() and name == "artifacts")
            and not (relative == Path("config") and name != "dashboards")
        ]
        for name in names:
            if name.endswith(".pyc") or (
                relative == Path("config") and name != "configuration.yaml"
            ):
                continue
            files.append(here / name)
    return files


def test_no_private_key_is_committed() -> None:
    """No file in the repository holds a private key: every key is made at first run."""
    marker = re.compile(rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/]")
    files = _repository_files()
    assert any(path.name == "PROTOCOL.md" for path in files)
    holding = [str(path.relative_to(ROOT)) for path in files if marker.search(path.read_bytes())]
    assert holding == []
