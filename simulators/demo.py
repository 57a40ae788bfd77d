"""``cityops-sim demo``: the whole system on this machine, scored against the ground truth.

Serves people looking at the hub's status page (the URL is printed first) and machines
reading the scorecard (``--json``). Starts the hub with its managed Mosquitto, one edge
agent and one simulated Modbus gateway per site of the scenario, on one simulated clock
(``--time-scale`` simulated seconds per real second), and runs until Ctrl-C,
``--duration`` real seconds, or the end of one timeline (``--once``). Then it stops
injecting, waits until every agent's outbox is acknowledged, and reports:

* the first slice's summary: ``events_published`` (the agents' outbox sequence
  numbers), ``events_stored`` (rows in the hub's store), ``events_acked`` (the agents'
  ack counts), ``cases_opened``, ``cases_closed``, ``lost`` (published, never stored),
  ``duplicates`` (stored twice);
* the scorecard: problems injected, detected, pending, missed; cases dispatched, closed
  automatically or by the operator, false and duplicate cases; events lost; median and
  p99 simulated time from a problem's start to its case's dispatch;
* ``notifications`` (queued, delivered, failed, pending, and each dead one's reason) and
  ``care`` (tiers that told someone, escalations after an acknowledgement), from the
  hub's store, and ``notifications_received``: what the local receivers took. The hub
  tells people through real channels here: an SMTP server and an HTTP receiver standing
  in for signed webhooks, the WeCom/DingTalk/Feishu group robots and an SMS gateway
  (simulators/sinks.py), with contacts for every department, lead and watched resident
  (simulators/reach.py); ``--failing-channel`` makes one of them refuse everything;
* ``handlers``: what the simulated departments did (``cityops-sim handlers`` runs inside
  the demo: every department polls the handler API with its own token, accepts, works,
  resolves, sometimes late or not fixed, sometimes returns a case). A duty operator
  closes cases no sensor can close, looks at after-photos the verifier leaves to a
  person, and re-dispatches returned cases.

Scenarios: ``water-meter`` (default), ``elderly-care``, ``rainstorm``, ``fire``,
``mixed-day``, or a path to a scenario file. Everything lives in a temporary directory
(``--work-dir`` to choose one, ``--keep`` to keep it); every port is a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from protocol.cliutil import run_main
from protocol.errors import CityopsError
from protocol.logsetup import configure_logging

from .liveview import first_camera, scripted_live_view
from .notifycard import format_notifications
from .plancard import format_plans
from .progress import Progress, format_duration
from .scenarios import load_scenario, scenario_names
from .scoring import scorecard
from .sinks import CHANNELS
from .stack import SimStack, StackOptions

__all__ = ["DEFAULT_SCENARIO", "build_parser", "main", "run_demo"]

DEFAULT_SCENARIO = "water-meter"


async def run_demo(stack: SimStack, *, duration: float | None, progress: Progress,
                   stop: asyncio.Event | None = None, drain_s: float = 20.0) -> dict[str, Any]:
    """Run a started-or-not stack until ``duration`` real seconds (None: until ``stop``),
    then drain and score. The stack is stopped on return."""
    stop = stop or asyncio.Event()
    live: asyncio.Task[dict[str, Any]] | None = None
    try:
        await stack.start()
        _announce(stack, progress, duration)
        if first_camera(stack) is not None:  # an operator watches the camera for a moment
            live = asyncio.create_task(scripted_live_view(stack), name="demo-live-view")
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        while not stop.is_set():
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            wait = progress.every_s if left is None else min(progress.every_s, left)
            try:
                await asyncio.wait_for(stop.wait(), max(wait, 0.01))
            except TimeoutError:
                pass
            if progress.due() and not stop.is_set():
                progress.report(_live_figures(stack, progress))
        live_view = await _live_result(live)
        progress.say("stopping injection; waiting for every outbox to be acknowledged")
        await stack.quiesce()
        drained = await stack.drain(drain_s)
        if not drained:
            progress.say(f"outboxes not empty after {drain_s:g} s: what is left counts as lost")
        counters = stack.agent_counters()
        settled = await stack.settle_notifications(drain_s)
        if not settled:
            progress.say(f"notifications still pending after {drain_s:g} s: they count as pending")
        assert stack.horizon is not None
        truth = stack.truth(stack.horizon)
        audit = await asyncio.to_thread(stack.audit)
        summary = scorecard(truth.problems, counters, audit, stack.clock.start, stack.horizon)
        # Event clips the hub holds (stored, checked MP4s; only camera events have clips).
        summary["clips_stored"] = await stack.hub.read(lambda r: r.count_clips("stored")) \
            if stack.hub is not None else 0
        summary["run"] = {
            "scenario": stack.scenario.name, "time_scale": stack.scale,
            "real_s": round(progress.elapsed(), 1), "simulated_s": round(stack.horizon, 1),
            "simulated_start": stack.clock.start.isoformat(), "drained": drained,
            "agents": len(stack.sites), "devices": sum(len(s.devices) for s in stack.sites),
            "web_url": stack.hub.web_url if stack.hub else None,
            "work_dir": str(stack.work) if stack.options.keep or stack.options.work_dir else None,
            "operator_closed": stack.operator_closed,
            "operator_reviewed": stack.operator_reviewed,
            "operator_redispatched": stack.operator_redispatched,
            "notifications_settled": settled,
        }
        if stack.sinks is not None:
            summary["notifications_received"] = stack.sinks.report()
        if stack.handlers is not None:
            summary["handlers"] = stack.handlers.summary()
        if live_view is not None:
            # frames the scripted live view received before it stopped on its own
            summary["live_frames"] = live_view["frames"] if live_view["stopped"] == "time" else 0
            summary["live_view"] = live_view
        summary["notes"] = truth.notes
        return summary
    finally:
        if live is not None and not live.done():
            live.cancel()
        await stack.stop()


async def _live_result(live: asyncio.Task[dict[str, Any]] | None,
                       wait_s: float = 15.0) -> dict[str, Any] | None:
    """The scripted live view's result: it runs a few seconds, so a demo shorter than that
    waits for it here (at most ``wait_s``); one that did not end is reported as such."""
    if live is None:
        return None
    done, _ = await asyncio.wait({live}, timeout=wait_s)
    if not done:
        live.cancel()
        return {"frames": 0, "stopped": "incomplete"}
    if live.exception() is not None:
        return {"frames": 0, "stopped": f"failed: {live.exception()!r}"[:200]}
    return live.result()


def _announce(stack: SimStack, progress: Progress, duration: float | None) -> None:
    assert stack.hub is not None
    sc = stack.scenario
    local = stack.clock.start.astimezone(ZoneInfo(sc.timezone))
    timeline_real = sc.duration / stack.scale
    progress.say(f"status page {stack.hub.web_url}  (broker {stack.hub.broker_host}:"
                 f"{stack.hub.broker_port}, work dir {stack.work})")
    progress.say(f"sign in as {stack.web_user} / {stack.web_password}")
    for site in stack.sites:
        progress.say(f"agent {site.agent_id}: {len(site.devices)} Modbus device(s) on 127.0.0.1:"
                     f"{site.server.port}")
    progress.say(f"simulated time from {local:%Y-%m-%d %H:%M} {sc.timezone} at x{stack.scale:g}; "
                 f"timeline {format_duration(sc.duration)} = {format_duration(timeline_real)} real"
                 + (", repeating" if sc.repeat else "")
                 + ("; until Ctrl-C" if duration is None else f"; stopping after {format_duration(duration)}"))


def _live_figures(stack: SimStack, progress: Progress) -> dict[str, Any]:
    published = stack.published()
    try:
        audit = stack.audit()
    except Exception as exc:  # noqa: BLE001 - a progress line must not stop the run
        return {"sim": stack.sim_label(), "events": f"{published} published", "store": f"unreadable ({exc})"}
    truth = stack.truth(stack.clock.elapsed())
    card = scorecard(truth.problems, stack.agent_counters(), audit, stack.clock.start,
                     stack.clock.elapsed())
    open_cases = sum(1 for c in audit.cases if c.state not in ("closed", "merged", "rejected"))
    return {
        "sim": f"{stack.sim_label()} (x{stack.scale:g})",
        "events": f"{published} published, {card['events_stored']} stored "
                  f"({progress.rate('events', card['events_stored']):.1f}/s)",
        "cases": f"{open_cases} open, {card['cases_closed']} closed",
        "problems": f"{card['problems_detected']}/{card['problems_injected']} detected",
        **({"departments": "{resolved} resolved, {returned} returned".format(**stack.handlers.summary())}
           if stack.handlers is not None else {}),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The scorecard for people."""
    run = summary["run"]
    tt = summary["time_to_dispatch_s"]

    def hm(seconds: float | None) -> str:
        return "-" if seconds is None else format_duration(seconds)

    lines = [
        f"scenario {run['scenario']}: {format_duration(run['real_s'])} real = "
        f"{format_duration(run['simulated_s'])} simulated (x{run['time_scale']:g}), "
        f"{run['agents']} agent(s), {run['devices']} device(s)",
        f"  events   published {summary['events_published']}, stored {summary['events_stored']}, "
        f"acked {summary['events_acked']}, lost {summary['lost']}, duplicates {summary['duplicates']}",
        f"  problems injected {summary['problems_injected']}, detected {summary['problems_detected']}, "
        f"missed {summary['missed']}, pending {summary['problems_pending']}",
        f"  cases    opened {summary['cases_opened']}, dispatched {summary['cases_dispatched']}, "
        f"closed {summary['cases_closed']} (automatically {summary['closed_automatically']}, "
        f"by operator {summary['closed_by_operator']}), false {summary['false_cases']}, "
        f"duplicate {summary['duplicate_cases']}",
        f"  problem start → dispatch (simulated): median {hm(tt['median'])}, p99 {hm(tt['p99'])} "
        f"over {tt['n']}",
    ]
    for row in summary["problems"]:
        extra = f", dispatched after {hm(row.get('dispatched_after_s'))}" if "dispatched_after_s" in row else ""
        lines.append(f"    {row['status']:<8} {row['id']} ({row['subcategory']}){extra}")
    if "live_view" in summary:
        lv = summary["live_view"]
        lines.append(f"  live     {summary['live_frames']} frame(s) of {lv.get('camera', '-')} in a "
                     f"{lv.get('seconds', 0):g} s view (first after {lv.get('first_frame_s')} s, "
                     f"largest {lv.get('largest_bytes', 0)} bytes; stopped: {lv['stopped']})")
    if "clips_stored" in summary:
        lines.append(f"  clips    stored {summary['clips_stored']} (camera events' video clips on the hub)")
    lines += format_plans(summary)
    lines += format_notifications(summary)
    if "handlers" in summary:
        h = summary["handlers"]
        lines.append(f"  handlers {h['cases_seen']} case(s): {h['resolved']} resolved ({h['resolved_late']} late), "
                     f"{h['returned']} returned, after-photos {h['photos_fixed']} fixed / "
                     f"{h['photos_not_fixed']} not fixed, {h['sent_back']} sent back; operator reviewed "
                     f"{run['operator_reviewed']}, re-dispatched {run['operator_redispatched']}")
    lines += [f"  note: {n}" for n in summary.get("notes", [])]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityops-sim demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default=DEFAULT_SCENARIO,
                   help=f"a shipped scenario ({', '.join(scenario_names())}) or a path to a file")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S real seconds (default: until Ctrl-C)")
    p.add_argument("--once", action="store_true", help="stop when the scenario's timeline ends")
    p.add_argument("--time-scale", type=float, default=None, metavar="X",
                   help="simulated seconds per real second (default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end (stdout)")
    p.add_argument("--web-port", type=int, default=0, help="status page port (default: a free port)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where the run's files go (default: a temporary directory, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-handlers", action="store_true",
                   help="no simulated departments (cases wait for a person at the handler API)")
    p.add_argument("--handler-seed", type=int, default=0, help="seed of the departments' choices")
    p.add_argument("--failing-channel", choices=CHANNELS, default=None,
                   help="make this channel's local receiver refuse everything (the mail server "
                        "answers 550, a robot a non-zero error code, ...): its deliveries end dead "
                        "with the reason")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="S", help="seconds between progress lines")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, "text")

    def run() -> int:
        if args.time_scale is not None and args.time_scale <= 0:
            raise CityopsError(f"--time-scale must be positive (got {args.time_scale:g})")
        if args.duration is not None and args.duration <= 0:
            raise CityopsError(f"--duration must be positive (got {args.duration:g})")
        loaded = load_scenario(args.scenario)
        # Vital signs grade the readings the heartbeats carry: send them every second.
        beat = 1.0 if loaded.scenario.hub.vitals else StackOptions.telemetry_s
        stack = SimStack(loaded, StackOptions(time_scale=args.time_scale, web_port=args.web_port,
                                              work_dir=args.work_dir, keep=args.keep, telemetry_s=beat,
                                              handlers=not args.no_handlers, handler_seed=args.handler_seed,
                                              failing_channel=args.failing_channel))
        duration = args.duration
        if duration is None and args.once:
            duration = loaded.scenario.duration / stack.scale
        progress = Progress(f"demo {loaded.scenario.name}", duration, every_s=args.progress_every,
                            quiet=args.quiet)
        summary = asyncio.run(_run_with_signals(stack, duration, progress))
        if args.json:
            print(json.dumps(summary, separators=(",", ":"), default=str), flush=True)
        else:
            print(format_summary(summary), flush=True)
        return 0

    return run_main(run, "cityops-sim demo")


async def _run_with_signals(stack: SimStack, duration: float | None, progress: Progress) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await run_demo(stack, duration=duration, progress=progress, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
