"""``cityops-sim fleet``: thousands of virtual agents as real MQTT clients, for the hub
and the broker.

Serves the hub (``cityops-hub serve``) and Mosquitto in load and soak tests. Each
virtual agent is one MQTT connection with its own user name and password, speaking
protocol v1 as an agent does: a retained birth (with an LWT death), its own ``acks``
subscription, heartbeat telemetry, and events (water no-use lifecycles, ``new`` then
``end``) with per-agent sequence numbers, each kept until the hub's ack covers it and
sent again after a reconnect. Connections start with a jittered ramp-up
(``--ramp``), so a fleet of 10,000 does not stampede the broker.

The clients are the agent's own transport (``edge_agent.transport.mqtt.MqttTransport``:
paho on an asyncio loop), spread over a few loop threads (``--loops``); there is no
thread per agent. The soft limit on open files is raised to the hard limit.

Targets: by default a private Mosquitto and a hub child process (``--no-hub``: the
broker alone); ``--broker HOST:PORT --credentials FILE`` for one you run, with
credentials provisioned beforehand (``--provision DIR --credentials FILE`` writes them
into DIR's Mosquitto password file). Reports connect times (p50/p95/p99/max, the whole
storm), events published, sent (broker PUBACK), acked (hub ack), heartbeats, errors,
and with a private hub its CPU and memory; ``--json`` prints them as one object, with
``per_agent`` (each agent's published, acked, rejected and unacked events). At the end
it stops making events and waits up to ``--drain-s`` seconds for the hub's acks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from edge_agent.config.sections import MqttConfig
from edge_agent.errors import AuthError, TransportError
from edge_agent.transport.base import Will
from edge_agent.transport.mqtt import MqttTransport
from hub.broker import BrokerAuth, BrokerSettings
from protocol.cliutil import run_main
from protocol.codec import decode_ack, decode_desired_release, encode
from protocol.errors import ProtocolError
from protocol.ids import new_boot_id, new_event_id, new_secret
from protocol.logsetup import configure_logging
from protocol.messages import (
    AgentState,
    Event,
    EventKind,
    Evidence,
    Location,
    OutboxTelemetry,
    Reading,
    Status,
    Telemetry,
)
from protocol.releases import decode_release_chunk
from protocol.topics import Channel, agent_subscription, agent_topic

from .errors import SimulatorError
from .fleetrelease import ReleaseFollower, ReleaseStats
from .progress import Progress
from .scoring import percentile

__all__ = ["Fleet", "FleetOptions", "FleetStats", "main", "provision", "raise_fd_limit"]

log = logging.getLogger(__name__)

# Inside the example grids (hub/examples/grids.geojson).
_LAT, _LON = (31.2005, 31.2195), (121.4005, 121.4295)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def provision(auth: BrokerAuth, count: int, prefix: str = "fleet") -> dict[str, str]:
    """Credentials for ``count`` agents, written to the broker's password file in one go."""
    creds = {f"{prefix}-{i:05d}": new_secret("mqp", 12) for i in range(count)}
    auth.set_users(creds)
    return creds


@dataclass
class FleetOptions:
    host: str
    port: int
    credentials: dict[str, str]
    event_rate: float = 10.0  # events per second across the fleet
    heartbeat_s: float = 30.0
    ramp_s: float = 10.0
    loops: int = 2
    keepalive_s: int = 60
    connect_timeout_s: float = 30.0
    ack_timeout_s: float = 10.0  # an event without a hub ack by then is sent again


@dataclass
class FleetStats:
    """Counters of one loop thread (merged by :meth:`Fleet.stats`)."""

    connect_s: list[float] = field(default_factory=list)
    first_attempt: float | None = None
    last_connected: float | None = None
    connected: int = 0
    births: int = 0
    heartbeats: int = 0
    published: int = 0  # events created (seq issued)
    sent: int = 0  # events the broker acknowledged (PUBACK), re-sends included
    acked: int = 0  # events the hub's acks covered
    resent: int = 0
    ack_s: list[float] = field(default_factory=list)  # first send → hub ack, per event
    reconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    releases: ReleaseStats = field(default_factory=ReleaseStats)  # model releases followed


