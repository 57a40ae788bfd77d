"""Outbox replay: 100,000 events buffered offline, replayed after reconnect.

The outbox is filled while no broker is reachable; then a real Mosquitto and a
consumer come up and the agent's session (``edge_agent.session.Session`` over the paho
transport) replays the backlog: batched events messages, a bounded in-flight window,
rows deleted on the hub's acks. The consumer (a separate process, logged in as the hub
user) decodes every message with the protocol codec, as the hub does, and acks each one
per protocol (``Ack.ranges``). Measured: events/s from connect to an empty outbox,
events lost (taken but never received), duplicates (received twice).

Baseline, same run: the same batched payloads published raw with paho QoS 1 to the same
consumer (no outbox, no acks awaited): the pipeline's ceiling on this machine.

    ./dev bench outbox_replay [--events 100000] [--json out.json]

Target (DESIGN §6): >= 5,000 events/s, 0 lost, 0 duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AGENT = "replay-agent"


# -- the consumer (runs as its own process: --consume) ---------------------------------

def consume(host: str, port: int, user: str, password: str, expect: int, ack: bool) -> int:
    import threading

    import paho.mqtt.client as mqtt

    from protocol.codec import decode_events, encode
    from protocol.messages import Ack
    from protocol.topics import Channel, agent_topic, subscription

    seen: set[tuple[str, int]] = set()
    stats = {"received": 0, "messages": 0, "bad": 0, "first": None, "last": None}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="replay-consumer", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_queued_messages_set(0)

    def on_connect(c, u, flags, rc, props):
        c.subscribe(subscription(Channel.EVENTS), qos=1)

    def on_subscribe(c, u, mid, rcs, props):
        print("ready", flush=True)

    def on_message(c, u, msg):
        try:
            events = decode_events(msg.payload)
        except Exception:
            stats["bad"] += 1
            return
        now = time.monotonic()
        stats["first"] = stats["first"] or now
        stats["last"] = now
        stats["messages"] += 1
        stats["received"] += len(events)
        seqs = sorted(e.seq for e in events)
        for e in events:
            seen.add((e.event_id, e.seq))
        if ack:
            ranges = []
            for s in seqs:
                if ranges and s == ranges[-1][1] + 1:
                    ranges[-1] = (ranges[-1][0], s)
                else:
                    ranges.append((s, s))
            reply = Ack(agent_id=events[0].agent_id, ranges=ranges, at=datetime.now(UTC))
            c.publish(agent_topic(events[0].agent_id, Channel.ACKS), encode(reply), qos=1)
        if len(seen) >= expect:
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    client.connect(host, port)
    client.loop_start()
    done.wait()
    time.sleep(0.5)  # late duplicates, if any, still count
    client.disconnect()
    client.loop_stop()
    span = (stats["last"] - stats["first"]) if stats["first"] else 0.0
    print(json.dumps({"unique": len(seen), "received": stats["received"], "messages": stats["messages"],
                      "bad": stats["bad"], "span_s": span}), flush=True)
    return 0


def start_consumer(broker, expect: int, ack: bool) -> subprocess.Popen:
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, __file__, "--consume", broker.host, str(broker.port), broker.settings.hub_user,
         broker.settings.hub_password, str(expect), "ack" if ack else "noack"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("consumer did not start")
    return proc


def finish_consumer(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    return json.loads(out.strip().splitlines()[-1])


# -- the agent side ----------------------------------------------------------------------

def fill(outbox, n: int) -> float:
    from edge_agent.emit import EventDraft
    from protocol.ids import new_event_id
    from protocol.messages import EventKind, Evidence, Location, Reading

    loc = Location(lat=31.2304, lon=121.4737, grid_id="grid-07", place="Lane 88, building 3, flat 201")
    t0 = time.monotonic()
    batch = []
    for i in range(n):
        kind = (EventKind.NEW, EventKind.UPDATE, EventKind.END)[i % 3]
        batch.append(EventDraft(
            event_id=new_event_id(), kind=kind, category="elderly_care",
            subcategory="elderly_care.water_no_use", source=f"wm-{i % 256:04d}",
            observed_at=datetime.now(UTC), location=loc,
            evidence=Evidence(reading=Reading(name="volume", value=1234.567 + i, unit="m3")),
            attributes={"rule": "water_no_use", "tier": 1, "notify": "grid_worker", "idle_hours": 8.5,
                        "threshold_hours": 8.0, "resident": f"r{i % 256}"},
        ))
        if len(batch) == 1000:
            outbox.commit(batch)
            batch = []
    if batch:
        outbox.commit(batch)
    return time.monotonic() - t0


async def replay(outbox, broker, password: str, n: int, timeout: float) -> dict:
    from edge_agent.config.sections import (
        MqttConfig,
        OutboxConfig,
        ReconnectConfig,
        TelemetryConfig,
    )
    from edge_agent.session import Session
    from edge_agent.transport import MqttTransport

    cfg = MqttConfig(host=broker.host, port=broker.port)
    session = Session(
        AGENT, outbox,
        lambda will: MqttTransport(cfg, will, client_id=AGENT, username=AGENT, password=password),
        outbox_config=OutboxConfig(), telemetry=TelemetryConfig(interval_s=30),
        reconnect=ReconnectConfig(initial_s=0.1, max_s=1.0), version="bench",
    )
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(session.run(stop))
    while outbox.depth > 0 and time.monotonic() - t0 < timeout:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - t0
    stop.set()
    await task
    return {"seconds": round(elapsed, 3), "events_per_s": round(n / elapsed), "left_in_outbox": outbox.depth,
            "messages": session.stats.messages, "events_sent": session.stats.events,
            "acks": session.stats.acks}


def raw_baseline(broker, payloads: list[bytes]) -> float:
    """Publish the same batched payloads with plain paho QoS 1; seconds until all PUBACKed."""
    import threading

    import paho.mqtt.client as mqtt

    from protocol.topics import Channel, agent_topic

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-baseline", protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
    client.max_queued_messages_set(0)
    acked = {"n": 0}
    done = threading.Event()

    def on_publish(c, u, mid, rc, props):
        acked["n"] += 1
        if acked["n"] == len(payloads):
            done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    topic = agent_topic(AGENT, Channel.EVENTS)
    t0 = time.monotonic()
    for p in payloads:
        info = client.publish(topic, p, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"raw publish failed: {mqtt.error_string(info.rc)}")
    done.wait(300)
    elapsed = time.monotonic() - t0
    client.disconnect()
    client.loop_stop()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--consume"]:
        host, port, user, password, expect, ack = argv[1:7]
        return consume(host, int(port), user, password, int(expect), ack == "ack")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from edge_agent.outbox import Outbox
    from edge_agent.outbox.replay import build_messages
    from hub.broker import BrokerSettings, MosquittoBroker

    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite", AGENT, max_events=max(n, 100_000) + 10)
        fill_s = fill(outbox, n)
        size_mb = round(os.path.getsize(Path(tmp) / "outbox.sqlite") / 1e6, 1)
        # The same batches the replay will send, for the raw baseline.
        rows = outbox.take_backlog(n, 1 << 40)
        outbox.release(r.seq for r in rows)
        payloads = [m.payload for m in build_messages(AGENT, rows, max_events=250)]
        del rows

        broker = MosquittoBroker(BrokerSettings(data_dir=Path(tmp) / "broker", persistence=False))
        broker.start()
        password = "replay-password-123456"
        broker.auth.set_user(AGENT, password)
        broker.reload()
        try:
            consumer = start_consumer(broker, n, ack=False)
            raw_s = raw_baseline(broker, payloads)
            raw = finish_consumer(consumer, 120)
            raw["seconds"] = round(max(raw_s, raw["span_s"]), 3)
            raw["events_per_s"] = round(raw["unique"] / raw["seconds"]) if raw["seconds"] else 0

            consumer = start_consumer(broker, n, ack=True)
            agent = asyncio.run(replay(outbox, broker, password, n, args.timeout))
            got = finish_consumer(consumer, 120)
        finally:
            broker.stop()
            outbox.close()

    lost = n - got["unique"]
    dups = got["received"] - got["unique"]
    ratio = round(agent["events_per_s"] / raw["events_per_s"], 2) if raw["events_per_s"] else None
    result = {"events": n, "fill_seconds": round(fill_s, 1), "outbox_mb": size_mb, "replay": agent,
              "received": got, "lost": lost, "duplicates": dups, "baseline_raw_publish": raw,
              "ratio_replay_to_raw": ratio, "targets": {"events_per_s_min": 5000, "lost": 0, "duplicates": 0},
              "pass": agent["events_per_s"] >= 5000 and lost == 0 and dups == 0 and agent["left_in_outbox"] == 0}
    print(f"outbox replay: {n} events buffered offline ({size_mb} MB, filled in {fill_s:.1f} s)")
    print(f"{'':28}{'agent replay':>14}{'raw publish':>14}")
    print(f"{'seconds':28}{agent['seconds']!s:>14}{raw['seconds']!s:>14}")
    print(f"{'events/s':28}{agent['events_per_s']!s:>14}{raw['events_per_s']!s:>14}")
    print(f"{'messages':28}{agent['messages']!s:>14}{raw['messages']!s:>14}")
    print(f"{'received (unique)':28}{got['unique']!s:>14}{raw['unique']!s:>14}")
    print(f"{'lost':28}{lost!s:>14}")
    print(f"{'duplicates':28}{dups!s:>14}")
    print(f"{'left in outbox':28}{agent['left_in_outbox']!s:>14}")
    print(f"ratio replay / raw: {ratio}; target >= 5,000 events/s, 0 lost, 0 duplicates: "
          f"{'PASS' if result['pass'] else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
