"""The reference node's MQTT side: announce, last will, QoS 1 telemetry, control commands."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
import json
import logging
from pathlib import Path
import threading
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import FIRMWARE_VERSION
from .privacy import NoiseSource, PrivacyConfig, privatize
from .simulation import Label, Recording, ScenarioCycle, ScenarioRun
from .telemetry import announce, encode_telemetry, fingerprint, load_public_key, seal_v1
from .v2 import (
    CommandRejectedError,
    StoredCounters,
    V2Sender,
    group_fours,
    identity_fingerprint,
    load_or_create_identity,
    node_key_b64,
    valid_challenge,
    verify_command,
)

LOGGER = logging.getLogger(__name__)
MIN_INTERVAL = 1
MAX_INTERVAL = 86_400
MAX_EPSILON = 100.0
MIN_HA_KEY_BITS = 2048
# §12.5: replayed open_session commands cost the node at most one session a second.
SESSION_REQUEST_SPACING = 1.0


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None


class ReferenceNode:
    """One simulated IoTShield node speaking PROTOCOL.md v2 revision 1 (or v1) over MQTT."""

    def __init__(
        self,
        *,
        node_id: str,
        public_key: rsa.RSAPublicKey,
        broker: BrokerConfig,
        scenario: ScenarioRun | ScenarioCycle | Recording,
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
        self._broker = broker
        self.protocol = protocol
        # Guards the session, the counters, the settings and the reading sequence, which the
        # run loop and paho's network thread (commands) both use.
        self._lock = threading.Lock()
        self._last_session_request = -SESSION_REQUEST_SPACING
        # A request within a second of the last is postponed, not dropped (§12.5).
        self._postponed: threading.Timer | None = None
        self._v2: V2Sender | None = None
        if protocol == 2:  # noqa: PLR2004
            folder = state_dir or Path(".iotshield-node")
            identity = load_or_create_identity(folder / f"{node_id}.identity.pem")
            counters = StoredCounters.load(folder / f"{node_id}.counters.json")
            self._v2 = V2Sender(node_id, identity, public_key, counters)
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"iotshield-node-{node_id}"
        )
        if broker.username is not None:
            self._client.username_pw_set(broker.username, broker.password)
        self._set_new_will()
        # Reconnect with exponential backoff from 1 s up to a minute.
        self._client.reconnect_delay_set(min_delay=1, max_delay=60)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

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

    def _announce(self) -> None:
        """Publish the retained announce."""
        self._client.publish(self._status_topic, self.announce_payload(), qos=1, retain=True)

    def _set_new_will(self) -> None:
        """Set the last will of the next connection: a fresh will token in v2 (§12.2)."""
        if self._v2 is None:
            payload = b"offline"
        else:
            with self._lock:
                payload = self._v2.new_will()
        self._client.will_set(self._status_topic, payload, qos=1, retain=True)

    def _open_session(self) -> None:
        """Publish a new v2 session, signed with the settings in force (caller holds the lock)."""
        if self._v2 is not None:
            payload = self._v2.open_session(
                interval=self.interval, privacy=self.privacy.announce(), firmware=FIRMWARE_VERSION
            )
            self._client.publish(self._data_topic, payload, qos=1, retain=False)

    def start(self) -> None:
        """Say which keys this node has, then connect in the background (paho reconnects)."""
        # What a user compares with the pairing wizard: both fingerprints, and the identity key
        # itself for pairing by hand.
        LOGGER.info(
            "node %s: Home Assistant key fingerprint %s",
            self.node_id,
            group_fours(fingerprint(self._public_key)),
        )
        if self._v2 is not None:
            identity = self._v2.identity
            LOGGER.info("node %s: identity key (node_key) %s", self.node_id, node_key_b64(identity))
            LOGGER.info(
                "node %s: identity fingerprint %s",
                self.node_id,
                group_fours(identity_fingerprint(identity)),
            )
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=60)
        self._client.loop_start()

    def stop(self) -> None:
        """Publish the last will's own message (a clean exit does not trigger it), disconnect."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._postponed is not None:
                self._postponed.cancel()
        if self.connected.is_set():
            with self._lock:
                payload = self._v2.will_payload() if self._v2 is not None else b"offline"
            self._client.publish(self._status_topic, payload, qos=1, retain=True).wait_for_publish(
                5
            )
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        """Listen for commands, announce and open a session after every (re)connect."""
        if reason.is_failure:
            LOGGER.warning("node %s: broker refused the connection: %s", self.node_id, reason)
            return
        # Commands first: the broker handles a connection's packets in order, so Home
        # Assistant's answer to the session cannot arrive before the subscription (§12.6).
        client.subscribe(self._command_topic, qos=1)
        self._announce()
        with self._lock:
            # Every (re)connect starts a new session (PROTOCOL.md §9).
            self._open_session()
        self.connected.set()
        LOGGER.info("node %s: connected and announced", self.node_id)

    def _on_disconnect(self, *_args: Any) -> None:
        """Draw the next connection's will token; paho's loop reconnects after this returns."""
        self.connected.clear()
        if not self._stop.is_set():
            # paho calls on_disconnect before its loop's reconnect() sends the next CONNECT,
            # which carries whatever will is set now (§12.6 step 2).
            self._set_new_will()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        """Handle a control command; nothing in one may end paho's network thread."""
        try:
            self._handle_command(msg.payload)
        except Exception:
            # An exception out of a callback stops paho's loop, and the node with it.
            LOGGER.exception("node %s: refused a command that could not be handled", self.node_id)

    def _handle_command(self, payload: bytes) -> None:
        """Check a command (signed and session-bound in v2, plain in v1) and run it."""
        if self._v2 is not None:
            with self._lock:
                tags = self._v2.session_tags()
            try:
                name, args = verify_command(
                    payload, self._public_key, self.node_id, self._v2.counters, tags
                )
            except CommandRejectedError as err:
                LOGGER.warning("node %s: refused a command: %s", self.node_id, err)
                return
            self._run_command(name, args)
            return
        try:
            command = json.loads(payload)
            name = command["cmd"]
        except (ValueError, KeyError, TypeError, RecursionError):
            LOGGER.warning("node %s: ignored an unreadable command", self.node_id)
            return
        # v1 commands are unauthenticated: only the harmless one is obeyed (§8).
        if name != "publish_now":
            LOGGER.warning("node %s: ignored v1 command %r", self.node_id, name)
            return
        self._wake.set()

    def _run_command(self, name: str, args: dict[str, Any]) -> None:
        """Execute a v2 command that passed its checks."""
        LOGGER.info("node %s: command %s", self.node_id, name)
        if name == "publish_now":
            self._wake.set()
        elif name == "set_interval":
            self._set_interval(args.get("interval"))
        elif name == "set_epsilon":
            self._set_epsilon(args.get("epsilon"))
        elif name == "open_session":
            self._requested_session(args)
        elif name == "set_ha_key":
            self._set_ha_key(args.get("key"))
        elif name == "reboot":
            # A reboot ends the connection without DISCONNECT: the broker sends the will, and
            # the next connection needs a new token. paho's own reconnect() skips on_disconnect.
            self.connected.clear()
            self._set_new_will()
            self._client.reconnect()
        else:
            LOGGER.warning("node %s: ignored unknown command %r", self.node_id, name)

    def _set_interval(self, value: Any) -> None:
        """Change the interval; the new session signs it, Home Assistant's only source (§12.1)."""
        if type(value) is not int or not MIN_INTERVAL <= value <= MAX_INTERVAL:
            LOGGER.warning("node %s: ignored interval %r", self.node_id, value)
            return
        with self._lock:
            self.interval = value
            self._announce()
            self._open_session()
        # The run loop starts waiting the new interval after one reading now.
        self._wake.set()

    def _set_epsilon(self, value: Any) -> None:
        """Change ε of the privacy layer; the new session signs it (§12.1)."""
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not 0 <= value <= MAX_EPSILON
        ):
            LOGGER.warning("node %s: ignored epsilon %r", self.node_id, value)
            return
        with self._lock:
            self.privacy = replace(self.privacy, epsilon=float(value))
            self._announce()
            self._open_session()
        # §12.6 step 4: a reading under the new ε at once, as after set_interval.
        self.publish_reading()

    def _requested_session(self, args: dict[str, Any]) -> None:
        """Record the challenge, open a session and publish a reading at once (§12.3)."""
        if "ch" in args:
            challenge = args["ch"]
            if not valid_challenge(challenge):
                LOGGER.warning("node %s: refused open_session with a bad challenge", self.node_id)
                return
            assert self._v2 is not None
            with self._lock:
                self._v2.challenge = challenge
        with self._lock:
            wait = self._last_session_request + SESSION_REQUEST_SPACING - time.monotonic()
            if wait > 0:
                # Several requests within the second merge into one, with the newest challenge.
                if self._postponed is None:
                    self._postponed = threading.Timer(wait, self._open_requested_session)
                    self._postponed.daemon = True
                    self._postponed.start()
                return
        self._open_requested_session()

    def _open_requested_session(self) -> None:
        """Open the requested session and publish a reading under it at once."""
        if self._stop.is_set():
            return
        with self._lock:
            self._postponed = None
            self._last_session_request = time.monotonic()
            self._open_session()
        # Home Assistant asks because it misses readings: one goes out now, under the new session.
        self.publish_reading()

    def _set_ha_key(self, text: Any) -> None:
        """Encrypt for a new Home Assistant key: re-announce, new session, a reading at once."""
        try:
            key = load_public_key(
                b"-----BEGIN PUBLIC KEY-----\n"
                + str(text).encode()
                + b"\n-----END PUBLIC KEY-----\n"
            )
        except (ValueError, TypeError):
            LOGGER.warning("node %s: set_ha_key without a usable key", self.node_id)
            return
        if key.key_size < MIN_HA_KEY_BITS:
            LOGGER.warning("node %s: set_ha_key with a %d-bit key", self.node_id, key.key_size)
            return
        with self._lock:
            self._public_key = key
            if self._v2 is not None:
                self._v2.ha_key = key
            self._announce()
            self._open_session()
        self.publish_reading()

    def publish_reading(self, when: datetime | None = None) -> paho.MQTTMessageInfo:
        """Read, add privacy noise, encrypt and publish one reading with QoS 1."""
        when = when or datetime.now(UTC)
        with self._lock:
            raw = self._scenario.reading(self.seq, when)
            noised = privatize(raw, self.privacy, self._noise)
            plaintext = encode_telemetry(
                self.node_id, self.seq % 2**32, int(when.timestamp()), noised, self.privacy
            )
            self.seq += 1
            if self._v2 is None:
                payload = seal_v1(plaintext, self._public_key)
            else:
                if self._v2.needs_new_session():
                    self._open_session()
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