class VirtualAgent:
    def __init__(self, agent_id: str, password: str, opts: FleetOptions, stats: FleetStats,
                 rng: random.Random) -> None:
        self.agent_id = agent_id
        self.password = password
        self.opts = opts
        self.stats = stats
        self.rng = rng
        self.boot_id = new_boot_id()
        self.seq = 0  # also the events it published
        self.acked = 0  # events the hub's acks covered
        self.rejected = 0  # events the hub refused (in an ack's rejected list)
        self.unacked: dict[int, bytes] = {}  # seq -> payload, until the hub's ack covers it
        self.sent_at: dict[int, float] = {}  # seq -> when it was last sent
        self.first_sent: dict[int, float] = {}  # seq -> when it was first sent
        self.open_event: str | None = None
        self.location = Location(lat=rng.uniform(*_LAT), lon=rng.uniform(*_LON))
        self.transport: MqttTransport | None = None
        self.started = time.monotonic()
        self.release = ReleaseFollower(agent_id, self._send_on, stats.releases)

    def _status(self, state: AgentState, reason: str | None = None) -> bytes:
        return encode(Status(agent_id=self.agent_id, state=state, boot_id=self.boot_id,
                             at=_now(), version="fleet", reason=reason, capabilities=["fleet"]))

    async def run(self, delay: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                # Jittered exponential backoff between attempts (as the agent's session does).
                async for attempt in AsyncRetrying(
                        wait=wait_random_exponential(multiplier=0.5, max=30),
                        retry=retry_if_exception(lambda e: isinstance(e, TransportError | TimeoutError)
                                                 and not isinstance(e, AuthError)),
                        stop=lambda _state: stop.is_set(), sleep=partial(_sleep_or_stop, stop),
                        before_sleep=self._count_failure, reraise=True):
                    with attempt:
                        await self._connect(lost)
            except AuthError as exc:
                self.stats.errors["auth refused"] += 1
                log.error("%s: %s", self.agent_id, exc)
                return
            except (TransportError, TimeoutError):
                return  # stopped while retrying
            beat = asyncio.create_task(self._heartbeats(stop))
            stopping, losing = asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())
            await asyncio.wait([stopping, losing], return_when=asyncio.FIRST_COMPLETED)
            for t in (beat, stopping, losing):
                t.cancel()
            if stop.is_set() and not lost.is_set():
                await self._goodbye()
                return
            dead, self.transport = self.transport, None
            if dead is not None:
                await dead.disconnect()
            self.stats.connected -= 1
            if stop.is_set():
                return
            self.stats.reconnects += 1
            await _sleep_or_stop(stop, self.rng.uniform(0, 2.0))

    def _count_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.errors[f"connect: {str(exc)[:60]}"] += 1

    async def _connect(self, lost: asyncio.Event) -> None:
        cfg = MqttConfig(host=self.opts.host, port=self.opts.port, keepalive_s=self.opts.keepalive_s,
                         connect_timeout_s=self.opts.connect_timeout_s)
        will = Will(agent_topic(self.agent_id, Channel.STATUS),
                    self._status(AgentState.OFFLINE, "connection lost"))
        t = MqttTransport(cfg, will, client_id=self.agent_id, username=self.agent_id,
                          password=self.password, max_queued=2000, max_inflight=50)
        t.on_message = self._on_message
        t.on_disconnect = lambda reason: lost.set()
        began = time.monotonic()
        if self.stats.first_attempt is None:
            self.stats.first_attempt = began
        await t.connect()
        try:
            await asyncio.wait_for(t.publish(agent_topic(self.agent_id, Channel.STATUS),
                                             self._status(AgentState.ONLINE), qos=1, retain=True), 30)
            await t.subscribe([(agent_subscription(self.agent_id, Channel.ACKS), 1),
                               (agent_subscription(self.agent_id, Channel.RELEASE), 1),
                               (agent_subscription(self.agent_id, Channel.BLOBS), 1)])
        except BaseException:
            await t.disconnect()
            raise
        now = time.monotonic()
        self.stats.connect_s.append(now - began)
        self.stats.last_connected = now
        self.stats.connected += 1
        self.stats.births += 1
        self.transport = t  # only now may events go out: birth first, acks subscribed
        for seq in sorted(self.unacked):  # at least once: what the hub has not acked goes again
            self._publish(seq, self.unacked[seq], resend=True)
        self.release.on_connected()

    def _send_on(self, channel: Channel, payload: bytes, retain: bool) -> bool:
        t = self.transport
        if t is None:
            return False
        try:
            t.publish(agent_topic(self.agent_id, channel), payload, qos=1, retain=retain)
        except TransportError as exc:
            self.stats.errors[f"release: {str(exc)[:60]}"] += 1
            return False
        return True

    async def _goodbye(self) -> None:
        t, self.transport = self.transport, None
        if t is None:
            return
        with contextlib.suppress(TransportError, TimeoutError):
            await asyncio.wait_for(t.publish(agent_topic(self.agent_id, Channel.STATUS),
                                             self._status(AgentState.OFFLINE, "shutdown"), qos=1, retain=True), 5)
        await t.disconnect()
        self.stats.connected -= 1

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        await _sleep_or_stop(stop, self.rng.uniform(0, self.opts.heartbeat_s))
        while not stop.is_set() and self.transport is not None:
            tele = Telemetry(agent_id=self.agent_id, boot_id=self.boot_id, at=_now(),
                             uptime_s=round(time.monotonic() - self.started, 1),
                             outbox=OutboxTelemetry(depth=len(self.unacked)))
            try:
                self.transport.publish(agent_topic(self.agent_id, Channel.TELEMETRY), encode(tele), qos=0)
                self.stats.heartbeats += 1
            except TransportError as exc:
                self.stats.errors[f"heartbeat: {str(exc)[:60]}"] += 1
            await _sleep_or_stop(stop, self.opts.heartbeat_s)

    def emit(self) -> bool:
        """One event of a water no-use lifecycle (``new``, then ``end``). False when not
        connected (the caller picks another agent)."""
        if self.transport is None or not self.transport.connected:
            return False
        self.seq += 1
        if self.open_event is None:
            self.open_event, kind = new_event_id(), EventKind.NEW
        else:
            kind = EventKind.END
        event = Event(event_id=self.open_event, agent_id=self.agent_id, seq=self.seq, kind=kind,
                      category="elderly_care", subcategory="elderly_care.water_no_use",
                      source="meter-1", observed_at=_now(), location=self.location,
                      evidence=Evidence(reading=Reading(name="volume", value=12.5, unit="m3")),
                      attributes={"rule": "water_no_use", "fleet": True})
        if kind == EventKind.END:
            self.open_event = None
        payload = encode(event)
        self.unacked[self.seq] = payload
        self.stats.published += 1
        self._publish(self.seq, payload)
        return True

    def _publish(self, seq: int, payload: bytes, *, resend: bool = False) -> None:
        if self.transport is None:
            return
        try:
            fut = self.transport.publish(agent_topic(self.agent_id, Channel.EVENTS), payload, qos=1)
        except TransportError as exc:  # queue full or not connected: sent again on reconnect
            self.stats.errors[f"publish: {str(exc)[:60]}"] += 1
            return
        if resend:
            self.stats.resent += 1
        self.sent_at[seq] = now = time.monotonic()
        self.first_sent.setdefault(seq, now)
        fut.add_done_callback(self._on_puback)

    def resend_stale(self, now: float) -> None:
        """Events the hub has not acked within the ack timeout go again (an ack can be lost
        while the hub reconnects; the hub deduplicates)."""
        if self.transport is None:
            return
        for seq in sorted(self.unacked):
            if now - self.sent_at.get(seq, now) >= self.opts.ack_timeout_s:
                self._publish(seq, self.unacked[seq], resend=True)

    def _on_puback(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.stats.errors["no PUBACK (connection lost)"] += 1
        else:
            self.stats.sent += 1

    def _on_message(self, topic: str, payload: bytes) -> None:
        channel = topic.rsplit("/", 1)[-1]
        if channel != Channel.ACKS:
            self._on_release_message(channel, payload)
            return
        try:
            ack = decode_ack(payload, agent_id=self.agent_id)
        except ProtocolError:
            self.stats.errors["bad ack"] += 1
            return
        for r in ack.rejected:
            self.sent_at.pop(r.seq, None)
            self.first_sent.pop(r.seq, None)
            if self.unacked.pop(r.seq, None) is not None:
                self.rejected += 1
                self.stats.errors[f"rejected: {r.reason[:60]}"] += 1
        covered = [s for s in self.unacked if ack.covers(s)]
        now = time.monotonic()
        for s in covered:
            del self.unacked[s]
            self.sent_at.pop(s, None)
            first = self.first_sent.pop(s, None)
            if first is not None and len(self.stats.ack_s) < 200_000:
                self.stats.ack_s.append(now - first)
        self.stats.acked += len(covered)
        self.acked += len(covered)


    def _on_release_message(self, channel: str, payload: bytes) -> None:
        try:
            if channel == Channel.RELEASE:
                if payload:
                    self.release.on_desired(decode_desired_release(payload, agent_id=self.agent_id))
            elif channel == Channel.BLOBS:
                self.release.on_chunk(*decode_release_chunk(payload))
            else:
                self.stats.errors[f"unexpected topic {channel[:30]}"] += 1
        except ProtocolError as exc:
            self.stats.errors[f"bad release message: {exc.reason}"] += 1


def _now():  # noqa: ANN202
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0))


