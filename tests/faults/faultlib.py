"""Helpers for the fault-injection tests: the hub as a process that can be killed, an
in-process agent (the real outbox, session and MQTT transport), generated ground truth
and an independent audit of what the hub stored."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hubtest import G01, make_config

from edge_agent.config.sections import MqttConfig, OutboxConfig, ReconnectConfig, TelemetryConfig
from edge_agent.emit import EventDraft
from edge_agent.outbox import Outbox
from edge_agent.session import Session
from edge_agent.transport import MqttTransport
from protocol.messages import EventKind, Evidence, Location, Reading

SCALE = max(1, int(os.environ.get("CITYOPS_FAULT_SCALE", "1")))
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


# -- ground truth ------------------------------------------------------------------------------

def lifecycles(sources: int, updates: int, prefix: str = "m") -> list[EventDraft]:
    """``sources`` water meters, each one lifecycle: new, ``updates`` updates, end. Every
    meter is one case at the hub (elderly_care merges by source in these configs)."""
    out = []
    for s in range(sources):
        kinds = [EventKind.NEW] + [EventKind.UPDATE] * updates + [EventKind.END]
        for i, kind in enumerate(kinds):
            out.append(EventDraft(
                event_id=f"{prefix}-{s}", kind=kind, category="elderly_care",
                subcategory="elderly_care.water_no_use", source=f"{prefix}{s}",
                observed_at=T0 + timedelta(seconds=s * 10 + i),
                location=Location(lat=G01[0], lon=G01[1]),
                evidence=Evidence(reading=Reading(name="volume", value=float(i), unit="m3")),
                attributes={"i": i}))
    return out


def interleave(drafts: list[EventDraft], sources: int) -> list[EventDraft]:
    """Lifecycles of different meters interleaved, as live traffic is."""
    by_source: dict[str, list[EventDraft]] = {}
    for d in drafts:
        by_source.setdefault(d.source, []).append(d)
    queues = list(by_source.values())
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


# -- the hub as a process -------------------------------------------------------------------------

def hub_yaml(tmp: Path, broker, receivers: int = 1) -> Path:
    """A hub.yaml for ``cityops-hub serve`` against ``broker`` (not managed by the hub)."""
    cfg = make_config(tmp)
    path = tmp / "hub.yaml"
    path.write_text(
        f"grids: {cfg.grids}\nrouting: {cfg.routing}\ndatabase: {cfg.database}\n"
        f"snapshots_dir: {tmp / 'snaps'}\nweb: {{port: 0}}\n"
        f"broker: {{managed: false, host: {broker.host}, port: {broker.port}}}\n"
        f"ingest: {{receivers: {receivers}}}\n"
        "screening: {rules: {elderly_care: {merge_scope: source}}}\n")
    return path


class HubProcess:
    """``cityops-hub serve`` in its own process group (the hub and its receivers)."""

    def __init__(self, config: Path, broker) -> None:
        self.config = config
        self.broker = broker
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> HubProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "CITYOPS_HUB_BROKER_PASSWORD": self.broker.settings.hub_password}
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True)
        line = self.proc.stdout.readline()
        assert line.startswith("cityops-hub: serving"), line
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class ManagedHubProcess(HubProcess):
    """``cityops-hub serve`` running its own managed Mosquitto (``broker.managed: true``):
    the case of a hub started from ``hub/examples/``. Its log goes to ``log_dir``."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        super().__init__(config, broker=None)
        self.log_dir = log_dir
        self.starts = 0
        self.web_url = ""
        self.broker_port = 0

    def start(self) -> ManagedHubProcess:
        self.starts += 1
        log = open(self.log_dir / f"hub-{self.starts}.log", "w")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config)],
                stdout=subprocess.PIPE, stderr=log, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        finally:
            log.close()
        line = self.proc.stdout.readline()
        assert line.startswith("cityops-hub: serving"), (
            f"the hub did not start (exit {self.proc.poll()}): {line!r}; its log: "
            f"{(self.log_dir / f'hub-{self.starts}.log').read_text()[-3000:]}")
        # "cityops-hub: serving http://127.0.0.1:PORT/ (broker HOST:PORT; ...)"
        self.web_url = line.split()[2]
        self.broker_port = int(line.split("(broker ", 1)[1].split(";", 1)[0].rsplit(":", 1)[1])
        return self


