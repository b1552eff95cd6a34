"""The benchmark scripts run (a quick smoke run; timings are not judged here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
from typing import Any

import pytest

SCRIPTS = Path(__file__).parent.parent / "scripts"


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


def test_envelope_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The envelope benchmark prints its table for every operation."""
    assert load("bench_envelopes").main(["--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    for row in ("raw RSA-2048 OAEP decrypt", "v1 message", "v2 data message", "v2 session message"):
        assert f"| {row}" in out
    assert "cheaper" in out


def test_anomaly_evaluation_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's evaluation command prints every fault kind, the totals and the seeds."""
    load("eval_anomaly").main(["--homes", "1", "--clean-homes", "1", "--weeks", "1.5"])
    out = capsys.readouterr().out
    for fault in ("spike", "drift", "stuck", "surge", "flatline"):
        assert f"| ε = 0.5 | {fault} | continuous |" in out
        assert f"| off | {fault} | continuous |" in out
    for fault in ("false_trigger", "stuck_binary", "odd_hours"):
        assert f"| ε = 0.5 | {fault} | binary |" in out
    assert "| ε = 0.5 | **all** | **continuous** |" in out
    assert "False alarms per node-week" in out
    assert "| LSTM autoencoder, binary sensors |" in out
