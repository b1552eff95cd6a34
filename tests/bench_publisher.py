"""Publish a schedule of messages as nodes do (QoS 1) and record when each left; for bench_ha.

    python bench_publisher.py HOST PORT USER PASSWORD PLAN.json SENT.json [START]
    python bench_publisher.py HOST PORT USER PASSWORD - SENT.jsonl START

A message is due `due` seconds after START (a CLOCK_MONOTONIC time, so that another process
can keep to the same schedule), or else after the connection is made. With `-` the plan comes
as JSON lines on stdin, in order of `due`, until it closes (the soak plans as it goes), and
what was sent is appended to SENT.jsonl line by line.
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
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.username_pw_set(user, password)
    client.on_connect = lambda *_: connected.set()
    # Back soon after a broker restart (the soak's).
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    # Enough in flight for a burst: QoS 1 messages wait for their acknowledgements.
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port), keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        return 1
    start = float(sys.argv[7]) if sys.argv[7:] else time.monotonic()
    if plan_file == "-":
        stream(client, start, Path(out_file))
        # The last QoS 1 messages are acknowledged.
        time.sleep(2)
        client.disconnect()
        client.loop_stop()
        return 0
    plan = sorted(json.loads(Path(plan_file).read_text()), key=lambda item: item["due"])
    sent = []
    infos = []
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


def stream(client: paho.Client, start: float, out_file: Path) -> None:
    """Publish the JSON lines of stdin as they fall due, appending each one sent to out_file."""
    with out_file.open("a") as out:
        for line in sys.stdin:
            item = json.loads(line)
            delay = start + item["due"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.monotonic()
            # Not waited for: a message published while the broker restarts is sent on reconnect.
            client.publish(item["topic"], item["payload"].encode(), qos=1)
            out.write(json.dumps({"node": item["node"], "seq": item["seq"], "at": at}) + "\n")
            out.flush()


if __name__ == "__main__":
    sys.exit(main())
