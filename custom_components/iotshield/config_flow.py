"""Config, discovery, reconfigure and options flows for IoTShield."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from homeassistant.components import mqtt
from homeassistant.components.mqtt import DOMAIN as MQTT_DOMAIN
from homeassistant.config_entries import (
    SOURCE_IMPORT,
    SOURCE_MQTT,
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
import voluptuous as vol

from .const import (
    ANOMALY_LEVELS,
    CONF_ANOMALY_LEVEL,
    CONF_HOLD_TIME,
    CONF_KEY_SOURCE,
    CONF_KIND,
    CONF_LEGACY_TOPIC,
    CONF_LLM_AI_TASK_ENTITY,
    CONF_LLM_COOLDOWN,
    CONF_LLM_ENABLED,
    CONF_LLM_KEEP_ALIVE,
    CONF_LLM_LANGUAGE,
    CONF_LLM_MODEL,
    CONF_LLM_PROMPT,
    CONF_LLM_PROVIDER,
    CONF_LLM_TIMEOUT,
    CONF_LLM_URL,
    CONF_MIN_SEVERITY,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_PAIRING,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    CONF_THRESHOLDS,
    CONF_TOPIC_PREFIX,
    DEFAULT_ANOMALY_LEVEL,
    DEFAULT_LLM_COOLDOWN,
    DEFAULT_PUBLISH_INTERVAL,
    DEFAULT_STALE_INTERVALS,
    DEFAULT_TOPIC_PREFIX,
    DOMAIN,
    HOME_UNIQUE_ID,
    KEY_SOURCE_GENERATE,
    KEY_SOURCE_IMPORT,
    KEY_SOURCE_KEEP,
    KIND_HOME,
    MAX_DISCOVERY_FLOWS,
    MAX_PUBLISH_INTERVAL,
    MAX_STALE_INTERVALS,
    MIN_PUBLISH_INTERVAL,
    MIN_STALE_INTERVALS,
    PAIRING_KEEP,
    PAIRING_PASTE,
    PAIRING_PIN,
    PAIRING_V1,
    PROTOCOL_V1,
    PROTOCOL_V2,
)
from .coordinator import IoTShieldCoordinator
from .explain import DEFAULT_PROMPT, PromptError, check_prompt
from .home_llm import (
    AI_TASK_DOMAIN,
    ai_task_available,
    async_create_explainer,
    home_entry,
    is_home_entry,
    llm_settings,
)
from .incidents import DEFAULT_HOLD_SECONDS
from .keys import (
    KeyImportError,
    fingerprint,
    format_fingerprint,
    generate_private_key,
    load_private_key,
    private_key_pem,
    public_key_pem,
)
from .llm import PROVIDER_AI_TASK, PROVIDER_OLLAMA, Failure, LLMError
from .protocol import (
    is_valid_node_id,
    is_valid_topic_prefix,
    node_id_from_status_topic,
    parse_status,
)
from .protocol_v2 import (
    NodeKeyError,
    canonical_node_key,
    load_node_key,
    node_key_der_b64,
    node_key_fingerprint,
)
from .severity import (
    BAND_FIELDS,
    MOTION_COUNTS_DOMAINS,
    MOTION_COUNTS_OPTION,
    ThresholdError,
    Thresholds,
)


def _announced_identity(entry: ConfigEntry) -> str | None:
    """Return the identity key the entry's node announces now, if it is a valid one."""
    coordinator = getattr(entry, "runtime_data", None)
    announce = coordinator.announce if isinstance(coordinator, IoTShieldCoordinator) else None
    return None if announce is None else canonical_node_key(announce.node_key)


def _choice_selector(translation_key: str, *options: str) -> SelectSelector:
    """Offer a choice between a few translated options as a list."""
    return SelectSelector(
        SelectSelectorConfig(
            options=list(options),
            mode=SelectSelectorMode.LIST,
            translation_key=translation_key,
        )
    )


def _key_source_selector(*sources: str) -> SelectSelector:
    """Offer the ways to obtain Home Assistant's key for a node."""
    return _choice_selector(CONF_KEY_SOURCE, *sources)


PEM_SELECTOR = TextSelector(TextSelectorConfig(multiline=True))
# How long the wizard listens for a node's retained announce; a broker sends it at once.
ANNOUNCE_WAIT: Final = 1.5


