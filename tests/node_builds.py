"""Build the firmware's portable C++ core for the host, as the test suite's nodes."""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess

import pytest

FIRMWARE = Path(__file__).parent.parent / "firmware"
CORE = [
    FIRMWARE / "src" / "core" / "privacy.cpp",
    FIRMWARE / "src" / "core" / "telemetry.cpp",
    FIRMWARE / "src" / "core" / "v2.cpp",
]
SOURCES = [*CORE, FIRMWARE / "host" / "host_node.cpp"]
# The whole node (core/node.cpp, what the ESP32 runs) over MQTT with libmosquitto.
MQTT_NODE_SOURCES = [
    *CORE,
    FIRMWARE / "src" / "core" / "node.cpp",
    FIRMWARE / "host" / "mqtt_node.cpp",
]


def _compile(
    sources: list[Path], binary: Path, libraries: list[str], flags: tuple[str, ...] = ("-O2",)
) -> Path:
    """Compile sources into one program with warnings as errors, or fail the test."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.fail("g++ is installed by scripts/setup")
    result = subprocess.run(
        [
            compiler,
            "-std=c++17",
            *flags,
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{FIRMWARE / 'src'}",
            *map(str, sources),
            *libraries,
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


def build_host_node(out_dir: Path) -> Path:
    """Compile the core and its command-line front end."""
    return _compile(SOURCES, out_dir / "host_node", ["-lmbedcrypto"])


def build_mqtt_node(out_dir: Path, *, thread_sanitizer: bool = False) -> Path:
    """Compile the firmware's node with its host glue: a complete node over MQTT."""
    # ThreadSanitizer reports any data race between the MQTT thread and the node's loop.
    flags = ("-O1", "-g", "-fsanitize=thread") if thread_sanitizer else ("-O2",)
    return _compile(
        MQTT_NODE_SOURCES, out_dir / "mqtt_node", ["-lmosquitto", "-lmbedcrypto"], flags
    )


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


@pytest.fixture(scope="session")
def mqtt_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the firmware's node for the host once per test session; return the program."""
    return build_mqtt_node(tmp_path_factory.mktemp("mqtt-node"))