def mosquittos_on(config_path: Path) -> set[int]:
    """Live (not zombie) mosquitto processes started with ``-c config_path``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv and argv[0].endswith(b"mosquitto") and str(config_path).encode() in argv:
            found.add(int(entry.name))
    return found


# -- an agent in this process ------------------------------------------------------------------

class Agent:
    """The agent's real outbox and session, publishing through the real MQTT transport."""

    def __init__(self, broker, tmp: Path, agent_id: str = "agent-1", *, ack_timeout_s: float = 3.0,
                 max_events: int = 100_000, password: str = "agent-password-0123456",
                 register: bool = True) -> None:
        # ``broker``: a MosquittoBroker, or anything with host and port when the agent was
        # enrolled elsewhere (``register=False``: its credentials are already known there).
        if register:
            broker.auth.set_user(agent_id, password)
            broker.reload()
        self.agent_id = agent_id
        self.outbox = Outbox(tmp / f"{agent_id}.outbox.sqlite", agent_id, max_events=max_events)
        cfg = MqttConfig(host=broker.host, port=broker.port)
        self.session = Session(
            agent_id, self.outbox,
            lambda will: MqttTransport(cfg, will, client_id=agent_id, username=agent_id,
                                       password=password),
            outbox_config=OutboxConfig(ack_timeout_s=ack_timeout_s, max_events=max(10, max_events)),
            telemetry=TelemetryConfig(interval_s=1), reconnect=ReconnectConfig(initial_s=0.1, max_s=0.5),
            version="faults")
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.seqs: list[int] = []  # seq of every draft taken by the outbox (ground truth)

    async def start(self, timeout: float = 20.0) -> Agent:
        """Run the session and wait until it is connected to the broker."""
        from edge_agent.session import SessionState

        self._task = asyncio.create_task(self.session.run(self._stop))
        deadline = time.monotonic() + timeout
        while self.session.state != SessionState.CONNECTED:
            assert time.monotonic() < deadline, f"agent did not connect: {self.session.last_error}"
            await asyncio.sleep(0.02)
        return self

    async def feed(self, drafts: list[EventDraft], per_s: float | None = None) -> None:
        """Hand drafts to the outbox (the agent has *taken* them), optionally paced."""
        t0 = time.monotonic()
        for i, d in enumerate(drafts):
            self.seqs.append(self.outbox.emit(d))
            if per_s:
                # Yield even when behind the pace (an outbox write slower than 1/per_s on a
                # busy disk): else the session never runs until the whole feed is taken.
                await asyncio.sleep(max(0.0, t0 + (i + 1) / per_s - time.monotonic()))
            elif i % 50 == 49:
                await asyncio.sleep(0)

    async def drained(self, timeout: float, what: str = "every event acknowledged") -> None:
        deadline = time.monotonic() + timeout
        while self.outbox.depth:
            assert time.monotonic() < deadline, f"timed out: {what} (outbox depth {self.outbox.depth})"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)
        self.outbox.close()


# -- what the hub stored ---------------------------------------------------------------------

@dataclass
class Stored:
    seqs: list[int]  # every stored message seq for the agent (duplicates would repeat)
    cases: int
    case_keys: int  # distinct grouping keys among the cases
    dead_letters: int


def stored(database: Path | str, agent_id: str = "agent-1") -> Stored:
    db = sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True, timeout=30)
    try:
        seqs = [r[0] for r in db.execute("SELECT seq FROM messages WHERE agent_id = ?", (agent_id,))]
        cases, keys = db.execute("SELECT count(*), count(DISTINCT group_key) FROM cases").fetchone()
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        db.close()
    return Stored(sorted(seqs), cases, keys, dead)


def assert_exactly_once(s: Stored, taken: list[int], sources: int) -> None:
    """0 lost acknowledged (indeed: taken) events, none stored twice, one case per meter."""
    assert len(s.seqs) == len(set(s.seqs)), "an event was stored twice"
    missing = sorted(set(taken) - set(s.seqs))
    assert not missing, f"{len(missing)} events the agent took were never stored: {missing[:10]}"
    assert s.cases == s.case_keys == sources, (s.cases, s.case_keys, sources)
