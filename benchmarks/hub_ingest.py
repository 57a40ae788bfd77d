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

With ``--notify``, every hub phase is followed by the same phase with notifications on
(issue 19: delivery must not slow ingest): the hub's ``notify:`` sends to a signed-webhook
sink on loopback in a process of its own, every department, lead and the operators have
that webhook as their contact (so each case the drain dispatches tells its department),
and a feeder adds ``--notify-per-minute`` more, steadily, for as long as the drain lasts,
inside the ingest batches' own transactions (as the hub writes every notification). The
phase reports events/s against the plain phase just before it, and enqueue (the delivery
row's creation in the writer) → taken by the sink, p50/p99/max, once every delivery has
settled. ``--notify-feeder-only`` leaves the contacts out: only the feeder's steady stream
is sent.

    ./dev bench hub_ingest --json benchmarks/results/hub_ingest.json
    ./dev bench hub_ingest --quick            # smaller, for a smoke run
    ./dev bench hub_ingest --batched-only --receivers 1 --repeat 5   # five batched runs
    ./dev bench hub_ingest --notify --receivers 1 --repeat 3         # ingest with/without delivery
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _hubbench import (  # noqa: E402
    NullSubscriber,
    Publisher,
    WebhookSink,
    build,
    cpu_seconds,
    messages,
    start_broker,
    tmpdir,
    workload,
)

from hub.app import Hub  # noqa: E402
from hub.config import IngestConfig  # noqa: E402
from hub.notify.model import Message, Recipient  # noqa: E402
from protocol.taxonomy import taxonomy  # noqa: E402
from protocol.topics import Channel, subscription  # noqa: E402

SINK = "bench-sink"  # the webhook's name under notify: and in the contacts
DELIVERY_TARGET_P99_S = 5.0  # issue 19


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


def sink_contacts() -> dict:
    """Routing contacts that all reach the sink: every department, the operators, the leads."""
    def me() -> list[dict]:  # a fresh list each time: the hub's YAML refuses aliases
        return [{"channel": "webhook", "address": SINK}]

    return {"departments": {d: me() for d in [*taxonomy().departments, "xinqiao_office"]},
            "operators": me(), "leads": {"city": me()}}


class BatchFeeder:
    """Adds ``per_minute`` notifications to the ingest batches' own transactions, as many
    in each batch as have come due since the drain began: written with the change that
    causes them, as the hub writes every notification (a transaction of their own would
    add commits production does not make). Wraps the writer's ``ingestor.apply``; runs on
    the writer thread."""

    def __init__(self, hub: Hub, per_minute: float, tag: str) -> None:
        outbox = hub.engine.outbox
        assert outbox is not None and hub.writer is not None
        self.outbox, self.clock, self.tag = outbox, hub.clock, tag
        self.per_s = per_minute / 60
        self.fed = 0
        self.start = time.monotonic()
        ingestor = hub.writer.ingestor
        apply = ingestor.apply

        def apply_and_notify(repo, items):
            result = apply(repo, items)
            self._enqueue_due(repo)
            return result

        ingestor.apply = apply_and_notify  # type: ignore[method-assign]

    def _enqueue_due(self, repo) -> None:
        due = int((time.monotonic() - self.start) * self.per_s) + 1
        now = self.clock.now()
        while self.fed < due:
            i = self.fed
            msg = Message(f"[cityops] bench notice {i}",
                          f"bench notice {i} while the hub drains a backlog\ncase: -\nwhere: -",
                          {"kind": "bench", "i": i})
            self.fed += self.outbox.enqueue(repo, event_key=f"bench/{self.tag}/{i}", kind="bench",
                                            message=msg, recipients=[Recipient("webhook", SINK)], now=now)


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _settled(hub: Hub, timeout: float) -> dict[str, int]:
    """Wait until no delivery is queued, sending or waiting for a retry; state → count."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await hub.read(lambda r: r.delivery_counts())
        by_state: dict[str, int] = {}
        for (state, _), n in counts.items():
            by_state[state] = by_state.get(state, 0) + n
        if not any(by_state.get(s) for s in ("queued", "sending", "failed")) or time.monotonic() > deadline:
            return by_state
        await asyncio.sleep(0.1)


async def _all_deliveries(hub: Hub) -> list:
    out: list = []
    while True:
        after = out[-1].id if out else 0
        page = await hub.read(lambda r, after=after: r.list_deliveries(after_id=after, limit=5000))
        if not page:
            return out
        out += page


def delivery_report(rows: list, taken: dict[str, float], by_state: dict[str, int], fed: int,
                    drain_s: float, sink: dict) -> dict:
    """Enqueue (the row's creation, in the writer's transaction) → first taken by the sink."""
    lat = sorted(taken[r.wire_id] - r.created_at.timestamp() for r in rows if r.wire_id in taken)
    fed_lat = sorted(taken[r.wire_id] - r.created_at.timestamp() for r in rows
                     if r.kind == "bench" and r.wire_id in taken)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    p99 = _quantile(lat, 0.99)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {"enqueued": len(rows), "fed": fed, "by_kind": kinds, "delivered": len(lat),
            "states": by_state, "per_minute_during_drain": round(len(rows) / drain_s * 60) if drain_s else None,
            "fed_per_minute": round(fed / drain_s * 60) if drain_s else None,
            "p50_ms": ms(_quantile(lat, 0.5)), "p99_ms": ms(p99), "max_ms": ms(lat[-1] if lat else None),
            "fed_p99_ms": ms(_quantile(fed_lat, 0.99)),
            "sink_requests": sink["requests"], "sink_refused": sink["refused"], "sink_repeats": sink["repeats"],
            "target_p99_ms": DELIVERY_TARGET_P99_S * 1000,
            "ok": bool(rows) and len(lat) == len(rows) and p99 is not None and p99 < DELIVERY_TARGET_P99_S}


async def hub_phase(name: str, msgs: list, expected: dict[str, int], receivers: int,
                    decode: str = "batches", notify_per_minute: float | None = None,
                    case_contacts: bool = True) -> dict:
    """``notify_per_minute``: deliveries on (see the module's docstring), and a feeder
    adding this many a minute while the backlog drains; ``case_contacts``: the drain's
    cases tell their departments too (else the routing table has no contacts)."""
    events = sum(n for _, _, n in msgs)
    for tmp in tmpdir():
        broker = start_broker(tmp / "broker")
        sink = None
        try:
            notify: dict = {}
            if notify_per_minute is not None:
                sink = WebhookSink(f"bench-{os.urandom(8).hex()}").start()
                (tmp / "sink.key").write_text(sink.secret)
                notify = {"notify": {"webhooks": {SINK: {"url": sink.url, "secret_file": str(tmp / "sink.key")}}},
                          "contacts": sink_contacts() if case_contacts else {}}
            setup = build(tmp, broker, receivers=receivers, decode_in_receivers=decode,
                          client_id="bench-" + name.replace(" ", "-").replace("#", "r").replace("+", "n"),
                          **notify)
            async with Hub(setup, run_scheduler=False):
                pass  # subscribe once: the receivers' persistent sessions now queue for them
            pub = Publisher(broker)
            pub.publish_all(msgs)
            pub.close()
            hub = Hub(setup, run_scheduler=False)
            b0 = cpu_seconds(broker.pid)
            s0 = cpu_seconds(sink.pid) if sink else 0.0
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            await hub.start()
            feeder = BatchFeeder(hub, notify_per_minute, name) if notify_per_minute else None
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
            sink_cpu = (cpu_seconds(sink.pid) - s0) if sink else None
            fed = feeder.fed if feeder else 0
            counts = await hub.read(lambda r: r.counts())
            agents = await hub.read(lambda r: r.list_agents(100_000))
            stats = w.stats.as_dict()
            delivery = None
            if sink is not None:
                by_state = await _settled(hub, 120)
                rows = await _all_deliveries(hub)
            await asyncio.sleep(0.5)  # let the last acks leave
            await hub.stop()
            if sink is not None:
                got, sink = sink.stop(), None
                delivery = delivery_report(rows, got["taken"], by_state, fed, secs, got)
                delivery["sink_cpu"] = round(sink_cpu / secs, 3)
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
                **({"notify": delivery} if delivery is not None else {}),
            }
        finally:
            if sink is not None:
                sink.stop()
            broker.stop()
    raise AssertionError("unreachable")


def _cpu_text(r: dict) -> str:
    c = r["cpu_us_per_msg"]
    if "subscriber" in c:
        return f"{c['subscriber']} + {c['broker']}"
    return f"{c['hub']} + {c['receivers']} + {c['broker']}"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarize_notify(results: list[dict]) -> list[dict]:
    """Per kind of phase (single / batched) and receiver count: ingest with deliveries
    against without, and whether the difference is outside the plain runs' own spread."""
    out = []
    keys = sorted({(r["phase"].split()[1], r["receivers"]) for r in results if "notify" in r})
    for mode, n in keys:
        same = [r for r in results if r["phase"].startswith(f"hub {mode} ") and r["receivers"] == n]
        base = [r["events_per_s"] for r in same if "notify" not in r]
        loaded = [r for r in same if "notify" in r]
        rates = [r["events_per_s"] for r in loaded]
        ratios = [r["ratio_to_plain"] for r in loaded]
        p99s = [r["notify"]["p99_ms"] for r in loaded if r["notify"]["p99_ms"] is not None]
        row = {"phases": f"hub {mode} x{n}", "pairs": len(loaded),
               "without_events_per_s": base, "with_events_per_s": rates, "ratios": ratios,
               "median_ratio": _median(ratios),
               "deliveries": sum(r["notify"]["enqueued"] for r in loaded),
               "delivered": sum(r["notify"]["delivered"] for r in loaded),
               "per_minute_during_drain": [r["notify"]["per_minute_during_drain"] for r in loaded],
               "worst_p99_ms": max(p99s) if p99s else None,
               "worst_fed_p99_ms": max((r["notify"]["fed_p99_ms"] for r in loaded
                                        if r["notify"]["fed_p99_ms"] is not None), default=None),
               "delivery_ok": all(r["notify"]["ok"] for r in loaded)}
        if len(base) > 1:
            row["plain_spread"] = round((max(base) - min(base)) / _median(base), 3)
            row["within_noise"] = _median(rates) >= min(base)
        out.append(row)
    return out


def notify_lines(summary: list[dict], results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        if "notify" in r:
            d = r["notify"]
            lines.append(
                f"{r['phase']}: {d['enqueued']:,} deliveries ({d['fed']:,} fed at {d['fed_per_minute']:,}/min, "
                f"{d['enqueued'] - d['fed']:,} from the drain's cases), {d['per_minute_during_drain']:,}/min over "
                f"the drain; {d['delivered']:,} delivered; enqueue → delivered p50 {d['p50_ms']} ms, "
                f"p99 {d['p99_ms']} ms (the feeder's alone {d['fed_p99_ms']} ms), max {d['max_ms']} ms; "
                f"sink {d['sink_cpu']} of a core; "
                f"events/s {r['ratio_to_plain']:.3f} × the plain phase before it")
    for s in summary:
        head = (f"{s['phases']} with / without delivery over {s['pairs']} pair(s): "
                f"{', '.join(f'{x:.3f}' for x in s['ratios'])} (median {s['median_ratio']:.3f}); "
                f"without {min(s['without_events_per_s']):,}–{max(s['without_events_per_s']):,}, "
                f"with {min(s['with_events_per_s']):,}–{max(s['with_events_per_s']):,} events/s; ")
        if "within_noise" in s:
            verdict = ("within noise: the median with delivery is inside the range without"
                       if s["within_noise"] else
                       f"OUTSIDE noise: the median with delivery is below every run without "
                       f"(their spread {s['plain_spread']:.1%})")
        else:
            verdict = "one pair: no estimate of noise (use --repeat 3 or more)"
        lines.append(head + verdict)
        lines.append(f"{s['phases']} delivery: {s['delivered']:,} of {s['deliveries']:,} delivered, "
                     f"worst p99 {s['worst_p99_ms']} ms (the feeder's alone {s['worst_fed_p99_ms']} ms; "
                     f"target < {DELIVERY_TARGET_P99_S * 1000:.0f} ms): "
                     + ("met" if s["delivery_ok"] else "NOT met"))
    return lines


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
    p.add_argument("--notify", action="store_true",
                   help="after each hub phase, the same phase with notification delivery on "
                        "(a local webhook sink, every case's department told, and a feeder)")
    p.add_argument("--notify-per-minute", type=float, default=1000,
                   help="with --notify: notifications the feeder enqueues a minute while the drain lasts")
    p.add_argument("--notify-feeder-only", action="store_true",
                   help="with --notify: no routing contacts, so only the feeder's notifications "
                        "are sent (the drain's dispatched cases tell no one)")
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
                if args.notify:
                    results.append(asyncio.run(hub_phase(f"hub single x{n}+n{tag}", single, single_counts, n,
                                                         decode, args.notify_per_minute,
                                                         not args.notify_feeder_only)))
        del single
    if not args.single_only:
        batched, batch_counts = prepare(args.batch_events, args.per_message)
        for rep in range(args.repeat):
            tag = f" #{rep + 1}" if args.repeat > 1 else ""
            results.append(raw_phase(f"raw batched{tag}", batched, args.batch_events))
            for n in receivers:
                results.append(asyncio.run(hub_phase(f"hub batched x{n}{tag}", batched, batch_counts, n, decode)))
                if args.notify:
                    results.append(asyncio.run(hub_phase(f"hub batched x{n}+n{tag}", batched, batch_counts, n,
                                                         decode, args.notify_per_minute,
                                                         not args.notify_feeder_only)))

    raw_single = broker_single = 0
    plain: dict[tuple[str, int], dict] = {}
    for r in results:  # each hub single phase against the raw phases just before it
        if r["phase"].startswith("raw single"):
            raw_single = r["messages_per_s"]
        elif r["phase"].startswith("broker single"):
            broker_single = r["messages_per_s"]
        elif r["phase"].startswith("hub single"):
            r["ratio_to_raw"] = round(r["messages_per_s"] / raw_single, 3)
            r["ratio_to_broker"] = round(r["messages_per_s"] / broker_single, 3)
        if r["phase"].startswith("hub"):  # a notify phase against the plain one just before it
            key = (r["phase"].split()[1], r["receivers"])
            if "notify" in r:
                r["ratio_to_plain"] = round(r["events_per_s"] / plain[key]["events_per_s"], 3)
            else:
                plain[key] = r
    width = max(18, *(len(r["phase"]) + 1 for r in results))
    head = f"{'phase':<{width}}{'msgs/s':>9}{'events/s':>10}{'ratio':>7}{'lost':>6}{'dups':>6}" \
           f"{'hub cpu':>8}{'recv cpu':>9}{'broker':>7}{'CPU us/msg (sub|hub+recv+broker)':>34}"
    print(head)
    for r in results:
        print(f"{r['phase']:<{width}}{r['messages_per_s']:>9}{r['events_per_s']:>10}"
              f"{r.get('ratio_to_raw', ''):>7}{r.get('lost', ''):>6}{r.get('duplicates', ''):>6}"
              f"{r.get('hub_cpu', r.get('subscriber_cpu', '')):>8}{r.get('receiver_cpu', ''):>9}"
              f"{r['broker_cpu']:>7}{_cpu_text(r):>34}")
    load = os.getloadavg()
    ratios = [r["ratio_to_raw"] for r in results if "ratio_to_raw" in r and r.get("receivers") == receivers[0]
              and "notify" not in r]
    if len(ratios) > 1:
        print(f"single-event ratio (x{receivers[0]}) over {len(ratios)} pairs: "
              f"min {min(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f}, max {max(ratios):.2f}")
    if any("ratio_to_broker" in r for r in results):
        print("ratio: against 'raw single', a plain paho QoS 1 subscriber that does nothing (the "
              "target's baseline); 'broker single' is the same on the hub's receive-tuned client, "
              "near what Mosquitto can send; hub / broker single: "
              + ", ".join(f"{r['phase']} {r['ratio_to_broker']:.2f}" for r in results if "ratio_to_broker" in r))
    rates = [r["events_per_s"] for r in results
             if r["phase"].startswith(f"hub batched x{receivers[0]}") and r.get("receivers") == receivers[0]
             and "notify" not in r]
    if len(rates) > 1:
        print(f"batched replay (x{receivers[0]}) over {len(rates)} runs: min {min(rates):,}, "
              f"median {sorted(rates)[len(rates) // 2]:,}, max {max(rates):,} events/s")
    notify_summary = summarize_notify(results) if args.notify else []
    for line in notify_lines(notify_summary, results):
        print(line)
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    out = {"benchmark": "hub_ingest", "results": results,
           **({"notify_summary": notify_summary} if args.notify else {}),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg_at_start": [round(x, 2) for x in load_start],
                       "loadavg_at_end": [round(x, 2) for x in load]},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    bad = [r for r in results if r.get("lost") or r.get("duplicates") or r.get("agents_not_fully_acked")
           or ("notify" in r and not r["notify"]["ok"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
