"""The agent process: the outbox, the MQTT session and a set of components, run together.

Components are built from the config by the factories in :data:`COMPONENT_FACTORIES`
(the Modbus poller and the cameras), run side by side, and their
telemetry parts are merged into the heartbeat. A desired config from the hub (or a
SIGHUP re-reading the file) is checked completely first; only then are the old
components stopped and the new set started (atomic from the outside). A config that
fails is refused with its reason in the status, and the old one keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.component import Component
from edge_agent.config.loader import LoadedConfig, apply_overlay, load_agent_config, merge_patch
from edge_agent.credentials import read_credentials
from edge_agent.errors import AuthError, OutboxError
from edge_agent.modbus import ModbusComponent
from edge_agent.ota import ReleaseKeeper
from edge_agent.outbox import Outbox
from edge_agent.selfupdate import Software
from edge_agent.session import Hooks, Session
from edge_agent.sysinfo import CpuMeter, rss_mb
from edge_agent.transport.base import Transport, TransportFactory, Will
from edge_agent.transport.mqtt import MqttTransport
from protocol.clock import Clock, SystemClock
from protocol.errors import ConfigError, ConfigProblem
from protocol.messages import CareState, DesiredConfig, LiveRequest
from protocol.topics import Channel

__all__ = ["COMPONENT_FACTORIES", "AgentApp", "ComponentFactory", "mqtt_transport_factory"]

log = logging.getLogger(__name__)

ComponentFactory = Callable[[LoadedConfig, Clock], list[Component]]


def modbus_components(loaded: LoadedConfig, clock: Clock) -> list[Component]:
    if not any(d.enabled for d in loaded.config.devices):
        return []
    return [ModbusComponent(loaded, clock=clock)]


def camera_components(loaded: LoadedConfig, clock: Clock) -> list[Component]:
    """One camera component for every enabled camera; building it loads the model, so a
    model that cannot be used fails here with the file and the fix named."""
    if not any(c.enabled for c in loaded.config.cameras):
        return []
    from edge_agent.camera.component import CameraComponent  # OpenCV and TFLite: only when used

    return [CameraComponent(loaded.config.camera_section(), clock=clock,
                            include_readings=loaded.config.telemetry.include_readings)]


# Every source of events registers a factory here.
COMPONENT_FACTORIES: list[ComponentFactory] = [modbus_components, camera_components]


def mqtt_transport_factory(loaded: LoadedConfig) -> TransportFactory:
    """Transports built from the config; the credentials file is read at every attempt."""
    cfg = loaded.config.mqtt
    agent_id = loaded.config.agent.id

    def make(will: Will) -> Transport:
        username, password = agent_id, None
        if loaded.credentials_path is not None:
            creds = read_credentials(loaded.credentials_path)
            username, password = creds.username, creds.password
        tls = cfg.tls
        return MqttTransport(
            cfg, will, client_id=agent_id, username=username, password=password,
            ca_file=loaded.resolve(tls.ca_file) if tls and tls.ca_file else None,
            cert_file=loaded.resolve(tls.cert_file) if tls and tls.cert_file else None,
            key_file=loaded.resolve(tls.key_file) if tls and tls.key_file else None,
        )

    return make


class _DeferredAuthTransport:
    """Stands in when the credentials cannot be read, so the session reports the problem
    as refused credentials (no retry storm) instead of crashing."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.on_message = None
        self.on_disconnect = None
        self.connected = False

    async def connect(self) -> None:
        raise self.error

    def publish(self, *a: Any, **k: Any) -> Any:  # pragma: no cover - never connected
        raise self.error

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:  # pragma: no cover
        raise self.error

    async def disconnect(self) -> None:
        return None


@dataclass
class _Running:
    components: list[Component]
    tasks: list[asyncio.Task[None]]
    stops: list[asyncio.Event]  # one per component: one can be replaced while others run


def _release_overlay(model: Path) -> dict[str, Any]:
    """The config change a shipped model makes: the detector's model, and the labels it
    was trained with (its thresholds.json beside it becomes the cameras' defaults)."""
    return {"detector": {"model": str(model), "labels": str(model.with_name("labels.txt"))}}


def _problems_text(exc: ConfigError) -> str:
    """A refused config's problems on one line, for the status and the release report."""
    return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems)


def _of(entries: list[tuple[Component, asyncio.Task[None], asyncio.Event]]) -> _Running:
    return _Running([e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries])


