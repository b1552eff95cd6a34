"""The healthy-home evaluation runs (a quick smoke run of the README's command)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import re
import sys
from typing import Any

import pytest

SCRIPTS = Path(__file__).parent.parent / "scripts"
RECORDING = Path(__file__).parent.parent / "data" / "real-home" / "energydata.csv"


def load(name: str) -> Any:
    """Import a script as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up by name.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def shares(out: str, section: str) -> list[float]:
    """Return the before, after and armed shares (%) of a section's total row."""
    part = out.split(section, 1)[1]
    row = next(line for line in part.splitlines() if line.startswith("| **all** |"))
    return [float(value) for value in re.findall(r"\| ([\d.]+)% ", row)]


def test_severity_evaluation_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ordinary days are normal after and not before; every scenario keeps MEDIUM and up."""
    # Two days of two rooms: enough to see the real house replayed.
    short = tmp_path / "short.csv"
    short.write_text("".join(RECORDING.read_text().splitlines(keepends=True)[: 2 * 144 + 1]))
    args = ["--homes", "1", "--weeks", "0.15", "--real-home", str(short), "--rooms", "2"]
    assert load("eval_severity").main([*args, "--seeds", "1", "--real-interval", "300"]) == 0
    out = capsys.readouterr().out
    simulated = shares(out, "Simulated homes")
    real = shares(out, "Real house")
    for before, after, armed in (simulated, real):
        assert before > 50
        assert after < 1
        assert armed < 1
    assert "| kitchen |" in out
    assert "light, gas and motion simulated" in out
    for scenario in ("fire", "gas_leak", "intrusion", "stuck", "drift", "flatline", "pir_false"):
        assert f"| {scenario} | 1 |" in out
    assert "| fire | 1 | critical ×1 | critical ×1 | critical ×1 |" in out
    assert "Hazards unchanged" in out