class IoTShieldConfigFlow(ConfigFlow, domain=DOMAIN):
    """Pair Home Assistant with one IoTShield node."""

    VERSION = 1
    # 2: the LLM settings belong to the home's entry, no longer to each node.
    MINOR_VERSION = 2

    def __init__(self) -> None:
        """Start with nothing chosen."""
        self._node_id: str | None = None
        self._prefix = DEFAULT_TOPIC_PREFIX
        self._private_key: rsa.RSAPrivateKey | None = None
        self._private_pem: str | None = None
        self._announced_node_key: str | None = None
        # Reconfigure keeping the key: the stored PEM text is kept as it is.
        self._kept_pem: str | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        """Return the node's options flow, or the home LLM's."""
        if is_home_entry(config_entry):
            return HomeLLMOptionsFlow()
        return IoTShieldOptionsFlow()

    async def async_step_import(self, import_data: dict[str, Any]) -> ConfigFlowResult:
        """Create the home's LLM entry (from a node's options, or a node's old settings)."""
        await self.async_set_unique_id(HOME_UNIQUE_ID)
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=HOME_LLM_TITLE, data={CONF_KIND: KIND_HOME}, options=import_data
        )

    def _mqtt_is_set_up(self) -> bool:
        """Say whether Home Assistant's MQTT integration is loaded (nodes talk through it)."""
        return any(
            entry.state is ConfigEntryState.LOADED
            for entry in self.hass.config_entries.async_entries(MQTT_DOMAIN)
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the node id, the topic prefix and where the key comes from."""
        if not self._mqtt_is_set_up():
            # Without it no node can be heard: the entry would only wait in setup retry.
            return self.async_abort(reason="mqtt_not_set_up")
        errors: dict[str, str] = {}
        if user_input is not None:
            node_id = user_input[CONF_NODE_ID].strip()
            prefix = user_input[CONF_TOPIC_PREFIX].strip().strip("/")
            if not is_valid_node_id(node_id):
                errors[CONF_NODE_ID] = "invalid_node_id"
            elif not is_valid_topic_prefix(prefix):
                errors[CONF_TOPIC_PREFIX] = "invalid_topic_prefix"
            else:
                # Adding a node by hand wins over its discovery card, wherever that got stuck.
                await self.async_set_unique_id(node_id, raise_on_progress=False)
                self._abort_if_unique_id_configured()
                self._abort_discoveries_of(node_id)
                self._node_id, self._prefix = node_id, prefix
                # A node that announced itself is paired by comparing fingerprints, not pasting.
                self._announced_node_key = await self._async_read_announce(prefix, node_id)
                return await self._async_choose_key(user_input[CONF_KEY_SOURCE])
        schema = vol.Schema(
            {
                vol.Required(CONF_NODE_ID): TextSelector(),
                vol.Required(CONF_TOPIC_PREFIX, default=DEFAULT_TOPIC_PREFIX): TextSelector(),
                vol.Required(CONF_KEY_SOURCE, default=KEY_SOURCE_GENERATE): _key_source_selector(
                    KEY_SOURCE_GENERATE, KEY_SOURCE_IMPORT
                ),
            }
        )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    @callback
    def _abort_discoveries_of(self, node_id: str) -> None:
        """Close the discovery flows of a node the user now adds by hand."""
        for flow in self._async_in_progress(include_uninitialized=True):
            context = flow["context"]
            if (
                flow["flow_id"] != self.flow_id
                and context.get("source") == SOURCE_MQTT
                and context.get("unique_id") == node_id
            ):
                self.hass.config_entries.flow.async_abort(flow["flow_id"])

    async def _async_read_announce(self, prefix: str, node_id: str) -> str | None:
        """Return the identity key in the node's retained announce, if it sent one."""
        received: asyncio.Future[bytes] = self.hass.loop.create_future()

        @callback
        def on_message(message: mqtt.ReceiveMessage) -> None:
            if not received.done():
                payload = message.payload
                raw = payload.encode() if isinstance(payload, str) else bytes(payload)
                received.set_result(raw)

        unsubscribe = await mqtt.async_subscribe(
            self.hass, f"{prefix}/{node_id}/status", on_message, encoding=None
        )
        try:
            async with asyncio.timeout(ANNOUNCE_WAIT):
                raw = await received
        except TimeoutError:
            return None
        finally:
            unsubscribe()
        announce = parse_status(raw)
        if announce is None or not announce.online or not announce.informative:
            return None
        return canonical_node_key(announce.node_key)

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """Offer to pair a node that announced itself on its status topic."""
        node_id = node_id_from_status_topic(discovery_info.topic, DEFAULT_TOPIC_PREFIX)
        payload = discovery_info.payload
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        announce = parse_status(raw) if raw else None
        # Only a node's own announce (online, describing itself) starts a flow: a bare
        # `online`, an `offline` or anything else on the topic is not a node to pair.
        if node_id is None or announce is None or not announce.online or not announce.informative:
            return self.async_abort(reason="invalid_discovery_info")
        others = [
            flow
            for flow in self.hass.config_entries.flow.async_progress_by_handler(
                DOMAIN, include_uninitialized=True, match_context={"source": SOURCE_MQTT}
            )
            if flow["flow_id"] != self.flow_id
        ]
        if len(others) >= MAX_DISCOVERY_FLOWS:
            # Anyone on the broker can publish announces: a flood must not fill the
            # integrations page. The node announces again on its next connect.
            return self.async_abort(reason="too_many_discoveries")
        self._announced_node_key = canonical_node_key(announce.node_key)
        await self.async_set_unique_id(node_id)
        self._abort_if_unique_id_configured()
        self._node_id = node_id
        self.context["title_placeholders"] = {"node_id": node_id}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Let the user confirm a discovered node and choose where its key comes from."""
        if user_input is not None:
            return await self._async_choose_key(user_input[CONF_KEY_SOURCE])
        schema = vol.Schema(
            {
                vol.Required(CONF_KEY_SOURCE, default=KEY_SOURCE_GENERATE): _key_source_selector(
                    KEY_SOURCE_GENERATE, KEY_SOURCE_IMPORT
                ),
            }
        )
        return self.async_show_form(
            step_id="discovery_confirm",
            data_schema=schema,
            description_placeholders={"node_id": str(self._node_id)},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the topic prefix or give the node a new key."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            prefix = user_input[CONF_TOPIC_PREFIX].strip().strip("/")
            if not is_valid_topic_prefix(prefix):
                errors[CONF_TOPIC_PREFIX] = "invalid_topic_prefix"
            else:
                self._node_id, self._prefix = entry.data[CONF_NODE_ID], prefix
                if user_input[CONF_KEY_SOURCE] == KEY_SOURCE_KEEP:
                    # Shown again, so that the node can be flashed with the key it must have.
                    self._kept_pem = entry.data[CONF_PRIVATE_KEY]
                    self._private_key = await self.hass.async_add_executor_job(
                        load_private_key, self._kept_pem
                    )
                    return await self.async_step_show_key()
                return await self._async_choose_key(user_input[CONF_KEY_SOURCE])
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_TOPIC_PREFIX, default=entry.data[CONF_TOPIC_PREFIX]
                ): TextSelector(),
                vol.Required(CONF_KEY_SOURCE, default=KEY_SOURCE_KEEP): _key_source_selector(
                    KEY_SOURCE_KEEP, KEY_SOURCE_GENERATE, KEY_SOURCE_IMPORT
                ),
            }
        )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders={"node_id": entry.data[CONF_NODE_ID]},
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Start re-pairing a node whose readings or sessions Home Assistant cannot trust."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show both keys; pin the identity the node announces (also: a v1 node moves to v2).

        Only the key whose fingerprint the form showed may be pinned: an attacker may have
        announced another one since.
        """
        entry = self._get_reauth_entry()
        if user_input is not None:
            if user_input[CONF_PAIRING] == PAIRING_PIN and self._announced_node_key is not None:
                coordinator = getattr(entry, "runtime_data", None)
                if isinstance(coordinator, IoTShieldCoordinator) and coordinator.receiver:
                    # Forget every session first: one an attacker opened must not lock out
                    # the real node. The entry reloads with the pinned key.
                    await coordinator.async_pin_node_key(self._announced_node_key)
                    return self.async_abort(reason="reauth_successful")
                # The entry's update listener reloads it as a v2 node.
                self.hass.config_entries.async_update_entry(
                    entry,
                    data={
                        **entry.data,
                        CONF_PROTOCOL: PROTOCOL_V2,
                        CONF_NODE_KEY: self._announced_node_key,
                    },
                )
                return self.async_abort(reason="reauth_successful")
            # The user put Home Assistant's key into the node; nothing here changes.
            return self.async_abort(reason="reauth_successful")
        self._announced_node_key = _announced_identity(entry)
        options = [PAIRING_KEEP]
        if self._announced_node_key is not None:
            options.insert(0, PAIRING_PIN)
        # Forged payloads can open this step (a key mismatch): the stored key is not checked
        # again, which would hold the GIL for tens of milliseconds.
        private = await self.hass.async_add_executor_job(
            partial(load_private_key, entry.data[CONF_PRIVATE_KEY], stored=True)
        )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_PAIRING, default=options[0]): _choice_selector(
                        CONF_PAIRING, *options
                    )
                }
            ),
            description_placeholders={
                "node_id": entry.data[CONF_NODE_ID],
                "public_key": public_key_pem(private).strip(),
                "fingerprint": format_fingerprint(fingerprint(private)),
                "node_fingerprint": format_fingerprint(
                    node_key_fingerprint(self._announced_node_key)
                )
                if self._announced_node_key
                else "-",
            },
        )

    async def _async_choose_key(self, source: str) -> ConfigFlowResult:
        """Generate a key now, or ask for one to import."""
        if source == KEY_SOURCE_IMPORT:
            return await self.async_step_import_key()
        # RSA key generation takes tens of milliseconds: keep it off the event loop.
        self._private_key = await self.hass.async_add_executor_job(generate_private_key)
        return await self.async_step_show_key()

    async def async_step_import_key(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take an existing PEM private key, such as the seed prototype's."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if user_input.get(CONF_KEY_SOURCE) == KEY_SOURCE_GENERATE:
                # The way back: a discovery card reopens this step, and must not trap the user.
                return await self._async_choose_key(KEY_SOURCE_GENERATE)
            try:
                self._private_key = await self.hass.async_add_executor_job(
                    load_private_key, user_input.get(CONF_PRIVATE_KEY, "")
                )
            except KeyImportError as err:
                errors[CONF_PRIVATE_KEY] = err.reason.value
            else:
                return await self.async_step_show_key()
        schema = vol.Schema(
            {
                vol.Required(CONF_KEY_SOURCE, default=KEY_SOURCE_IMPORT): _key_source_selector(
                    KEY_SOURCE_IMPORT, KEY_SOURCE_GENERATE
                ),
                vol.Optional(CONF_PRIVATE_KEY): PEM_SELECTOR,
            }
        )
        return self.async_show_form(
            step_id="import_key",
            # What was pasted stays, so that a typo costs no second paste.
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def async_step_show_key(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the public key and its fingerprint to flash into the node."""
        assert self._private_key is not None
        if user_input is not None:
            self._private_pem = self._kept_pem or private_key_pem(self._private_key)
            if self.source == SOURCE_RECONFIGURE:
                return self._async_finish(self._private_pem)
            if self._announced_node_key is None and self._node_id is not None:
                # The node may have been given this key and started while the key was shown:
                # its announce now offers the fingerprint comparison instead of a paste.
                self._announced_node_key = await self._async_read_announce(
                    self._prefix, self._node_id
                )
            if self._announced_node_key is not None:
                return await self.async_step_pair_confirm()
            return await self.async_step_pair_manual()
        return self.async_show_form(
            step_id="show_key",
            data_schema=vol.Schema({}),
            description_placeholders={
                "node_id": str(self._node_id),
                "public_key": public_key_pem(self._private_key).strip(),
                "fingerprint": format_fingerprint(fingerprint(self._private_key)),
            },
        )

    async def async_step_pair_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pin the identity key the node announced, once the user compared its fingerprint."""
        assert self._private_pem is not None
        assert self._announced_node_key is not None
        if user_input is not None:
            if user_input[CONF_PAIRING] == PAIRING_V1:
                return self._async_finish(self._private_pem, PROTOCOL_V1, None)
            return self._async_finish(self._private_pem, PROTOCOL_V2, self._announced_node_key)
        return self.async_show_form(
            step_id="pair_confirm",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_PAIRING, default=PAIRING_PIN): _choice_selector(
                        CONF_PAIRING, PAIRING_PIN, PAIRING_V1
                    )
                }
            ),
            description_placeholders={
                "node_id": str(self._node_id),
                "node_fingerprint": format_fingerprint(
                    node_key_fingerprint(self._announced_node_key)
                ),
            },
        )

    async def async_step_pair_manual(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the node's identity key by hand (from its serial console), or choose v1."""
        assert self._private_pem is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            if user_input[CONF_PAIRING] == PAIRING_V1:
                return self._async_finish(self._private_pem, PROTOCOL_V1, None)
            pasted = str(user_input.get(CONF_NODE_KEY) or "")
            try:
                node_key = node_key_der_b64(load_node_key(pasted))
            except NodeKeyError:
                if pasted.strip():
                    errors[CONF_NODE_KEY] = "invalid_node_key"
                else:
                    errors[CONF_NODE_KEY] = "node_key_missing"
            else:
                return self._async_finish(self._private_pem, PROTOCOL_V2, node_key)
        schema = vol.Schema(
            {
                vol.Required(CONF_PAIRING, default=PAIRING_PASTE): _choice_selector(
                    CONF_PAIRING, PAIRING_PASTE, PAIRING_V1
                ),
                vol.Optional(CONF_NODE_KEY): PEM_SELECTOR,
            }
        )
        return self.async_show_form(
            step_id="pair_manual",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders={"node_id": str(self._node_id)},
        )

    @callback
    def _async_finish(
        self, private_key: str, protocol: int | None = None, node_key: str | None = None
    ) -> ConfigFlowResult:
        """Create the entry, or update it when reconfiguring (its listener reloads it)."""
        assert self._node_id is not None
        data: dict[str, Any] = {
            CONF_NODE_ID: self._node_id,
            CONF_TOPIC_PREFIX: self._prefix,
            CONF_PRIVATE_KEY: private_key,
        }
        if self.source == SOURCE_RECONFIGURE:
            entry = self._get_reconfigure_entry()
            # Pairing is kept; a new key for a v2 node goes through the rotate_key service.
            data = {**entry.data, **data}
            self.hass.config_entries.async_update_entry(entry, data=data)
            return self.async_abort(reason="reconfigure_successful")
        data[CONF_PROTOCOL] = protocol
        if node_key is not None:
            data[CONF_NODE_KEY] = node_key
        return self.async_create_entry(
            title=self._node_id,
            data=data,
            options={
                CONF_PUBLISH_INTERVAL: DEFAULT_PUBLISH_INTERVAL,
                CONF_STALE_INTERVALS: DEFAULT_STALE_INTERVALS,
                CONF_LEGACY_TOPIC: False,
            },
        )


def _seconds(minimum: float, maximum: float, step: float = 1) -> NumberSelector:
    """Ask for a number of seconds in a box."""
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=step,
            mode=NumberSelectorMode.BOX,
            unit_of_measurement="s",
        )
    )


