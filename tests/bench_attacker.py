"""Flood topics at a fixed rate as an attacker with broker access would; for bench_ha.

    python bench_attacker.py HOST PORT USER PASSWORD PLAN.json OUT.json

PLAN is an object: `start` (CLOCK_MONOTONIC time of the first message), `seconds`, `qos`
(0 or 1), `seed`, and `streams`, each a `kind` (`forged_v1`: well-formed v1 envelopes around
256 random bytes; `garbage`: bytes no node sends), a `rate` per second and the `topics` it
visits in turn. OUT tells how many messages each stream published (and, at QoS 1, how many
the broker acknowledged) and when the first and the last left.

Runs as its own process so that the flood does not compete with Home Assistant for the GIL.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
import random
import string
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

# Printable text without a JSON shape, and JSON of shapes no node sends.
_TEXT = string.ascii_letters + string.digits + string.punctuation + " "
_JSON_SHAPES = (
    b"[]",
    b"null",
    b"42",
    b'"online!"',
    b'{"v":"2"}',
    b'{"v":2,"type":"data"}',
    b'{"v":2,"type":"data","sid":"x","ctr":1,"ct":"AAAA"}',
    b'{"v":2,"type":"session","sid":1,"ek":"%%%","sig":"%%%"}',
    b'{"v":2,"type":"nonsense"}',
    b'{"state":"maybe"}',
    b'{"v":1,"ct":"not base64"}',
)


def forged_v1(rng: random.Random) -> bytes:
    """Return a well-formed v1 envelope whose ciphertext is 256 random bytes."""
    return b'{"v":1,"ct":"' + base64.b64encode(rng.randbytes(256)) + b'"}'


def _random_bytes(rng: random.Random) -> bytes:
    """Return up to 512 random bytes (seldom UTF-8)."""
    return rng.randbytes(rng.randint(1, 512))


def _random_text(rng: random.Random) -> bytes:
    """Return up to 512 printable characters."""
    return "".join(rng.choices(_TEXT, k=rng.randint(1, 512))).encode()


def _truncated(rng: random.Random) -> bytes:
    """Return a v1 envelope cut short."""
    envelope = forged_v1(rng)
    return envelope[: rng.randint(1, len(envelope) - 1)]


def _wrong_shape(rng: random.Random) -> bytes:
    """Return JSON of a shape no node sends."""
    return rng.choice(_JSON_SHAPES)


def _unknown_version(rng: random.Random) -> bytes:
    """Return an envelope of a wire format that does not exist."""
    return b'{"v":%d}' % rng.randint(3, 1 << 20)


_GARBAGE = (_random_bytes, _random_text, _truncated, _wrong_shape, _unknown_version)


def garbage(rng: random.Random) -> bytes:
    """Return random bytes, random text, a truncated envelope or JSON of a wrong shape."""
    return rng.choice(_GARBAGE)(rng)


MAKERS = {"forged_v1": forged_v1, "garbage": garbage}


def main() -> int:
    """Publish the flood and write what was sent."""
    host, port, user, password, plan_file, out_file = sys.argv[1:7]
    plan: dict[str, Any] = json.loads(Path(plan_file).read_text())
    qos = int(plan["qos"])
    rng = random.Random(plan["seed"])
    streams: list[dict[str, Any]] = plan["streams"]
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-attacker")
    client.username_pw_set(user, password)
    client.on_connect = lambda *_: connected.set()
    # Unbounded: the flood is paced here, not by the broker's acknowledgements.
    client.max_inflight_messages_set(65535)
    client.max_queued_messages_set(0)
    client.connect(host, int(port), keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        return 1
    start = float(plan["start"])
    totals = [round(stream["rate"] * plan["seconds"]) for stream in streams]
    published = [0] * len(streams)
    refused = [0] * len(streams)
    infos: list[paho.MQTTMessageInfo] = []
    first_at: float | None = None
    first_cpu = 0.0
    delay = start - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    while True:
        now = time.monotonic()
        left = False
        for index, stream in enumerate(streams):
            # Every message due by now leaves now: a late process catches up, keeping the rate.
            due = min(totals[index], int((now - start) * stream["rate"]) + 1)
            topics: list[str] = stream["topics"]
            make = MAKERS[stream["kind"]]
            while published[index] + refused[index] < due:
                sent = published[index] + refused[index]
                info = client.publish(topics[sent % len(topics)], make(rng), qos=qos)
                if info.rc == paho.MQTT_ERR_SUCCESS:
                    published[index] += 1
                    if qos:
                        infos.append(info)
                else:
                    refused[index] += 1
            left = left or published[index] + refused[index] < totals[index]
        if first_at is None:
            first_at, first_cpu = now, time.process_time()
        if not left:
            break
        upcoming = min(
            start + (published[i] + refused[i]) / stream["rate"]
            for i, stream in enumerate(streams)
            if published[i] + refused[i] < totals[i]
        )
        if (pause := upcoming - time.monotonic()) > 0:
            time.sleep(pause)
    last_at = time.monotonic()
    cpu_percent = (time.process_time() - first_cpu) / (last_at - first_at) * 100
    deadline = time.monotonic() + 60
    for info in infos:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    acknowledged = sum(1 for info in infos if info.is_published()) if qos else None
    client.disconnect()
    client.loop_stop()
    figures = {
        "qos": qos,
        "first_at": first_at,
        "last_at": last_at,
        "acknowledged": acknowledged,
        "cpu_percent": cpu_percent,
        "streams": {
            stream["kind"]: {
                "rate": stream["rate"],
                "planned": totals[index],
                "published": published[index],
                "refused_by_client": refused[index],
            }
            for index, stream in enumerate(streams)
        },
    }
    Path(out_file).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
