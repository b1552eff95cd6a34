"""Push coordinator: encrypted MQTT telemetry in, validated readings and availability out."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.event import async_call_later, async_track_point_in_utc_time
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .alerts import NodeAlerts
from .anomaly import AnomalyDetector, Verdict, unusual, with_anomalies
from .const import (
    BASELINE_SAVE_INTERVAL,
    CONF_ANOMALY_LEVEL,
    CONF_KEY_UNCONFIRMED,
    CONF_LEGACY_TOPIC,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_NODE_REV,
    CONF_PREVIOUS_KEY_UNTIL,
    CONF_PREVIOUS_PRIVATE_KEY,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    CONF_THRESHOLDS,
    CONF_TOPIC_PREFIX,
    DEFAULT_ANOMALY_LEVEL,
    DEFAULT_PUBLISH_INTERVAL,
    DEFAULT_STALE_INTERVALS,
    DOMAIN,
    FIRST_SESSION_FALLBACK,
    KEY_MISMATCH_THRESHOLD,
    LOGGER,
    MAX_PENDING_ENVELOPES,
    MAX_SESSION_CHECKS_PER_SECOND,
    MAX_V1_DECRYPTIONS_PER_SECOND,
    REJECTION_LOG_INTERVAL,
    SESSION_CHECK_BURST,
    SESSION_REQUEST_INTERVAL,
    STALE_SESSION_REQUEST_INTERVAL,
    STATE_SAVE_DELAY,
    V1_COMMANDS,
    V1_DECRYPTION_BURST,
    YIELD_AFTER,
)
from .incidents import Incident
from .keys import format_fingerprint
from .protocol import (
    MAX_ENVELOPE_BYTES,
    Announce,
    NodePrivacy,
    PayloadRejected,
    Rejection,
    Telemetry,
    V1Decoder,
    command_topic,
    data_topic,
    legacy_data_topic,
    parse_status,
    status_topic,
)
from .protocol_v2 import (
    MAX_V2_ENVELOPE_BYTES,
    REVISION_1,
    DataMessage,
    NodeKeyError,
    SessionInfo,
    SessionMessage,
    StaleSession,
    V2Receiver,
    canonical_node_key,
    load_node_key,
    node_key_der_b64,
    parse_v2_envelope,
    sign_command,
    will_hash,
)
from .rejections import Budget, RejectionTracker
from .severity import Assessment, Level, SeverityEngine, ThresholdError, Thresholds

type IoTShieldConfigEntry = ConfigEntry[IoTShieldCoordinator]


@dataclass(frozen=True, slots=True)
class IoTShieldData:
    """A node's latest valid reading, when it was received, its severity and open incident."""

    telemetry: Telemetry | None = None
    received_at: datetime | None = None
    assessment: Assessment | None = None
    incident: Incident | None = None
    # The open incident, or else the last one resolved since the entry was loaded.
    latest_incident: Incident | None = None
    # The anomaly detector's verdict on the last complete minute (None while it learns).
    anomaly: Verdict | None = None
    # How much of the daily baseline the detector has learned, 0–1.
    learned: float = 0.0


def readings_of(telemetry: Telemetry) -> dict[str, float | bool | None]:
    """Return a reading's values by sensor name, as events and explanations show them."""
    return {
        "temperature": telemetry.temperature,
        "humidity": telemetry.humidity,
        "gas": telemetry.gas,
        "light": telemetry.light,
        "flame": telemetry.flame,
        "motion": telemetry.motion,
    }


def thresholds_of(entry: ConfigEntry) -> Thresholds:
    """Return the entry's thresholds; the defaults when the stored ones cannot work."""
    try:
        thresholds = Thresholds.from_dict(entry.options.get(CONF_THRESHOLDS))
        thresholds.validate()
    except (ThresholdError, TypeError, ValueError) as err:
        LOGGER.warning("Thresholds of %s cannot work (%s); using the defaults", entry.title, err)
        return Thresholds()
    return thresholds


async def _share_loop(turn: float) -> float:
    """Give the event loop back once a turn has worked YIELD_AFTER; return the turn's start.

    A burst of messages is worked off in batches; without this, one batch would hold the loop
    for as long as all its entity updates take.
    """
    now = time.perf_counter()
    if now - turn < YIELD_AFTER:
        return turn
    await asyncio.sleep(0)
    return time.perf_counter()


def _as_bytes(payload: str | bytes | bytearray) -> bytes:
    """Return an MQTT payload as bytes (subscriptions use encoding=None, so it already is)."""
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


def entry_settings(entry: ConfigEntry) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the parts of an entry that its coordinator is built from."""
    return dict(entry.data), dict(entry.options)


def key_mismatch_issue_id(node_id: str) -> str:
    """Return the repair issue id raised when a node's data cannot be decrypted."""
    return f"key_mismatch_{node_id}"


def announced_key_issue_id(node_id: str) -> str:
    """Return the repair issue id raised when a node announces another key's fingerprint."""
    return f"announced_key_mismatch_{node_id}"


def impersonation_issue_id(node_id: str) -> str:
    """Return the repair issue id raised when a session is not signed by the paired node key."""
    return f"impersonation_{node_id}"