class _Worker:
    """One thread with one asyncio loop driving a share of the fleet."""

    def __init__(self, index: int, creds: list[tuple[str, str]], opts: FleetOptions, rate: float,
                 seed: int) -> None:
        self.stats = FleetStats()
        self.rng = random.Random(seed)
        self.agents = [VirtualAgent(a, p, opts, self.stats, random.Random(f"{seed}:{a}")) for a, p in creds]
        self.opts = opts
        self.rate = rate
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name=f"fleet-loop-{index}", daemon=True)
        self.ready = threading.Event()
        self.paused = threading.Event()  # no new events (a run winding down)
        self.idle = threading.Event()  # set by the loop once it has seen ``paused`` (no emit under way)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by Fleet.stop
            self.error = exc

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.ready.set()
        delays = [self.rng.uniform(0, self.opts.ramp_s) for _ in self.agents]
        tasks = [asyncio.create_task(a.run(d, self.stop_event)) for a, d in zip(self.agents, delays, strict=True)]
        gen = asyncio.create_task(self._events())
        resender = asyncio.create_task(self._resend())
        await self.stop_event.wait()
        gen.cancel()
        resender.cancel()
        await asyncio.gather(*tasks, gen, resender, return_exceptions=True)

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for a in self.agents:
                if a.unacked:
                    a.resend_stale(now)
                if a.release.ref is not None and a.transport is not None:
                    a.release.ask(now)

    async def _events(self) -> None:
        """Events at ``rate`` per second, each from a random connected agent."""
        if self.rate <= 0 or not self.agents:
            self.idle.set()
            return
        tick, owed = 0.02, 0.0
        while True:
            await asyncio.sleep(tick)
            if self.paused.is_set():
                self.idle.set()
                continue
            owed += self.rate * tick
            for _ in range(int(owed)):
                for _try in range(5):
                    if self.rng.choice(self.agents).emit():
                        break
            owed -= int(owed)

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)


