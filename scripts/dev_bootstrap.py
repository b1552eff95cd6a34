"""Prepare a freshly started dev Home Assistant over its REST API: owner account and MQTT.

Run by scripts/develop; uses only the standard library so it works in any lane's Python.
Idempotent: an instance that is already onboarded and has MQTT is left as it is.
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
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            text = response.read().decode()
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
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--mqtt-username", required=True)
    parser.add_argument("--mqtt-password-file", type=Path, required=True)
    parser.add_argument("--verify", action="store_true", help="check the result and report")
    args = parser.parse_args()
    instance = DevInstance(args.url)
    instance.wait_until_up(120)
    instance.onboard_or_login(args.username, args.password_file.read_text().strip())
    instance.ensure_mqtt(
        args.mqtt_host,
        args.mqtt_port,
        args.mqtt_username,
        args.mqtt_password_file.read_text().strip(),
    )
    if args.verify:
        verify(instance)


if __name__ == "__main__":
    main()
