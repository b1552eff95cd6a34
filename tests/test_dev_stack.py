"""The README's run command for real: scripts/develop, its REST API and the dashboard in Chromium.

Starts the whole dev stack (Mosquitto, Home Assistant, a demo node) in a scratch configuration
folder on free ports, logs in with the credentials it prints, checks live entities over REST and
drives Debian's Chromium through the dashboard. The screenshot is kept in artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
import re
import signal
import socket
import sys
from typing import TYPE_CHECKING

import pytest

from .ollama_server import free_port

if TYPE_CHECKING:
    # Only the oldest lane, which hosts the dev instance, installs Playwright.
    from playwright.async_api import Page

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# A calm start, then a fire whose flame shows after 12 s, then calm for a long while.
CYCLE = "normal:10,fire:120,normal:3600"

pytestmark = [pytest.mark.dev_stack, pytest.mark.usefixtures("socket_enabled")]

# Text of an element and its shadow trees (Home Assistant's cards live in shadow DOM).
DEEP_TEXT = """(tag) => {
  const found = [];
  const find = (node) => {
    if (node.nodeType === 1 && node.localName === tag) found.push(node);
    if (node.shadowRoot) find(node.shadowRoot);
    for (const child of node.childNodes) find(child);
  };
  const text = [];
  const walk = (node) => {
    if (node.nodeType === 3) text.push(node.textContent);
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  find(document.body);
  found.forEach(walk);
  return text.join(" ").replace(/\\s+/g, " ").trim();
}"""


async def _read_until(stream: asyncio.StreamReader, marker: str, seconds: float) -> str:
    """Collect a process's output until a line holds `marker`."""
    lines: list[str] = []
    async with asyncio.timeout(seconds):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("scripts/develop ended early:\n" + "".join(lines))
            lines.append(raw.decode(errors="replace"))
            if marker in lines[-1]:
                return "".join(lines)


async def _card_text(page: Page, tag: str) -> str:
    """Return the visible text of a dashboard card."""
    text: str = await page.evaluate(DEEP_TEXT, tag)
    return text


async def _wait_for_card(page: Page, tag: str, pattern: str, seconds: float) -> re.Match[str]:
    """Wait until a card's text matches `pattern`."""
    async with asyncio.timeout(seconds):
        while True:
            if match := re.search(pattern, await _card_text(page, tag)):
                return match
            await asyncio.sleep(0.5)


def _port_free(port: int) -> bool:
    """Say whether nothing listens on a loopback port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_run_command_dashboard_in_chromium(tmp_path: Path) -> None:
    """Fresh config: demo node live over REST, dashboard shows live values and an alert."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - oldest lane only

    ha_port, mqtt_port = free_port(), free_port()
    env = {
        **os.environ,
        "IOTSHIELD_CONFIG_DIR": str(tmp_path / "config"),
        "IOTSHIELD_HA_PORT": str(ha_port),
        "IOTSHIELD_MQTT_PORT": str(mqtt_port),
        "IOTSHIELD_DEMO_CYCLE": CYCLE,
        # Nothing answers here: the script must say alerts carry rule-based explanations.
        "IOTSHIELD_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
    }
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "develop"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        output = await _read_until(proc.stdout, "Press Ctrl-C to stop.", 600)
        assert "alerts carry rule-based explanations" in output
        assert "kitchen: live, temperature" in output
        login = re.search(rf"http://127\.0\.0\.1:{ha_port}\s+user: (\S+)\s+password: (\S+)", output)
        assert login is not None, output
        user, password = login.groups()

        # The printed credentials work on the REST API (the README's command), and the demo
        # node's entities are live.
        secret = tmp_path / "printed_password"
        secret.write_text(password)
        show = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "scripts" / "dev_bootstrap.py"),
            "--url",
            f"http://127.0.0.1:{ha_port}",
            "--username",
            user,
            "--password-file",
            str(secret),
            "--show-state",
            "sensor.kitchen_temperature",
            stdout=asyncio.subprocess.PIPE,
        )
        shown, _ = await asyncio.wait_for(show.communicate(), 60)
        assert show.returncode == 0
        state = json.loads(shown)
        assert state["entity_id"] == "sensor.kitchen_temperature"
        assert float(state["state"]) > 0
        assert state["attributes"]["unit_of_measurement"] == "°C"

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"http://127.0.0.1:{ha_port}/iotshield/nodes")
                await page.fill("input[name='username']", user, timeout=60_000)
                await page.fill("input[name='password']", password)
                await page.keyboard.press("Enter")
                await page.get_by_text("Kitchen Temperature").wait_for(timeout=60_000)
                readings = r"Kitchen Temperature (-?\d+\.\d) °C"
                first = (await _wait_for_card(page, "hui-tile-card", readings, 30)).group(1)
                tiles = await _card_text(page, "hui-tile-card")
                for label in ("Humidity", "Gas level", "Illuminance", "Flame", "Motion"):
                    assert f"Kitchen {label}" in tiles, tiles
                # Live: the value on the page changes as new noisy readings arrive.
                await _wait_for_card(
                    page, "hui-tile-card", rf"Kitchen Temperature (?!{first} °C)", 60
                )
                # The fire reaches the dashboard: hazard and the latest alert's explanation.
                await _wait_for_card(page, "hui-tile-card", r"Kitchen Hazard Unsafe", 120)
                alert = await _wait_for_card(
                    page, "hui-tile-card", r"(Flame|Fire) detected – kitchen ⸱ Open", 60
                )
                assert alert
                # The advice card appears once its visibility condition and its template, a
                # websocket subscription of its own, have both caught up with the alert tile.
                await _wait_for_card(page, "hui-markdown-card", "What to do:", 30)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
            finally:
                await browser.close()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)
        async with asyncio.timeout(90):
            rest = await proc.stdout.read()
            code = await proc.wait()
    assert code == 0, rest.decode(errors="replace")
    assert "stopping" in rest.decode()
    # Ctrl-C stopped everything: nothing listens on the stack's ports any more.
    assert _port_free(ha_port)
    assert _port_free(mqtt_port)
    # What the detector learned was written when Home Assistant stopped.
    (baseline,) = (tmp_path / "config" / ".storage").glob("iotshield.*.baseline")
    assert json.loads(baseline.read_text())["data"]["version"] == 1

    # The same configuration starts again: the node is already paired, and stays so.
    check = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "develop"),
        "--check",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    checked, _ = await asyncio.wait_for(check.communicate(), 600)
    assert check.returncode == 0, checked.decode(errors="replace")
    assert "kitchen: live, temperature" in checked.decode()
