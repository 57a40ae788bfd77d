"""Trigger → case dispatched latency under background load.

A private Mosquitto and a hub (as ``cityops-hub serve`` runs it: receiver process, one
writer). A background publisher sends sensor events at ``--rate`` events/s (single-event
messages, QoS 1, 50 agents, lifecycles of new → 20 updates → end). A probe agent sends a
fresh camera detection every ``--every`` seconds, each at its own place, so each opens a
new case that is screened, routed and dispatched. Latency is measured from just before
the probe's publish to the arrival of the hub's ack for it: the hub acks only after the
commit that dispatched the case, so this is an upper bound of publish → dispatched.
Afterwards every probe case is checked to be ``dispatched`` in the database.

    ./dev bench trigger_latency --json benchmarks/results/trigger_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt  # noqa: E402
from _hubbench import build, start_broker, tmpdir  # noqa: E402

from hub.app import Hub  # noqa: E402
from protocol.codec import decode_ack, encode_events  # noqa: E402
from protocol.messages import Event, Evidence, Location, Reading, SnapshotRef  # noqa: E402
from protocol.topics import Channel, agent_topic  # noqa: E402

SNAP = SnapshotRef(sha256=hashlib.sha256(b"probe").hexdigest(), bytes=20_000, width=640, height=480)


def _client(broker, user: str, password: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{user}", protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def background(broker, rate: float, stop: threading.Event, sent: list[int]) -> None:
    """Publish sensor events at ``rate`` per second until ``stop``."""
    agents = BG_AGENTS
    clients = {a: _client(broker, a, f"pw-{a}-0123456789") for a in agents}
    seqs = dict.fromkeys(agents, 0)
    t0 = time.perf_counter()
    n = 0
    while not stop.is_set():
        a = agents[n % len(agents)]
        seqs[a] += 1
        seq = seqs[a]
        life, step = divmod(seq - 1, 22)
        kind = "new" if step == 0 else ("end" if step == 21 else "update")
        ev = Event(event_id=f"{a}-w{life}", agent_id=a, seq=seq, kind=kind, category="elderly_care",
                   subcategory="elderly_care.water_no_use", source=f"meter-{life % 4}",
                   observed_at=datetime.now(UTC), location=Location(lat=31.215, lon=121.405),
                   evidence=Evidence(reading=Reading(name="flow", value=0.0)))
        info = clients[a].publish(agent_topic(a, Channel.EVENTS), encode_events([ev]), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"background publish refused: {mqtt.error_string(info.rc)}")
        n += 1
        sent[0] = n
        ahead = n / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)
    for c in clients.values():
        c.disconnect()
        c.loop_stop()


BG_AGENTS = [f"bg-{i:02d}" for i in range(50)]


def add_users(broker) -> None:
    users = {a: f"pw-{a}-0123456789" for a in BG_AGENTS}
    users["probe"] = "pw-probe-0123456789"
    broker.auth.set_users(users)
    broker.reload()


class Probe:
    def __init__(self, broker):
        self.acked: dict[int, float] = {}
        self.sent: dict[int, float] = {}
        self._ready = threading.Event()
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe",
                                      protocol=mqtt.MQTTv5)
        c.username_pw_set("probe", "pw-probe-0123456789")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(agent_topic("probe", Channel.ACKS), qos=1)
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = self._on_ack
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert self._ready.wait(10)

    def _on_ack(self, client, userdata, msg) -> None:
        now = time.perf_counter()
        ack = decode_ack(msg.payload, agent_id="probe")
        for seq in self.sent:
            if seq not in self.acked and ack.covers(seq):
                self.acked[seq] = now

    def fire(self, i: int) -> None:
        seq = i + 1
        lat = 31.2005 + (i // 45) * 0.0006
        lon = 121.4005 + (i % 45) * 0.0006
        ev = Event(event_id=f"probe-{i}", agent_id="probe", seq=seq, kind="new", category="roads",
                   subcategory="roads.fire_lane_blocked", source="cam-1", observed_at=datetime.now(UTC),
                   location=Location(lat=lat, lon=lon), confidence=0.9,
                   evidence=Evidence(bbox=(0.2, 0.2, 0.6, 0.7), snapshot=SNAP))
        payload = encode_events([ev])
        self.sent[seq] = time.perf_counter()
        info = self.client.publish(agent_topic("probe", Channel.EVENTS), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(mqtt.error_string(info.rc))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))]


async def run(args) -> dict:
    for tmp in tmpdir():
        broker = start_broker(tmp / "broker")
        try:
            setup = build(tmp, broker, receivers=args.receivers)
            add_users(broker)
            async with Hub(setup, run_scheduler=False) as hub:
                stop = threading.Event()
                sent = [0]
                bg = threading.Thread(target=background, args=(broker, args.rate, stop, sent), daemon=True)
                bg.start()
                probe = await asyncio.to_thread(Probe, broker)
                await asyncio.sleep(args.warmup)
                bg0, t0 = sent[0], time.perf_counter()
                for i in range(args.probes):
                    probe.fire(i)
                    await asyncio.sleep(args.every)
                deadline = time.monotonic() + 30
                while len(probe.acked) < args.probes and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                bg_rate = (sent[0] - bg0) / (time.perf_counter() - t0)
                stop.set()
                bg.join(10)
                states = await hub.read(lambda r: [
                    (r.get_case(lc.case_id).state if (lc := r.get_lifecycle("probe", f"probe-{i}"))
                     and lc.case_id else None) for i in range(args.probes)])
                stats = hub.writer.stats.as_dict()
            lat = [(probe.acked[s] - probe.sent[s]) * 1000 for s in probe.sent if s in probe.acked]
            return {
                "probes": args.probes, "acked": len(lat),
                "dispatched": sum(1 for s in states if s == "dispatched"),
                "background_events_per_s": round(bg_rate), "target_background": args.rate,
                "p50_ms": round(pct(lat, 0.50), 1), "p90_ms": round(pct(lat, 0.90), 1),
                "p99_ms": round(pct(lat, 0.99), 1), "max_ms": round(max(lat), 1),
                "hub_events_stored": stats["events_stored"], "receivers": args.receivers,
            }
        finally:
            broker.stop()
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=1000, help="background events/s")
    p.add_argument("--probes", type=int, default=300)
    p.add_argument("--every", type=float, default=0.1, help="seconds between probes")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--receivers", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    r = asyncio.run(run(args))
    print(f"{'probes':>7}{'dispatched':>11}{'bg ev/s':>9}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    print(f"{r['probes']:>7}{r['dispatched']:>11}{r['background_events_per_s']:>9}{r['p50_ms']:>8}"
          f"{r['p90_ms']:>8}{r['p99_ms']:>8}{r['max_ms']:>8}")
    out = {"benchmark": "trigger_latency", "result": r,
           "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if r["dispatched"] == r["probes"] and r["p99_ms"] < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
