"""The whole system on one machine, for a scenario: the hub (with its managed Mosquitto),
one edge agent and one simulated Modbus gateway per scenario site, all on one simulated
clock.

The hub and the agents run in this process (``hub.app.Hub`` and
``edge_agent.app.AgentApp``, the same objects ``cityops-hub serve`` and ``cityops-agent
run`` use) because they must share the scenario's :class:`~simulators.clock.ScaledClock`;
everything between them is real: MQTT through Mosquitto, Modbus TCP through pymodbus,
SQLite outboxes and the hub's store, all under one work directory. Ports are free ports.

The hub tells people through real channels: a local SMTP server and one HTTP receiver
standing in for webhooks, the WeCom/DingTalk/Feishu group robots and an SMS gateway
(:mod:`simulators.sinks`), with the routing contacts and the care registry of
:mod:`simulators.reach` (``sinks.report()`` is what they received). One channel can be made
to refuse everything (``StackOptions.failing_channel``).

::

    stack = SimStack(load_scenario("mixed-day"), StackOptions(time_scale=1440))
    await stack.start()          # prints nothing; stack.hub.web_url is the status page
    ...
    await stack.quiesce()        # agents stop reading devices; nothing new is emitted
    await stack.drain(10)        # wait until every outbox is acknowledged
    counters = stack.agent_counters()
    await stack.settle_notifications(20)  # people stop, time stops, deliveries drain
    await stack.stop()

The hub runs its ingest in a thread (``ingest.receivers: 0``) rather than a receiver
process: the demo's load is small, and one process is easier to stop cleanly. Note that
``Hub.start`` calls ``gc.freeze()`` for the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time as _time
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from edge_agent.app import COMPONENT_FACTORIES, AgentApp, ComponentFactory, camera_components
from edge_agent.component import Component
from edge_agent.config import load_agent_config
from edge_agent.emit import EventSink
from hub.app import Hub
from hub.config import load_setup
from hub.errors import CaseError
from protocol.ids import new_secret
from protocol.taxonomy import taxonomy

from .camera import CameraStream
from .clock import ScaledClock
from .errors import SimulatorError
from .handlers import HandlerRun, Shares
from .handlers.cli import build_run
from .handlers.photos import SUBCATEGORY_KINDS, KnownScene
from .hubaudit import StoreAudit, audit_store
from .modbus import ModbusSimServer, SimulatedDevice
from .reach import care_registry, named_endpoints, routing_contacts
from .scenarios import LoadedScenario
from .scenarios.agents import AgentWiring, agent_config_data
from .scenarios.devices import build_site_devices
from .scenarios.truth import Truth, ground_truth
from .scenes.spec import PROBLEM_KINDS
from .scoring import AgentCounters
from .sinks import Sinks

__all__ = ["EXAMPLES", "SimStack", "StackOptions", "scenario_start"]

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[1] / "hub" / "examples"


def _example(ref: str, folder: Path, suffix: str) -> Path:
    """A scenario's reference to an example file: a path, or a name in ``folder``."""
    path = Path(ref)
    if path.suffix or path.is_absolute() or "/" in ref:
        return path.resolve()
    return folder / f"{ref}{suffix}"