def firmware_update_issue_id(node_id: str) -> str:
    """Return the repair issue id shown while a v2 node speaks revision 0 (§12)."""
    return f"firmware_update_{node_id}"


def unauthenticated_issue_id(node_id: str) -> str:
    """Return the repair issue id shown while a node uses unauthenticated wire format v1."""
    return f"unauthenticated_{node_id}"


def state_store(hass: HomeAssistant, entry: ConfigEntry) -> Store[dict[str, Any]]:
    """Return the store of a node's session keys and counters."""
    # It holds v2 session keys: readable by Home Assistant's user only (0600).
    return Store(hass, 1, f"{DOMAIN}.{entry.entry_id}", private=True)


def baseline_store(hass: HomeAssistant, entry: ConfigEntry) -> Store[dict[str, Any]]:
    """Return the store of what the anomaly detector learned about a node's home."""
    # What a home's rooms usually read says when people are in: private too.
    return Store(hass, 1, f"{DOMAIN}.{entry.entry_id}.baseline", private=True)


def anomaly_cap(entry: ConfigEntry) -> Level:
    """Return the highest severity anomalies alone may raise (NORMAL when switched off)."""
    name = str(entry.options.get(CONF_ANOMALY_LEVEL, DEFAULT_ANOMALY_LEVEL))
    return Level.NORMAL if name == "off" else Level[name.upper()]