class Fleet:
    """``fleet = Fleet(options).start()`` … ``fleet.stats()`` … ``fleet.stop()``."""

    def __init__(self, opts: FleetOptions, seed: int = 1) -> None:
        self.opts = opts
        creds = sorted(opts.credentials.items())
        n = max(1, min(opts.loops, len(creds) or 1))
        self.workers = [_Worker(i, creds[i::n], opts, opts.event_rate / n, seed + i) for i in range(n)]
        self.started = 0.0
        self.fd_limit = raise_fd_limit()
        if len(creds) + 64 > self.fd_limit:
            raise SimulatorError(f"{len(creds)} agents need {len(creds) + 64} open files; the limit is "
                                 f"{self.fd_limit} (raise it: ulimit -n)")

    def start(self) -> Fleet:
        self.started = time.monotonic()
        for w in self.workers:
            w.thread.start()
        for w in self.workers:
            w.ready.wait(10)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.thread.join(timeout)
        errors = [w.error for w in self.workers if w.error is not None]
        if errors:
            raise SimulatorError(f"a fleet loop failed: {errors[0]!r}")

    def all_acked(self) -> bool:
        return all(not a.unacked for w in self.workers for a in w.agents)

    def quiesce(self, timeout: float = 30.0) -> bool:
        """Stop making events and wait until the hub has acked every one (False: it has not
        within ``timeout``; what is left shows as published minus acked)."""
        for w in self.workers:
            w.paused.set()
        deadline = time.monotonic() + timeout
        # an emit round already past the pause check finishes first; counting before it
        # would report one more event per agent than the totals (or miss an unacked one)
        for w in self.workers:
            w.idle.wait(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            if self.all_acked():
                return True
            time.sleep(0.05)
        return self.all_acked()

    def per_agent(self) -> dict[str, dict[str, int]]:
        """Each agent's events: published (seqs issued), acked by the hub, rejected by it,
        and still unacked, to set beside the hub's own count per agent."""
        agents = sorted((a for w in self.workers for a in w.agents), key=lambda a: a.agent_id)
        return {a.agent_id: {"published": a.seq, "acked": a.acked, "rejected": a.rejected,
                             "unacked": len(a.unacked)} for a in agents}

    def stats(self) -> dict[str, Any]:
        parts = [w.stats for w in self.workers]
        connect = [x for p in parts for x in p.connect_s]
        firsts = [p.first_attempt for p in parts if p.first_attempt is not None]
        lasts = [p.last_connected for p in parts if p.last_connected is not None]
        errors: Counter[str] = Counter()
        for p in parts:
            errors.update(p.errors)

        acks = [x for p in parts for x in p.ack_s]

        def ms(q: float, values: list[float] = connect) -> float | None:
            v = percentile(values, q)
            return None if v is None else round(v * 1000, 1)

        return {
            "agents": sum(len(w.agents) for w in self.workers),
            "connected": sum(p.connected for p in parts),
            "connect_ms": {"p50": ms(50), "p95": ms(95), "p99": ms(99), "max": ms(100), "n": len(connect)},
            "connect_storm_s": round(max(lasts) - min(firsts), 2) if firsts and lasts else None,
            "births": sum(p.births for p in parts),
            "heartbeats": sum(p.heartbeats for p in parts),
            "events_published": sum(p.published for p in parts),
            "events_sent": sum(p.sent for p in parts),
            "events_acked": sum(p.acked for p in parts),
            "events_resent": sum(p.resent for p in parts),
            "ack_ms": {"p50": ms(50, acks), "p95": ms(95, acks), "p99": ms(99, acks), "n": len(acks)},
            "reconnects": sum(p.reconnects for p in parts),
            "releases": _release_figures([p.releases for p in parts]),
            "errors": dict(errors.most_common(20)),
            "errors_total": sum(errors.values()),
        }


def _release_figures(parts: list[ReleaseStats]) -> dict[str, Any]:
    took = [x for p in parts for x in p.download_s]

    def ms(q: float) -> float | None:
        v = percentile(took, q)
        return None if v is None else round(v * 1000, 1)

    return {"activated": sum(p.activated for p in parts), "failed": sum(p.failed for p in parts),
            "reverted": sum(p.reverted for p in parts), "chunks": sum(p.chunks for p in parts),
            "requests": sum(p.requests for p in parts), "re_requests": sum(p.re_requests for p in parts),
            "download_ms": {"p50": ms(50), "p95": ms(95), "max": ms(100), "n": len(took)}}


# -- command line ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityops-sim fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, required=True, help="number of virtual agents")
    p.add_argument("--rate", type=float, default=10.0, help="events per second across the fleet")
    p.add_argument("--heartbeat", type=float, default=30.0, metavar="S", help="heartbeat period per agent")
    p.add_argument("--ramp", type=float, default=10.0, metavar="S", help="spread connects over S seconds (jittered)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S", help="run this long after the ramp")
    p.add_argument("--loops", type=int, default=2, help="event-loop threads holding the clients")
    p.add_argument("--drain-s", type=float, default=30.0, metavar="S",
                   help="after the run, stop making events and wait up to S seconds for the hub to ack "
                        "every one before reporting (drained: false if some are still unacked)")
    p.add_argument("--prefix", default="fleet", help="agent ids are PREFIX-00000 ...")
    p.add_argument("--broker", metavar="HOST:PORT", help="use this broker (with --credentials) instead of a private one")
    p.add_argument("--credentials", type=Path, metavar="FILE",
                   help="YAML mapping agent id -> password (read with --broker, written with --provision)")
    p.add_argument("--provision", type=Path, metavar="DIR",
                   help="write --agents users into DIR/passwd (Mosquitto) and --credentials, then exit")
    p.add_argument("--no-hub", action="store_true", help="private broker only, no hub")
    p.add_argument("--receivers", type=int, default=1, help="private hub: receiver processes")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="S")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, "text")
    return run_main(lambda: _run(args), "cityops-sim fleet")


