"""Three nodes in Chromium: two added through the UI and paired by fingerprint, then a drill.

The dev stack (scripts/develop: Mosquitto, Home Assistant, the demo node `kitchen`) runs in a
scratch folder. A user then adds `hall` with *Add integration* and `attic` from its discovery
card, as a new user would: the key Home Assistant shows goes into the node (the reference node's
key folder), the fingerprint the wizard shows is compared with the one the node prints, and both
appear on the IoTShield dashboard, where the user runs a test alarm and acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
import pytest

from .ollama_server import free_port
from .test_dev_stack import ARTIFACTS, CHROMIUM, ROOT, _read_until

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

pytestmark = [pytest.mark.dev_stack, pytest.mark.usefixtures("socket_enabled")]

NODE_DIR = ROOT / "firmware" / "reference_node"
FINGERPRINT = re.compile(r"identity fingerprint ((?:[0-9a-f]{4} ){15}[0-9a-f]{4})")
# Visible text of an element and its shadow trees (Home Assistant's UI lives in shadow DOM).
TEXT = """(element) => {
  const text = [];
  const walk = (node) => {
    if (node.nodeType === 3) text.push(node.textContent);
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(element);
  return text.join(" ").replace(/\\s+/g, " ").trim();
}"""


class Nodes:
    """Reference nodes run as a user runs them: with Home Assistant's key in their key folder."""

    def __init__(self, config: Path, mqtt_port: int, tmp_path: Path) -> None:
        """Use the dev stack's node login and key folder."""
        self.secrets = config / ".dev"
        self.port = mqtt_port
        self.tmp = tmp_path
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def give_key(self, node_id: str, pem: str) -> None:
        """Put a public key into the node, as flashing it into an ESP32 would."""
        keys = self.secrets / "keys"
        keys.mkdir(exist_ok=True)
        (keys / f"{node_id}.pem").write_text(pem.strip() + "\n")

    def log(self, node_id: str) -> Path:
        """Return the node's serial console."""
        return self.tmp / f"{node_id}.log"

    def start(self, node_id: str) -> None:
        """Start (or restart) a node, which reads its key at start."""
        self.stop(node_id)
        with self.log(node_id).open("ab") as log:
            self.running[node_id] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iotshield_node",
                    "run",
                    "--port",
                    str(self.port),
                    "--username",
                    "node",
                    "--password-file",
                    str(self.secrets / "node_password"),
                    "--key-dir",
                    str(self.secrets / "keys"),
                    "--state-dir",
                    str(self.tmp / "nodes"),
                    "--node-id",
                    node_id,
                    "--cycle",
                    "normal:3600",
                ],
                cwd=NODE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def fingerprint(self, node_id: str) -> str:
        """Return the identity fingerprint the node printed at start."""
        async with asyncio.timeout(60):
            # A file written by another process: there is nothing to await but time.
            while not (found := FINGERPRINT.search(self.log(node_id).read_text())):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        return found.group(1)

    def stop(self, node_id: str) -> None:
        """Stop a node."""
        if (process := self.running.pop(node_id, None)) is not None:
            process.terminate()
            process.wait(timeout=15)

    def stop_all(self) -> None:
        """Stop every node."""
        for node_id in list(self.running):
            self.stop(node_id)


def dev_stack_env(config: Path, ha_port: int, mqtt_port: int) -> dict[str, str]:
    """Return the environment scripts/develop runs with, in a scratch folder."""
    return {
        **os.environ,
        "IOTSHIELD_CONFIG_DIR": str(config),
        "IOTSHIELD_HA_PORT": str(ha_port),
        "IOTSHIELD_MQTT_PORT": str(mqtt_port),
        "IOTSHIELD_DEMO_CYCLE": "normal:3600",
        "IOTSHIELD_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
    }


async def _text(locator: Locator) -> str:
    """Return the visible text of an element, shadow trees included."""
    text: str = await locator.evaluate(TEXT)
    return text


async def _wait_text(locator: Locator, pattern: str, seconds: float = 30) -> str:
    """Wait until an element's text matches `pattern`; return the text."""
    text = ""
    try:
        async with asyncio.timeout(seconds):
            while True:
                with contextlib.suppress(Exception):
                    text = await _text(locator)
                    if re.search(pattern, text):
                        return text
                await asyncio.sleep(0.3)
    except TimeoutError as err:
        raise AssertionError(f"{pattern!r} not in {text!r} after {seconds} s") from err