def _threshold_field(name: str, field: str) -> str:
    """Return the form field of one band value, e.g. `temperature_medium`."""
    return f"{name}_{field}"


def _wrong_threshold(
    sensor: str, wanted: dict[str, dict[str, float]], saved: dict[str, dict[str, float]]
) -> str:
    """Return the band value of a refused sensor that the error belongs on."""
    # The validator names only the sensor: blame the first value the user changed whose saved
    # value makes the sensor valid again.
    fields = BAND_FIELDS[sensor]
    changed = [f for f in fields if wanted[sensor][f] != saved[sensor][f]]
    for field in changed:
        trial = {**wanted, sensor: {**wanted[sensor], field: saved[sensor][field]}}
        try:
            Thresholds.from_dict(trial).validate()
        except ThresholdError as err:
            if err.sensor == sensor:
                continue
        return field
    return changed[0] if changed else fields[0]


class IoTShieldOptionsFlow(OptionsFlow):
    """Tune a node: its timing and topics, thresholds, incidents and the local LLM."""

    # The node's choices, kept while the home's LLM is set up in the next step.
    _node_llm: dict[str, Any]

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Offer the groups of options."""
        return self.async_show_menu(
            step_id="init",
            menu_options=["node", "thresholds", "alerts", "llm"],
            description_placeholders=self._placeholders(),
        )

    def _placeholders(self) -> dict[str, str]:
        """Return what the titles fill in: which node these options are of."""
        return {"node_id": str(self.config_entry.data[CONF_NODE_ID])}

    def _save(self, changes: dict[str, Any]) -> ConfigFlowResult:
        """Store the changed options next to the untouched ones."""
        return self.async_create_entry(data={**self.config_entry.options, **changes})

    async def async_step_node(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Tune how a node's silence is judged and which topics are read."""
        if user_input is not None:
            return self._save(
                {
                    CONF_PUBLISH_INTERVAL: int(user_input[CONF_PUBLISH_INTERVAL]),
                    CONF_STALE_INTERVALS: int(user_input[CONF_STALE_INTERVALS]),
                    CONF_LEGACY_TOPIC: bool(user_input[CONF_LEGACY_TOPIC]),
                }
            )
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_PUBLISH_INTERVAL,
                    default=options.get(CONF_PUBLISH_INTERVAL, DEFAULT_PUBLISH_INTERVAL),
                ): _seconds(MIN_PUBLISH_INTERVAL, MAX_PUBLISH_INTERVAL),
                vol.Required(
                    CONF_STALE_INTERVALS,
                    default=options.get(CONF_STALE_INTERVALS, DEFAULT_STALE_INTERVALS),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_STALE_INTERVALS,
                        max=MAX_STALE_INTERVALS,
                        step=1,
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(
                    CONF_LEGACY_TOPIC, default=options.get(CONF_LEGACY_TOPIC, False)
                ): BooleanSelector(),
            }
        )
        return self.async_show_form(
            step_id="node", data_schema=schema, description_placeholders=self._placeholders()
        )

    async def async_step_thresholds(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Edit the severity bands; refuse bands that are not ordered or out of range."""
        errors: dict[str, str] = {}
        saved = Thresholds.from_dict(self.config_entry.options.get(CONF_THRESHOLDS)).as_dict()
        current = saved
        if user_input is not None:
            wanted = {
                name: {f: float(user_input[_threshold_field(name, f)]) for f in fields}
                for name, fields in BAND_FIELDS.items()
            }
            try:
                Thresholds.from_dict(wanted).validate()
            except ThresholdError as err:
                wrong = _wrong_threshold(err.sensor, wanted, saved)
                errors[_threshold_field(err.sensor, wrong)] = err.problem.value
            else:
                return self._save({CONF_THRESHOLDS: wanted})
            current = wanted
        number = NumberSelector(NumberSelectorConfig(mode=NumberSelectorMode.BOX, step="any"))
        schema = vol.Schema(
            {
                vol.Required(_threshold_field(name, f), default=current[name][f]): number
                for name, fields in BAND_FIELDS.items()
                for f in fields
            }
        )
        return self.async_show_form(
            step_id="thresholds",
            data_schema=schema,
            errors=errors,
            description_placeholders=self._placeholders(),
        )

    async def async_step_alerts(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose when an incident opens and how long it must stay calm to resolve."""
        if user_input is not None:
            return self._save(
                {
                    CONF_MIN_SEVERITY: user_input[CONF_MIN_SEVERITY],
                    CONF_HOLD_TIME: int(user_input[CONF_HOLD_TIME]),
                    CONF_ANOMALY_LEVEL: user_input[CONF_ANOMALY_LEVEL],
                    MOTION_COUNTS_OPTION: user_input.get(MOTION_COUNTS_OPTION) or None,
                }
            )
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_MIN_SEVERITY, default=options.get(CONF_MIN_SEVERITY, "medium")
                ): _choice_selector(CONF_MIN_SEVERITY, "low", "medium", "high", "critical"),
                vol.Required(
                    CONF_HOLD_TIME, default=options.get(CONF_HOLD_TIME, DEFAULT_HOLD_SECONDS)
                ): _seconds(0, 86400),
                vol.Required(
                    CONF_ANOMALY_LEVEL,
                    default=options.get(CONF_ANOMALY_LEVEL, DEFAULT_ANOMALY_LEVEL),
                ): _choice_selector(CONF_ANOMALY_LEVEL, *ANOMALY_LEVELS),
                # Optional: left empty, motion is context and never a severity.
                vol.Optional(
                    MOTION_COUNTS_OPTION,
                    description={"suggested_value": options.get(MOTION_COUNTS_OPTION)},
                ): EntitySelector(EntitySelectorConfig(domain=list(MOTION_COUNTS_DOMAINS))),
            }
        )
        return self.async_show_form(
            step_id="alerts", data_schema=schema, description_placeholders=self._placeholders()
        )

    async def async_step_llm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose whether this node's incidents are explained by the home's LLM."""
        errors: dict[str, str] = {}
        options = {**self.config_entry.options}
        home = home_entry(self.hass)
        if user_input is not None:
            changes = {
                CONF_LLM_ENABLED: bool(user_input[CONF_LLM_ENABLED]),
                CONF_LLM_MODEL: str(user_input.get(CONF_LLM_MODEL) or "").strip(),
                CONF_LLM_COOLDOWN: int(user_input[CONF_LLM_COOLDOWN]),
            }
            if changes[CONF_LLM_ENABLED] and home is None:
                # The home has no LLM yet: set it up once, here, for every node.
                self._node_llm = changes
                return await self.async_step_home_llm()
            if changes[CONF_LLM_ENABLED] and changes[CONF_LLM_MODEL] and home is not None:
                settings = llm_settings(home.options)
                if settings.provider == PROVIDER_OLLAMA:
                    errors = await async_check_llm(
                        self.hass, {**home.options, CONF_LLM_MODEL: changes[CONF_LLM_MODEL]}
                    )
            if not errors:
                return self._save(changes)
            options.update(changes)
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_LLM_ENABLED, default=bool(options.get(CONF_LLM_ENABLED, True))
                ): BooleanSelector(),
                # Optional: left empty, the node uses the home's model.
                vol.Optional(
                    CONF_LLM_MODEL, description={"suggested_value": options.get(CONF_LLM_MODEL)}
                ): TextSelector(),
                vol.Required(
                    CONF_LLM_COOLDOWN,
                    default=options.get(CONF_LLM_COOLDOWN, DEFAULT_LLM_COOLDOWN),
                ): _seconds(0, 86400),
            }
        )
        return self.async_show_form(
            step_id="llm",
            data_schema=schema,
            errors=errors,
            description_placeholders={**self._placeholders(), "home": HOME_LLM_TITLE},
        )

    async def async_step_home_llm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up the home's LLM, which every node then uses; checked before saving."""
        errors: dict[str, str] = {}
        if user_input is not None:
            changes = home_llm_changes(user_input)
            errors = await async_check_llm(self.hass, changes)
            if not errors:
                await self.hass.config_entries.flow.async_init(
                    DOMAIN, context={"source": SOURCE_IMPORT}, data=changes
                )
                return self._save(self._node_llm)
        return self.async_show_form(
            step_id="home_llm",
            data_schema=home_llm_schema(self.hass, user_input or {}),
            errors=errors,
        )


