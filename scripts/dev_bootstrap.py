"""Prepare a freshly started dev Home Assistant over its REST API: owner, MQTT and demo nodes.

Run by scripts/develop in the oldest lane's Python. Everything goes through Home Assistant's own
onboarding and flow APIs, as a user's clicks would. Idempotent: an instance that is already
onboarded, has MQTT and has the demo nodes is left as it is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware" / "reference_node"))

from iotshield_node.v2 import load_or_create_identity, node_key_b64  # noqa: E402

# Incidents of the demo resolve half a minute after the hazard is gone, not five minutes.
DEMO_HOLD_TIME = 30


def form_defaults(flow: dict[str, Any]) -> dict[str, Any]:
    """Return what a form submits untouched: the defaults of its fields."""
    return {
        field["name"]: field.get("default")
        for field in flow.get("data_schema", [])
        if "default" in field
    }


class DevInstance:
    """A small REST client for the dev instance."""

    def __init__(self, url: str) -> None:
        """Remember where Home Assistant listens."""
        self.url = url.rstrip("/")
        self.client_id = f"{self.url}/"
        self.token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        """Send one request and return its decoded JSON answer."""
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(  # noqa: S310 - the URL is the local dev instance
            self.url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise urllib.error.HTTPError(
                err.url, err.code, f"{err.msg}: {method} {path}: {detail}", err.headers, None
            ) from None
        return json.loads(text) if text else None

    def wait_until_up(self, seconds: float) -> None:
        """Wait for the HTTP API to answer."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/auth/providers")
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
            else:
                return
        sys.exit(f"Home Assistant did not answer at {self.url} within {seconds:.0f} s")

    def _token_from_code(self, code: str) -> None:
        """Exchange an authorization code for an access token."""
        answer = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
            form=True,
        )
        self.token = answer["access_token"]

    def onboard_or_login(self, username: str, password: str) -> None:
        """Create the owner on a new instance, or log in to an onboarded one."""
        try:
            steps = {step["step"]: step["done"] for step in self.request("GET", "/api/onboarding")}
        except urllib.error.HTTPError as err:
            # Once onboarding is complete Home Assistant no longer serves its API.
            if err.code != 404:  # noqa: PLR2004
                raise
            steps = {}
        if not steps.get("user", True):
            answer = self.request(
                "POST",
                "/api/onboarding/users",
                {
                    "client_id": self.client_id,
                    "name": "IoTShield developer",
                    "username": username,
                    "password": password,
                    "language": "en",
                },
            )
            self._token_from_code(answer["auth_code"])
        else:
            flow = self.request(
                "POST",
                "/auth/login_flow",
                {
                    "client_id": self.client_id,
                    "handler": ["homeassistant", None],
                    "redirect_uri": self.client_id,
                },
            )
            answer = self.request(
                "POST",
                f"/auth/login_flow/{flow['flow_id']}",
                {"username": username, "password": password, "client_id": self.client_id},
            )
            if answer.get("type") != "create_entry":
                sys.exit("cannot log in to the dev instance: delete config/.storage to start over")
            self._token_from_code(answer["result"])
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            ("integration", {"client_id": self.client_id, "redirect_uri": self.client_id}),
        ):
            if not steps.get(step, True):
                self.request("POST", f"/api/onboarding/{step}", body)

    def ensure_mqtt(self, host: str, port: int, username: str, password: str) -> None:
        """Point Home Assistant's MQTT integration at the dev broker, once."""
        entries = self.request("GET", "/api/config/config_entries/entry")
        if any(entry["domain"] == "mqtt" for entry in entries):
            return
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            sys.exit(f"unexpected MQTT flow step: {flow}")
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": host, "port": port, "username": username, "password": password},
        )
        if result.get("type") != "create_entry":
            sys.exit(f"MQTT setup failed: {result.get('errors') or result}")

    def flow_step(self, flow_id: str, data: dict[str, Any], *, options: bool = False) -> Any:
        """Submit one step of a config or options flow."""
        kind = "options/flow" if options else "flow"
        return self.request("POST", f"/api/config/config_entries/{kind}/{flow_id}", data)

    def ensure_node(self, node_id: str, state_dir: Path, key_dir: Path) -> str:
        """Pair a demo node through the IoTShield wizard once; return its entry id."""
        identity = load_or_create_identity(state_dir / f"{node_id}.identity.pem")
        key_file = key_dir / f"{node_id}.pem"
        for entry in self.request("GET", "/api/config/config_entries/entry"):
            # Home Assistant's REST listing of entries may not hold the unique id; the wizard
            # titles an entry with its node id.
            mine = (entry.get("unique_id") or entry.get("title")) == node_id
            if entry["domain"] == "iotshield" and mine:
                if key_file.exists():
                    return str(entry["entry_id"])
                # The node's copy of Home Assistant's key is gone: pair it again.
                self.request("DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}")
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "iotshield"})
        flow = self.flow_step(
            flow["flow_id"],
            {"node_id": node_id, "topic_prefix": "iotshield", "key_source": "generate"},
        )
        if flow.get("step_id") != "show_key":
            sys.exit(f"unexpected IoTShield flow step: {flow}")
        # What a user copies from the wizard into the node's configuration.
        key_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(flow["description_placeholders"]["public_key"] + "\n")
        flow = self.flow_step(flow["flow_id"], {})
        if flow.get("step_id") == "pair_confirm":
            flow = self.flow_step(flow["flow_id"], {"pairing": "pin"})
        else:
            flow = self.flow_step(
                flow["flow_id"], {"pairing": "paste", "node_key": node_key_b64(identity)}
            )
        if flow.get("type") != "create_entry":
            sys.exit(f"pairing {node_id} failed: {flow.get('errors') or flow}")
        entry_id = str(flow["result"]["entry_id"])
        self.set_options(
            entry_id, "alerts", {"min_severity": "medium", "hold_time": DEMO_HOLD_TIME}
        )
        return entry_id

    def set_options(self, entry_id: str, step: str, values: dict[str, Any]) -> Any:
        """Change one group of an entry's options through its options flow."""
        flow = self.request(
            "POST", "/api/config/config_entries/options/flow", {"handler": entry_id}
        )
        flow = self.flow_step(flow["flow_id"], {"next_step_id": step}, options=True)
        return self.flow_step(flow["flow_id"], {**form_defaults(flow), **values}, options=True)

    def ensure_llm(self, entry_id: str, url: str, model: str) -> str:
        """Use the local Ollama when one answers with the model; say what alerts will carry."""
        try:
            with urllib.request.urlopen(f"{url}/api/tags", timeout=3) as response:  # noqa: S310
                models = [m.get("name", "") for m in json.loads(response.read())["models"]]
        except (OSError, ValueError, KeyError):
            self.set_options(entry_id, "llm", {"llm_enabled": False})
            return f"no Ollama at {url}: alerts carry rule-based explanations"
        if model not in models:
            self.set_options(entry_id, "llm", {"llm_enabled": False})
            return (
                f"Ollama at {url} has no {model} (ollama pull {model}): "
                "alerts carry rule-based explanations"
            )
        result = self.set_options(entry_id, "llm", {"llm_enabled": True})
        if result.get("step_id") == "home_llm":
            # The first node to use the LLM sets up the home's, which every node then uses.
            values = {**form_defaults(result), "llm_url": url, "llm_model": model}
            result = self.flow_step(result["flow_id"], values, options=True)
        if result.get("type") != "create_entry":
            return f"Ollama at {url} refused: {result.get('errors')}; rule-based explanations"
        return f"alerts are explained by {model} on the local Ollama at {url}"

    def wait_for_state(self, entity_id: str, seconds: float) -> str:
        """Wait until an entity has a real value; return it."""
        deadline = time.monotonic() + seconds
        state = "missing"
        while time.monotonic() < deadline:
            try:
                state = self.request("GET", f"/api/states/{entity_id}")["state"]
            except urllib.error.HTTPError:
                state = "missing"
            if state not in ("missing", "unknown", "unavailable"):
                return str(state)
            time.sleep(1)
        sys.exit(f"{entity_id} has no value after {seconds:.0f} s (state: {state})")