class IoTShieldCoordinator(DataUpdateCoordinator[IoTShieldData]):
    """Receives one node's MQTT traffic and keeps its entities up to date."""

    config_entry: IoTShieldConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: IoTShieldConfigEntry,
        decoder: V1Decoder | V2Receiver,
        key_fingerprint: str,
        store: Store[dict[str, Any]],
        stored: dict[str, Any],
        signing_key: rsa.RSAPrivateKey,
        baseline: tuple[Store[dict[str, Any]], dict[str, Any] | None],
        pending_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        """Set up state; nothing is subscribed until async_start."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.data[CONF_NODE_ID]}",
            update_interval=None,
        )
        self.node_id: str = entry.data[CONF_NODE_ID]
        self.prefix: str = entry.data[CONF_TOPIC_PREFIX]
        self.key_fingerprint = key_fingerprint
        # What this instance was built from; the entry also changes for other reasons.
        self.loaded_settings = entry_settings(entry)
        self._decoder = decoder
        self._store = store
        self._command_ctr = int(stored.get("command_ctr", 0))
        self._signing_key = signing_key
        # A rotated key the node has not confirmed yet (it decrypts, but signs nothing).
        self._pending_key = pending_key
        self._last_session_request: float | None = None
        self.rejections = RejectionTracker(REJECTION_LOG_INTERVAL)
        self._decryptions = Budget(MAX_V1_DECRYPTIONS_PER_SECOND, V1_DECRYPTION_BURST)
        self._session_checks = Budget(MAX_SESSION_CHECKS_PER_SECOND, SESSION_CHECK_BURST)
        self.severity = SeverityEngine(thresholds_of(entry))
        self._baseline_store, stored_baseline = baseline
        self.anomaly = AnomalyDetector()
        if stored_baseline is not None and not self.anomaly.restore(stored_baseline):
            LOGGER.warning(
                "The learned baseline of %s could not be read; learning anew", entry.title
            )
        self._anomaly_cap = anomaly_cap(entry)
        self._baseline_saved_at = time.monotonic()
        self._learned = self.anomaly.progress()
        self._accepting = False
        self.alerts = NodeAlerts(
            hass, entry, self.node_id, stored.get("incident"), self._on_alerts_changed
        )
        self.data = IoTShieldData(
            incident=self.alerts.incident,
            latest_incident=self.alerts.incident,
            learned=self._learned,
        )
        self.announce: Announce | None = None
        # What a revision-1 node signed into its latest session (§12.1).
        self.session_info: SessionInfo | None = None
        self._interval_warned = False
        self._upgrade_offered = False
        self._first_session_asked = False
        # Set when a node that just started opened a session without our challenge: its
        # readings until it answers are expected to be refused, and are not counted.
        self._awaiting_answer = False
        self._postponed_request: CALLBACK_TYPE | None = None
        self._online: bool | None = None
        self._stale = False
        self._was_available = True
        self._cancel_stale: CALLBACK_TYPE | None = None
        self._cancel_key_removal: CALLBACK_TYPE | None = None
        self._pending: deque[tuple[bytes, bool]] = deque()
        self._draining = False
        self._rejection_listeners: list[Callable[[], None]] = []

    @property
    def interval(self) -> int:
        """Return the publish interval configured in Home Assistant.

        Never the node's word: an unsigned announce of 86400 would hide a silenced node
        (PROTOCOL.md §5).
        """
        return int(self.config_entry.options.get(CONF_PUBLISH_INTERVAL, DEFAULT_PUBLISH_INTERVAL))

    @property
    def node_interval(self) -> int | None:
        """Return the interval the node says it publishes at (signed for revision 1)."""
        if self.session_info is not None:
            return self.session_info.interval
        return None if self.announce is None else self.announce.interval

    @property
    def receiver(self) -> V2Receiver | None:
        """Return the v2 receiver of this node (None for a v1 node)."""
        return self._decoder if isinstance(self._decoder, V2Receiver) else None

    @property
    def revision(self) -> int:
        """Return the wire format v2 revision this node was seen to speak (0 for v1 or old)."""
        return self._decoder.revision if isinstance(self._decoder, V2Receiver) else 0

    @property
    def stale_after(self) -> float:
        """Return how long without a valid reading makes the node unavailable."""
        intervals = self.config_entry.options.get(CONF_STALE_INTERVALS, DEFAULT_STALE_INTERVALS)
        return float(self.interval * int(intervals))

    @property
    def node_available(self) -> bool:
        """Say whether the node is online (or unknown) and not stale."""
        return self._online is not False and not self._stale

    async def async_start(self) -> None:
        """Subscribe to the node's topics and start the staleness clock."""
        entry = self.config_entry
        subscriptions: list[tuple[str, Callable[[mqtt.ReceiveMessage], None]]] = [
            (data_topic(self.prefix, self.node_id), self._on_data),
            (status_topic(self.prefix, self.node_id), self._on_status),
        ]
        # The flat topic is the seed's v1 form; v2 sessions are per node.
        if entry.options.get(CONF_LEGACY_TOPIC, False) and isinstance(self._decoder, V1Decoder):
            subscriptions.append((legacy_data_topic(self.prefix), self._on_legacy_data))
        for topic, handler in subscriptions:
            entry.async_on_unload(
                await mqtt.async_subscribe(self.hass, topic, handler, qos=1, encoding=None)
            )
        entry.async_on_unload(self._stop_stale_clock)
        entry.async_on_unload(self._cancel_postponed_request)
        entry.async_on_unload(
            self.hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, self._on_homeassistant_stop)
        )
        self._arm_stale_clock()
        self._schedule_previous_key_removal()
        entry.async_on_unload(self._cancel_previous_key_removal)
        await self.alerts.async_start()
        if isinstance(self._decoder, V2Receiver):
            entry.async_on_unload(
                mqtt.async_subscribe_connection_status(self.hass, self._on_mqtt_connection)
            )
            self._ask_first_session_when_subscribed()

    @callback
    def _on_mqtt_connection(self, connected: bool) -> None:
        """Allow for a session the node opens while Home Assistant has no broker connection."""
        # A node that reconnects first after a broker restart opens its session before Home
        # Assistant listens again: that session is lost, and readings in it are no attack.
        if not connected and isinstance(self._decoder, V2Receiver):
            self._decoder.listening_interrupted()

    @callback
    def _ask_first_session_when_subscribed(self) -> None:
        """Ask for a fresh session once the broker has our subscriptions, never before.

        A node answers at once; asked before the broker knows that Home Assistant listens,
        its session and reading would go to nobody. Newer Home Assistant says when the
        subscription is acknowledged; otherwise a retained status message proves it (it is
        sent only on a new subscription), and a timer covers a node that never announced.
        """
        on_done = getattr(mqtt, "async_on_subscribe_done", None)
        if on_done is not None:
            self.config_entry.async_on_unload(
                on_done(
                    self.hass,
                    data_topic(self.prefix, self.node_id),
                    1,
                    self._ask_first_session,
                )
            )
        self.config_entry.async_on_unload(
            async_call_later(self.hass, FIRST_SESSION_FALLBACK, self._ask_first_session_later)
        )

    @callback
    def _ask_first_session_later(self, _now: datetime) -> None:
        """Ask for the first session when neither the client nor the broker said more."""
        self._ask_first_session()

    @callback
    def _ask_first_session(self) -> None:
        """Send the first open_session of this run, once (it carries a fresh challenge)."""
        if self._first_session_asked:
            return
        self._first_session_asked = True
        self._request_session(rate_limited=False)

    @callback
    def async_add_rejection_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call `listener` whenever a payload is rejected; returns the remover."""
        self._rejection_listeners.append(listener)

        @callback
        def remove() -> None:
            self._rejection_listeners.remove(listener)

        return remove

    @callback
    def _on_data(self, msg: mqtt.ReceiveMessage) -> None:
        """Queue an envelope from the node's own topic."""
        self._enqueue(_as_bytes(msg.payload), legacy=False)

    @callback
    def _on_legacy_data(self, msg: mqtt.ReceiveMessage) -> None:
        """Queue an envelope from the seed's flat topic, where other nodes publish too."""
        self._enqueue(_as_bytes(msg.payload), legacy=True)

    @callback
    def _enqueue(self, payload: bytes, *, legacy: bool) -> None:
        """Size-check a payload and hand it to the decrypting worker; never raises."""
        limit = (
            MAX_V2_ENVELOPE_BYTES if isinstance(self._decoder, V2Receiver) else MAX_ENVELOPE_BYTES
        )
        if len(payload) > limit:
            self._reject(PayloadRejected(Rejection.OVERSIZE, f"{len(payload)} bytes"))
            return
        if len(self._pending) >= MAX_PENDING_ENVELOPES:
            self._reject(PayloadRejected(Rejection.OVERLOADED, "decryption queue full"))
            return
        self._pending.append((payload, legacy))
        if not self._draining:
            self._draining = True
            self.config_entry.async_create_background_task(
                self.hass, self._drain(), f"{DOMAIN} {self.node_id} decrypt"
            )

    async def _drain(self) -> None:
        """Decode queued envelopes in arrival order and apply them."""
        try:
            while self._pending:
                batch = list(self._pending)
                self._pending.clear()
                if isinstance(self._decoder, V2Receiver):
                    await self._drain_v2(self._decoder, [payload for payload, _ in batch])
                else:
                    await self._drain_v1(self._decoder, batch)
        finally:
            self._draining = False

    async def _drain_v1(self, decoder: V1Decoder, batch: list[tuple[bytes, bool]]) -> None:
        """Decrypt v1 envelopes in the executor: each costs an RSA private-key operation."""
        # cryptography holds the GIL during RSA, so even in the executor every decryption
        # slows the event loop: a forged flood gets a bounded number of them. (The budget
        # is only touched by this one drain at a time.)
        results = await self.hass.async_add_executor_job(
            decoder.decode_batch,
            [payload for payload, _ in batch],
            lambda: self._decryptions.take(time.monotonic()),
        )
        turn = time.perf_counter()
        for (_, legacy), result in zip(batch, results, strict=True):
            turn = await _share_loop(turn)
            if isinstance(result, Telemetry):
                self._accept(result)
            elif legacy and result.reason is Rejection.NODE_MISMATCH:
                # On the shared flat topic, another node's reading is not an error.
                continue
            else:
                self._reject(result)

    async def _drain_v2(self, receiver: V2Receiver, payloads: list[bytes]) -> None:
        """Open sessions in the executor (RSA + ECDSA) and data on the loop (AES-GCM only)."""
        turn = time.perf_counter()
        for payload in payloads:
            turn = await _share_loop(turn)
            msg: SessionMessage | DataMessage | None = None
            try:
                msg = parse_v2_envelope(payload)
                if isinstance(msg, SessionMessage):
                    # Refuse a replayed session before paying for its cryptography.
                    receiver.check_session_fresh(msg)
                    self._spend_session_check()
                    key = await self.hass.async_add_executor_job(receiver.verify_session, msg)
                    self._session_accepted(receiver.accept_session(msg, key))
                    continue
                telemetry = receiver.open_data(msg)
            except StaleSession as err:
                # The node opened it before it heard our challenge (it just started, or Home
                # Assistant did): ask again at once. A recorded one replayed gets the same
                # answer, at most every two seconds, and is counted.
                if err.unchallenged:
                    LOGGER.debug("Node %s: %s", self.node_id, err)
                    self._awaiting_answer = True
                else:
                    self._reject(err)
                self._request_session(interval=STALE_SESSION_REQUEST_INTERVAL)
                continue
            except PayloadRejected as err:
                if err.reason is Rejection.UNKNOWN_SESSION and isinstance(msg, DataMessage):
                    expected = self._session_expected(receiver, msg)
                    # Rate-limited: also when the answer to an earlier request was lost.
                    self._request_session()
                    if expected:
                        # Data of the node's session from before Home Assistant asked for a
                        # new one (at start, pairing, after its unchallenged session or after
                        # the broker was out of reach): expected and not decryptable; the new
                        # session is on its way.
                        LOGGER.debug("Node %s: waiting for its new session (%s)", self.node_id, err)
                        continue
                self._reject(err)
                if isinstance(msg, SessionMessage):
                    self._session_refused(err)
                continue
            if receiver.revision < REVISION_1:
                # Only a revision-0 session outlives a restart, so only its counter guards
                # against replays then. A revision-1 session dies with the receiver; writing
                # its counter at every reading would wear an SD card for nothing.
                self._save_state()
            self._accept(telemetry)

    def _spend_session_check(self) -> None:
        """Refuse a session when this topic used up its budget of signature checks."""
        if not self._session_checks.take(time.monotonic()):
            raise PayloadRejected(Rejection.RATE_LIMITED, "session checks")

    def _session_expected(self, receiver: V2Receiver, msg: DataMessage) -> bool:
        """Say whether data of an unknown session are explained: a session asked for or missed."""
        # Waiting for a session it asked for, Home Assistant expects data of older ones.
        return (
            receiver.awaiting_session
            or self._awaiting_answer
            or receiver.missed_while_away(msg.sid)
        )

    @callback
    def _request_session(
        self, *, rate_limited: bool = True, interval: float = SESSION_REQUEST_INTERVAL
    ) -> None:
        """Ask a v2 node to open a session, at most once per `interval` seconds.

        A request within the interval is postponed to its end, not dropped: a node that
        restarted just after the last request would otherwise never be asked again.
        """
        now = time.monotonic()
        last = self._last_session_request
        if rate_limited and last is not None and now - last < interval:
            if self._postponed_request is None:
                self._postponed_request = async_call_later(
                    self.hass, last + interval - now, self._request_postponed_session
                )
            return
        self._last_session_request = now
        self.config_entry.async_create_background_task(
            self.hass, self._async_request_session(), f"{DOMAIN} {self.node_id} open_session"
        )

    @callback
    def _request_postponed_session(self, _now: datetime) -> None:
        """Send the request the rate limit postponed (a session accepted meanwhile cancels it)."""
        self._postponed_request = None
        self._request_session(rate_limited=False)

    @callback
    def _cancel_postponed_request(self) -> None:
        """Drop a postponed session request (the entry unloads)."""
        if self._postponed_request is not None:
            self._postponed_request()
            self._postponed_request = None

    @callback
    def _session_accepted(self, info: SessionInfo | None) -> None:
        """Apply a newly accepted session: what a revision-1 node signed, and the repairs."""
        ir.async_delete_issue(self.hass, DOMAIN, impersonation_issue_id(self.node_id))
        self._awaiting_answer = False
        self._cancel_postponed_request()
        self._save_state()
        if info is None:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                firmware_update_issue_id(self.node_id),
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="firmware_update",
                translation_placeholders={"node_id": self.node_id},
            )
            return
        ir.async_delete_issue(self.hass, DOMAIN, firmware_update_issue_id(self.node_id))
        entry = self.config_entry
        if entry.data.get(CONF_NODE_REV, 0) < self.revision:
            # Pinned so that a revision-0 session of this node is a downgrade from now on,
            # also after a restart. Not a settings change: no reload.
            self._update_entry_data({**entry.data, CONF_NODE_REV: self.revision})
        self.session_info = info
        self._confirm_key(info.key_fp)
        self._check_announced_key(info.key_fp)
        self._apply_noise(info.privacy)
        self._update_firmware(info.firmware)
        if info.interval > self.interval and not self._interval_warned:
            self._interval_warned = True
            LOGGER.warning(
                "IoTShield node %s publishes every %d s, but Home Assistant expects a reading "
                "every %d s and shows the node unavailable after %d s without one: set the "
                "node's publish interval in its options",
                self.node_id,
                info.interval,
                self.interval,
                int(self.stale_after),
            )
        self.async_update_listeners()

    @callback
    def _apply_noise(self, privacy: NodePrivacy | None) -> None:
        """Account for the (bounded, §7.6) noise the node adds."""
        if privacy is None:
            return
        # Noisier readings need wider hysteresis before a severity may drop.
        self.severity.set_noise(privacy.sigma, privacy.motion_flip)
        # The detector judges a minute's mean against the noise it must carry.
        self.anomaly.set_noise(privacy.sigma, privacy.motion_flip)

    async def _async_request_session(self) -> None:
        """Send open_session with a fresh challenge; a node that is offline does not answer."""
        if not isinstance(self._decoder, V2Receiver):
            return
        try:
            await self.async_send_command("open_session", {"ch": self._decoder.issue_challenge()})
        except HomeAssistantError as err:
            LOGGER.debug("Could not ask node %s for a session: %s", self.node_id, err)

    def session_summary(self) -> dict[str, Any] | None:
        """Describe the v2 sessions Home Assistant holds, without their keys."""
        if not isinstance(self._decoder, V2Receiver):
            return None
        state = self._decoder.state
        return {
            "highest_sid": state.highest_sid,
            "current": {"sid": state.current.sid, "max_ctr": state.current.max_ctr}
            if state.current
            else None,
            "previous": {"sid": state.previous.sid, "max_ctr": state.previous.max_ctr}
            if state.previous
            else None,
        }

    def _stored_data(self) -> dict[str, Any]:
        """Return what must survive a restart: v2 session state and the command counter."""
        data: dict[str, Any] = {
            "command_ctr": self._command_ctr,
            "incident": self.alerts.tracker.as_dict(),
        }
        if isinstance(self._decoder, V2Receiver):
            data["v2"] = self._decoder.state.as_dict()
        return data

    @callback
    def _save_state(self) -> None:
        """Write the state soon; Home Assistant also flushes it when it stops."""
        # Taken now, on the event loop: the store serialises it in a worker thread, while the
        # loop goes on changing the live objects.
        snapshot = self._stored_data()
        self._store.async_delay_save(lambda: snapshot, STATE_SAVE_DELAY)

    async def async_flush(self, *, baseline: bool = True) -> None:
        """Write the state now, and the learned baseline unless told not to (on unload)."""
        await self._store.async_save(self._stored_data())
        if baseline:
            await self._baseline_store.async_save(self.anomaly.as_dict())

    @callback
    def _save_baseline(self, delay: float) -> None:
        """Write the learned baseline after `delay` seconds, as it is now."""
        self._baseline_saved_at = time.monotonic()
        snapshot = self.anomaly.as_dict()
        self._baseline_store.async_delay_save(lambda: snapshot, delay)

    @callback
    def async_relearn(self) -> None:
        """Forget this home's learned normal and learn it anew (the node was moved)."""
        LOGGER.info("Learning the normal of %s anew", self.config_entry.title)
        self.anomaly.reset()
        self._learned = self.anomaly.progress()
        self._save_baseline(STATE_SAVE_DELAY)
        self.data = replace(self.data, anomaly=None, learned=self._learned)
        self.async_update_listeners()

    @callback
    def _on_homeassistant_stop(self, _event: Event) -> None:
        """Have the baseline written with the final writes of a stopping Home Assistant."""
        self._save_baseline(0)

    async def async_send_command(self, command: str, args: dict[str, Any]) -> None:
        """Publish a command to the node: signed for v2, plain (and limited) for v1."""
        if isinstance(self._decoder, V2Receiver):
            # Never below a previous counter, even if the stored one was lost.
            self._command_ctr = max(self._command_ctr + 1, int(time.time() * 1000))
            ctr = self._command_ctr
            # Bound to the current session, so the node refuses it in a later life (§12.5).
            tag = self._decoder.current_session_tag()
            # Only the counter must be on disk before the command leaves.
            await self.async_flush(baseline=False)
            payload = await self.hass.async_add_executor_job(
                sign_command,
                self._signing_key,
                self.node_id,
                ctr,
                command,
                args,
                tag,
            )
        else:
            if command not in V1_COMMANDS:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="command_needs_v2",
                    translation_placeholders={"command": command, "node_id": self.node_id},
                )
            payload = json.dumps({"cmd": command, **args}, separators=(",", ":")).encode()
        await mqtt.async_publish(
            self.hass, command_topic(self.prefix, self.node_id), payload, qos=1, retain=False
        )

    @callback
    def _accept(self, telemetry: Telemetry) -> None:
        """Publish a valid reading to the entities and reset the staleness clock."""
        self.rejections.record_success()
        ir.async_delete_issue(self.hass, DOMAIN, key_mismatch_issue_id(self.node_id))
        # A valid reading newer than an `offline` proves the node is back (§5).
        self._online = True
        self._stale = False
        self._arm_stale_clock()
        readings: dict[str, float | bool | None] = {
            "t": telemetry.temperature,
            "h": telemetry.humidity,
            "g": telemetry.gas,
            "l": telemetry.light,
            "f": telemetry.flame,
            "m": telemetry.motion,
        }
        assessment = self.severity.assess(readings)
        # Hours of the day are the home's own: local time. A verdict comes once a minute.
        minutes = self.anomaly.minutes
        self.anomaly.add(dt_util.now(), readings)
        if self.anomaly.minutes != minutes:
            self._learned = self.anomaly.progress()
            now = time.monotonic()
            if now - self._baseline_saved_at >= BASELINE_SAVE_INTERVAL:
                self._save_baseline(STATE_SAVE_DELAY)
        verdict = self.anomaly.latest
        assessment = with_anomalies(assessment, verdict, self._anomaly_cap)
        self._accepting = True
        try:
            self.alerts.async_observe(readings_of(telemetry), assessment, unusual(verdict))
        finally:
            self._accepting = False
        self.async_set_updated_data(
            IoTShieldData(
                telemetry,
                dt_util.utcnow(),
                assessment,
                self._incident_copy(),
                self._latest_incident_copy(),
                verdict,
                self._learned,
            )
        )
        self._log_availability()

    def _incident_copy(self) -> Incident | None:
        """Return a copy of the open incident for the entities."""
        incident = self.alerts.incident
        return None if incident is None else replace(incident)

    def _latest_incident_copy(self) -> Incident | None:
        """Return a copy of the open incident, or else of the last resolved one."""
        incident = self.alerts.incident or self.alerts.tracker.last_resolved
        return None if incident is None else replace(incident)

    @callback
    def _on_alerts_changed(self) -> None:
        """Save the incident and, outside a reading, show its change on the entities."""
        self._save_state()
        if not self._accepting:
            self.data = replace(
                self.data,
                incident=self._incident_copy(),
                latest_incident=self._latest_incident_copy(),
            )
            self.async_update_listeners()

    @callback
    def _reject(self, err: PayloadRejected) -> None:
        """Count a rejection, log it sparingly and raise a repair when keys disagree."""
        if self.rejections.record(err.reason, time.monotonic()):
            LOGGER.warning(
                "Rejected a payload from IoTShield node %s (%s); further rejections "
                "of this kind are counted but not logged for %d minutes",
                self.node_id,
                err,
                int(REJECTION_LOG_INTERVAL // 60),
            )
        if (
            err.reason is Rejection.DECRYPT_FAILED
            and self.rejections.consecutive_decrypt_failures == KEY_MISMATCH_THRESHOLD
        ):
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                key_mismatch_issue_id(self.node_id),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="key_mismatch",
                translation_placeholders={
                    "node_id": self.node_id,
                    "count": str(KEY_MISMATCH_THRESHOLD),
                },
            )
            # The re-pair flow shows Home Assistant's key again (and the node's identity).
            self.config_entry.async_start_reauth(self.hass)
        for listener in list(self._rejection_listeners):
            listener()

    @callback
    def _on_status(self, msg: mqtt.ReceiveMessage) -> None:
        """Track the node's online/offline state and what it announces (unsigned: bounded)."""
        payload = _as_bytes(msg.payload)
        if not payload:
            # An empty retained message only clears the topic.
            return
        announce = parse_status(payload)
        if announce is None:
            self._reject(PayloadRejected(Rejection.MALFORMED, "unreadable status message"))
            return
        if msg.retain and isinstance(self._decoder, V2Receiver):
            # A retained message comes only with a new subscription: the broker has ours.
            self._ask_first_session()
        if announce.informative:
            # Kept for discovery, diagnostics and the re-pair flow; a token is never kept.
            self.announce = replace(announce, will=None)
        if self.revision >= REVISION_1:
            self._on_status_of_signing_node(announce)
        else:
            self._on_status_of_legacy_node(announce)
        self._log_availability()
        self.async_update_listeners()

    @callback
    def _on_status_of_signing_node(self, announce: Announce) -> None:
        """Take only an `offline` carrying the will token of the current session (§12.2)."""
        if announce.online:
            # Availability of a revision-1 node follows its authenticated readings.
            return
        info = self.session_info
        if info is None:
            # No session of this run yet: the token cannot be judged, and nothing changes.
            LOGGER.debug("Node %s: offline status before any session", self.node_id)
            return
        if announce.will is None or will_hash(announce.will) != info.will:
            self._reject(
                PayloadRejected(
                    Rejection.UNAUTHENTICATED_STATUS, "offline without the node's will token"
                )
            )
            return
        self._online = False

    @callback
    def _on_status_of_legacy_node(self, announce: Announce) -> None:
        """Use what a v1 or revision-0 node announces, within the bounds of §5 and §7.6."""
        if (
            isinstance(self._decoder, V1Decoder)
            and canonical_node_key(announce.node_key) is not None
            and not self._upgrade_offered
        ):
            # A node paired as v1 that has an identity key can sign: offer to re-pair it as
            # v2, keeping its device, entities and history. Once per start of the entry.
            self._upgrade_offered = True
            self.config_entry.async_start_reauth(self.hass)
        was_online = self._online
        self._online = announce.online
        if announce.online and was_online is False:
            # Coming back online earns a full staleness window.
            self._stale = False
            self._arm_stale_clock()
        if announce.key_fingerprint is not None:
            # An older node signs nothing about its key; its announce is all there is.
            self._confirm_key(announce.key_fingerprint)
            self._check_announced_key(announce.key_fingerprint)
        if announce.informative:
            self._apply_noise(announce.privacy)
            self._update_firmware(announce.firmware)

    @callback
    def _session_refused(self, err: PayloadRejected) -> None:
        """Offer the re-pair flow when a refused session looks like a reflashed node's.

        A reflashed node signs with a new key and starts again at session id 1, so its
        sessions are refused as badly signed or as replayed.
        """
        if err.reason not in (Rejection.BAD_SIGNATURE, Rejection.REPLAYED):
            return
        if not self._node_seems_replaced():
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            impersonation_issue_id(self.node_id),
            is_fixable=True,
            is_persistent=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="impersonation",
            translation_placeholders={"node_id": self.node_id},
            data={"entry_id": self.config_entry.entry_id},
        )
        self.config_entry.async_start_reauth(self.hass)

    def _node_seems_replaced(self) -> bool:
        """Say whether a badly signed session deserves the user's attention.

        Anyone can publish a forged session, so one alone is only counted. The re-pair issue
        appears when the node has also fallen silent (no valid reading for the staleness
        window) and announces another identity key: what a reflashed node looks like, and
        what an attacker cannot bring about while the real node works.
        """
        if not self._stale or self.announce is None or self.announce.node_key is None:
            return False
        try:
            announced = node_key_der_b64(load_node_key(self.announce.node_key))
        except NodeKeyError:
            return False
        return announced != self.config_entry.data.get(CONF_NODE_KEY)

    async def async_pin_node_key(self, node_key: str) -> None:
        """Pin a node identity key the user confirmed, forgetting every session before it.

        A session id the attacker used (up to 2**32 - 1) must not lock the real node out.
        """
        if isinstance(self._decoder, V2Receiver):
            self._decoder.reset()
        await self.async_flush(baseline=False)
        entry = self.config_entry
        # The update listener reloads the entry with the new key.
        self.hass.config_entries.async_update_entry(
            entry, data={**entry.data, CONF_NODE_KEY: node_key}
        )

    @property
    def pending_key(self) -> rsa.RSAPrivateKey | None:
        """Return a rotated key the node has not confirmed yet."""
        return self._pending_key

    @callback
    def async_set_interval_option(self, interval: int) -> None:
        """Make a commanded publish interval the configured one, without a reload."""
        entry = self.config_entry
        options = {**entry.options, CONF_PUBLISH_INTERVAL: interval}
        self.loaded_settings = (dict(entry.data), options)
        self.hass.config_entries.async_update_entry(entry, options=options)
        self._arm_stale_clock()

    @callback
    def async_use_new_ha_key(
        self, new_key: rsa.RSAPrivateKey, new_fingerprint: str, data: dict[str, Any]
    ) -> None:
        """Decrypt with a new Home Assistant key at once, keeping the old one for the grace.

        No reload: a node that answers set_ha_key at once must find Home Assistant
        subscribed and already holding the new key. Commands stay signed with the old key
        until the node confirms the new one: a node that missed set_ha_key must still obey.
        """
        if isinstance(self._decoder, V2Receiver):
            self._decoder.set_ha_keys([new_key, self._signing_key])
        self._pending_key = new_key
        self.key_fingerprint = new_fingerprint
        self._update_entry_data({**data, CONF_KEY_UNCONFIRMED: True})
        self._schedule_previous_key_removal()

    @callback
    def _confirm_key(self, node_fingerprint: str) -> None:
        """Sign with the rotated key once the node says it encrypts for it."""
        if self._pending_key is None or node_fingerprint != self.key_fingerprint:
            return
        LOGGER.info("IoTShield node %s confirmed Home Assistant's new key", self.node_id)
        self._signing_key = self._pending_key
        self._pending_key = None
        data = dict(self.config_entry.data)
        data.pop(CONF_KEY_UNCONFIRMED, None)
        self._update_entry_data(data)
        self._schedule_previous_key_removal()

    @callback
    def _schedule_previous_key_removal(self) -> None:
        """Delete the previous private key when its grace period ends (now, if it has)."""
        self._cancel_previous_key_removal()
        until = self.config_entry.data.get(CONF_PREVIOUS_KEY_UNTIL)
        if CONF_PREVIOUS_PRIVATE_KEY not in self.config_entry.data:
            return
        ends = dt_util.parse_datetime(str(until)) if until else None
        if ends is None or ends <= dt_util.utcnow():
            self._remove_previous_key(dt_util.utcnow())
            return
        self._cancel_key_removal = async_track_point_in_utc_time(
            self.hass, self._remove_previous_key, ends
        )

    @callback
    def _cancel_previous_key_removal(self) -> None:
        """Stop waiting for the end of the grace period."""
        if self._cancel_key_removal is not None:
            self._cancel_key_removal()
            self._cancel_key_removal = None

    @callback
    def _remove_previous_key(self, _now: datetime) -> None:
        """Forget the previous key, unless the node still trusts only that one."""
        self._cancel_key_removal = None
        if self._pending_key is not None:
            # The node never confirmed the new key: the old one is the only key it obeys, so
            # it stays until the node confirms (then _confirm_key removes it at once).
            return
        data = dict(self.config_entry.data)
        if data.pop(CONF_PREVIOUS_PRIVATE_KEY, None) is None:
            return
        data.pop(CONF_PREVIOUS_KEY_UNTIL, None)
        if isinstance(self._decoder, V2Receiver):
            self._decoder.set_ha_keys([self._signing_key])
        LOGGER.info("IoTShield node %s: the previous Home Assistant key is deleted", self.node_id)
        self._update_entry_data(data)

    @callback
    def _update_entry_data(self, data: dict[str, Any]) -> None:
        """Store entry data that is state, not settings: no reload."""
        entry = self.config_entry
        self.loaded_settings = (data, dict(entry.options))
        self.hass.config_entries.async_update_entry(entry, data=data)

    @callback
    def _check_announced_key(self, announced: str) -> None:
        """Warn before any reading is lost when the node says it holds another public key."""
        issue_id = announced_key_issue_id(self.node_id)
        if announced == self.key_fingerprint:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="announced_key_mismatch",
            translation_placeholders={
                "node_id": self.node_id,
                "expected": format_fingerprint(self.key_fingerprint),
                "announced": format_fingerprint(announced),
            },
        )

    @callback
    def _update_firmware(self, firmware: str | None) -> None:
        """Record the node's firmware version on its device."""
        if firmware is None:
            return
        registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(registry, self.config_entry.entry_id):
            if device.sw_version != firmware:
                registry.async_update_device(device.id, sw_version=firmware)

    @callback
    def _arm_stale_clock(self) -> None:
        """(Re)start the timer that marks the node stale without fresh readings."""
        self._stop_stale_clock()
        self._cancel_stale = async_call_later(self.hass, self.stale_after, self._mark_stale)

    @callback
    def _stop_stale_clock(self) -> None:
        """Cancel the staleness timer."""
        if self._cancel_stale is not None:
            self._cancel_stale()
            self._cancel_stale = None

    @callback
    def _mark_stale(self, _now: datetime) -> None:
        """Make the entities unavailable: no valid reading for too long."""
        self._cancel_stale = None
        self._stale = True
        self._log_availability()
        self.async_update_listeners()

    @callback
    def _log_availability(self) -> None:
        """Log once when the node is lost and once when it is back."""
        available = self.node_available
        if available == self._was_available:
            return
        self._was_available = available
        if available:
            LOGGER.info("IoTShield node %s is available again", self.node_id)
        elif self._online is False:
            LOGGER.info("IoTShield node %s is unavailable: it reported offline", self.node_id)
        else:
            LOGGER.info(
                "IoTShield node %s is unavailable: no valid reading for %d seconds",
                self.node_id,
                int(self.stale_after),
            )