class HomeLLMOptionsFlow(OptionsFlow):
    """Change the LLM every node of the home uses."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Open the home LLM's one form."""
        return await self.async_step_home_llm()

    async def async_step_home_llm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Edit the home's LLM; the server and the model (or the AI Task) are checked first."""
        errors: dict[str, str] = {}
        if user_input is not None:
            changes = home_llm_changes(user_input)
            errors = await async_check_llm(self.hass, changes)
            if not errors:
                return self.async_create_entry(data=changes)
        return self.async_show_form(
            step_id="home_llm",
            data_schema=home_llm_schema(self.hass, user_input or self.config_entry.options),
            errors=errors,
        )


HOME_LLM_TITLE = "Home LLM"


def home_llm_changes(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the home LLM's options from a submitted form."""
    return {
        CONF_LLM_PROVIDER: str(user_input.get(CONF_LLM_PROVIDER) or PROVIDER_OLLAMA),
        CONF_LLM_URL: ollama_url(str(user_input[CONF_LLM_URL])),
        CONF_LLM_MODEL: str(user_input[CONF_LLM_MODEL]).strip(),
        CONF_LLM_TIMEOUT: float(user_input[CONF_LLM_TIMEOUT]),
        CONF_LLM_KEEP_ALIVE: int(user_input[CONF_LLM_KEEP_ALIVE]),
        CONF_LLM_LANGUAGE: str(user_input.get(CONF_LLM_LANGUAGE) or "").strip(),
        CONF_LLM_PROMPT: str(user_input.get(CONF_LLM_PROMPT) or "").strip(),
        CONF_LLM_AI_TASK_ENTITY: str(user_input.get(CONF_LLM_AI_TASK_ENTITY) or ""),
    }


def ollama_url(text: str) -> str:
    """Return the URL of an Ollama server as typed, with http:// when no scheme was given."""
    url = text.strip()
    # Ollama's own tools (OLLAMA_HOST) take host:port and mean http.
    if url and "://" not in url:
        url = f"http://{url}"
    return url.rstrip("/")


def is_ollama_url(url: str) -> bool:
    """Say whether a URL can name an Ollama server: http(s), a host, nothing else odd."""
    try:
        parts = urlsplit(url)
        # Reading the port raises ValueError when it is no number or out of range.
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port != 0
        and not any(char.isspace() for char in url)
    )


