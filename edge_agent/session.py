"""The agent's MQTT session: connection, birth and death, delivery of the outbox, hub
acks, desired config and heartbeat telemetry.

::

    connect (jittered exponential backoff, tenacity) ──▶ birth status (retained)
        ──▶ subscribe to own acks + config + care + live ──▶ deliver the outbox:
              live events first (one per message, as they are emitted)
              backlog in batched events messages, at most ``max_in_flight`` messages
              not yet acknowledged by the hub
        ──▶ heartbeat telemetry every ``interval_s``
    connection lost ──▶ in-flight rows are pending again ──▶ reconnect
    broker refuses the credentials ──▶ stop retrying, say so; retry when the credentials
        file changes (``cityops-agent provision`` again)
    stop ──▶ offline status (retained, "shutdown") ──▶ clean disconnect

The session knows nothing about devices or cameras: the app gives it :class:`Hooks`
for the status fields, the telemetry parts, applying a desired config and applying the
hub's acknowledged elderly-care alarms (``care``, retained like the config, so an agent
that was offline gets it when it subscribes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from edge_agent.config.sections import OutboxConfig, ReconnectConfig, TelemetryConfig
from edge_agent.errors import AuthError, TransportError
from edge_agent.outbox import Outbox, OutboxRow
from edge_agent.outbox.replay import BATCH_BYTES, build_messages
from edge_agent.transport.base import Transport, TransportFactory, Will
from protocol.clock import Clock, SystemClock
from protocol.codec import (
    decode_ack,
    decode_care_state,
    decode_desired_config,
    decode_desired_release,
    decode_live_request,
    encode,
)
from protocol.errors import ProtocolError
from protocol.ids import new_boot_id
from protocol.messages import (
    Ack,
    AgentState,
    CareState,
    DesiredConfig,
    LiveRequest,
    Status,
    Telemetry,
)
from protocol.releases import DesiredRelease, ReleaseChunkHeader, decode_release_chunk
from protocol.topics import Channel, agent_subscription, agent_topic, parse_topic

__all__ = ["Hooks", "Session", "SessionState"]

log = logging.getLogger(__name__)

_HANDSHAKE_TIMEOUT_S = 10.0  # birth PUBACK and SUBACK


class SessionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AUTH_FAILED = "auth_failed"
    STOPPED = "stopped"


@dataclass
class Hooks:
    """What the session asks of the app."""

    status_fields: Callable[[], dict[str, Any]] = dict  # config_version, config_error, capabilities
    telemetry_parts: Callable[[], dict[str, Any]] = dict  # devices, readings, cameras, ...
    apply_config: Callable[[DesiredConfig], Awaitable[None]] | None = None
    apply_care: Callable[[CareState], None] | None = None  # acknowledged care alarms
    live_request: Callable[[LiveRequest], None] | None = None  # the hub asks for live frames
    release: Callable[[DesiredRelease], Awaitable[None]] | None = None  # the model release to run
    release_chunk: Callable[[ReleaseChunkHeader, bytes], None] | None = None  # a chunk it asked for
    connected: Callable[[], None] | None = None  # after each (re)connect, once subscribed


@dataclass
class _InFlight:
    seqs: set[int]
    sent_at: float
    events: int


@dataclass
class SessionStats:
    connects: int = 0
    messages: int = 0
    events: int = 0
    acked_rows: int = 0
    acks: int = 0
    bad_messages: int = 0
    publish_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and not isinstance(exc, AuthError)


class Session:
    def __init__(
        self, agent_id: str, outbox: Outbox, make_transport: TransportFactory, *,
        outbox_config: OutboxConfig, telemetry: TelemetryConfig, reconnect: ReconnectConfig,
        version: str = "", hooks: Hooks | None = None, clock: Clock | None = None,
        boot_id: str | None = None, credentials_path: Path | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.outbox = outbox
        self.make_transport = make_transport
        self.outbox_config = outbox_config
        self.telemetry_config = telemetry
        self.reconnect = reconnect
        self.version = version
        self.hooks = hooks or Hooks()
        self.clock = clock or SystemClock()
        self.boot_id = boot_id or new_boot_id()
        self.credentials_path = credentials_path
        self.state = SessionState.CONNECTING
        self.last_error: str | None = None
        self.stats = SessionStats()
        self._started = time.monotonic()
        self._wake = asyncio.Event()
        self._window: dict[int, _InFlight] = {}
        self._next_id = 0
        self._transport: Transport | None = None
        self._config_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- topics and messages -------------------------------------------------------------
    def _topic(self, channel: Channel) -> str:
        return agent_topic(self.agent_id, channel)

    def status(self, state: AgentState, reason: str | None = None) -> Status:
        fields = self.hooks.status_fields()
        return Status(agent_id=self.agent_id, state=state, boot_id=self.boot_id,
                      at=self.clock.now(), version=self.version, reason=reason, **fields)

    def will(self) -> Will:
        return Will(self._topic(Channel.STATUS),
                    encode(self.status(AgentState.OFFLINE, "connection lost")))

    def telemetry(self) -> Telemetry:
        parts = self.hooks.telemetry_parts()
        return Telemetry(agent_id=self.agent_id, boot_id=self.boot_id, at=self.clock.now(),
                         uptime_s=round(time.monotonic() - self._started, 3),
                         outbox=self.outbox.telemetry(), **parts)

    # -- main loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect until ``stop`` is set; then say goodbye."""
        self.outbox.add_listener(self._wake.set)
        first = True
        try:
            while not stop.is_set():
                if not first:  # spread reconnects of many agents (full jitter)
                    await _sleep_or_stop(stop, random.uniform(0, self.reconnect.initial_s))  # noqa: S311
                first = False
                transport = await self._connect(stop)
                if transport is None:
                    break
                await self._serve(transport, stop)
        finally:
            self.outbox.remove_listener(self._wake.set)
            self.state = SessionState.STOPPED

    async def _connect(self, stop: asyncio.Event) -> Transport | None:
        while not stop.is_set():
            self.state = SessionState.CONNECTING
            retrying = AsyncRetrying(
                wait=wait_random_exponential(multiplier=self.reconnect.initial_s, max=self.reconnect.max_s),
                retry=retry_if_exception(_transient), reraise=True,
                sleep=partial(_sleep_or_stop, stop), before_sleep=self._log_retry,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        if stop.is_set():
                            return None
                        transport = self.make_transport(self.will())
                        await transport.connect()
                        return transport
            except AuthError as exc:
                self.state, self.last_error = SessionState.AUTH_FAILED, str(exc)
                log.error("%s. Not retrying until the credentials file changes%s.", exc,
                          f" ({self.credentials_path})" if self.credentials_path else "")
                await self._wait_for_new_credentials(stop)
        return None

    def _log_retry(self, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        self.last_error = str(exc)
        wait = rs.next_action.sleep if rs.next_action else 0
        level = logging.WARNING if rs.attempt_number in (1, 5) or rs.attempt_number % 20 == 0 else logging.DEBUG
        log.log(level, "cannot reach the broker (attempt %d): %s; retrying in %.1f s",
                rs.attempt_number, exc, wait)

    async def _wait_for_new_credentials(self, stop: asyncio.Event) -> None:
        def stamp() -> float | None:
            try:
                return self.credentials_path.stat().st_mtime if self.credentials_path else None
            except OSError:
                return None

        before = stamp()
        while not stop.is_set():
            await _sleep_or_stop(stop, 5.0)
            if self.credentials_path is not None and stamp() != before:
                log.info("credentials file changed: trying the broker again")
                return

    async def _serve(self, transport: Transport, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        transport.on_disconnect = lambda reason: (lost.set(), setattr(self, "last_error", reason))
        transport.on_message = partial(self._on_message, transport)
        self._transport = transport
        try:
            birth = transport.publish(self._topic(Channel.STATUS), encode(self.status(AgentState.ONLINE)),
                                      qos=1, retain=True)
            await asyncio.wait_for(birth, _HANDSHAKE_TIMEOUT_S)
            await asyncio.wait_for(transport.subscribe([
                (agent_subscription(self.agent_id, Channel.ACKS), 1),
                (agent_subscription(self.agent_id, Channel.CONFIG), 1),
                (agent_subscription(self.agent_id, Channel.CARE), 1),
                (agent_subscription(self.agent_id, Channel.LIVE), 1),
                (agent_subscription(self.agent_id, Channel.RELEASE), 1),
                (agent_subscription(self.agent_id, Channel.BLOBS), 1)]), _HANDSHAKE_TIMEOUT_S)
        except (TransportError, TimeoutError) as exc:
            log.warning("connection failed while starting the session: %s", exc or "timed out")
            await self._close(transport)
            return
        self.stats.connects += 1
        self.state, self.last_error = SessionState.CONNECTED, None
        log.info("connected to the broker; outbox depth %d", self.outbox.depth,
                 extra={"boot_id": self.boot_id})
        self.outbox.start_delivery()
        self._window.clear()
        self._wake.set()
        if self.hooks.connected is not None:
            try:
                self.hooks.connected()
            except Exception:  # a hook's bug must not cost the session
                log.exception("the connected hook failed")
        tasks = [asyncio.create_task(self._sender(transport), name="session:sender"),
                 asyncio.create_task(self._heartbeat(transport), name="session:telemetry"),
                 asyncio.create_task(self._ack_timer(), name="session:ack-timer")]
        stopping = asyncio.create_task(stop.wait())
        losing = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait([stopping, losing, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stopping, losing, *tasks):
                t.cancel()
            await asyncio.gather(stopping, losing, *tasks, return_exceptions=True)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    log.error("session task %s failed: %r", t.get_name(), t.exception())
            self.outbox.stop_delivery()
            self._window.clear()
        if stop.is_set() and transport.connected:
            await self._goodbye(transport)
        else:
            log.warning("connection to the broker lost: %s", self.last_error)
            await self._close(transport)
        self._transport = None

    async def _goodbye(self, transport: Transport) -> None:
        try:
            fut = transport.publish(self._topic(Channel.STATUS),
                                    encode(self.status(AgentState.OFFLINE, "shutdown")), qos=1, retain=True)
            await asyncio.wait_for(fut, 5)
        except (TransportError, TimeoutError) as exc:
            log.warning("could not publish the offline status: %s", exc)
        await self._close(transport)

    async def _close(self, transport: Transport) -> None:
        with contextlib.suppress(TransportError, TimeoutError):
            await asyncio.wait_for(transport.disconnect(), 5)

    # -- delivery ----------------------------------------------------------------------
    async def _sender(self, transport: Transport) -> None:
        cfg = self.outbox_config
        while transport.connected:
            await self._wake.wait()
            self._wake.clear()
            while transport.connected:
                live = self.outbox.take_live(100)
                if live and not self._send(transport, live, live=True):
                    break
                backlog: list[OutboxRow] = []
                if len(self._window) < cfg.max_in_flight:
                    backlog = self.outbox.take_backlog(cfg.batch_max_events, BATCH_BYTES)
                    if backlog and not self._send(transport, backlog, live=False):
                        break
                if not live and not backlog:
                    break
                await asyncio.sleep(0)  # let acks and PUBACKs in

    def _send(self, transport: Transport, rows: list[OutboxRow], *, live: bool) -> bool:
        """Publish rows; False when the transport refused (rows released, back off)."""
        messages = build_messages(self.agent_id, rows, max_events=1 if live else self.outbox_config.batch_max_events)
        for i, msg in enumerate(messages):
            try:
                fut = transport.publish(msg.topic, msg.payload, qos=1)
            except TransportError as exc:
                self.stats.publish_errors += 1
                self.outbox.release(s for m in messages[i:] for s in m.seqs)
                log.warning("publish refused by the client: %s", exc)
                if transport.connected:  # queue full: try again once PUBACKs drain it
                    asyncio.get_running_loop().call_later(0.05, self._wake.set)
                return False
            self._next_id += 1
            if not live:
                self._window[self._next_id] = _InFlight(set(msg.seqs), time.monotonic(), msg.events)
            self.stats.messages += 1
            self.stats.events += msg.events
            fut.add_done_callback(partial(self._on_puback, msg.seqs, self._next_id))
        return True

    def _on_puback(self, seqs: tuple[int, ...], msg_id: int, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._window.pop(msg_id, None)
            self.outbox.release(seqs)
            if not fut.cancelled():
                self.stats.publish_errors += 1
                log.debug("publish not acknowledged by the broker: %s", fut.exception())
        else:
            self.outbox.mark_sent(seqs)
        self._wake.set()

    def _on_ack(self, ack: Ack) -> None:
        result = self.outbox.apply_ack(ack)
        self.stats.acks += 1
        self.stats.acked_rows += result.deleted
        rejected = {r.seq for r in ack.rejected}
        for msg_id, entry in list(self._window.items()):
            entry.seqs = {s for s in entry.seqs if not ack.covers(s) and s not in rejected}
            if not entry.seqs:
                del self._window[msg_id]
        self._wake.set()

    async def _ack_timer(self) -> None:
        timeout = self.outbox_config.ack_timeout_s
        tick = min(5.0, timeout / 4)
        while True:
            await asyncio.sleep(tick)
            requeued = self.outbox.requeue_stale(timeout)
            cutoff = time.monotonic() - timeout
            expired = [k for k, e in self._window.items() if e.sent_at < cutoff]
            for k in expired:
                del self._window[k]
            if requeued or expired:
                log.warning("no hub ack within %.0f s for %d row(s): sending them again",
                            timeout, requeued)
                self._wake.set()

    # -- incoming --------------------------------------------------------------------------
    def _on_message(self, transport: Transport, topic: str, payload: bytes) -> None:
        try:
            parsed = parse_topic(topic)
            if parsed.agent_id != self.agent_id:
                raise ProtocolError("topic_mismatch", f"not this agent's topic ({self.agent_id})")
            if parsed.channel == Channel.ACKS:
                self._on_ack(decode_ack(payload, agent_id=self.agent_id))
            elif parsed.channel == Channel.CONFIG:
                if not payload:
                    return  # retained config cleared
                desired = decode_desired_config(payload, agent_id=self.agent_id)
                task = asyncio.get_running_loop().create_task(self._apply_config(transport, desired))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif parsed.channel == Channel.CARE:
                if not payload:
                    return  # retained care state cleared
                care = decode_care_state(payload, agent_id=self.agent_id)
                if self.hooks.apply_care is not None:
                    self.hooks.apply_care(care)
            elif parsed.channel == Channel.LIVE:
                request = decode_live_request(payload, agent_id=self.agent_id)
                if self.hooks.live_request is not None:
                    self.hooks.live_request(request)
            elif parsed.channel == Channel.RELEASE:
                if not payload:
                    return  # retained desired release cleared
                desired = decode_desired_release(payload, agent_id=self.agent_id)
                if self.hooks.release is not None:
                    task = asyncio.get_running_loop().create_task(self.hooks.release(desired))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif parsed.channel == Channel.BLOBS:
                header, data = decode_release_chunk(payload)
                if self.hooks.release_chunk is not None:
                    self.hooks.release_chunk(header, data)
            else:
                raise ProtocolError("bad_topic", f"agents do not subscribe to {parsed.channel}")
        except ProtocolError as exc:
            self.stats.bad_messages += 1
            log.warning("ignored a bad message on %s: %s (payload %r)", topic, exc, payload[:200])

    def publish_on(self, channel: Channel, payload: bytes, qos: int, retain: bool) -> bool:
        """Publish a small message on one of this agent's channels now (release requests and
        reports); False when not connected or the client refused (the caller tries again)."""
        transport = self._transport
        if transport is None or not transport.connected:
            return False
        try:
            transport.publish(self._topic(channel), payload, qos=qos, retain=retain)
        except TransportError as exc:
            log.debug("not sent on %s: %s", channel, exc)
            return False
        return True

    def publish_frame(self, payload: bytes) -> bool:
        """Send one live frame (QoS 0, never through the outbox: see edge_agent.camera.live).
        False when not connected or the client's queue is full: the frame is gone, the
        next one follows within a second."""
        transport = self._transport
        if transport is None or not transport.connected:
            return False
        try:
            transport.publish(self._topic(Channel.FRAMES), payload, qos=0)
        except TransportError as exc:
            log.debug("live frame not sent: %s", exc)
            return False
        return True

    async def _apply_config(self, transport: Transport, desired: DesiredConfig) -> None:
        if self.hooks.apply_config is None:
            return
        async with self._config_lock:
            await self.hooks.apply_config(desired)
            if transport.connected:
                try:
                    await transport.publish(self._topic(Channel.STATUS),
                                            encode(self.status(AgentState.ONLINE)), qos=1, retain=True)
                except TransportError as exc:
                    log.warning("could not publish the status after a config change: %s", exc)

    async def _heartbeat(self, transport: Transport) -> None:
        warned = False
        while transport.connected:
            try:
                tele = self.telemetry()
                try:
                    payload = encode(tele)
                except ProtocolError:
                    if not warned:
                        log.warning("telemetry over the size limit: sending it without readings")
                        warned = True
                    payload = encode(tele.model_copy(update={"readings": {}}))
                transport.publish(self._topic(Channel.TELEMETRY), payload, qos=0)
            except TransportError as exc:
                log.debug("telemetry not sent: %s", exc)
            except Exception:  # a bad part must not take the session down
                log.exception("could not build the telemetry message")
            await asyncio.sleep(self.telemetry_config.interval_s)

    # -- inspection ----------------------------------------------------------------------
    @property
    def in_flight_messages(self) -> int:
        return len(self._window)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
