"""Build the firmware's portable C++ core for the host, as the test suite's node."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

import pytest

FIRMWARE = Path(__file__).parent.parent / "firmware"
SOURCES = [
    FIRMWARE / "src" / "core" / "privacy.cpp",
    FIRMWARE / "src" / "core" / "telemetry.cpp",
    FIRMWARE / "src" / "core" / "v2.cpp",
    FIRMWARE / "host" / "host_node.cpp",
]


def build_host_node(out_dir: Path) -> Path:
    """Compile the core and its command-line front end with warnings as errors."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.fail("g++ is installed by scripts/setup")
    binary = out_dir / "host_node"
    result = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{FIRMWARE / 'src'}",
            *map(str, SOURCES),
            "-lmbedcrypto",
            "-o",
            str(binary),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"the C++ core does not build:\n{result.stderr}")
    return binary


class HostNode:
    """Runs the built C++ core's commands."""

    def __init__(self, binary: Path) -> None:
        """Remember the binary."""
        self.binary = binary

    def run(self, *args: object, stdin: bytes | None = None, expect: int = 0) -> list[str]:
        """Run one command and return its output lines."""
        result = subprocess.run(
            [str(self.binary), *map(str, args)], input=stdin, capture_output=True, check=False
        )
        assert result.returncode == expect, result.stderr.decode()
        return result.stdout.decode().splitlines()


@pytest.fixture(scope="session")
def host_node(tmp_path_factory: pytest.TempPathFactory) -> HostNode:
    """Build the C++ core once per test session."""
    return HostNode(build_host_node(tmp_path_factory.mktemp("firmware")))