def home_llm_schema(hass: HomeAssistant, options: Mapping[str, Any]) -> vol.Schema:
    """Return the home LLM's form; AI Task is offered only where Home Assistant has it."""
    settings = llm_settings(options)
    fields: dict[Any, Any] = {}
    if ai_task_available(hass):
        fields[vol.Required(CONF_LLM_PROVIDER, default=settings.provider)] = _choice_selector(
            CONF_LLM_PROVIDER, PROVIDER_OLLAMA, PROVIDER_AI_TASK
        )
        fields[
            vol.Optional(
                CONF_LLM_AI_TASK_ENTITY,
                description={"suggested_value": settings.ai_task_entity or None},
            )
        ] = EntitySelector(EntitySelectorConfig(domain=AI_TASK_DOMAIN))
    fields.update(
        {
            vol.Required(CONF_LLM_URL, default=settings.url): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            vol.Required(CONF_LLM_MODEL, default=settings.model): TextSelector(),
            vol.Required(CONF_LLM_TIMEOUT, default=settings.timeout): _seconds(1, 600),
            vol.Required(CONF_LLM_KEEP_ALIVE, default=settings.keep_alive): _seconds(-1, 86400),
            # Optional: left empty, the model follows Home Assistant's language.
            vol.Optional(
                CONF_LLM_LANGUAGE, description={"suggested_value": settings.language}
            ): TextSelector(),
            vol.Required(CONF_LLM_PROMPT, default=settings.prompt): TextSelector(
                TextSelectorConfig(multiline=True)
            ),
        }
    )
    return vol.Schema(fields)


