"""Fixtures for the IoTShield tests."""

from __future__ import annotations

from collections.abc import Generator
import logging
from typing import Any
from unittest.mock import Mock, PropertyMock, patch

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from iotshield_node.v2 import StoredCounters, V2Sender, node_key_b64
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockPahoClient

# Import our package before Home Assistant's test plugin puts its own `custom_components` first.
import custom_components.iotshield  # noqa: F401
from custom_components.iotshield import display
from custom_components.iotshield.const import (
    CONF_LEGACY_TOPIC,
    CONF_NODE_ID,
    CONF_NODE_KEY,
    CONF_PRIVATE_KEY,
    CONF_PROTOCOL,
    CONF_PUBLISH_INTERVAL,
    CONF_STALE_INTERVALS,
    CONF_TOPIC_PREFIX,
    DOMAIN,
)
from custom_components.iotshield.keys import generate_private_key, private_key_pem

NODE_ID = "kitchen"

# Lines Home Assistant logs when an integration uses an API that is going away.
DEPRECATION_MARKERS = (
    "Detected that custom integration",
    "Detected code that",
    "This will stop working in Home Assistant",
)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from custom_components."""


@pytest.fixture(autouse=True)
def fail_on_deprecation_warnings(caplog: pytest.LogCaptureFixture) -> Generator[None]:
    """Fail any test during which Home Assistant reports a deprecated API use."""
    caplog.set_level(logging.WARNING)
    yield
    offending = deprecation_reports(caplog.get_records("setup") + caplog.get_records("call"))
    assert not offending, f"deprecated API use reported: {offending}"


def deprecation_reports(records: list[logging.LogRecord]) -> list[str]:
    """Return the log messages in which Home Assistant reports a deprecated API use."""
    return [
        record.getMessage()
        for record in records
        if any(marker in record.getMessage() for marker in DEPRECATION_MARKERS)
    ]


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Register every entity enabled, also those disabled by default."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def every_reading_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write every reading to the reading entities as it comes, without the throttled mean.

    For tests that tell through those states whether a reading was accepted, refused or lost;
    the throttle itself is tested in test_display.py and test_sensor.py.
    """
    monkeypatch.setattr(display, "WINDOW", 0.0)
    monkeypatch.setattr(display, "HEARTBEAT", 0.0)


@pytest.fixture
def mqtt_client_mock(mqtt_client_mock: MqttMockPahoClient) -> Generator[MqttMockPahoClient]:
    """Close the mocked MQTT socket at the end of a test, as a real disconnect would.

    The mocked client never reports its socket closed, so Home Assistant's MQTT housekeeping
    timer would otherwise outlive the test and fail it.
    """
    yield mqtt_client_mock
    on_socket_close = mqtt_client_mock.on_socket_close
    if callable(on_socket_close) and not isinstance(on_socket_close, Mock):
        on_socket_close(mqtt_client_mock, None, Mock(fileno=Mock(return_value=-1)))


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    """Return one RSA-2048 key for the session (generating keys is slow)."""
    return generate_private_key()


@pytest.fixture(scope="session")
def other_private_key() -> rsa.RSAPrivateKey:
    """Return a second key, as a node flashed for another entry would hold."""
    return generate_private_key()


@pytest.fixture
def public_key(private_key: rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    """Return the public half a node encrypts with."""
    return private_key.public_key()


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Return the options the entry is created with."""
    return {CONF_PUBLISH_INTERVAL: 5, CONF_STALE_INTERVALS: 3, CONF_LEGACY_TOPIC: False}


@pytest.fixture
def mock_config_entry(
    private_key: rsa.RSAPrivateKey, entry_options: dict[str, Any]
) -> MockConfigEntry:
    """Return a config entry for node `kitchen`."""
    return MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title=NODE_ID,
        unique_id=NODE_ID,
        data={
            CONF_NODE_ID: NODE_ID,
            CONF_TOPIC_PREFIX: "iotshield",
            CONF_PRIVATE_KEY: private_key_pem(private_key),
        },
        options=entry_options,
        version=1,
    )


@pytest.fixture(scope="module")
def identity() -> ec.EllipticCurvePrivateKey:
    """Make the node's identity key (wire format v2)."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def v2_entry(
    mock_config_entry: MockConfigEntry, identity: ec.EllipticCurvePrivateKey
) -> MockConfigEntry:
    """Return the entry of node `kitchen`, paired with wire format v2 and its identity key."""
    return MockConfigEntry(
        domain=DOMAIN,
        minor_version=2,
        title=NODE_ID,
        unique_id=NODE_ID,
        data={**mock_config_entry.data, CONF_PROTOCOL: 2, CONF_NODE_KEY: node_key_b64(identity)},
        options=dict(mock_config_entry.options),
    )


@pytest.fixture
def node(identity: ec.EllipticCurvePrivateKey, private_key: rsa.RSAPrivateKey) -> V2Sender:
    """Return the v2 node's side (revision 1), as the reference node runs it."""
    return V2Sender(NODE_ID, identity, private_key.public_key(), StoredCounters(None))
