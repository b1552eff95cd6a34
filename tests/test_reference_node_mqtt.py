"""Both nodes' MQTT behaviour seen from the broker: QoS 1, re-announce, hostile commands.

The same test runs against the Python reference node and the firmware's Node built for the
host; the C++ node takes over the identity file the test makes, as it takes over the Python
node's state.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
import shutil
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from iotshield_node.v2 import load_or_create_identity, node_key_b64
import paho.mqtt.client as paho
import pytest

from custom_components.iotshield.keys import public_key_pem
from custom_components.iotshield.protocol import PayloadRejected, Rejection, Telemetry
from custom_components.iotshield.protocol_v2 import (
    DataMessage,
    SessionMessage,
    V2Receiver,
    V2State,
    command_session_tag,
    load_node_key,
    parse_v2_envelope,
    sign_command,
)

from .broker import (  # noqa: F401
    Broker,
    Observer,
    StartNode,
    mqtt_node,
    start_broker,
    start_node,
    stop_broker,
)

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("socket_enabled")]


def test_node_announces_publishes_obeys_and_reconnects(
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Announce, sessions answering challenges, bound commands only, reconnect after a restart."""
    brokers = [start_broker()]
    try:
        _exercise_node(brokers, private_key, other_private_key, tmp_path, start_node)
    finally:
        for broker in brokers:
            stop_broker(broker)
        shutil.rmtree(brokers[0].directory, ignore_errors=True)


def _exercise_node(
    brokers: list[Broker],
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    tmp_path: Path,
    start_node: StartNode,  # noqa: F811
) -> None:
    """Run the node against the broker, restarting it once (the new broker joins `brokers`)."""
    broker = brokers[0]
    key = tmp_path / "ha_public.pem"
    key.write_text(public_key_pem(private_key))
    observer = Observer(broker)
    identity = load_or_create_identity(tmp_path / "kitchen.identity.pem")
    node = start_node(broker, key, "--interval", "600", "--state-dir", str(tmp_path))
    receiver = V2Receiver(
        "kitchen", load_node_key(node_key_b64(identity)), [private_key], V2State()
    )
    commands = "iotshield/kitchen/control/commands"
    counter = itertools.count(10**13)

    def current_tag() -> str:
        """Return the tag of the session Home Assistant holds as current."""
        assert receiver.state.current is not None
        return command_session_tag(receiver.state.current.key)

    def command(cmd: str, args: dict[str, Any], bound: bool = True) -> bytes:
        """Return a command signed by Home Assistant, bound to its current session."""
        tag = current_tag() if bound else None
        return sign_command(private_key, "kitchen", next(counter), cmd, args, session_tag=tag)

    def is_data_topic(msg: paho.MQTTMessage) -> bool:
        return msg.topic == "iotshield/kitchen/sensors/data"

    def is_status(msg: paho.MQTTMessage) -> bool:
        return msg.topic == "iotshield/kitchen/status"

    def next_reading() -> Telemetry:
        """Take sessions and data in order, as Home Assistant does, up to the next reading."""
        while True:
            msg = parse_v2_envelope(observer.wait_for(is_data_topic).payload)
            if isinstance(msg, DataMessage):
                return receiver.open_data(msg)
            receiver.accept_session(msg, receiver.verify_session(msg))

    try:
        status = json.loads(observer.wait_for(is_status).payload)
        assert (status["interval"], status["proto"], status["rev"]) == (600, 2, 1)
        assert status["node_key"] == node_key_b64(identity)
        late = Observer(broker)
        assert late.wait_for(is_status).retain
        late.close()
        # The node's first session answers no challenge of this Home Assistant: it is refused,
        # and so is its reading, until Home Assistant asks for a session with a challenge.
        delivered = observer.wait_for(is_data_topic)
        assert delivered.qos == 1
        session = parse_v2_envelope(delivered.payload)
        assert isinstance(session, SessionMessage)
        with pytest.raises(PayloadRejected) as stale:
            receiver.accept_session(session, receiver.verify_session(session))
        assert stale.value.reason is Rejection.STALE_SESSION
        with pytest.raises(PayloadRejected) as unknown:
            next_reading()
        assert unknown.value.reason is Rejection.UNKNOWN_SESSION
        observer.publish(
            commands,
            command("open_session", {"ch": receiver.issue_challenge()}, bound=False).decode(),
        )
        first = next_reading()

        # Unsigned, forged, unbound and replayed commands are ignored...
        observer.publish(commands, '{"cmd":"set_interval","interval":3}')
        forged = sign_command(
            other_private_key,
            "kitchen",
            next(counter),
            "set_interval",
            {"interval": 4},
            session_tag=current_tag(),
        )
        observer.publish(commands, forged.decode())
        observer.publish(commands, command("set_interval", {"interval": 5}, bound=False).decode())
        signed = command("set_interval", {"interval": 7})
        # ...and a signed one is obeyed, once.
        observer.publish(commands, signed.decode())
        assert json.loads(observer.wait_for(is_status).payload)["interval"] == 7
        second = next_reading()
        assert second.seq > first.seq
        observer.publish(commands, signed.decode())
        observer.publish(commands, "not json")
        observer.publish(commands, command("set_interval", {"interval": 8}).decode())
        # Commands are handled in order: the replay, had it run, would have announced 7 first.
        assert json.loads(observer.wait_for(is_status).payload)["interval"] == 8

        # The broker goes away and comes back empty: the node reconnects and announces again.
        stop_broker(broker)
        brokers.append(start_broker(broker.directory, broker.port))
        # (A broker that shuts down may first deliver the node's last will, `offline`.)
        status = json.loads(
            observer.wait_for(
                lambda m: is_status(m) and json.loads(m.payload)["state"] == "online",
                seconds=40,
            ).payload
        )
        assert status["interval"] == 8
        # The node opened a new session on reconnecting, possibly before this observer had
        # subscribed again; like Home Assistant, ask for one (signed) and read on.
        observer.publish(
            commands,
            command("open_session", {"ch": receiver.issue_challenge()}, bound=False).decode(),
        )
        third = None
        while third is None:
            # Data of a session this observer missed is skipped, as Home Assistant refuses it.
            try:
                third = next_reading()
            except PayloadRejected as err:
                if err.reason is not Rejection.UNKNOWN_SESSION:
                    raise
        assert third.seq > second.seq
        assert node.poll() is None
    finally:
        node.terminate()
        node.wait(timeout=15)
        observer.close()
