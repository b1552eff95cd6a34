"""Constants for the IoTShield integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "iotshield"
LOGGER = logging.getLogger(__package__)

CONF_NODE_ID: Final = "node_id"
CONF_TOPIC_PREFIX: Final = "topic_prefix"
CONF_PRIVATE_KEY: Final = "private_key"
CONF_KEY_SOURCE: Final = "key_source"
CONF_PUBLISH_INTERVAL: Final = "publish_interval"
CONF_STALE_INTERVALS: Final = "stale_intervals"
CONF_LEGACY_TOPIC: Final = "legacy_topic"

KEY_SOURCE_GENERATE: Final = "generate"
KEY_SOURCE_IMPORT: Final = "import"
KEY_SOURCE_KEEP: Final = "keep"

DEFAULT_TOPIC_PREFIX: Final = "iotshield"
DEFAULT_PUBLISH_INTERVAL: Final = 5
DEFAULT_STALE_INTERVALS: Final = 3
MIN_STALE_INTERVALS: Final = 2
MAX_STALE_INTERVALS: Final = 100
MIN_PUBLISH_INTERVAL: Final = 1
MAX_PUBLISH_INTERVAL: Final = 3600

# A node that keeps sending undecryptable data almost certainly holds another key.
KEY_MISMATCH_THRESHOLD: Final = 5
# Rejections of one kind are logged at most once per this many seconds.
REJECTION_LOG_INTERVAL: Final = 600.0
# Envelopes waiting for decryption; beyond this a flood is shed, counted, not queued.
MAX_PENDING_ENVELOPES: Final = 256
# Expensive work one node's topic may cost, whoever publishes there: RSA decryptions of v1
# envelopes and signature checks of v2 sessions, per second on average and at once. A node
# sends a reading every second at most and a session rarely; a flood beyond is counted.
MAX_V1_DECRYPTIONS_PER_SECOND: Final = 5.0
V1_DECRYPTION_BURST: Final = 20.0
MAX_SESSION_CHECKS_PER_SECOND: Final = 1.0
SESSION_CHECK_BURST: Final = 10.0
# Discovery flows of announced nodes waiting for the user at once; more are not started.
MAX_DISCOVERY_FLOWS: Final = 5
# A batch of envelopes gives the event loop back after this many seconds of work.
YIELD_AFTER: Final = 0.001

MANUFACTURER: Final = "IoTShield"
# True of every node: the ESP32 firmware, its host build and the Python reference node.
MODEL: Final = "Safety node"

CONF_PROTOCOL: Final = "protocol"
CONF_NODE_KEY: Final = "node_key"
# The wire format v2 revision a node was seen to sign (PROTOCOL.md §12); never lowered.
CONF_NODE_REV: Final = "node_rev"
CONF_PREVIOUS_PRIVATE_KEY: Final = "previous_private_key"
CONF_PREVIOUS_KEY_UNTIL: Final = "previous_key_until"
# Set while a rotated key waits for the node to confirm it: commands stay signed with the
# previous key, which the node still trusts, until the node signs the new fingerprint.
CONF_KEY_UNCONFIRMED: Final = "key_unconfirmed"
CONF_PAIRING: Final = "pairing"
PROTOCOL_V1: Final = 1
PROTOCOL_V2: Final = 2
PAIRING_PIN: Final = "pin"
PAIRING_PASTE: Final = "paste"
PAIRING_V1: Final = "v1"
# Re-authentication: keep the pairing (the node got Home Assistant's key again).
PAIRING_KEEP: Final = "keep"
# After a key rotation the old key still opens sessions for this long.
KEY_ROTATION_GRACE_SECONDS: Final = 24 * 3600
# Session keys and counters are written this long after they change (and at unload/stop).
STATE_SAVE_DELAY: Final = 1.0

COMMANDS: Final = ("publish_now", "set_interval", "set_epsilon", "reboot")
# An unsigned command must be harmless: a v1 node takes only this one (PROTOCOL.md §8).
V1_COMMANDS: Final = ("publish_now",)
SERVICE_SEND_COMMAND: Final = "send_command"
SERVICE_ROTATE_KEY: Final = "rotate_key"
ATTR_COMMAND: Final = "command"
ATTR_INTERVAL: Final = "interval"
ATTR_EPSILON: Final = "epsilon"
# A v2 node is asked for a new session at most this often (seconds): often enough that a
# session message lost in a broker restart costs few readings, rarely enough not to flood it.
SESSION_REQUEST_INTERVAL: Final = 10.0
# Without word from the MQTT client or a retained status, the first session of a run is
# asked for this many seconds after the subscriptions were made.
FIRST_SESSION_FALLBACK: Final = 3.0
# A node that opened a session before it heard the challenge is asked again this soon; a
# node opens at most one session a second on request (PROTOCOL.md §12.5).
STALE_SESSION_REQUEST_INTERVAL: Final = 2.0

# Alerts: thresholds, incidents and the local LLM (options).
CONF_THRESHOLDS: Final = "thresholds"
CONF_MIN_SEVERITY: Final = "min_severity"
# The highest severity anomalies alone may raise: off, low or medium (never a hazard).
CONF_ANOMALY_LEVEL: Final = "anomaly_level"
DEFAULT_ANOMALY_LEVEL: Final = "medium"
ANOMALY_LEVELS: Final = ("off", "low", "medium")
# The learned baseline is written at most this often (seconds), and at unload and stop:
# a crash costs minutes of learning, not the weeks behind them.
BASELINE_SAVE_INTERVAL: Final = 600.0
CONF_HOLD_TIME: Final = "hold_time"
CONF_LLM_ENABLED: Final = "llm_enabled"
CONF_LLM_URL: Final = "llm_url"
CONF_LLM_MODEL: Final = "llm_model"
CONF_LLM_TIMEOUT: Final = "llm_timeout"
CONF_LLM_KEEP_ALIVE: Final = "llm_keep_alive"
CONF_LLM_LANGUAGE: Final = "llm_language"
CONF_LLM_PROMPT: Final = "llm_prompt"
CONF_LLM_COOLDOWN: Final = "llm_cooldown"
CONF_LLM_PROVIDER: Final = "llm_provider"
CONF_LLM_AI_TASK_ENTITY: Final = "llm_ai_task_entity"
# The home's one LLM is a config entry of its own (data {kind: home}); nodes only say whether
# they use it and may name their own model. These are its options (they were a node's before).
CONF_KIND: Final = "kind"
KIND_HOME: Final = "home"
# Not a valid node id (no colon is), so it can never collide with a node's unique id.
HOME_UNIQUE_ID: Final = "home:llm"
HOME_LLM_KEYS: Final = (
    CONF_LLM_PROVIDER,
    CONF_LLM_URL,
    CONF_LLM_MODEL,
    CONF_LLM_TIMEOUT,
    CONF_LLM_KEEP_ALIVE,
    CONF_LLM_LANGUAGE,
    CONF_LLM_PROMPT,
    CONF_LLM_AI_TASK_ENTITY,
)
DEFAULT_LLM_COOLDOWN: Final = 300
# Empty: the model answers in Home Assistant's language, as the alerts are written.
DEFAULT_LLM_LANGUAGE: Final = ""
# The model is unreachable for this many requests in a row before a repair issue appears.
LLM_UNREACHABLE_AFTER: Final = 2
EVENT_PREFIX: Final = f"{DOMAIN}_incident_"
SERVICE_ACKNOWLEDGE: Final = "acknowledge"
SERVICE_EXPLAIN: Final = "explain"
SERVICE_TEST_ALARM: Final = "test_alarm"
ATTR_INCIDENT_ID: Final = "incident_id"
# Readings kept for the trend in the explanation context.
TREND_SECONDS: Final = 300.0
TREND_READINGS: Final = 60