def _run(args: argparse.Namespace) -> int:
    if args.agents < 1:
        raise SimulatorError("--agents must be at least 1")
    if args.drain_s < 0:
        raise SimulatorError("--drain-s must be 0 or more seconds")
    if args.provision is not None:
        if args.credentials is None:
            raise SimulatorError("--provision writes credentials: give --credentials FILE too")
        auth = BrokerAuth(BrokerSettings(data_dir=args.provision))
        creds = provision(auth, args.agents, args.prefix)
        args.credentials.write_text(yaml.safe_dump(creds))
        args.credentials.chmod(0o600)
        print(f"wrote {len(creds)} users to {auth.settings.password_path} and {args.credentials}; "
              "make the broker re-read its password file (SIGHUP) before connecting", file=sys.stderr)
        return 0
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        if not host or not port.isdigit() or args.credentials is None:
            raise SimulatorError("--broker HOST:PORT needs --credentials FILE (see --provision)")
        creds = _read_credentials(args.credentials, args.agents)
        result = run_fleet(FleetOptions(host, int(port), creds, args.rate, args.heartbeat, args.ramp,
                                        args.loops), args)
    else:
        from .privatehub import PrivateHub

        with PrivateHub(hub=not args.no_hub, receivers=args.receivers) as ph:
            creds = provision(ph.broker.auth, args.agents, args.prefix)
            ph.broker.reload()
            opts = FleetOptions(ph.broker.host, ph.broker.port, creds, args.rate, args.heartbeat,
                                args.ramp, args.loops)
            before = ph.usage()
            result = run_fleet(opts, args, hub_url=ph.web_url)
            after = ph.usage()
            result["processes"] = {name: {"cpu_s": round(after[name]["cpu_s"] - before[name]["cpu_s"], 2),
                                          "rss_mib": round(after[name]["rss_mib"], 1)}
                                   for name in after if name in before}
    if args.json:
        print(json.dumps(result, separators=(",", ":")), flush=True)
    else:
        print(format_result(result))
    return 0


