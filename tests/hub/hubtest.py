"""Helpers for hub tests: a config in a temp folder, protocol messages, and a test agent
that speaks the protocol over the real broker with its own credentials."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from hub.config import HubConfig, Setup, build_setup
from protocol.codec import decode_ack, encode, encode_events, encode_snapshot
from protocol.messages import (
    Ack,
    Event,
    Evidence,
    Location,
    Reading,
    SnapshotHeader,
    SnapshotRef,
    Status,
    Telemetry,
)
from protocol.topics import Channel, agent_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "hub" / "examples"
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)

# Points inside the example grids (see hub/examples/grids.geojson).
G01 = (31.205, 121.405)  # Xinqiao
G05 = (31.215, 121.415)  # Jiuting
OUTSIDE = (31.30, 121.60)


def make_config(tmp: Path, **over: Any) -> HubConfig:
    shutil.copy(EXAMPLES / "grids.geojson", tmp / "grids.geojson")
    shutil.copy(EXAMPLES / "routing.yaml", tmp / "routing.yaml")
    data: dict[str, Any] = {
        "broker": {"managed": True, "data_dir": str(tmp / "broker"), "port": 0},
        "database": str(tmp / "hub.sqlite"),
        "snapshots_dir": str(tmp / "snapshots"),
        "web": {"port": 0},
        "grids": str(tmp / "grids.geojson"),
        "routing": str(tmp / "routing.yaml"),
        "ingest": {"receivers": 0, "batch_wait_ms": 2},
        "screening": {"rules": {"elderly_care": {"merge_scope": "source"}}},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return HubConfig.model_validate(data)


def write_hub_yaml(tmp: Path, extra: str = "") -> Path:
    """A hub.yaml on disk (for the CLI) using the example grids and routing."""
    cfg = make_config(tmp)
    path = tmp / "hub.yaml"
    path.write_text(
        f"grids: {cfg.grids}\nrouting: {cfg.routing}\ndatabase: {cfg.database}\n"
        f"snapshots_dir: {tmp / 'snaps'}\nbroker: {{data_dir: {tmp / 'broker'}, port: 0}}\n"
        f"web: {{port: 0}}\n{extra}")
    return path


def make_setup(tmp: Path, **over: Any) -> Setup:
    return build_setup(make_config(tmp, **over))


def jpeg(seed: int = 0, size: int = 600) -> bytes:
    """A small byte string that passes the protocol's JPEG checks (FF D8 ... FF D9)."""
    body = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def event(agent: str = "agent-1", seq: int = 1, event_id: str = "ev-1", kind: str = "new",
          sub: str = "flood.road_waterlogging", at: datetime = T0, where: tuple[float, float] = G01,
          source: str = "cam-1", confidence: float = 0.9, snapshot: bytes | None = None,
          bbox: tuple[float, float, float, float] | None = (0.1, 0.1, 0.4, 0.4),
          reading: float | None = None, **attrs: Any) -> Event:
    evidence: dict[str, Any] = {}
    if bbox is not None:
        evidence["bbox"] = bbox
    if snapshot is not None:
        evidence["snapshot"] = SnapshotRef(sha256=hashlib.sha256(snapshot).hexdigest(),
                                           bytes=len(snapshot), width=64, height=48)
    if reading is not None:
        evidence["reading"] = Reading(name="value", value=reading)
    return Event(event_id=event_id, agent_id=agent, seq=seq, kind=kind, category=sub.split(".")[0],
                 subcategory=sub, source=source, observed_at=at,
                 location=Location(lat=where[0], lon=where[1]), confidence=confidence,
                 evidence=Evidence(**evidence), attributes=attrs)


def sensor_event(agent: str = "agent-1", seq: int = 1, event_id: str = "wm-1", kind: str = "new",
                 at: datetime = T0, where: tuple[float, float] = G01, source: str = "meter-1",
                 sub: str = "elderly_care.water_no_use") -> Event:
    return event(agent, seq, event_id, kind, sub, at, where, source, 1.0, bbox=None, reading=0.0)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def await_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class TestAgent:
    """Publishes like an agent (its own broker user, ACL-limited) and collects its acks."""

    __test__ = False

    def __init__(self, broker, agent_id: str = "agent-1", password: str = "agent-password-0123456"):
        broker.auth.set_user(agent_id, password)
        broker.reload()
        self.agent_id = agent_id
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{agent_id}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(agent_id, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(agent_topic(agent_id, Channel.ACKS), qos=1)
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = self._on_message
        c.max_inflight_messages_set(1000)
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert self._ready.wait(5), "test agent could not subscribe"
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.acks.append(decode_ack(msg.payload, agent_id=self.agent_id))

    def publish(self, channel: Channel, payload: bytes, event_id: str | None = None,
                qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(agent_topic(self.agent_id, channel, event_id), payload,
                                   qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        if qos:
            info.wait_for_publish(5)

    def send(self, *events: Event) -> None:
        self.publish(Channel.EVENTS, encode_events(list(events)))

    def send_snapshot(self, event_id: str, seq: int, data: bytes) -> None:
        header = SnapshotHeader(agent_id=self.agent_id, event_id=event_id, seq=seq,
                                sha256=hashlib.sha256(data).hexdigest(), width=64, height=48)
        self.publish(Channel.SNAPSHOTS, encode_snapshot(header, data), event_id=event_id)

    def birth(self, boot_id: str = "boot-1", at: datetime | None = None, state: str = "online") -> None:
        status = Status(agent_id=self.agent_id, state=state, boot_id=boot_id,
                        at=at or datetime.now(UTC), version="0.1.0", config_version=1)
        self.publish(Channel.STATUS, encode(status), retain=True)

    def heartbeat(self, depth: int = 0) -> None:
        t = Telemetry(agent_id=self.agent_id, boot_id="boot-1", at=datetime.now(UTC), uptime_s=12,
                      outbox={"depth": depth}, devices={"meter-1": "up"})
        self.publish(Channel.TELEMETRY, encode(t), qos=0)

    def acked(self, seq: int) -> bool:
        with self._lock:
            return any(a.covers(seq) for a in self.acks)

    def rejected(self) -> list:
        with self._lock:
            return [r for a in self.acks for r in a.rejected]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def later(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
