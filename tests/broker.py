"""A real Mosquitto broker on loopback, password-protected, for end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
import contextlib
from dataclasses import dataclass
import functools
from pathlib import Path
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .node_builds import mqtt_node  # noqa: F401

USERNAME = "homeassistant"
PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class Broker:
    """Where the test broker listens and how to log in."""

    host: str
    port: int
    username: str
    password: str
    process: subprocess.Popen[bytes]
    directory: Path


def _free_port() -> int:
    """Return a loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find(name: str) -> str:
    """Locate a Mosquitto program; scripts/setup installs it."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        pytest.fail(f"{name} is not installed; run scripts/setup")
    return path


def start_broker(directory: Path | None = None, port: int | None = None) -> Broker:
    """Start Mosquitto with a password file and no anonymous access; wait until it listens."""
    if directory is None:
        # Mosquitto started as root drops to its own user, which must read these files.
        directory = Path(tempfile.mkdtemp(prefix="iotshield-broker-"))
        directory.chmod(0o755)
    port = port or _free_port()
    pwfile = directory / "passwd"
    if not pwfile.exists():
        subprocess.run(
            [_find("mosquitto_passwd"), "-b", "-c", str(pwfile), USERNAME, PASSWORD],
            check=True,
            capture_output=True,
        )
        pwfile.chmod(0o644)
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {pwfile}\n"
        "persistence false\n"
        "log_dest stderr\n"
    )
    conf.chmod(0o644)
    process = subprocess.Popen(
        [_find("mosquitto"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "broker.log").open("ab"),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "broker.log").read_text(errors="replace")
            pytest.fail(f"mosquitto exited at once: {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("mosquitto did not start listening")
    return Broker("127.0.0.1", port, USERNAME, PASSWORD, process, directory)


def stop_broker(broker: Broker) -> None:
    """Stop the broker and wait for it."""
    broker.process.terminate()
    try:
        broker.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait()


async def connect_home_assistant(hass: HomeAssistant, broker: Broker) -> MockConfigEntry:
    """Set up Home Assistant's MQTT integration against the broker and wait for the link."""
    entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={
            mqtt.CONF_BROKER: broker.host,
            "port": broker.port,
            "username": broker.username,
            "password": broker.password,
        },
        version=1,
        minor_version=2,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert await mqtt.async_wait_for_mqtt_client(hass)
    return entry


class Observer:
    """A plain MQTT client that records what the node publishes."""

    def __init__(self, broker: Broker) -> None:
        """Subscribe to everything under iotshield/."""
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(broker.username, broker.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, *_: c.subscribe("iotshield/#", qos=1)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        # Whatever the node publishes from now on is seen.
        assert subscribed.wait(10), "the observer could not subscribe"

    def wait_for(
        self, check: Callable[[paho.MQTTMessage], bool], seconds: float = 20
    ) -> paho.MQTTMessage:
        """Return the first message that passes `check`, failing after `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if check(msg):
                return msg
        pytest.fail("the expected message did not arrive")

    def publish(self, topic: str, payload: str) -> None:
        """Publish with QoS 1 and wait for the broker's ack."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        """Stop the observer's network thread."""
        self.client.disconnect()
        self.client.loop_stop()


REFERENCE_NODE = Path(__file__).parent.parent / "firmware" / "reference_node"


def _run_options(broker: Broker, key: Path, extra: tuple[str, ...]) -> list[str]:
    """Return the `run` options both nodes take, for node `kitchen` on this broker."""
    return [
        "run",
        "--broker",
        broker.host,
        "--port",
        str(broker.port),
        "--username",
        broker.username,
        "--password",
        broker.password,
        "--key",
        str(key),
        "--node-id",
        "kitchen",
        *extra,
    ]


def _start(
    command: list[str], log: Path | None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a node process; its log goes to `log` when given."""
    if log is None:
        return subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=out)


def start_reference_node(
    broker: Broker, key: Path, *extra: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Run `python -m iotshield_node run` for node `kitchen` the way a user would."""
    command = [sys.executable, "-m", "iotshield_node", *_run_options(broker, key, extra)]
    return _start(command, log, cwd=REFERENCE_NODE)


def start_cpp_node(
    broker: Broker, key: Path, *extra: str, binary: Path, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Run the firmware's node built for the host (`binary`) as node `kitchen`, like the above."""
    return _start([str(binary), *_run_options(broker, key, extra)], log)


StartNode = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(params=["python", "cpp"])
def start_node(request: pytest.FixtureRequest) -> StartNode:
    """Return how to start node `kitchen`: the Python reference node or the firmware's node."""
    if request.param == "python":
        return start_reference_node
    return functools.partial(start_cpp_node, binary=request.getfixturevalue("mqtt_node"))


async def wait_until(
    hass: HomeAssistant, check: Callable[[], bool], what: str, seconds: float = 20.0
) -> None:
    """Let Home Assistant run until `check()` holds, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await hass.async_block_till_done(wait_background_tasks=True)
        if check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def mosquitto() -> Generator[Broker]:
    """Run a real broker for one test."""
    broker = start_broker()
    try:
        yield broker
    finally:
        stop_broker(broker)
        shutil.rmtree(broker.directory, ignore_errors=True)
