"""The agent app with the in-memory broker: any list of components, merged telemetry,
a crashing component restarted, SIGHUP reloads (good and bad), desired configs that
cannot be built refused."""

from __future__ import annotations

import asyncio

import pytest
from agent_testlib import StandInHub, until

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from edge_agent.transport import MemoryBroker, MemoryTransport
from protocol.messages import CameraTelemetry, DesiredConfig

pytestmark = pytest.mark.asyncio

CONFIG = """\
agent: {id: agent-1, location: {lat: 31.2, lon: 121.4}, data_dir: data}
telemetry: {interval_s: 1}
"""


class FakeCamera:
    """A component as the camera side writes one: emits drafts, reports its part."""

    def __init__(self, name="camera", crash_times=0, draft=None):
        self.name = name
        self.crash_times = crash_times
        self.runs = 0
        self.draft = draft

    async def run(self, sink, stop):
        self.runs += 1
        if self.runs <= self.crash_times:
            raise RuntimeError("bug in the camera loop")
        if self.draft is not None:
            sink.emit(self.draft)
        await stop.wait()

    def telemetry(self):
        return {"cameras": {"cam-1": CameraTelemetry(state="up", fps=2.0)}, "devices": {"cam-1-ptz": "up"},
                "rejected_readings": 2}


class FakeSensors:
    name = "sensors"

    async def run(self, sink, stop):
        await stop.wait()

    def telemetry(self):
        return {"devices": {"wm-1": "down"}, "readings": {"wm-1.volume": 3.5}, "rejected_readings": 5}


def make_app(tmp_path, broker, factories, text=CONFIG):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    loaded = load_agent_config(path)
    return AgentApp(loaded, transport_factory=lambda will: MemoryTransport(broker, will),
                    factories=factories), path


async def test_components_run_side_by_side_and_telemetry_merges(tmp_path, draft, jpeg):
    broker = MemoryBroker()
    hub = StandInHub(broker.publish)
    broker.subscribe("cityops/v1/agents/#", hub.on_message)
    camera = FakeCamera(crash_times=1, draft=draft("new", "cam-ev", jpeg=jpeg()))
    app, _ = make_app(tmp_path, broker, [lambda loaded, clock: [camera, FakeSensors()]])
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await until(lambda: camera.runs == 2, timeout=5, what="crashed component restarted")
    await until(lambda: hub.snapshots and hub.events, what="snapshot and event delivered")
    await until(lambda: hub.telemetry)
    stop.set()
    await asyncio.wait_for(task, 10)
    tele = hub.telemetry[-1]
    assert tele.devices == {"cam-1-ptz": "up", "wm-1": "down"}
    assert tele.rejected_readings == 7 and tele.readings == {"wm-1.volume": 3.5}
    assert tele.cameras["cam-1"].fps == 2.0 and tele.rss_mb > 0
    header, _ = hub.snapshots[0]
    assert hub.events[0].evidence.snapshot.sha256 == header.sha256
    assert hub.status[0].capabilities == ["camera", "sensors"]


async def test_sighup_reload_applies_a_good_file_and_keeps_running_on_a_bad_one(tmp_path):
    broker = MemoryBroker()
    built = []

    def factory(loaded, clock):
        built.append(loaded.config.telemetry.interval_s)
        return [FakeSensors()]

    app, path = make_app(tmp_path, broker, [factory])
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await until(lambda: built == [1.0])
    path.write_text(CONFIG.replace("interval_s: 1", "interval_s: 7"))
    assert await app.reload_file() is True
    assert built == [1.0, 7.0] and app.loaded.config.telemetry.interval_s == 7
    path.write_text(CONFIG.replace("interval_s: 1", "interval_s: seven"))
    assert await app.reload_file() is False
    assert app.loaded.config.telemetry.interval_s == 7 and len(built) == 2
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_desired_config_whose_components_cannot_be_built_is_refused(tmp_path):
    from datetime import UTC, datetime

    broker = MemoryBroker()

    def factory(loaded, clock):
        if loaded.config.telemetry.interval_s == 3:
            raise RuntimeError("detector model file missing")
        return [FakeSensors()]

    app, _ = make_app(tmp_path, broker, [factory])
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await until(lambda: app.components)
    await app.apply_desired(DesiredConfig(agent_id="agent-1", version=5, config={"telemetry": {"interval_s": 3}},
                                          issued_at=datetime.now(UTC)))
    assert app.config_version is None and "detector model file missing" in app.config_error
    assert app.loaded.config.telemetry.interval_s == 1 and len(app.components) == 1
    await app.apply_desired(DesiredConfig(agent_id="agent-1", version=6, config={"telemetry": {"interval_s": 2}},
                                          issued_at=datetime.now(UTC)))
    assert app.config_version == 6 and app.config_error is None
    stop.set()
    await asyncio.wait_for(task, 10)