def verify(instance: DevInstance) -> None:
    """Check as a user would: MQTT is loaded and the IoTShield wizard opens."""
    entries = instance.request("GET", "/api/config/config_entries/entry")
    states = {entry["domain"]: entry["state"] for entry in entries}
    if states.get("mqtt") != "loaded":
        sys.exit(f"MQTT is not loaded: {states}")
    flow = instance.request("POST", "/api/config/config_entries/flow", {"handler": "iotshield"})
    if flow.get("step_id") != "user":
        sys.exit(f"the IoTShield wizard did not open: {flow}")
    instance.request("DELETE", f"/api/config/config_entries/flow/{flow['flow_id']}")
    print("verified: MQTT connected to the dev broker, IoTShield wizard opens")


def main() -> None:
    """Bootstrap the instance from command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int)
    parser.add_argument("--mqtt-username")
    parser.add_argument("--mqtt-password-file", type=Path)
    parser.add_argument("--show-state", action="append", default=[], help="print an entity's state")
    parser.add_argument("--node", action="append", default=[], help="demo node id to pair")
    parser.add_argument("--state-dir", type=Path, help="the demo nodes' identity keys")
    parser.add_argument("--key-dir", type=Path, help="where the nodes' copies of HA's key go")
    parser.add_argument("--ollama-url", default="http://localhost:11434")
    parser.add_argument("--ollama-model", default="llama3.2:1b")
    parser.add_argument("--pair", action="store_true", help="pair the demo nodes")
    parser.add_argument("--wait-live", action="store_true", help="wait for live readings")
    parser.add_argument("--verify", action="store_true", help="check the result and report")
    args = parser.parse_args()
    instance = DevInstance(args.url)
    instance.wait_until_up(120)
    instance.onboard_or_login(args.username, args.password_file.read_text().strip())
    if args.mqtt_port is not None and args.mqtt_password_file is not None:
        instance.ensure_mqtt(
            args.mqtt_host,
            args.mqtt_port,
            args.mqtt_username,
            args.mqtt_password_file.read_text().strip(),
        )
    if args.verify:
        verify(instance)
    for node_id in args.node if args.pair else []:
        if args.state_dir is None or args.key_dir is None:
            sys.exit("--node needs --state-dir and --key-dir")
        entry_id = instance.ensure_node(node_id, args.state_dir, args.key_dir)
        print(f"{node_id}: {instance.ensure_llm(entry_id, args.ollama_url, args.ollama_model)}")
    for entity_id in args.show_state:
        print(json.dumps(instance.request("GET", f"/api/states/{entity_id}"), indent=2))
    if args.wait_live:
        for node_id in args.node:
            value = instance.wait_for_state(f"sensor.{node_id}_temperature", 90)
            print(f"{node_id}: live, temperature {value} °C")


if __name__ == "__main__":
    main()