def _llm_form_errors(changes: Mapping[str, Any]) -> dict[str, str]:
    """Return what is wrong in the form itself: a broken prompt, a missing entity, no URL."""
    try:
        check_prompt(changes.get(CONF_LLM_PROMPT) or DEFAULT_PROMPT)
    except PromptError:
        return {CONF_LLM_PROMPT: "invalid_prompt"}
    settings = llm_settings(changes)
    if settings.provider == PROVIDER_AI_TASK and not settings.ai_task_entity:
        return {CONF_LLM_AI_TASK_ENTITY: "ai_task_entity_missing"}
    if settings.provider == PROVIDER_OLLAMA and not is_ollama_url(settings.url):
        return {CONF_LLM_URL: "invalid_url"}
    return {}


async def async_check_llm(hass: HomeAssistant, changes: Mapping[str, Any]) -> dict[str, str]:
    """Return form errors: a broken form, an unreachable server or a missing model or entity."""
    if errors := _llm_form_errors(changes):
        return errors
    settings = llm_settings(changes)
    explainer = await async_create_explainer(hass, settings)
    try:
        await explainer.async_check()
    except LLMError as err:
        if err.failure is Failure.MODEL_MISSING:
            if settings.provider == PROVIDER_AI_TASK:
                return {CONF_LLM_AI_TASK_ENTITY: "ai_task_entity_missing"}
            return {CONF_LLM_MODEL: "model_missing"}
        return {"base": "cannot_connect"}
    finally:
        await explainer.async_close()
    return {}
