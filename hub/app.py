"""The hub as one object: broker (managed or external), store, writer, MQTT receivers,
scheduler, verification worker and web — started and stopped together.

::

    setup = load_setup("hub.yaml")
    async with Hub(setup) as hub:
        print(hub.web_url)
        ...
        print(hub.counts())

``cityops-hub serve`` runs exactly this; the demo and the tests use it in-process.
Operator actions are async methods here (``dispatch``, ``overturn``, ...), each one
transaction on the writer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web

from protocol.clock import Clock, SystemClock
from protocol.codec import encode
from protocol.ids import new_secret
from protocol.topics import QOS, Channel, agent_topic, subscription

from .broker import (
    BrokerAuth,
    BrokerSettings,
    MosquittoBroker,
    external_broker_warnings,
    hub_share_group,
)
from .cases.closure import Outcome, Verdict, Verifier
from .clips import clip_files, fail_stale_clips, purge_clips
from .config import HubConfig, Setup, build_setup
from .engine.core import CaseEngine
from .engine.intake import BatchResult, Ingestor
from .engine.reporters import SurveyAnswer, answer_survey, token_hash
from .engine.reports import (
    KeyedOutcome,
    Report,
    ReportKey,
    ReportOutcome,
    apply_keyed_report,
    apply_report,
)
from .engine.tick import TickReport, tick
from .errors import CaseError, HubError
from .ingest.mqtt import MqttClient, MqttSettings, Receiver, ReceiverSettings
from .ingest.process import ReceiverProcess
from .livestream import LiveStreams
from .notify.service import Notifier
from .store.files import SnapshotFiles
from .store.repo import CaseRow, Repository
from .store.sqlite import SharedReader, SqliteRepository
from .tls import ensure_tls_files
from .verify import build_verifier
from .writer import Writer

__all__ = ["Hub"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Hub:
    def __init__(self, setup: Setup | HubConfig, *, clock: Clock | None = None,
                 verifier: Verifier | None = None, run_scheduler: bool = True) -> None:
        self.setup = setup if isinstance(setup, Setup) else build_setup(setup)
        self.config = self.setup.config
        self.clock = clock or SystemClock()
        # verification.kind in hub.yaml: the photo verifier (default) or none
        self.verifier: Verifier = verifier or build_verifier(self.config.verification)
        self.run_scheduler = run_scheduler
        self.files = SnapshotFiles(self.config.snapshots_dir)
        self.clip_files = clip_files(self.config.clips_dir or self.config.snapshots_dir.with_name("clips"))
        self.engine = CaseEngine(self.setup, self.clock)
        self.broker: MosquittoBroker | None = None
        self.broker_auth: BrokerAuth | None = None
        self.repo: SqliteRepository | None = None
        self.writer: Writer | None = None
        self.link: MqttClient | None = None
        self.receivers: list[Receiver | ReceiverProcess] = []
        self._runner: web.AppRunner | None = None
        self.web_port: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._readers = threading.local()
        self._all_readers: list[SharedReader] = []  # every thread's, closed by stop()
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._verify_wakeup: asyncio.Event | None = None
        self._care_wakeup: asyncio.Event | None = None
        self._verifying: set[int] = set()
        self.notifier: Notifier | None = None  # with notify: in hub.yaml, from start()
        lv = self.config.web.live_view
        self.live_streams = LiveStreams(self._publish, self.clock, request_s=lv.request_s,
                                        refresh_s=lv.refresh_s)  # live view (hub/livestream.py)
        self.live_link: MqttClient | None = None
        self.hub_password = self.config.broker.password or new_secret("mqp")
        from .dataset.service import DatasetService
        from .plans.service import PlanService
        from .releases.service import ReleaseService
        from .vitals.service import VitalsService

        self.vitals = VitalsService(self)
        self.plans = PlanService(self)
        self.releases = ReleaseService(self)  # model releases and rollouts (hub/releases/)
        self.dataset = DatasetService(self)  # verdicts become labels (hub/dataset/)
        self.started = False
        self.receiver_restarts = 0

    # -- life ----------------------------------------------------------------------------------
    async def start(self) -> Hub:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._verify_wakeup = asyncio.Event()
        await asyncio.to_thread(self._start_broker)
        self.repo = SqliteRepository(cfg.database, writer=True, synchronous=cfg.database_synchronous)
        ingestor = Ingestor(self.engine, self.files, self.clip_files)
        self.writer = Writer(self.repo, ingestor, self._publish,
                             batch_max=cfg.ingest.batch_max,
                             batch_wait_s=cfg.ingest.batch_wait_ms / 1000,
                             max_buffered=cfg.ingest.max_buffered, on_batch=self._after_batch)
        self._care_wakeup = asyncio.Event()
        loop = self._loop
        self.engine.care.wake = lambda: loop.call_soon_threadsafe(self._care_wakeup.set)
        self.writer.start()
        try:
            self._tasks.append(await self.live_streams.start())
            await asyncio.to_thread(self._start_mqtt)
            await self._start_web()
            if cfg.notify is not None:  # notification delivery (hub/notify/)
                self.notifier = Notifier(cfg.notify, self.write, self.clock)
                if self.engine.outbox is not None:
                    self.engine.outbox.wake = self.notifier.wake
                self._tasks.extend(await self.notifier.start())
        except BaseException:
            await self.stop()
            raise
        preload = getattr(self.verifier, "region_detector", None)
        if preload is not None:  # load the detector now: a missing model is logged at start
            await asyncio.to_thread(preload)
        self._tasks.append(asyncio.create_task(self._verification_loop(), name="hub-verify"))
        self._tasks.append(asyncio.create_task(self._supervise_loop(), name="hub-supervise"))
        self._tasks.append(asyncio.create_task(self._care_loop(), name="hub-care"))
        self._tasks.extend(await self.plans.start())
        self._tasks.extend(await self.releases.start())
        self._tasks.extend(await self.vitals.start())
        if self.run_scheduler:
            self._tasks.append(asyncio.create_task(self._scheduler_loop(), name="hub-scheduler"))
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="hub-retention"))
        self._verify_wakeup.set()
        _, g1, g2 = gc.get_threshold()
        gc.set_threshold(cfg.ingest.gc_threshold, g1, g2)
        gc.freeze()  # what exists now (config, grids, caches) is never garbage: stop scanning it
        self.started = True
        log.info("hub ready: web %s, broker %s:%s", self.web_url, self.broker_host, self.broker_port)
        return self

    async def stop(self) -> None:
        await self.live_streams.stop()  # while the link is up: the agents stop streaming now
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("background task %s failed", task.get_name())
        self._tasks.clear()
        if self.notifier is not None:
            await self.notifier.close()
            self.notifier = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self._stop_threads)
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()
        self.started = False

    def _stop_threads(self) -> None:
        try:
            self._stop_clients()
        finally:  # whatever failed or hung above, the managed broker goes with the hub
            if self.broker is not None:
                self.broker.stop()
                self.broker = None

    WRITER_STOP_S = 5.0  # what the writer has not stored by then stays in the agents' outboxes

    def _stop_clients(self) -> None:
        for receiver in self.receivers:
            try:
                receiver.stop()
            except Exception:
                log.exception("stopping a receiver failed")
        self.receivers.clear()
        if self.writer is not None:
            self.writer.stop(self.WRITER_STOP_S)
            if self.writer.alive():
                log.error("the hub writer did not finish within %.0fs; stopping without it "
                          "(%s queued events were not stored: the agents resend them, no ack "
                          "covers them)", self.WRITER_STOP_S, self.writer.backlog())
        try:
            self.releases.stop_client()
        except Exception:
            log.exception("stopping the release client failed")
        if self.live_link is not None:
            try:
                self.live_link.stop()
            except Exception:
                log.exception("stopping the live view client failed")
            self.live_link = None
        if self.link is not None:
            try:
                self.link.stop()
            except Exception:
                log.exception("stopping the link client failed")
            self.link = None
        with self._reader_lock:
            readers, self._all_readers = self._all_readers, []
            self._readers = threading.local()
        for reader in readers:
            try:
                reader.close()
            except Exception:
                log.exception("closing a read connection failed")
        if self.repo is not None and not (self.writer is not None and self.writer.alive()):
            self.repo.close()  # (a writer still inside a transaction keeps its connection)
            self.repo = None

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- broker and MQTT ------------------------------------------------------------------------
    @property
    def broker_host(self) -> str:
        return self.broker.host if self.broker else self.config.broker.host

    @property
    def broker_port(self) -> int:
        return self.broker.port if self.broker else self.config.broker.port

    def _broker_settings(self) -> BrokerSettings:
        b = self.config.broker
        # The hub has a listener of its own (managed: on the loopback, a free port unless
        # broker.hub_port; external: broker.hub_port when set): agents cannot log in there,
        # and on theirs their client id is their user name.
        internal = b.hub_port
        if b.managed and internal is None:
            internal = 0  # a free port
        settings = BrokerSettings(data_dir=b.data_dir, host=b.host, port=b.port,
                                  hub_user=b.username, hub_password=self.hub_password,
                                  internal_port=internal, internal_host=b.hub_host)
        if b.managed and b.managed_tls:
            files = ensure_tls_files(b.managed_tls.dir, b.managed_tls.names)
            settings.tls_port = b.managed_tls.port
            settings.tls_certfile, settings.tls_keyfile = files.server_cert, files.server_key
            settings.tls_cafile = files.ca_cert
        return settings

    @property
    def agent_tls_port(self) -> int | None:
        """The TLS listener agents use on the managed broker, when there is one."""
        return self.broker.settings.tls_port if self.broker else None

    def _start_broker(self) -> None:
        b = self.config.broker
        if b.managed:
            self.broker = MosquittoBroker(self._broker_settings())
            self.broker.write_files()
            self.broker.start()
            self.broker_auth = self.broker.auth
        else:
            self.broker_auth = BrokerAuth(self._broker_settings(), b.reload_command)
            for warning in external_broker_warnings(
                    hub_port=b.hub_port, hub_user=b.username, agent_users=self.broker_auth.users(),
                    client_id_prefix=self.config.ingest.client_id,
                    password_path=self.broker_auth.settings.password_path):
                log.warning("%s", warning)
            if not b.reload_command:
                log.warning("external broker without broker.reload_command: agents enrolled here "
                            "can connect only after the broker re-reads %s",
                            self.broker_auth.settings.password_path)

    def _mqtt_settings(self, suffix: str, session_expiry_s: int = 0) -> MqttSettings:
        b = self.config.broker
        tls = b.tls
        if self.broker is not None:
            host, port = self.broker.hub_host, self.broker.hub_port
        elif b.hub_port is not None:  # an external broker's hub-only listener
            host, port = b.hub_host, b.hub_port
        else:  # an external broker with one listener for all (warned at start)
            host, port = self.broker_host, self.broker_port
        return MqttSettings(
            host=host, port=port, username=b.username,
            password=self.hub_password, client_id=f"{self.config.ingest.client_id}-{suffix}",
            ca_file=str(tls.ca_file) if tls and tls.ca_file else None,
            cert_file=str(tls.cert_file) if tls and tls.cert_file else None,
            key_file=str(tls.key_file) if tls and tls.key_file else None,
            keepalive_s=b.keepalive_s, session_expiry_s=session_expiry_s, tls=tls is not None,
        )

    def _start_mqtt(self) -> None:
        assert self.writer is not None
        writer = self.writer
        # Status is retained, and retained messages are not sent to shared subscriptions:
        # the link client (which also publishes the acks) takes it directly.
        status = [(subscription(Channel.STATUS), QOS[Channel.STATUS])]
        self.link = MqttClient(self._mqtt_settings("link"), subscriptions=status,
                               on_message=lambda t, p: writer.submit([(t, p)]))
        self.link.start()
        # Live frames on a connection of their own (QoS 0, up to 128 KiB each): they never
        # queue in front of the acks, and never reach the writer (they are not events).
        frames = [(subscription(Channel.FRAMES), QOS[Channel.FRAMES])]
        self.live_link = MqttClient(self._mqtt_settings("live"), subscriptions=frames,
                                    on_message=self.live_streams.on_message, max_queued=1000)
        self.live_link.start()
        # Release chunks and the agents' release reports on a connection of their own too
        # (hub/releases/service.py): chunk publishes never queue in front of the acks.
        self.releases.start_client()
        ing = self.config.ingest
        n = ing.receivers
        # A share group agents cannot name (Mosquitto does not check subscription filters:
        # an agent that names the group joins it and takes a share of every agent's events).
        group = (hub_share_group(self.config.broker.data_dir, ing.shared_group)
                 if ing.shared_group is not None else None)
        for i in range(max(n, 1)):
            settings = ReceiverSettings(self._mqtt_settings(f"recv-{i}", session_expiry_s=86400),
                                        shared_group=group,
                                        decode=ing.decode_in_receivers)
            if n == 0:
                receiver: Receiver | ReceiverProcess = Receiver(settings, writer.submit)
            else:
                level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
                receiver = ReceiverProcess(settings, writer.submit, log_level=str(level))
            receiver.start()
            self.receivers.append(receiver)

    def _publish(self, topic: str, payload: bytes, qos: int) -> bool:
        return self.link is not None and self.link.publish(topic, payload, qos)

    def publish_retained(self, topic: str, payload: bytes) -> bool:
        """A retained QoS 1 publish (desired configs: an agent offline now converges later)."""
        return self.link is not None and self.link.publish(topic, payload, 1, retain=True)

    async def _care_loop(self, retry_s: float = 2.0) -> None:
        """Publish each agent's desired care state (its acknowledged open alarms, retained,
        QoS 1) after the transaction that changed it: the state is read through the writer,
        so after that commit. At start, every agent with an acknowledgement it has not
        confirmed gets its state again (a hub that stopped between commit and publish)."""
        assert self._care_wakeup is not None
        care = self.engine.care
        for agent_id in await self.write(lambda repo: repo.care_agents_unconfirmed()):
            care.mark(agent_id)
        while True:
            await self._care_wakeup.wait()
            self._care_wakeup.clear()
            failed = []
            for agent_id in sorted(care.take_dirty()):
                try:
                    state = await self.write(
                        lambda repo, a=agent_id: care.desired(repo, a, self.clock.now()))
                    ok = self.publish_retained(agent_topic(agent_id, Channel.CARE), encode(state))
                except Exception:
                    log.exception("care state of %s could not be published", agent_id)
                    ok = False
                if ok:
                    log.info("care state of %s published: %d acknowledged alarm(s)", agent_id,
                             len(state.acknowledged))
                else:
                    failed.append(agent_id)
            if failed:
                log.warning("care state not published for %s; retrying in %.0f s",
                            ", ".join(failed), retry_s)
                await asyncio.sleep(retry_s)
                for agent_id in failed:
                    care.mark(agent_id)

    # -- web -----------------------------------------------------------------------------------
    async def _start_web(self) -> None:
        from .web.app import create_app

        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        ssl_context = None
        if self.config.web.tls is not None:
            tls = self.config.web.tls
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_context.load_cert_chain(tls.cert_file, tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise HubError(f"web.tls: cannot load {tls.cert_file} / {tls.key_file}: {exc}") from None
        site = web.TCPSite(self._runner, self.config.web.host, self.config.web.port,
                           ssl_context=ssl_context)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001
        self.web_port = sockets[0].getsockname()[1] if sockets else self.config.web.port

    @property
    def web_url(self) -> str:
        host = self.config.web.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        scheme = "https" if self.config.web.tls else "http"
        return f"{scheme}://{host}:{self.web_port}/"

    # -- the store -----------------------------------------------------------------------------
    async def write(self, fn: Callable[[Repository], T], *, moves_events: bool = False) -> T:
        """Run ``fn(repo)`` in one transaction on the writer."""
        assert self.writer is not None, "the hub is not started"
        return await self.writer.run(fn, moves_events=moves_events)

    def _reader(self) -> SharedReader:
        """This thread's read connection (the lock only guards making one, not each read)."""
        reader = getattr(self._readers, "reader", None)
        if reader is None:
            with self._reader_lock:
                reader = SharedReader(self.config.database)
                self._readers.reader = reader
                self._all_readers.append(reader)
        return reader

    async def read(self, fn: Callable[[Repository], T]) -> T:
        """Run ``fn(repo)`` on this worker thread's read-only connection."""
        return await asyncio.to_thread(lambda: self._reader().use(fn))

    def health(self) -> dict[str, Any]:
        """What /healthz reports: every part that must be alive for events to flow."""
        writer = self.writer is not None and self.writer.alive()
        link = self.link is not None and self.link.connected.is_set()
        receivers = [r.alive() for r in self.receivers]
        storage = self.writer.storage_error if self.writer else None
        ok = self.started and writer and link and bool(receivers) and all(receivers) and not storage
        # The writer restarts its loop after an unexpected failure: shown, not "not ok".
        w = self.writer.health() if self.writer else {}
        return {"ok": ok, "writer": writer, "broker_connected": link, "receivers": receivers,
                "backlog": self.writer.backlog() if self.writer else None, "storage_error": storage,
                "writer_restarts": w.get("restarts", 0), "writer_last_failure": w.get("last_failure"),
                "writer_last_failure_s_ago": w.get("last_failure_s_ago")}

    def counts(self) -> dict[str, Any]:
        """Figures for the demo's summary: stored rows plus this run's ingest counters."""
        out: dict[str, Any] = dict(self._reader().use(lambda repo: repo.counts()))
        if self.writer is not None:
            out["ingest"] = self.writer.stats.as_dict()
            out["backlog"] = self.writer.backlog()
        out["releases"] = self.releases.counts()  # model releases and rollouts (hub/releases/)
        return out

    async def _supervise_loop(self, every_s: float = 1.0) -> None:
        """Restart a receiver process that died (its persistent session kept its messages;
        anything it had taken but not handed over comes back from the agents' outboxes)."""
        while True:
            await asyncio.sleep(every_s)
            for i, r in enumerate(list(self.receivers)):
                if not isinstance(r, ReceiverProcess) or r.alive():
                    continue
                log.error("receiver process %s died (exit %s); restarting it",
                          r.settings.mqtt.client_id, r.process.exitcode)
                assert self.writer is not None
                fresh = ReceiverProcess(r.settings, self.writer.submit, r.log_level)
                try:
                    await asyncio.to_thread(r.stop, 2.0)
                    await asyncio.to_thread(fresh.start)
                except Exception:
                    log.exception("could not restart receiver %s", r.settings.mqtt.client_id)
                    continue
                self.receivers[i] = fresh
                self.receiver_restarts += 1

    # -- scheduler, retention, verification -----------------------------------------------------
    async def tick(self) -> TickReport:
        """One pass of deadlines, escalation and sensor closure, now."""
        return await self.write(lambda repo: tick(self.engine, repo))

    async def _scheduler_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sla.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")

    async def sweep(self) -> dict[str, int]:
        """Apply retention once: old messages, dead letters, unneeded snapshots and clips,
        clips whose chunks never all came, expired sign-in sessions, old labelled examples."""
        r = self.config.retention
        now = self.clock.now()
        total = {"messages": 0, "dead_letters": 0, "snapshots": 0, "sessions": 0,
                 "reporter_contacts": 0, "clips": 0, "clips_incomplete": 0}
        while True:
            n = await self.write(lambda repo: repo.purge_messages(now - timedelta(days=r.messages_days), 5000))
            total["messages"] += n
            if n < 5000:
                break
        total["dead_letters"] = await self.write(
            lambda repo: repo.purge_dead_letters(now - timedelta(days=r.dead_letters_days), 100_000))
        total["sessions"] = await self.write(lambda repo: repo.purge_sessions(now))
        while True:  # reporters' emails and phones, their surveys, their addresses in deliveries
            n = await self.write(lambda repo: repo.purge_reporter_contacts(
                now - timedelta(days=r.reporter_contacts_days), now, 1000))
            total["reporter_contacts"] += n
            if n < 1000:
                break
        while True:
            shas = await self.write(
                lambda repo: repo.purge_snapshots(now - timedelta(days=r.snapshots_days), 1000))
            for sha in shas:
                self.files.delete(sha)
            total["snapshots"] += len(shas)
            if len(shas) < 1000:
                break
        total["clips_incomplete"] = await self.write(
            lambda repo: fail_stale_clips(repo, now, r.clips_incomplete_min))
        while True:
            removed, shas = await self.write(
                lambda repo: purge_clips(repo, now - timedelta(days=r.clips_days), 1000))
            for sha in shas:
                self.clip_files.delete(sha)
            total["clips"] += removed
            if removed < 1000:
                break
        total["dataset_examples"] = await self.dataset.prune(now)  # its own dataset.retention_days
        return total

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.config.retention.sweep_every_min * 60)

    def _after_batch(self, result: BatchResult) -> None:
        if result.telemetry:
            self.vitals.feed(result.telemetry)
        if (result.verify_cases or result.snapshot_arrived) and self._loop and self._verify_wakeup:
            self._loop.call_soon_threadsafe(self._verify_wakeup.set)

    async def _verification_loop(self) -> None:
        assert self._verify_wakeup is not None
        while True:
            await self._verify_wakeup.wait()
            self._verify_wakeup.clear()
            try:
                await self.verify_pending()
            except Exception:
                log.exception("verification pass failed")

    async def verify_pending(self) -> int:
        """Run the verifier on every case whose before- and after-photos are both here."""
        cases = await self.read(lambda repo: repo.cases_awaiting_verification())
        done = 0
        for case in cases:
            if case.id in self._verifying or case.after_sha256 is None:
                continue
            after = self.files.get(case.after_sha256)
            if after is None:
                continue  # the snapshot has not arrived yet; its arrival wakes us
            if case.before_sha256 is None:
                verdict = Verdict(Outcome.UNCERTAIN, 0.0, "the case has no before-photo", "hub")
            else:
                before = self.files.get(case.before_sha256)
                if before is None:
                    continue
                self._verifying.add(case.id)
                try:
                    region = tuple(case.before_bbox) if case.before_bbox else None
                    verdict = await asyncio.to_thread(self.verifier.verify, before, after, region)
                except Exception as exc:
                    log.exception("verifier failed on case %s", case.id)
                    verdict = Verdict(Outcome.UNCERTAIN, 0.0, f"verifier failed: {exc!r}",
                                      getattr(self.verifier, "name", "verifier"))
                finally:
                    self._verifying.discard(case.id)
            sha = case.after_sha256
            await self.write(lambda repo, c=case.id, v=verdict, s=sha:
                             self.engine.apply_verdict(repo, c, v, s))
            done += 1
        return done

    # -- operator actions (the web UI and the API build on these) -------------------------------------
    async def dispatch(self, case_id: int, *, department: str | None = None,
                       handler: str | None = None, actor: str = "operator") -> CaseRow:
        return await self.write(lambda repo: self.engine.dispatch(
            repo, case_id, department=department, handler=handler, actor=actor))

    async def accept(self, case_id: int, *, actor: str, note: str = "") -> CaseRow:
        """Accept a held (``new``) or rejected case; it is dispatched by the routing table."""
        return await self.write(lambda repo: self.engine.accept_case(repo, case_id, actor=actor, note=note))

    async def return_case(self, case_id: int, *, actor: str, reason: str) -> CaseRow:
        """A department returns a wrongly dispatched case to the operator queue."""
        return await self.write(lambda repo: self.engine.return_to_operators(
            repo, case_id, actor=actor, reason=reason))

    async def add_note(self, case_id: int, *, actor: str, text: str) -> CaseRow:
        return await self.write(lambda repo: self.engine.add_note(repo, case_id, actor=actor, text=text))

    async def report(self, report: Report, *, actor: str, photo_jpeg: bytes | None = None) -> ReportOutcome:
        """An event that did not come over MQTT (Open311, one-key reports): stored and
        placed like an agent's event: screening, merging, routing, dispatch."""
        assert self.writer is not None, "the hub is not started"
        if photo_jpeg is not None and report.photo is not None:
            await asyncio.to_thread(self.files.put, photo_jpeg)
        ingestor = self.writer.ingestor
        outcome = await self.write(lambda repo: apply_report(ingestor, repo, report,
                                                             self.clock.now(), actor),
                                   moves_events=True)
        if report.photo is not None and self._verify_wakeup is not None:
            self._verify_wakeup.set()
        return outcome

    async def report_once(self, report: Report, key: ReportKey, *, actor: str,
                          photo_jpeg: bytes | None = None) -> KeyedOutcome:
        """:meth:`report` at most once per key (linked incidents, one-key reports): a
        repeated key answers the first report's case and stores nothing new."""
        assert self.writer is not None, "the hub is not started"
        if photo_jpeg is not None and report.photo is not None:
            await asyncio.to_thread(self.files.put, photo_jpeg)
        ingestor = self.writer.ingestor
        outcome = await self.write(lambda repo: apply_keyed_report(
            ingestor, repo, report, key, self.clock.now(), actor), moves_events=True)
        if report.photo is not None and not outcome.duplicate and self._verify_wakeup is not None:
            self._verify_wakeup.set()
        return outcome

    async def overturn(self, case_id: int, *, actor: str = "operator", note: str = "") -> CaseRow:
        return await self.write(lambda repo: self.engine.overturn(repo, case_id, actor=actor, note=note))

    async def reject(self, case_id: int, *, reason: str, actor: str = "operator") -> CaseRow:
        return await self.write(lambda repo: self.engine.reject(repo, case_id, reason=reason, actor=actor))

    async def start_work(self, case_id: int, *, actor: str) -> CaseRow:
        return await self.write(lambda repo: self.engine.start(repo, case_id, actor=actor))

    async def resolve(self, case_id: int, *, actor: str, note: str = "",
                      after_jpeg: bytes | None = None) -> CaseRow:
        if after_jpeg is None:
            return await self.write(lambda repo: self.engine.resolve(repo, case_id, actor=actor, note=note))
        if not after_jpeg.startswith(b"\xff\xd8"):
            raise CaseError(case_id, "the after-photo is not a JPEG")
        sha = await asyncio.to_thread(self.files.put, after_jpeg)
        case = await self.write(lambda repo: self.engine.submit_after_photo(repo, case_id, sha,
                                                                            actor=actor, note=note))
        assert self._verify_wakeup is not None
        self._verify_wakeup.set()
        return case

    async def close_case(self, case_id: int, *, actor: str, resolution: str = "fixed",
                         note: str = "") -> CaseRow:
        case = await self.write(lambda repo: self.engine.close(
            repo, case_id, actor=actor, resolution=resolution, note=note))
        if resolution == "false_alarm":  # its camera snapshots become negatives (hub/dataset/)
            try:
                await self.dataset.closure_negatives(case_id, actor)
            except Exception:  # the closure stands; closing it as a false alarm again adds them
                log.exception("case %s closed as a false alarm, but its negatives were not added", case_id)
        return case

    async def reopen(self, case_id: int, *, actor: str, reason: str) -> CaseRow:
        return await self.write(lambda repo: self.engine.reopen(repo, case_id, actor=actor, reason=reason))

    async def merge(self, source_id: int, into_id: int, *, actor: str) -> CaseRow:
        return await self.write(lambda repo: self.engine.merge(repo, source_id, into_id, actor=actor),
                                moves_events=True)

    async def review(self, case_id: int, *, fixed: bool, actor: str, note: str = "") -> CaseRow:
        return await self.write(lambda repo: self.engine.review_verification(
            repo, case_id, fixed=fixed, actor=actor, note=note))

    async def record_satisfaction(self, case_id: int, score: int, *, actor: str,
                                  note: str = "") -> CaseRow:
        """A reporter's satisfaction (1-5) with a closed case, e.g. taken by phone."""
        return await self.write(lambda repo: self.engine.record_satisfaction(
            repo, case_id, score, actor=actor, note=note))

    async def answer_survey(self, token: str, answer: str, comment: str = "") -> SurveyAnswer:
        """A reporter's one-tap answer through their survey link (hub/engine/reporters.py):
        once per token; "not fixed" reopens the case. Raises SurveyRefused."""
        sha = token_hash(token)
        return await self.write(lambda repo: answer_survey(
            self.engine, repo, sha, answer, comment.strip()[:500], self.clock.now()))