def scenario_start(start: str, zone: str, now: datetime | None = None) -> tuple[datetime, float]:
    """(UTC start of the simulated clock, seconds into its local day) for a scenario's
    ``start``: ``now``, or ``HH:MM`` today in the scenario's time zone."""
    tz = ZoneInfo(zone)
    now = (now or datetime.now(UTC)).astimezone(tz)
    if start == "now":
        local = now
    else:
        hh, mm = (int(x) for x in start.split(":"))
        local = datetime.combine(now.date(), time(hh, mm), tzinfo=tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
    return local.astimezone(UTC), (local - midnight).total_seconds()


@dataclass
class StackOptions:
    time_scale: float | None = None  # None: the scenario's
    web_port: int = 0  # 0: a free port
    work_dir: Path | None = None  # None: a fresh temporary directory, removed by stop()
    keep: bool = False  # keep the work directory
    telemetry_s: float = 5.0  # agents' heartbeat, real seconds
    operator: bool = True  # a duty operator closes cases that no sensor can close
    handlers: bool = True  # departments work their cases through the handler API
    handler_shares: Shares = field(default_factory=Shares)
    handler_seed: int = 0
    handler_poll_s: float = 0.25  # real seconds (at very high time scales short deadlines are missed)
    sinks: bool = True  # local SMTP and HTTP receivers the hub's notifications go to
    failing_channel: str | None = None  # a channel whose sink refuses everything (simulators.sinks)


CAMERA_FPS = 4.0  # frames per real second the camera simulator serves
CAMERA_SIZE = (960, 540)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _RealMonotonic:
    """The scenario's wall time, with real-time ``monotonic()``: a camera measures frame
    times, track ends and reconnects in real seconds (the stream plays in real time),
    and dates its events on the scenario's clock."""

    def __init__(self, clock: ScaledClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    def monotonic(self) -> float:
        return _time.monotonic()


class _Quiescable:
    """A component that also stops when the run stops injecting (before the agents stop),
    so every event an agent emits is emitted before the final count."""

    def __init__(self, inner: Component, quiesce: asyncio.Event) -> None:
        self.inner = inner
        self.name = inner.name
        self.quiesce = quiesce
        self.running = False
        self.returned = asyncio.Event()  # its run returned (a camera's last clips are in the outbox)

    async def run(self, sink: EventSink, stop: asyncio.Event) -> None:
        inner_stop = asyncio.Event()

        async def relay() -> None:
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.quiesce.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                inner_stop.set()

        relay_task = asyncio.create_task(relay())
        self.running = True
        self.returned.clear()
        try:
            await self.inner.run(sink, inner_stop)
        finally:
            relay_task.cancel()
            self.running = False
            self.returned.set()

    def telemetry(self) -> dict[str, Any]:
        return self.inner.telemetry()

    def __getattr__(self, name: str) -> Any:
        """What else the component offers, e.g. ``acknowledge()`` (the agent hands the
        hub's care acknowledgements to every component that has it)."""
        return getattr(self.inner, name)


@dataclass
class _Site:
    agent_id: str
    devices: list[SimulatedDevice]
    server: ModbusSimServer
    app: AgentApp | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class SimStack:
    def __init__(self, loaded: LoadedScenario, options: StackOptions | None = None) -> None:
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.options = options or StackOptions()
        self.scale = self.options.time_scale or self.scenario.time_scale
        start, self.day0_s = scenario_start(self.scenario.start, self.scenario.timezone)
        self.clock = ScaledClock(start, self.scale)
        self.work: Path | None = None
        self._own_work = False
        self.hub: Hub | None = None
        self.sites: list[_Site] = []
        self.quiesced = asyncio.Event()
        self._quiescables: list[_Quiescable] = []
        self.horizon: float | None = None  # simulated seconds when injection stopped
        self._operator: asyncio.Task[None] | None = None
        self.web_user: str | None = None
        self.web_password: str | None = None
        self.operator_closed = 0
        self.operator_reviewed = 0
        self.operator_redispatched = 0
        self.handlers: HandlerRun | None = None
        self.cameras: dict[str, CameraStream] = {}
        self.camera_url: str | None = None
        self._camera_task: asyncio.Task[None] | None = None
        self._camera_stop: asyncio.Event | None = None
        self.sinks: Sinks | None = None
        self._settled = asyncio.Event()  # set after each delivery outcome the hub stores

    # -- starting -----------------------------------------------------------------------
    async def start(self) -> SimStack:
        if self.options.work_dir is None:
            self.work = Path(tempfile.mkdtemp(prefix=f"cityops-{self.scenario.name}-"))
            self._own_work = True
        else:
            self.work = Path(self.options.work_dir).resolve()
            if self.work.exists() and any(self.work.iterdir()):
                raise SimulatorError(f"work directory {self.work} is not empty; give a new or empty one")
            self.work.mkdir(parents=True, exist_ok=True)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        assert self.work is not None
        if self.options.sinks:
            self.sinks = Sinks(self.work, failing=self.options.failing_channel)
            await self.sinks.start()
        elif self.options.failing_channel is not None:
            raise SimulatorError("a failing channel needs the sinks (do not turn them off)")
        hub_yaml = self.work / "hub.yaml"
        hub_yaml.write_text(yaml.safe_dump(self.hub_config_data(), sort_keys=False, allow_unicode=True))
        self.hub = Hub(load_setup(hub_yaml), clock=self.clock)
        await self.hub.start()
        if self.hub.notifier is not None:
            self.hub.notifier.listeners.append(lambda _row, _outcome: self._settled.set())
        passwords = {site.id: new_secret("mqp") for site in self.scenario.sites}
        self.hub.broker_auth.set_users(passwords)  # one write for every agent
        await asyncio.to_thread(self.hub.broker_auth.reload)
        await self._add_web_account()
        await self._start_cameras()
        # The day starts now: the seconds the hub and broker took to start do not count.
        self.clock.restart()
        for cam in self.cameras.values():  # the cameras' timelines start with the day
            cam.started, cam.started_at = _time.monotonic(), datetime.now(UTC)
        for site in self.scenario.sites:
            devices = build_site_devices(site, self.scenario, self.day0_s, self.clock)
            server = await ModbusSimServer(devices).start()
            self.sites.append(_Site(site.id, devices, server))
        for site, running in zip(self.scenario.sites, self.sites, strict=True):
            agent_dir = self.work / "agents" / site.id
            agent_dir.mkdir(parents=True)
            creds = agent_dir / "credentials.yaml"
            creds.write_text(yaml.safe_dump({"username": site.id, "password": passwords[site.id]}))
            os.chmod(creds, 0o600)
            wiring = AgentWiring(broker_host=self.hub.broker_host, broker_port=self.hub.broker_port,
                                 gateway_port=running.server.port, credentials_file=str(creds),
                                 data_dir=str(agent_dir / "data"), telemetry_s=self.options.telemetry_s,
                                 camera_base_url=self.camera_url)
            data = agent_config_data(site, self.scenario, self.scale, wiring)
            (agent_dir / "agent.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
            loaded = load_agent_config(agent_dir / "agent.yaml")
            running.app = AgentApp(loaded, clock=self.clock,
                                   factories=[self._wrap(f) for f in COMPONENT_FACTORIES])
            running.task = asyncio.create_task(running.app.run(running.stop), name=f"agent:{site.id}")
        if self.options.handlers:
            await self._start_handlers()
        if self.options.operator:
            self._operator = asyncio.create_task(self._duty_operator(), name="duty-operator")

    async def _start_cameras(self) -> None:
        """The camera simulator serving every scenario camera as a live MJPEG stream, its
        problems scripted on the scenario's timeline (real seconds = simulated / scale);
        appear/disappear entries go to ``cameras-truth.jsonl`` in the work directory."""
        specs = [cam for site in self.scenario.sites for cam in site.cameras]
        if not specs:
            return
        assert self.work is not None
        from .camera import CameraStream, serve
        from .scenes.clips import scripted_clip

        length = self.scenario.duration / self.scale

        def build() -> dict[str, CameraStream]:
            return {cam.id: CameraStream(cam.id, scripted_clip(
                cam.seed, [(i.kind, i.at / self.scale, (i.at + i.for_) / self.scale) for i in cam.incidents],
                duration_s=length, fps=CAMERA_FPS, size=CAMERA_SIZE)) for cam in specs}

        self.cameras = await asyncio.to_thread(build)
        port = _free_port()
        ready, self._camera_stop = asyncio.Event(), asyncio.Event()
        self._camera_task = asyncio.create_task(
            serve(self.cameras, "127.0.0.1", port, self.work / "cameras-truth.jsonl", self._camera_stop, ready),
            name="camera-simulator")
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([waiter, self._camera_task], return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            await self._camera_task  # raises the reason it could not listen
        self.camera_url = f"http://127.0.0.1:{port}/"

    def known_scene(self, case: dict[str, Any]) -> KnownScene | None:
        """For the departments' after-photos: the scene a camera case was seen in."""
        origin = case.get("origin") or {}
        cam = self.cameras.get(origin.get("source") or "")
        if cam is None:
            return None
        kind = SUBCATEGORY_KINDS.get(case.get("subcategory", ""))
        label = PROBLEM_KINDS.get(kind or "")
        problem = next((cam.clip.scene.objects[e.index] for e in cam.clip.events if e.label == label), None)
        return None if problem is None else KnownScene(cam.clip.scene, problem)

    async def _start_handlers(self) -> None:
        """Every department polls the handler API with its own token (``cityops-sim
        handlers`` in this process, on the scenario's clock); its actions go to
        ``handlers.jsonl`` in the work directory."""
        from hub.auth.accounts import create_api_token

        assert self.hub is not None and self.work is not None
        hub = self.hub
        departments = sorted(set(hub.setup.taxonomy.departments) | set(hub.setup.routing.departments))
        now = self.clock.now()

        def tokens(repo):  # noqa: ANN001, ANN202 - one transaction for every token
            return {d: create_api_token(repo, f"sim-{d}", "handler", now, departments=departments,
                                        department=d)[1] for d in departments}

        issued = await hub.write(tokens)
        self.handlers = build_run(hub.web_url, {d: (t, None) for d, t in issued.items()}, clock=self.clock,
                                  shares=self.options.handler_shares, seed=self.options.handler_seed,
                                  poll_s=self.options.handler_poll_s, log_path=self.work / "handlers.jsonl",
                                  scenes=self.known_scene)
        self.handlers.start()

    async def _add_web_account(self) -> None:
        """A sign-in for the person watching the demo: user ``demo`` (role operator) with a
        fresh password, printed with the status page URL and kept in the work directory."""
        from hub.auth.accounts import add_user

        assert self.hub is not None and self.work is not None
        self.web_user, self.web_password = "demo", new_secret("pw")
        departments = set(self.hub.setup.taxonomy.departments) | set(self.hub.setup.routing.departments)
        now = self.clock.now()
        await self.hub.write(lambda repo: add_user(repo, self.web_user, "operator", self.web_password, now,
                                                   departments=departments, display_name="Demo operator"))
        path = self.work / "web-login.txt"
        path.write_text(f"{self.hub.web_url}\nuser {self.web_user}\npassword {self.web_password}\n")
        os.chmod(path, 0o600)

    def _wrap(self, factory: ComponentFactory) -> ComponentFactory:
        def build(loaded, clock):  # noqa: ANN001, ANN202 - same signature as the factory
            if factory is camera_components:
                clock = _RealMonotonic(clock)
            wrapped = [_Quiescable(c, self.quiesced) for c in factory(loaded, clock)]
            self._quiescables.extend(wrapped)
            return wrapped
        return build

    def hub_config_data(self) -> dict[str, Any]:
        """The example hub config (hub/examples/hub.yaml), pointed at this run's files,
        free ports and the scenario's simulated time."""
        assert self.work is not None
        data = yaml.safe_load((EXAMPLES / "hub.yaml").read_text())
        data["broker"] = {"managed": True, "data_dir": str(self.work / "broker"), "host": "127.0.0.1",
                          "port": 0}
        data["database"] = str(self.work / "hub.sqlite")
        data["database_synchronous"] = "NORMAL"
        data["snapshots_dir"] = str(self.work / "snapshots")
        data["web"] = {"host": "127.0.0.1", "port": self.options.web_port}
        data["grids"] = str(EXAMPLES / "grids.geojson")
        data["routing"] = str(EXAMPLES / "routing.yaml")
        data["gazetteer"] = str(EXAMPLES / "gazetteer.yaml")
        data["timezone"] = self.scenario.timezone
        # The scheduler ticks in real seconds; deadlines and holds are simulated time.
        data.setdefault("sla", {})["tick_s"] = round(min(5.0, max(0.25, 300.0 / self.scale)), 3)
        if self.scenario.hub.escalation_step is not None:
            data["sla"]["escalation_step_min"] = self.scenario.hub.escalation_step / 60.0
        if self.scenario.hub.clear_hold is not None:
            data.setdefault("screening", {})["clear_hold_s"] = self.scenario.hub.clear_hold
        data["agents"] = {"stale_after_s": max(180.0, 4 * self.options.telemetry_s * self.scale)}
        data.pop("vitals", None)
        data.pop("plans", None)
        tuning = self.scenario.hub
        if tuning.vitals:
            data["vitals"] = str(_example(tuning.vitals, EXAMPLES, ".yaml"))
        if tuning.plans:  # the scenario's plans, copied into one folder the hub reads
            folder = self.work / "plans"
            folder.mkdir(exist_ok=True)
            for ref in tuning.plans:
                src = _example(ref, EXAMPLES / "plans", ".yaml")
                shutil.copyfile(src, folder / src.name)
            data["plans"] = str(folder)
        data["ingest"] = {**data.get("ingest", {}), "receivers": 0, "batch_wait_ms": 5}
        if self.sinks is not None:
            self._reach_sinks(data)
        return data

    def _reach_sinks(self, data: dict[str, Any]) -> None:
        """Point the config at the sinks: a routing table whose contacts reach them
        (``routing.yaml``), the scenario's care registry (``care.yaml``) and ``notify:``."""
        assert self.work is not None and self.sinks is not None
        table = yaml.safe_load((EXAMPLES / "routing.yaml").read_text())
        places = [f["properties"] for f in json.loads(Path(data["grids"]).read_text())["features"]]
        departments = set(taxonomy().departments) | set(table.get("departments", {}))
        table["contacts"] = routing_contacts(table.get("contacts"), departments,
                                             [p["town"] for p in places if p.get("town")],
                                             [p["district"] for p in places if p.get("district")])
        care = care_registry(self.scenario)
        (self.work / "routing.yaml").write_text(yaml.safe_dump(table, sort_keys=False, allow_unicode=True))
        (self.work / "care.yaml").write_text(yaml.safe_dump(care, sort_keys=False, allow_unicode=True))
        data["routing"] = str(self.work / "routing.yaml")
        data["care"] = str(self.work / "care.yaml")
        data["notify"] = self.sinks.notify_config(named_endpoints(table["contacts"], care))

    # -- running ------------------------------------------------------------------------
    def truth(self, horizon: float | None = None) -> Truth:
        """Problems injected by ``horizon`` (default: now, or when injection stopped)."""
        if horizon is None:
            horizon = self.horizon if self.horizon is not None else self.clock.elapsed()
        return ground_truth(self.scenario, self.scale, horizon, self.day0_s)

    def published(self) -> int:
        return sum(s.app.outbox.next_seq - 1 for s in self.sites
                   if s.app is not None and s.app.outbox is not None)

    def audit(self) -> StoreAudit:
        assert self.hub is not None
        return audit_store(self.hub.config.database)

    async def quiesce(self) -> None:
        """Stop injecting: agents stop reading their devices (nothing new is emitted);
        their sessions keep delivering what is in the outboxes."""
        if not self.quiesced.is_set():
            self.horizon = self.clock.elapsed()
            self.quiesced.set()
            await asyncio.sleep(0.05)  # let the components return
            # A camera's recordings under way are encoded and put in its outbox on the way
            # out: wait for that, so the drain below counts their clips.
            running = [q.returned.wait() for q in self._quiescables if q.running]
            if running:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*running), 60)

    async def drain(self, timeout: float = 15.0) -> bool:
        """Wait until every outbox is empty (acknowledged by the hub). False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            depth = sum(s.app.outbox.depth for s in self.sites if s.app and s.app.outbox)
            backlog = self.hub.writer.backlog() if self.hub and self.hub.writer else 0
            if depth == 0 and not backlog:
                return True
            await asyncio.sleep(0.05)
        return False

    def agent_counters(self) -> list[AgentCounters]:
        out = []
        for s in self.sites:
            app = s.app
            if app is None or app.outbox is None or app.session is None:
                continue
            tele = app.outbox.telemetry()
            out.append(AgentCounters(s.agent_id, app.outbox.next_seq - 1, app.session.stats.acked_rows,
                                     app.session.stats.events, app.outbox.depth, tele.dropped))
        return out

    async def settle_notifications(self, timeout: float = 20.0) -> bool:
        """End the day for the people: the departments and the duty operator stop, the
        simulated clock stops (no deadline passes, nothing more escalates), and this waits
        until the hub has settled every delivery it queued (sent or dead); a delivery
        waiting to retry moves the stopped clock to its next attempt. False on timeout
        (what is left shows as pending)."""
        if self.handlers is not None:
            await self.handlers.close()
        await self._stop_operator()
        self.clock.freeze()
        if self.hub is None or self.hub.notifier is None:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._settled.clear()
            counts = await self.hub.read(lambda r: r.delivery_counts())
            pending = {state for (state, _), n in counts.items() if n and state in ("queued", "sending", "failed")}
            if not pending:
                return True
            if pending == {"failed"}:  # only retries, waiting for a time that will not come
                due = await self.hub.read(lambda r: r.next_delivery_due())
                if due is not None and due > self.clock.now():
                    self.clock.advance_frozen((due - self.clock.start).total_seconds())
                    self.hub.notifier.wake()
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):  # an outcome wakes us; look again anyway
                await asyncio.wait_for(self._settled.wait(), min(left, 1.0))

    async def _stop_operator(self) -> None:
        if self._operator is not None:
            self._operator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._operator
            self._operator = None

    async def _duty_operator(self, every_s: float = 1.0) -> None:
        """Looks at after-photos the verifier leaves to a person, re-dispatches cases a
        department returned, and closes cases no sensor can close (``close: none``) once
        every event of the case has ended, as the operator on duty does after a phone
        call. (A call button closes by itself when it is cancelled: ``sensor_clear``.)"""
        assert self.hub is not None
        hub = self.hub
        while True:
            await asyncio.sleep(every_s)
            try:
                cases = await hub.read(lambda r: r.list_cases(
                    states=["dispatched", "in_progress", "escalated", "resolved"], limit=500))
                for case in cases:
                    if case.state == "resolved" and case.review_reason and not case.verify_pending:
                        await self._review(case.id)
                        continue
                    if case.close_mode != "none":
                        continue
                    lives = await hub.read(lambda r, c=case.id: r.lifecycles_for_case(c))
                    if lives and all(life.ended_at is not None for life in lives):
                        await hub.close_case(case.id, actor="duty-operator", resolution="fixed",
                                             note="called the resident back: all is well")
                        self.operator_closed += 1
                returned = await hub.read(lambda r: r.list_cases(states=["accepted"], limit=500))
                for case in returned:
                    if case.queue == "operator" and case.department is None and case.dispatched_at:
                        await hub.dispatch(case.id, actor="duty-operator")  # the routing's choice
                        self.operator_redispatched += 1
            except CaseError as exc:  # the case moved on meanwhile (closed, merged)
                log.info("duty operator: %s", exc)
            except Exception:  # the operator keeps working; a bug shows in the log
                log.exception("duty operator pass failed")

    async def _review(self, case_id: int) -> None:
        """A photo the verifier left to a person: the operator looks at it (what the
        department's after-photo really shows) and closes the case or sends it back."""
        assert self.hub is not None
        shows_fixed = self.handlers.photo_shows_fixed(case_id) if self.handlers else None
        if shows_fixed is None:
            # not the departments' photo (a camera's fresh snapshot): the operator looks
            # at the camera, which no longer sees the problem once every track has ended
            lives = await self.hub.read(lambda r: r.lifecycles_for_case(case_id))
            if not lives or any(life.ended_at is None for life in lives):
                return
            shows_fixed = True
        await self.hub.review(case_id, fixed=shows_fixed, actor="duty-operator",
                              note="after-photo checked" if shows_fixed else "the photo still shows it")
        self.operator_reviewed += 1
        self.operator_closed += shows_fixed

    # -- stopping -----------------------------------------------------------------------
    async def stop(self) -> None:
        if self.handlers is not None:
            await self.handlers.close()
        if self._camera_task is not None and self._camera_stop is not None:
            self._camera_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._camera_task, 10)
            self._camera_task = None
        await self._stop_operator()
        for s in self.sites:
            s.stop.set()
        for s in self.sites:
            if s.task is not None:
                try:
                    await asyncio.wait_for(s.task, 15)
                except Exception:
                    log.exception("agent %s did not stop cleanly", s.agent_id)
                s.task = None
        for s in self.sites:
            await s.server.stop()
        if self.hub is not None:
            await self.hub.stop()
        if self.sinks is not None:
            await self.sinks.stop()
        if self._own_work and not self.options.keep and self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    def sim_now(self) -> datetime:
        return self.clock.now()

    def sim_label(self) -> str:
        local = self.clock.now().astimezone(ZoneInfo(self.scenario.timezone))
        day = int((self.day0_s + self.clock.elapsed()) // 86400) + 1
        return f"day {day} {local:%H:%M}"

    def real_for(self, sim_s: float) -> timedelta:
        return timedelta(seconds=sim_s / self.scale)