def _read_credentials(path: Path, count: int) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SimulatorError(f"cannot read credentials {path}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise SimulatorError(f"{path}: expected a mapping of agent id -> password (see --provision)")
    if len(data) < count:
        raise SimulatorError(f"{path} holds {len(data)} credentials, fewer than --agents {count}")
    return {str(k): str(v) for k, v in sorted(data.items())[:count]}


def run_fleet(opts: FleetOptions, args: argparse.Namespace, hub_url: str | None = None) -> dict[str, Any]:
    total = opts.ramp_s + args.duration
    progress = Progress(f"fleet {len(opts.credentials)}", total, every_s=args.progress_every, quiet=args.quiet)
    progress.say(f"{len(opts.credentials)} agents on {opts.loops} loop(s) → {opts.host}:{opts.port}, "
                 f"ramp {opts.ramp_s:g} s, {opts.event_rate:g} events/s, heartbeat {opts.heartbeat_s:g} s"
                 + (f"; hub {hub_url}" if hub_url else ""))
    fleet = Fleet(opts).start()
    try:
        while progress.elapsed() < total:
            time.sleep(min(0.5, max(0.0, total - progress.elapsed())))
            if progress.due():
                s = fleet.stats()
                progress.report({"connected": f"{s['connected']}/{s['agents']}",
                                 "events": f"{s['events_published']} published, {s['events_acked']} acked "
                                           f"({progress.rate('acked', s['events_acked']):.0f}/s)",
                                 "errors": s["errors_total"]})
        drained = fleet.quiesce(args.drain_s)
        result = fleet.stats()
        result["drained"] = drained
        result["drain_s"] = args.drain_s
        result["per_agent"] = fleet.per_agent()
    finally:
        fleet.stop()
    result["run_s"] = round(progress.elapsed(), 1)
    result["event_rate"] = opts.event_rate
    result["fd_limit"] = fleet.fd_limit
    return result


def format_result(r: dict[str, Any]) -> str:
    c = r["connect_ms"]
    lines = [
        f"agents {r['agents']}, connected {r['connected']}, births {r['births']}, reconnects {r['reconnects']}",
        f"connect ms p50 {c['p50']} p95 {c['p95']} p99 {c['p99']} max {c['max']}; storm {r['connect_storm_s']} s",
        f"events published {r['events_published']}, sent {r['events_sent']}, acked {r['events_acked']}, "
        f"re-sent {r['events_resent']}; heartbeats {r['heartbeats']}; "
        f"publish → hub ack ms p50 {r['ack_ms']['p50']} p99 {r['ack_ms']['p99']}",
        f"errors {r['errors_total']}" + (f": {r['errors']}" if r["errors"] else ""),
    ]
    if "drained" in r:
        short = {a: c["unacked"] for a, c in r.get("per_agent", {}).items() if c["unacked"]}
        lines.append("every event acked by the hub" if r["drained"] else
                     f"not drained within {r['drain_s']:g} s: {sum(short.values())} events unacked "
                     f"on {len(short)} agents (per agent: --json)")
    for name, u in r.get("processes", {}).items():
        lines.append(f"{name}: {u['cpu_s']} CPU s, {u['rss_mib']} MiB RSS")
    return "\n".join(lines)
