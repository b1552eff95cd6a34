"""The reference node's MQTT behaviour: QoS 1, re-announce after a broker restart, commands."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

from cryptography.hazmat.primitives.asymmetric import rsa
from iotshield_node.v2 import load_or_create_identity, node_key_b64
import paho.mqtt.client as paho
import pytest

from custom_components.iotshield.keys import public_key_pem
from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    SessionMessage,
    V2Receiver,
    V2State,
    load_node_key,
    parse_v2_envelope,
    sign_command,
)

from .broker import Broker, Observer, start_broker, start_reference_node, stop_broker

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled")]


def test_node_announces_publishes_obeys_and_reconnects(
    private_key: rsa.RSAPrivateKey, other_private_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """Announce, v2 data, signed commands only, new session after a broker restart."""
    brokers = [start_broker()]
    try:
        _exercise_node(brokers, private_key, other_private_key, tmp_path)
    finally:
        for broker in brokers:
            stop_broker(broker)
        shutil.rmtree(brokers[0].directory, ignore_errors=True)


def _exercise_node(
    brokers: list[Broker],
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Run the node against the broker, restarting it once (the new broker joins `brokers`)."""
    broker = brokers[0]
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    observer = Observer(broker)
    identity = load_or_create_identity(tmp_path / "kitchen.identity.pem")
    node = start_reference_node(broker, key, "--interval", "600", "--state-dir", str(tmp_path))
    receiver = V2Receiver(
        "kitchen", load_node_key(node_key_b64(identity)), [private_key], V2State()
    )

    def decode(payload: bytes) -> Telemetry | None:
        msg = parse_v2_envelope(payload)
        if isinstance(msg, SessionMessage):
            receiver.accept_session(msg, receiver.verify_session(msg))
            return None
        return receiver.open_data(msg)

    def is_data(msg: paho.MQTTMessage) -> bool:
        return msg.topic == "iotshield/kitchen/sensors/data" and b'"type":"data"' in msg.payload

    def is_session(msg: paho.MQTTMessage) -> bool:
        return msg.topic == "iotshield/kitchen/sensors/data" and b'"type":"session"' in msg.payload

    try:
        status = observer.wait_for(lambda m: m.topic == "iotshield/kitchen/status")
        assert json.loads(status.payload)["interval"] == 600
        assert json.loads(status.payload)["node_key"] == node_key_b64(identity)
        late = Observer(broker)
        assert late.wait_for(lambda m: m.topic == "iotshield/kitchen/status").retain
        late.close()
        session = observer.wait_for(is_session)
        decode(session.payload)
        data = observer.wait_for(is_data)
        assert data.qos == 1
        first = decode(data.payload)
        assert first is not None

        commands = "iotshield/kitchen/control/commands"
        # Unsigned, forged and replayed commands are ignored...
        observer.publish(commands, '{"cmd":"set_interval","interval":3}')
        forged = sign_command(other_private_key, "kitchen", 10**13, "set_interval", {"interval": 4})
        observer.publish(commands, forged.decode())
        signed = sign_command(private_key, "kitchen", 10**13, "set_interval", {"interval": 7})
        # ...and a signed one is obeyed, once.
        observer.publish(commands, signed.decode())
        status = observer.wait_for(lambda m: m.topic == "iotshield/kitchen/status")
        assert json.loads(status.payload)["interval"] == 7
        data = observer.wait_for(is_data)
        second = decode(data.payload)
        assert second is not None
        assert second.seq > first.seq
        observer.publish(commands, signed.decode())
        observer.publish(commands, "not json")
        with pytest.raises(pytest.fail.Exception):
            observer.wait_for(lambda m: m.topic == "iotshield/kitchen/status", seconds=2)

        # The broker goes away and comes back empty: the node reconnects and announces again.
        stop_broker(broker)
        brokers.append(start_broker(broker.directory, broker.port))
        # (A broker that shuts down may first deliver the node's last will, `offline`.)
        status = observer.wait_for(
            lambda m: m.topic == "iotshield/kitchen/status" and m.payload.startswith(b"{"),
            seconds=40,
        )
        assert json.loads(status.payload)["state"] == "online"
        assert json.loads(status.payload)["interval"] == 7
        # The node opened a new session on reconnecting, possibly before this observer had
        # subscribed again; like Home Assistant, ask for one (signed) and read on.
        observer.publish(
            commands, sign_command(private_key, "kitchen", 10**13 + 1, "open_session", {}).decode()
        )
        third = None
        while third is None:
            # Sessions (the reconnect's, if seen, then the requested one) come before data;
            # data of a session this observer missed is skipped, as Home Assistant refuses it.
            msg = observer.wait_for(lambda m: is_session(m) or is_data(m))
            try:
                third = decode(msg.payload)
            except PayloadRejected as err:
                if err.reason is not Rejection.UNKNOWN_SESSION:
                    raise
        assert node.poll() is None
    finally:
        node.terminate()
        node.wait(timeout=15)
        observer.close()
