"""Publish a schedule of messages as nodes do (QoS 1) and record when each left; for bench_ha.

    python bench_publisher.py HOST PORT USER PASSWORD PLAN.json SENT.json [START]

A message is due `due` seconds after START (a CLOCK_MONOTONIC time, so that another process
can keep to the same schedule), or else after the connection is made.
Runs as its own process so that publishing does not compete with Home Assistant for the GIL;
times are CLOCK_MONOTONIC, which both processes share.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    """Publish the plan and write what was sent."""
    host, port, user, password, plan_file, out_file = sys.argv[1:7]
    plan = sorted(json.loads(Path(plan_file).read_text()), key=lambda item: item["due"])
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.username_pw_set(user, password)
    client.on_connect = lambda *_: connected.set()
    # Enough in flight for a burst: QoS 1 messages wait for their acknowledgements.
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port), keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        return 1
    sent = []
    infos = []
    start = float(sys.argv[7]) if sys.argv[7:] else time.monotonic()
    for item in plan:
        delay = start + item["due"] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        at = time.monotonic()
        infos.append(client.publish(item["topic"], item["payload"].encode(), qos=1))
        sent.append({"node": item["node"], "seq": item["seq"], "at": at})
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    Path(out_file).write_text(json.dumps(sent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
