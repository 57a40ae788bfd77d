"""Hub ingest throughput through a private Mosquitto, next to the raw ceiling.

Every phase drains the same kind of backlog from a fresh broker: the subscriber (or the
hub) subscribes once with a persistent session, goes away, the benchmark publishes the
workload (QoS 1), and the subscriber comes back and takes it as fast as it can. The rate
is events / (last commit − first message handed to the writer) for the hub, and
messages / (last − first message) for the raw ceiling: a QoS 1 paho subscriber that does
nothing, same broker, same client library, same shared subscription.

Two raw ceilings for single-event messages: ``raw single`` is the target's baseline, a
plain paho subscriber; ``broker single`` runs the same do-nothing subscriber on the hub's
receive-tuned client (``hub.ingest.fastpaho``), which reads PUBLISH packets straight from
its buffer, so it shows how fast Mosquitto itself can deliver.

The hub does everything it does in production: decode and validate with the codec,
dedupe, lifecycle rows, merge into cases (screen, route, dispatch, audit), commit in WAL
with synchronous=FULL, then publish one ack per agent per batch. After each phase the
benchmark checks the database: every message stored once (0 lost, 0 duplicates) and
every agent acknowledged up to its last seq.

    ./dev bench hub_ingest --json benchmarks/results/hub_ingest.json
    ./dev bench hub_ingest --quick            # smaller, for a smoke run
    ./dev bench hub_ingest --batched-only --receivers 1 --repeat 5   # five batched runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _hubbench import (  # noqa: E402
    NullSubscriber,
    Publisher,
    build,
    cpu_seconds,
    messages,
    start_broker,
    tmpdir,
    workload,
)

from hub.app import Hub  # noqa: E402
from hub.config import IngestConfig  # noqa: E402
from protocol.topics import Channel, subscription  # noqa: E402


def raw_phase(name: str, msgs: list, events: int, fast: bool = False) -> dict:
    for tmp in tmpdir():
        broker = start_broker(tmp / "broker")
        try:
            null = NullSubscriber(broker, subscription(Channel.EVENTS, shared_group="raw"), fast=fast)
            null.subscribe_and_leave()
            pub = Publisher(broker)
            pub.publish_all(msgs)
            pub.close()
            b0 = cpu_seconds(broker.pid)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            secs = null.drain(len(msgs))
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            return {
                "phase": name, "messages": len(msgs), "events": events, "seconds": round(secs, 3),
                "messages_per_s": round(len(msgs) / secs), "events_per_s": round(events / secs),
                "subscriber_cpu": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / secs, 2),
                "broker_cpu": round((cpu_seconds(broker.pid) - b0) / secs, 2),
                "cpu_us_per_msg": {
                    "subscriber": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / len(msgs) * 1e6, 1),
                    "broker": round((cpu_seconds(broker.pid) - b0) / len(msgs) * 1e6, 1)},
            }
        finally:
            broker.stop()
    raise AssertionError("unreachable")


async def hub_phase(name: str, msgs: list, expected: dict[str, int], receivers: int,
                    decode: str = "batches") -> dict:
    events = sum(n for _, _, n in msgs)
    for tmp in tmpdir():
        broker = start_broker(tmp / "broker")
        try:
            setup = build(tmp, broker, receivers=receivers, decode_in_receivers=decode,
                          client_id="bench-" + name.replace(" ", "-").replace("#", "r"))
            async with Hub(setup, run_scheduler=False):
                pass  # subscribe once: the receivers' persistent sessions now queue for them
            pub = Publisher(broker)
            pub.publish_all(msgs)
            pub.close()
            hub = Hub(setup, run_scheduler=False)
            b0 = cpu_seconds(broker.pid)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            await hub.start()
            recv0 = {r.process.pid: cpu_seconds(r.process.pid) for r in hub.receivers
                     if hasattr(r, "process")}
            w = hub.writer
            deadline = time.monotonic() + 900
            while w.stats.events_received < events:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: stored {w.stats.events_received} of {events}")
                await asyncio.sleep(0.05)
            secs = w.last_commit_monotonic - w.first_submit_monotonic
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            recv_cpu = sum(cpu_seconds(pid) - c for pid, c in recv0.items())
            broker_cpu = cpu_seconds(broker.pid) - b0
            counts = await hub.read(lambda r: r.counts())
            agents = await hub.read(lambda r: r.list_agents(100_000))
            stats = w.stats.as_dict()
            await asyncio.sleep(0.5)  # let the last acks leave
            await hub.stop()
            unacked = sum(1 for a in agents if a.seq_upto != expected[a.agent_id])
            unacked += len(expected) - len(agents)
            return {
                "phase": name, "receivers": receivers, "decode_in_receivers": decode, "messages": len(msgs), "events": events,
                "seconds": round(secs, 3), "messages_per_s": round(len(msgs) / secs),
                "events_per_s": round(events / secs),
                "hub_cpu": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / secs, 2),
                "receiver_cpu": round(recv_cpu / secs, 2), "broker_cpu": round(broker_cpu / secs, 2),
                "cpu_us_per_msg": {
                    "hub": round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / len(msgs) * 1e6, 1),
                    "receivers": round(recv_cpu / len(msgs) * 1e6, 1),
                    "broker": round(broker_cpu / len(msgs) * 1e6, 1)},
                "stored": counts["messages_stored"], "lost": events - counts["messages_stored"],
                "duplicates": stats["duplicates"], "conflicts": stats["conflicts"],
                "dead_letters": counts["dead_letters"], "lifecycles": counts["lifecycles"],
                "cases": counts["cases_total"], "agents_not_fully_acked": unacked,
                "batches": stats["batches"], "acks_sent": stats["acks_sent"],
            }
        finally:
            broker.stop()
    raise AssertionError("unreachable")


def _cpu_text(r: dict) -> str:
    c = r["cpu_us_per_msg"]
    if "subscriber" in c:
        return f"{c['subscriber']} + {c['broker']}"
    return f"{c['hub']} + {c['receivers']} + {c['broker']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events for the single-event phases")
    p.add_argument("--batch-events", type=int, default=200_000, help="events for the batched phases")
    p.add_argument("--per-message", type=int, default=250, help="events per batched message")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--updates", type=int, default=2,
                   help="updates per lifecycle (new → updates → end): fewer means more case work")
    p.add_argument("--receivers", default="1,2", help="receiver process counts to measure")
    p.add_argument("--decode", default=None, choices=["batches", "all", "none"],
                   help="ingest.decode_in_receivers (default: the hub's default)")
    p.add_argument("--quick", action="store_true", help="20,000 / 40,000 events")
    p.add_argument("--single-only", action="store_true", help="skip the batched phases")
    p.add_argument("--batched-only", action="store_true", help="skip the single-event phases")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure the single-event phases this many times, alternating raw and hub")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.batch_events = 20_000, 40_000
    receivers = [int(x) for x in args.receivers.split(",")]
    decode = args.decode or IngestConfig.model_fields["decode_in_receivers"].default
    load_start = os.getloadavg()

    def prepare(n_events: int, per_message: int) -> tuple[list, dict[str, int]]:
        work = workload(n_events, args.agents, args.updates)
        # Keep only bytes and per-agent counts: live Event objects would slow the hub's GC.
        return messages(work, per_message), {a: len(evs) for a, evs in work.items()}

    results = []
    if not args.batched_only:
        single, single_counts = prepare(args.events, 1)
        for rep in range(args.repeat):
            tag = f" #{rep + 1}" if args.repeat > 1 else ""
            results.append(raw_phase(f"raw single{tag}", single, args.events))
            results.append(raw_phase(f"broker single{tag}", single, args.events, fast=True))
            for n in receivers:
                results.append(asyncio.run(hub_phase(f"hub single x{n}{tag}", single, single_counts, n, decode)))
        del single
    if not args.single_only:
        batched, batch_counts = prepare(args.batch_events, args.per_message)
        for rep in range(args.repeat):
            tag = f" #{rep + 1}" if args.repeat > 1 else ""
            results.append(raw_phase(f"raw batched{tag}", batched, args.batch_events))
            for n in receivers:
                results.append(asyncio.run(hub_phase(f"hub batched x{n}{tag}", batched, batch_counts, n, decode)))

    raw_single = broker_single = 0
    for r in results:  # each hub single phase against the raw phases just before it
        if r["phase"].startswith("raw single"):
            raw_single = r["messages_per_s"]
        elif r["phase"].startswith("broker single"):
            broker_single = r["messages_per_s"]
        elif r["phase"].startswith("hub single"):
            r["ratio_to_raw"] = round(r["messages_per_s"] / raw_single, 3)
            r["ratio_to_broker"] = round(r["messages_per_s"] / broker_single, 3)
    head = f"{'phase':<18}{'msgs/s':>9}{'events/s':>10}{'ratio':>7}{'lost':>6}{'dups':>6}" \
           f"{'hub cpu':>8}{'recv cpu':>9}{'broker':>7}{'CPU us/msg (sub|hub+recv+broker)':>34}"
    print(head)
    for r in results:
        print(f"{r['phase']:<18}{r['messages_per_s']:>9}{r['events_per_s']:>10}"
              f"{r.get('ratio_to_raw', ''):>7}{r.get('lost', ''):>6}{r.get('duplicates', ''):>6}"
              f"{r.get('hub_cpu', r.get('subscriber_cpu', '')):>8}{r.get('receiver_cpu', ''):>9}"
              f"{r['broker_cpu']:>7}{_cpu_text(r):>34}")
    load = os.getloadavg()
    ratios = [r["ratio_to_raw"] for r in results if "ratio_to_raw" in r and r.get("receivers") == receivers[0]]
    if len(ratios) > 1:
        print(f"single-event ratio (x{receivers[0]}) over {len(ratios)} pairs: "
              f"min {min(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f}, max {max(ratios):.2f}")
    if any("ratio_to_broker" in r for r in results):
        print("ratio: against 'raw single', a plain paho QoS 1 subscriber that does nothing (the "
              "target's baseline); 'broker single' is the same on the hub's receive-tuned client, "
              "near what Mosquitto can send; hub / broker single: "
              + ", ".join(f"{r['phase']} {r['ratio_to_broker']:.2f}" for r in results if "ratio_to_broker" in r))
    rates = [r["events_per_s"] for r in results
             if r["phase"].startswith(f"hub batched x{receivers[0]}") and r.get("receivers") == receivers[0]]
    if len(rates) > 1:
        print(f"batched replay (x{receivers[0]}) over {len(rates)} runs: min {min(rates):,}, "
              f"median {sorted(rates)[len(rates) // 2]:,}, max {max(rates):,} events/s")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out = {"benchmark": "hub_ingest", "results": results,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_at_start": [round(x, 2) for x in load_start],
                       "loadavg_at_end": [round(x, 2) for x in load]},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    bad = [r for r in results if r.get("lost") or r.get("duplicates") or r.get("agents_not_fully_acked")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
