"""Shared pieces of the hub benchmarks: a private broker, a workload of protocol events,
a paced QoS 1 publisher, a hub on that broker, a signed-webhook sink in a process of its
own, and process CPU readings."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from hub.broker import BrokerSettings, MosquittoBroker
from hub.config import HubConfig, build_setup
from protocol.codec import encode_events
from protocol.messages import Event, Evidence, Location, Reading, SnapshotRef
from protocol.topics import Channel, agent_topic

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "hub" / "examples"
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
# 40 hotspots spread over the example grids (lat 31.200-31.220, lon 121.400-121.430).
HOTSPOTS = [(31.2015 + 0.0045 * (i % 4), 121.4015 + 0.0031 * (i // 4)) for i in range(40)]
SNAP = SnapshotRef(sha256=hashlib.sha256(b"bench").hexdigest(), bytes=20_000, width=640, height=480)


def start_broker(data_dir: Path) -> MosquittoBroker:
    broker = MosquittoBroker(BrokerSettings(data_dir=data_dir, persistence=False,
                                            max_queued_messages=2_000_000))
    broker.start()
    return broker


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def workload(n_events: int, agents: int, updates: int = 2) -> dict[str, list[Event]]:
    """Per agent, lifecycles of new → ``updates`` updates → end. Even agents are cameras
    (waterlogging with a snapshot on ``new``, merged by hotspot), odd agents water meters
    (one case per meter: source scope)."""
    out: dict[str, list[Event]] = {f"bench-{a:04d}": [] for a in range(agents)}
    names = list(out)
    for i in range(n_events):
        a = i % agents
        agent = names[a]
        seq = len(out[agent]) + 1
        life, step = divmod(seq - 1, updates + 2)
        kind = "new" if step == 0 else ("end" if step == updates + 1 else "update")
        lat, lon = HOTSPOTS[a % len(HOTSPOTS)]
        at = T0 + timedelta(seconds=i // 100)
        if a % 2 == 0:
            ev = Event(event_id=f"{agent}-c{life}", agent_id=agent, seq=seq, kind=kind, category="flood",
                       subcategory="flood.road_waterlogging", source=f"cam-{life % 4}", observed_at=at,
                       location=Location(lat=lat, lon=lon), confidence=0.8,
                       evidence=Evidence(bbox=(0.1, 0.2, 0.5, 0.6),
                                         snapshot=SNAP if kind == "new" else None, frames=12))
        else:
            ev = Event(event_id=f"{agent}-m{life}", agent_id=agent, seq=seq, kind=kind,
                       category="elderly_care", subcategory="elderly_care.water_no_use",
                       source=f"meter-{life % 8}", observed_at=at, location=Location(lat=lat, lon=lon),
                       evidence=Evidence(reading=Reading(name="flow", value=0.0, unit="L/min")),
                       attributes={"hours_without_use": 9.5})
        out[agent].append(ev)
    return out


def messages(work: dict[str, list[Event]], per_message: int) -> list[tuple[str, bytes, int]]:
    """(topic, payload, events in it), interleaved across agents like a live fleet."""
    per_agent = []
    for agent, events in work.items():
        topic = agent_topic(agent, Channel.EVENTS)
        per_agent.append([(topic, encode_events(events[i:i + per_message]), len(events[i:i + per_message]))
                          for i in range(0, len(events), per_message)])
    out = []
    for round_ in range(max(len(p) for p in per_agent)):
        out += [p[round_] for p in per_agent if round_ < len(p)]
    return out


class Publisher:
    """QoS 1 publisher with a bounded window (paho's mid space is 65,535)."""

    def __init__(self, broker: MosquittoBroker, client_id: str = "bench-pub", window: int = 10_000):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(broker.settings.hub_user, broker.settings.hub_password)
        c.max_inflight_messages_set(200)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        self.window = window

    def publish_all(self, msgs: list[tuple[str, bytes, int]]) -> float:
        pending = []
        t0 = time.perf_counter()
        for topic, payload, _ in msgs:
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publish refused: {mqtt.error_string(info.rc)}")
            pending.append(info)
            if len(pending) >= self.window:
                for p in pending:
                    p.wait_for_publish(120)
                pending = []
        for p in pending:
            p.wait_for_publish(120)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hub_config(tmp: Path, broker: MosquittoBroker, synchronous: str = "FULL",
               notify: dict | None = None, contacts: dict | None = None, **ingest) -> HubConfig:
    """The example grids and routing table; ``contacts`` replaces the routing table's
    contacts (they must name what ``notify`` sets up)."""
    for name in ("grids.geojson", "routing.yaml"):
        shutil.copy(EXAMPLES / name, tmp / name)
    if contacts is not None:
        table = yaml.safe_load((tmp / "routing.yaml").read_text(encoding="utf-8"))
        table["contacts"] = contacts
        (tmp / "routing.yaml").write_text(yaml.safe_dump(table, allow_unicode=True), encoding="utf-8")
    return HubConfig.model_validate({
        "broker": {"managed": False, "host": broker.host, "port": broker.port,
                   "password": broker.settings.hub_password},
        "database": str(tmp / "hub.sqlite"), "snapshots_dir": str(tmp / "snaps"),
        "database_synchronous": synchronous,
        "web": {"port": 0}, "grids": str(tmp / "grids.geojson"), "routing": str(tmp / "routing.yaml"),
        "screening": {"rules": {"elderly_care": {"merge_scope": "source"}}},
        "ingest": {"batch_max": 5000, "batch_wait_ms": 5, "max_buffered": 400_000, **ingest},
        **({"notify": notify} if notify is not None else {}),
    })


def build(tmp: Path, broker: MosquittoBroker, **kw):
    return build_setup(hub_config(tmp, broker, **kw))


async def _sink_serve(conn, secret: str) -> None:
    """The sink process's server: checks each request as docs/hub.md tells a webhook
    receiver to (HMAC over timestamp + body, timestamp within 5 minutes), answers 200, and
    notes the wall-clock time it first took each delivery id. ``stop`` on the pipe ends it
    and sends back what it took."""
    from aiohttp import web

    from hub.notify.channels.webhook import verify

    taken: dict[str, float] = {}
    counts = {"requests": 0, "refused": 0, "repeats": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        counts["requests"] += 1
        if not verify(secret, request.headers.get("X-Cityops-Timestamp", ""), body,
                      request.headers.get("X-Cityops-Signature", ""), time.time()):
            counts["refused"] += 1
            return web.json_response({"error": "bad signature or stale timestamp"}, status=401)
        delivery = request.headers.get("X-Cityops-Delivery", "")
        if delivery in taken:
            counts["repeats"] += 1
        else:
            taken[delivery] = time.time()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    conn.send(site._server.sockets[0].getsockname()[1])  # noqa: SLF001
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await runner.cleanup()
    conn.send({"taken": taken, **counts})


def _sink_main(conn, secret: str) -> None:
    asyncio.run(_sink_serve(conn, secret))


class WebhookSink:
    """A signed-webhook receiver on loopback in a process of its own (spawned, so it
    shares nothing with the hub's process), as a department's system would be: the hub
    pays for sending, not for receiving. :meth:`stop` returns
    ``{"taken": {delivery id: time.time() when first taken}, "requests", "refused",
    "repeats"}``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_sink_main, args=(child, secret), name="bench-sink", daemon=True)
        self.port = 0

    def start(self, timeout: float = 60) -> WebhookSink:
        self.process.start()
        if not self._conn.poll(timeout):
            self.process.kill()
            raise RuntimeError("the webhook sink process did not start")
        self.port = self._conn.recv()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self, timeout: float = 30) -> dict:
        try:
            self._conn.send("stop")
            if not self._conn.poll(timeout):
                raise RuntimeError("the webhook sink process did not answer")
            return self._conn.recv()
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()


class NullSubscriber:
    """The raw ceiling: a QoS 1 paho subscriber that does nothing but count. With
    ``fast``, the same on the hub's receive-tuned client (``hub.ingest.fastpaho``), which
    takes PUBLISH packets straight from its read-ahead buffer: what the broker and the
    network give when the subscriber costs almost nothing."""

    def __init__(self, broker: MosquittoBroker, topic: str, client_id: str = "bench-null",
                 fast: bool = False):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.broker, self.topic, self.client_id = broker, topic, client_id
        self.props = Properties(PacketTypes.CONNECT)
        self.props.SessionExpiryInterval = 3600
        self.count = 0
        self.first = self.last = 0.0
        self.done = threading.Event()
        self.target = 0
        self.fast = fast

    def _client(self) -> mqtt.Client:
        from hub.ingest.fastpaho import ReceiverClient

        cls = ReceiverClient if self.fast else mqtt.Client
        c = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(self.broker.settings.hub_user, self.broker.settings.hub_password)
        return c

    def subscribe_and_leave(self) -> None:
        c, ok = self._client(), threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(self.topic, qos=1)
        c.on_subscribe = lambda *a: ok.set()
        c.connect(self.broker.host, self.broker.port, clean_start=False, properties=self.props)
        c.loop_start()
        assert ok.wait(10)
        c.disconnect()
        c.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        self._count()

    def _count(self, *_: object) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count >= self.target:
            self.last = time.perf_counter()
            self.done.set()

    def drain(self, target: int, timeout: float = 600) -> float:
        self.target = target
        c = self._client()
        if self.fast:
            c.on_raw_publish = self._count
        else:
            c.on_message = self._on_message
        c.connect(self.broker.host, self.broker.port, clean_start=False, properties=self.props)
        c.loop_start()
        if not self.done.wait(timeout):
            raise RuntimeError(f"null subscriber got {self.count} of {target}")
        c.disconnect()
        c.loop_stop()
        return self.last - self.first


def tmpdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="cityops-bench-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
