"""Helpers of the live view tests: a hub on the system clock with the test users, a real
agent whose camera plays the shipped test clip in a loop, and a raw MQTT probe."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from hubtest import make_setup
from webtest import add_users

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from hub.app import Hub
from protocol.ids import new_secret

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "firmware_configs" / "agents" / "camera-file-test.yaml"
CAMERA = "test-clip"


async def until(cond, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextlib.asynccontextmanager
async def live_hub(tmp: Path, **live_view: Any) -> AsyncIterator[Hub]:
    """A started hub on the system clock (live views end in real seconds), with users."""
    web = {"port": 0, "access_log": False, "live_interval_s": 0.2,
           "live_view": {"request_s": 6, "refresh_s": 2, **live_view}}
    h = Hub(make_setup(tmp, web=web), run_scheduler=False)
    await h.start()
    try:
        await add_users(h)
        yield h
    finally:
        await h.stop()


def enrol(hub: Hub, agent_id: str) -> str:
    password = new_secret("mqp")
    hub.broker_auth.set_user(agent_id, password)
    hub.broker_auth.reload()
    return password


@contextlib.asynccontextmanager
async def camera_agent(tmp: Path, hub: Hub, agent_id: str = "cam-live-1",
                       live: dict[str, Any] | None = None) -> AsyncIterator[AgentApp]:
    """The shipped looped-file camera example as a real agent on the hub's broker, in
    grid g-01; yields once the hub has its camera in a heartbeat."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    password = enrol(hub, agent_id)
    creds = tmp / f"{agent_id}-credentials.yaml"
    creds.write_text(f"username: {agent_id}\npassword: {password}\n")
    creds.chmod(0o600)
    cfg["agent"].update(id=agent_id, data_dir=str(tmp / f"{agent_id}-data"), grid_id="g-01")
    cfg["mqtt"].update(port=hub.broker_port, credentials_file=str(creds))
    cfg["telemetry"] = {"interval_s": 1}
    (cam,) = cfg["cameras"]
    cam.update(file=str(EXAMPLE.parent / cam["file"]),
               location={"lat": 31.2052, "lon": 121.4051, "grid_id": "g-01", "place": "Test bench"})
    if live is not None:
        cam["live"] = live
    path = tmp / f"{agent_id}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    app = AgentApp(load_agent_config(path))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        async def seen() -> bool:
            row = await hub.read(lambda r: r.get_agent(agent_id))
            return row is not None and CAMERA in row.cameras and \
                row.cameras[CAMERA].get("state") == "up"

        await until(seen, 20, "the hub seeing the agent's camera up")
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def worker(app: AgentApp):
    (component,) = [c for c in app.components if c.name == "camera"]
    (w,) = component.workers
    return w


class Probe:
    """A raw MQTT v5 client: what arrives on its subscriptions, PUBACK reason codes."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, Any] = {}
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.c.on_message = self._message
        self.c.on_publish = self._published
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self._published(c, u, -mid, rcs, p)
        self.c.connect(host, port)
        self.c.loop_start()
        assert self.connected.wait(5)

    def _message(self, c, u, msg) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _published(self, c, u, mid, rc, props) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> Any:
        info = self.c.publish(topic, payload, qos=qos)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, 5)
            return self.acks[info.mid]

    def subscribe(self, topic: str) -> None:
        _, mid = self.c.subscribe(topic, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: -mid in self.acks, 5)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
