"""The benchmark scripts run (a quick smoke run; timings are not judged here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "bench_envelopes.py"


def test_envelope_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The envelope benchmark prints its table for every operation."""
    spec = importlib.util.spec_from_file_location("bench_envelopes", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    for row in ("raw RSA-2048 OAEP decrypt", "v1 message", "v2 data message", "v2 session message"):
        assert f"| {row}" in out
    assert "cheaper" in out