async def _pair_by_fingerprint(page: Page, nodes: Nodes, node_id: str) -> None:
    """From the key step: give the node the key shown, start it and pin its fingerprint."""
    shown_key = page.locator("ha-dialog ha-markdown pre").first
    await shown_key.wait_for(timeout=30_000)
    pem = await shown_key.inner_text()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----"), pem
    nodes.give_key(node_id, pem)
    nodes.start(node_id)
    printed = await nodes.fingerprint(node_id)
    await page.get_by_role("button", name="Submit").click()
    dialog = page.locator("ha-dialog").first
    # The wizard offers the node's own fingerprint to compare, not a key to paste.
    shown = await _wait_text(dialog, rf"Pair node {node_id}.*Compare this fingerprint")
    assert printed in shown, (printed, shown)
    await page.get_by_role("button", name="Submit").click()
    await _wait_text(dialog, rf"Created configuration for {node_id}")
    await page.get_by_role("button", name="Finish").click()


async def _login(page: Page, url: str, user: str, password: str) -> None:
    """Open a page and log in as the user the dev stack printed."""
    await page.goto(url)
    await page.fill("input[name='username']", user, timeout=60_000)
    await page.fill("input[name='password']", password)
    await page.keyboard.press("Enter")


async def test_three_nodes_added_in_the_ui_and_drilled(tmp_path: Path) -> None:
    """Add hall by hand and attic from discovery, see all three, run and end a test alarm."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - oldest lane only

    ha_port, mqtt_port = free_port(), free_port()
    config = tmp_path / "config"
    base = f"http://127.0.0.1:{ha_port}"
    nodes = Nodes(config, mqtt_port, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "develop"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dev_stack_env(config, ha_port, mqtt_port),
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        output = await _read_until(proc.stdout, "Press Ctrl-C to stop.", 600)
        login = re.search(rf"{base}\s+user: (\S+)\s+password: (\S+)", output)
        assert login is not None, output
        assert f"{base}/iotshield/nodes" in output
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await _login(page, f"{base}/config/integrations/dashboard", *login.groups())

                # hall: Add integration, search, node id; the key step, then its fingerprint.
                await page.get_by_role("button", name="Add integration").click(timeout=60_000)
                await page.get_by_label("Search for a brand name").fill("IoTShield")
                await page.locator("ha-integration-list-item", has_text="IoTShield").first.click()
                await page.get_by_role("textbox", name="Node ID").fill("hall")
                await page.get_by_role("button", name="Submit").click()
                await _pair_by_fingerprint(page, nodes, "hall")

                # attic was set up at the factory with a key of its own; it announces itself.
                factory = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                nodes.give_key(
                    "attic",
                    factory.public_key()
                    .public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                    .decode(),
                )
                nodes.start("attic")
                # attic: its discovery card, a new key, and again its fingerprint.
                await page.goto(f"{base}/config/integrations/dashboard")
                card = page.locator("ha-integration-card, ha-config-flow-card", has_text="attic")
                await card.get_by_role("button", name="Add").click(timeout=60_000)
                await _wait_text(page.locator("ha-dialog").first, "IoTShield node found")
                await page.get_by_role("button", name="Submit").click()
                await _pair_by_fingerprint(page, nodes, "attic")

                # The dashboard shows all three, readings of the new ones included.
                await page.goto(f"{base}/iotshield/nodes")
                for name in ("Kitchen", "Hall", "Attic"):
                    temperature = page.locator("hui-tile-card", has_text=f"{name} Temperature")
                    await _wait_text(temperature, rf"{name} Temperature -?\d+(\.\d)? °C", 60)

                # A test alarm on hall: the latest alert opens, with its time.
                latest = page.locator("hui-tile-card", has_text="Hall Latest alert")
                await _wait_text(latest, "Hall Latest alert None")
                await page.locator("hui-tile-card", has_text="Hall Test alarm").click()
                # Its time is an attribute the tile renders after the state: wait for both.
                await _wait_text(latest, r"Test alarm – hall ⸱ Open ⸱ .*\d{1,2}:\d{2}")
                advice = page.locator("hui-markdown-card", has_text="This is a test")
                await _wait_text(advice, "What to do: Nothing to do")
                # The notification is there too.
                await page.get_by_text("Notifications").click()
                drawer = page.locator("notification-drawer")
                await _wait_text(drawer, "Test alarm – hall")
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard_drill.png"), full_page=True)
                await page.goto(f"{base}/iotshield/nodes")

                # Acknowledge ends the drill: resolved, and its advice goes away.
                await page.locator("hui-tile-card", has_text="Hall Acknowledge alert").click()
                await _wait_text(latest, r"Test alarm – hall ⸱ Resolved")
                kitchen = page.locator("hui-tile-card", has_text="Kitchen Latest alert")
                assert "None" in await _text(kitchen)
            finally:
                await browser.close()
    finally:
        nodes.stop_all()
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)
        async with asyncio.timeout(90):
            rest = await proc.stdout.read()
            code = await proc.wait()
    assert code == 0, rest.decode(errors="replace")