class AgentApp:
    def __init__(
        self, loaded: LoadedConfig, *, transport_factory: TransportFactory | None = None,
        clock: Clock | None = None, factories: list[ComponentFactory] | None = None,
    ) -> None:
        self.file_loaded = loaded
        self.loaded = loaded
        self.clock = clock or SystemClock()
        self.factories = factories if factories is not None else COMPONENT_FACTORIES
        self._transport_factory = transport_factory or mqtt_transport_factory(loaded)
        self.config_version: int | None = None
        self.config_error: str | None = None
        self.outbox: Outbox | None = None
        self.session: Session | None = None
        self._running: _Running | None = None
        self._cpu = CpuMeter()
        self._apply_lock = asyncio.Lock()
        self._overlay: dict[str, Any] | None = None  # the desired config applied on the file
        self.care: CareState | None = None  # the hub's acknowledged care alarms, last received
        self.release_model: Path | None = None  # the model of the release the hub shipped, when one runs
        self.releases: ReleaseKeeper | None = None
        self.restart_requested = False  # an agent release: stop cleanly, the run command starts again
        self._stop_event: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.loaded.config
        self.outbox = Outbox(
            self.loaded.outbox_path, cfg.agent.id, max_events=cfg.outbox.max_events,
            max_bytes=cfg.outbox.max_bytes, synchronous=cfg.outbox.synchronous, clock=self.clock,
        )
        self.session = Session(
            cfg.agent.id, self.outbox, self._make_transport, outbox_config=cfg.outbox,
            telemetry=cfg.telemetry, reconnect=cfg.mqtt.reconnect, version=__version__,
            clock=self.clock, credentials_path=self.loaded.credentials_path,
        )
        self._stop_event = stop
        releases = self.file_loaded.data_dir / "releases"
        self.releases = ReleaseKeeper(releases, cfg.agent.id, self._publish_on, self.activate_model,
                                      software=Software(releases), restart=self.request_restart)
        self.session.hooks = Hooks(self._status_fields, self._telemetry_parts, self.apply_desired,
                                   self.apply_care, self.apply_live, self.releases.on_desired,
                                   self.releases.on_chunk, self.releases.on_connected)
        built = self._start_with_release(self.releases)
        log.info("agent %s starting: %d device(s), %d camera(s), outbox %s (depth %d)", cfg.agent.id,
                 len(cfg.devices), len(cfg.cameras), self.loaded.outbox_path, self.outbox.depth)
        try:
            self._running = self._start(built if built is not None else self._build(self.loaded))
            session_stop = asyncio.Event()
            session_task = asyncio.create_task(self.session.run(session_stop), name="session")
            ticker = asyncio.create_task(self._release_ticks(stop), name="releases")
            await stop.wait()
            await ticker
            log.info("stopping: components first, then the session (outbox kept)")
            await self._stop(self._running)
            session_stop.set()
            await session_task
        finally:
            self.outbox.close()
            log.info("agent stopped; outbox depth %d kept in %s", self.outbox.depth,
                     self.loaded.outbox_path)

    # -- model releases (edge_agent/ota.py) ------------------------------------------------
    def _start_with_release(self, keeper: ReleaseKeeper) -> list[Component] | None:
        """At start: the release recorded as active (checked) becomes the cameras' model, and
        its components are returned; one that does not start is dropped with the reason
        (reported on connect) and None returned: the config's own model runs."""
        active = keeper.load()
        if active is None:
            return None
        try:
            candidate = self._layered(self.file_loaded, self._overlay, self.config_version, active.model)
            built = self._build(candidate)  # the cameras open the model here
        except Exception as exc:
            keeper.drop_active(f"release {active.release_id} does not start ({exc}); running the config's model")
            return None
        self.release_model = active.model
        self.loaded = candidate
        return built

    def _layered(self, file_loaded: LoadedConfig, overlay: dict[str, Any] | None, version: int | None,
                 release_model: Path | None) -> LoadedConfig:
        """The file, a desired-config overlay on it, and a release's model on top (so a
        config change from the hub never silently undoes a model rollout, nor a rollout
        the hub's config)."""
        if overlay is None and release_model is None:
            return file_loaded
        merged: dict[str, Any] = dict(overlay or {})
        if release_model is not None:
            merged = merge_patch(merged, _release_overlay(release_model))
        return apply_overlay(file_loaded, merged, version or 0)

    async def activate_model(self, model: Path | None) -> str | None:
        """Switch the cameras to ``model`` (None: the config's own). None when done, else why
        not (the running components stay)."""
        try:
            candidate = self._layered(self.file_loaded, self._overlay, self.config_version, model)
        except ConfigError as exc:
            return _problems_text(exc)
        before = self.config_error
        if not await self._switch(candidate, f"model {model or 'of the config'}"):
            reason, self.config_error = self.config_error, before
            return reason or "the components could not be built"
        self.release_model = model
        return None

    def request_restart(self) -> None:
        """Stop cleanly (the outbox kept); ``cityops-agent run`` then starts again on the
        software the release record names (edge_agent/selfupdate.py)."""
        self.restart_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    def _publish_on(self, channel: Channel, payload: bytes, qos: int, retain: bool) -> bool:
        return self.session is not None and self.session.publish_on(channel, payload, qos, retain)

    async def _release_ticks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            if self.releases is not None:
                self.releases.tick()

    def _make_transport(self, will: Will) -> Transport:
        try:
            return self._transport_factory(will)
        except Exception as exc:  # an unreadable credentials file: reported, not retried
            error = exc if isinstance(exc, AuthError) else AuthError(str(exc))
            return _DeferredAuthTransport(error)

    def _build(self, loaded: LoadedConfig) -> list[Component]:
        components: list[Component] = []
        for factory in self.factories:
            components.extend(factory(loaded, self.clock))
        return components

    def _start(self, components: list[Component]) -> _Running:
        assert self.outbox is not None
        self._attach_live(components)
        stops = [asyncio.Event() for _ in components]
        tasks = [asyncio.create_task(self._guard(c, stop), name=f"component:{c.name}")
                 for c, stop in zip(components, stops, strict=True)]
        return _Running(components, tasks, stops)

    async def _guard(self, component: Component, stop: asyncio.Event) -> None:
        """Run a component; if it crashes (a bug), log it and start it again."""
        assert self.outbox is not None
        delay = 1.0
        while not stop.is_set():
            try:
                await component.run(self.outbox, stop)
                return
            except OutboxError as exc:
                log.error("component %s: %s", component.name, exc)
            except Exception:
                log.exception("component %s crashed; restarting it in %.0f s", component.name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 60.0)

    async def _stop(self, running: _Running) -> None:
        for stop in running.stops:
            stop.set()
        await asyncio.gather(*running.tasks, return_exceptions=True)

    # -- config changes ----------------------------------------------------------------
    async def apply_desired(self, desired: DesiredConfig) -> None:
        """Apply a desired config from the hub, or refuse it and keep the running one."""
        if desired.version == self.config_version:
            return
        try:
            candidate = self._layered(self.file_loaded, desired.config, desired.version, self.release_model)
        except ConfigError as exc:
            self._refuse(desired.version, _problems_text(exc))
            return
        if await self._switch(candidate, f"desired config v{desired.version}"):
            self.config_version = desired.version
            self.config_error = None
            self._overlay = dict(desired.config)

    def apply_care(self, care: CareState) -> None:
        """The hub's acknowledged elderly-care alarms: each component that runs alarms
        (``acknowledge(event_id, by)``) stops escalating those it has open. Applying the
        same state again changes nothing; components built later get it too."""
        self.care = care
        self._acknowledge(self.components)

    def _attach_live(self, components: list[Component]) -> None:
        """Components with live view (the cameras) send their frames through the session."""
        session = self.session
        if session is None:
            return
        for component in components:
            attach = getattr(component, "attach_live", None)
            if attach is not None:
                attach(self.loaded.config.agent.id, session.publish_frame)

    def apply_live(self, req: LiveRequest) -> None:
        """The hub asks for live frames of one camera (or to stop them): the component that
        runs that camera takes it; an unknown camera is logged, never streamed."""
        for component in self.components:
            handle = getattr(component, "live_request", None)
            if handle is None:
                continue
            try:
                outcome = handle(req)
            except Exception:
                log.exception("live request for camera %s failed", req.camera)
                return
            if outcome is not None:
                log.debug("live request %s for camera %s: %s", req.request_id, req.camera, outcome)
                return
        log.warning("the hub asked for live frames of camera %r, which this agent does not run",
                    req.camera)

    def _acknowledge(self, components: list[Component]) -> None:
        if self.care is None:
            return
        for component in components:
            acknowledge = getattr(component, "acknowledge", None)
            if acknowledge is None:
                continue
            for ack in self.care.acknowledged:
                try:
                    acknowledge(ack.event_id, ack.by)
                except Exception:
                    log.exception("component %s could not take the acknowledgement of %s",
                                  component.name, ack.event_id)

    async def reload_file(self) -> bool:
        """SIGHUP: read the config file again (the desired overlay, if any, on top)."""
        path = self.file_loaded.path
        if path is None:
            return False
        try:
            fresh = load_agent_config(path)
            if fresh.config.agent.id != self.file_loaded.config.agent.id:
                raise ConfigError([ConfigProblem(str(path), None, None, "agent.id",
                                                 "cannot change while the agent runs; restart it")])
            overlay = self._overlay if self.config_version is not None else None
            candidate = self._layered(fresh, overlay, self.config_version, self.release_model)
        except ConfigError as exc:
            log.error("config file not reloaded, the running config stays: %s", exc)
            return False
        if not await self._switch(candidate, f"config file {path}"):
            return False
        self.file_loaded = fresh
        return True

    def _refuse(self, version: int, reason: str) -> None:
        self.config_error = f"desired config v{version} refused: {reason}"[:2000]
        log.error("%s; the running config stays", self.config_error)

    async def _switch(self, candidate: LoadedConfig, what: str) -> bool:
        async with self._apply_lock:
            try:
                components = self._build(candidate)
            except Exception as exc:  # a component that cannot be built: refuse, keep the old
                log.exception("cannot build components for %s", what)
                self.config_error = f"{what} refused: {exc}"[:2000]
                return False
            kept = self._carry_over(components)
            if self._running is not None:
                await self._stop(_of([e for j, e in enumerate(self._entries(self._running))
                                      if j not in kept.values()]))
            self._retune(candidate)
            self.loaded = candidate
            fresh = self._start([c for i, c in enumerate(components) if i not in kept])
            self._running = self._merge(components, kept, fresh)
            self._acknowledge(fresh.components)  # they take it once their devices are built
            log.info("applied %s: %d component(s), %d changed in place", what, len(components), len(kept))
            return True

    @staticmethod
    def _entries(running: _Running) -> list[tuple[Component, asyncio.Task[None], asyncio.Event]]:
        return list(zip(running.components, running.tasks, running.stops, strict=True))

    def _carry_over(self, built: list[Component]) -> dict[int, int]:
        """Running components that take the settings of a newly built one in place
        (``reconfigure(new) -> bool``, e.g. the cameras keep their tracks and streams when
        only a frame rate or a threshold changes): {index in built: index running}."""
        kept: dict[int, int] = {}
        if self._running is None:
            return kept
        for i, new in enumerate(built):
            for j, old in enumerate(self._running.components):
                if j in kept.values() or old.name != new.name or type(old) is not type(new):
                    continue
                reconfigure = getattr(old, "reconfigure", None)
                if reconfigure is None:
                    continue
                try:
                    ok = bool(reconfigure(new))
                except Exception:
                    log.exception("component %s could not change in place; restarting it", old.name)
                    ok = False
                if ok:
                    kept[i] = j
                break
        return kept

    def _merge(self, built: list[Component], kept: dict[int, int], fresh: _Running) -> _Running:
        assert self._running is not None or not kept
        old = self._entries(self._running) if self._running is not None else []
        started = iter(self._entries(fresh))
        return _of([old[kept[i]] if i in kept else next(started) for i in range(len(built))])

    def _retune(self, loaded: LoadedConfig) -> None:
        cfg = loaded.config
        if self.outbox is not None:
            self.outbox.max_events, self.outbox.max_bytes = cfg.outbox.max_events, cfg.outbox.max_bytes
        if self.session is not None:
            self.session.outbox_config = cfg.outbox
            self.session.telemetry_config = cfg.telemetry

    # -- session hooks -----------------------------------------------------------------
    def _status_fields(self) -> dict[str, Any]:
        caps = sorted({c.name for c in (self._running.components if self._running else [])}
                      | {f"rule.{name}" for d in self.loaded.config.devices
                         for name in d.rules.configured()})
        return {"config_version": self.config_version, "config_error": self.config_error,
                "capabilities": caps[:64]}

    def _telemetry_parts(self) -> dict[str, Any]:
        merged: dict[str, Any] = {"devices": {}, "cameras": {}, "readings": {}, "rejected_readings": 0}
        for component in self._running.components if self._running else []:
            try:
                part = component.telemetry()
            except Exception:
                log.exception("telemetry of %s failed", component.name)
                continue
            for key, value in part.items():
                if isinstance(value, dict):
                    merged.setdefault(key, {}).update(value)
                elif isinstance(value, int | float) and isinstance(merged.get(key), int | float):
                    merged[key] += value
                else:
                    merged[key] = value
        merged.update(rss_mb=rss_mb(), cpu_percent=self._cpu.percent(),
                      config_version=self.config_version)
        return merged

    @property
    def components(self) -> list[Component]:
        return list(self._running.components) if self._running else []

