"""The reference node's MQTT side: announce, last will, QoS 1 telemetry, control commands."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
import json
import logging
from pathlib import Path
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import FIRMWARE_VERSION
from .privacy import NoiseSource, PrivacyConfig, privatize
from .simulation import Label, ScenarioCycle, ScenarioRun
from .telemetry import announce, encode_telemetry, load_public_key, seal_v1
from .v2 import (
    CommandRejectedError,
    StoredCounters,
    V2Sender,
    load_or_create_identity,
    node_key_b64,
    verify_command,
)

LOGGER = logging.getLogger(__name__)
MIN_INTERVAL = 1
MAX_INTERVAL = 86_400
MAX_EPSILON = 100.0


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None


class ReferenceNode:
    """One simulated IoTShield node speaking PROTOCOL.md v1 over MQTT."""

    def __init__(
        self,
        *,
        node_id: str,
        public_key: rsa.RSAPublicKey,
        broker: BrokerConfig,
        scenario: ScenarioRun | ScenarioCycle,
        interval: int = 5,
        privacy: PrivacyConfig | None = None,
        noise_seed: int | None = None,
        prefix: str = "iotshield",
        flat_topic: bool = False,
        protocol: int = 2,
        state_dir: Path | None = None,
    ) -> None:
        """Prepare the client; nothing is sent until start()."""
        self.node_id = node_id
        self.interval = interval
        self.privacy = privacy if privacy is not None else PrivacyConfig()
        self.seq = 0
        self._public_key = public_key
        self._scenario = scenario
        self._noise = NoiseSource(noise_seed)
        self._status_topic = f"{prefix}/{node_id}/status"
        self._data_topic = (
            f"{prefix}/sensors/data" if flat_topic else f"{prefix}/{node_id}/sensors/data"
        )
        self._command_topic = f"{prefix}/{node_id}/control/commands"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"iotshield-node-{node_id}"
        )
        if broker.username is not None:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.will_set(self._status_topic, "offline", qos=1, retain=True)
        # Reconnect with exponential backoff from 1 s up to a minute.
        self._client.reconnect_delay_set(min_delay=1, max_delay=60)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._broker = broker
        self.protocol = protocol
        self._lock = threading.Lock()
        self._v2: V2Sender | None = None
        if protocol == 2:  # noqa: PLR2004
            folder = state_dir or Path(".iotshield-node")
            identity = load_or_create_identity(folder / f"{node_id}.identity.pem")
            counters = StoredCounters.load(folder / f"{node_id}.counters.json")
            self._v2 = V2Sender(node_id, identity, public_key, counters)

    @property
    def labels(self) -> list[Label]:
        """Return the ground truth of what this node's scenario injected so far."""
        return self._scenario.labels

    def announce_payload(self) -> bytes:
        """Return the retained announce of PROTOCOL.md §5 (with the identity key for v2)."""
        node_key = node_key_b64(self._v2.identity) if self._v2 is not None else None
        doc = announce(
            self.node_id, FIRMWARE_VERSION, self.interval, self.privacy, self._public_key, node_key
        )
        return json.dumps(doc, separators=(",", ":")).encode()

    def _open_session(self, client: paho.Client) -> None:
        """Publish a new v2 session message (before any data of that session)."""
        if self._v2 is not None:
            client.publish(self._data_topic, self._v2.open_session(), qos=1, retain=False)

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after a loss."""
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=60)
        self._client.loop_start()

    def stop(self) -> None:
        """Say `offline` (a clean exit does not trigger the last will) and disconnect."""
        self._stop.set()
        self._wake.set()
        if self.connected.is_set():
            self._client.publish(
                self._status_topic, "offline", qos=1, retain=True
            ).wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        """Announce and listen for commands after every (re)connect."""
        if reason.is_failure:
            LOGGER.warning("node %s: broker refused the connection: %s", self.node_id, reason)
            return
        client.publish(self._status_topic, self.announce_payload(), qos=1, retain=True)
        with self._lock:
            # Every (re)connect starts a new session (PROTOCOL.md §9).
            self._open_session(client)
        client.subscribe(self._command_topic, qos=1)
        self.connected.set()
        LOGGER.info("node %s: connected and announced", self.node_id)

    def _on_disconnect(self, *_args: Any) -> None:
        """Note the loss; paho's loop reconnects with backoff."""
        self.connected.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        """Handle a control command (signed in v2, plain in v1)."""
        if self._v2 is not None:
            try:
                name, args = verify_command(
                    msg.payload, self._public_key, self.node_id, self._v2.counters
                )
            except CommandRejectedError as err:
                LOGGER.warning("node %s: refused a command: %s", self.node_id, err)
                return
            self._run_command(name, args)
            return
        try:
            command = json.loads(msg.payload)
            name = command["cmd"]
        except (ValueError, KeyError, TypeError):
            LOGGER.warning("node %s: ignored an unreadable command", self.node_id)
            return
        if name not in ("publish_now", "set_interval"):
            LOGGER.warning("node %s: ignored unknown command %r", self.node_id, name)
            return
        self._run_command(name, command)

    def _run_command(self, name: str, args: dict[str, Any]) -> None:
        """Execute a command that passed its checks."""
        LOGGER.info("node %s: command %s", self.node_id, name)
        if name == "set_epsilon":
            value = args.get("epsilon")
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and 0 <= value <= MAX_EPSILON
            ):
                self.privacy = replace(self.privacy, epsilon=float(value))
                self._client.publish(
                    self._status_topic, self.announce_payload(), qos=1, retain=True
                )
            return
        if name == "open_session":
            with self._lock:
                self._open_session(self._client)
            # Home Assistant asks because it is missing readings: send one under the new session.
            self._wake.set()
            return
        if name == "reboot":
            # A reboot ends the MQTT connection; the next connect opens a new session.
            self._client.reconnect()
            return
        if name == "set_ha_key":
            try:
                key = load_public_key(
                    b"-----BEGIN PUBLIC KEY-----\n"
                    + str(args.get("key", "")).encode()
                    + b"\n-----END PUBLIC KEY-----\n"
                )
            except (ValueError, TypeError):
                LOGGER.warning("node %s: set_ha_key without a usable key", self.node_id)
                return
            with self._lock:
                self._public_key = key
                if self._v2 is not None:
                    self._v2.ha_key = key
                self._client.publish(
                    self._status_topic, self.announce_payload(), qos=1, retain=True
                )
                self._open_session(self._client)
            return
        if name == "publish_now":
            self._wake.set()
        elif name == "set_interval":
            value = args.get("interval")
            if type(value) is int and MIN_INTERVAL <= value <= MAX_INTERVAL:
                self.interval = value
                self._client.publish(
                    self._status_topic, self.announce_payload(), qos=1, retain=True
                )
                self._wake.set()
            else:
                LOGGER.warning("node %s: ignored interval %r", self.node_id, value)
        else:
            LOGGER.warning("node %s: ignored unknown command %r", self.node_id, name)

    def publish_reading(self, when: datetime | None = None) -> paho.MQTTMessageInfo:
        """Read, add privacy noise, encrypt and publish one reading with QoS 1."""
        when = when or datetime.now(UTC)
        raw = self._scenario.reading(self.seq, when)
        noised = privatize(raw, self.privacy, self._noise)
        plaintext = encode_telemetry(
            self.node_id, self.seq % 2**32, int(when.timestamp()), noised, self.privacy
        )
        self.seq += 1
        with self._lock:
            if self._v2 is None:
                payload = seal_v1(plaintext, self._public_key)
            else:
                if self._v2.needs_new_session():
                    self._open_session(self._client)
                payload = self._v2.seal(plaintext)
            return self._client.publish(self._data_topic, payload, qos=1, retain=False)

    def run(self, count: int | None = None) -> None:
        """Publish every interval (or at once on publish_now) until stopped or `count` sent."""
        sent = 0
        while not self._stop.is_set() and (count is None or sent < count):
            if self.connected.wait(timeout=1):
                self.publish_reading()
                sent += 1
            else:
                continue
            self._wake.wait(timeout=self.interval)
            self._wake.clear()
