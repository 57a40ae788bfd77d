"""Model releases on a running camera agent (edge_agent/ota.py): the hub's wish arrives,
the agent pulls the package in chunks, checks it, switches its cameras and says so at
every step; a lost answer is asked for again; a package that is not a usable model, or a
model the cameras cannot start with, is refused with the reason while the old model runs
on; a withdrawn release brings the config's model back; a download resumes from the
last whole chunk on disk; a recorded release whose model file changed is never run."""

from __future__ import annotations

import asyncio
import json

import pytest
from agent_testlib import ReleaseServer, model_package, until, write_gray_clip

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from edge_agent.ota import ACTIVE_FILE
from edge_agent.transport import MemoryBroker, MemoryTransport
from protocol.releases import MODEL_FILE
from vision.models import BUNDLED_MODEL, REAL_MODEL, model_tag

pytestmark = pytest.mark.asyncio

AGENT = "cam-agent"
CONFIG = """\
agent: {id: cam-agent, location: {lat: 31.2, lon: 121.4}, data_dir: data}
telemetry: {interval_s: 1}
cameras:
  - id: cam1
    file: street.avi
    fps: 2
"""


def camera_model(app: AgentApp):
    (component,) = app.components
    return component.section.detector.model


class Running:
    def __init__(self, tmp_path) -> None:
        write_gray_clip(tmp_path / "street.avi")
        (tmp_path / "agent.yaml").write_text(CONFIG)
        self.tmp_path = tmp_path
        self.broker = MemoryBroker()
        self.server = ReleaseServer(self.broker.publish, chunk_bytes=128 * 1024)
        self.broker.subscribe("cityops/v1/agents/+/fetch", self.server.on_message)
        self.broker.subscribe("cityops/v1/agents/+/release_state", self.server.on_message)

    async def start(self) -> AgentApp:
        self.app = AgentApp(load_agent_config(self.tmp_path / "agent.yaml"),
                            transport_factory=lambda will: MemoryTransport(self.broker, will))
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.app.run(self.stop))
        await until(lambda: self.app.components and self.app.session.state == "connected", timeout=20,
                    what="the agent connected with its camera")
        return self.app

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


async def test_a_release_is_fetched_checked_run_and_withdrawn(tmp_path):
    run = Running(tmp_path)
    app = await run.start()
    try:
        assert camera_model(app) == BUNDLED_MODEL
        package = model_package(REAL_MODEL.parent)
        ref = run.server.offer("detector-2", package, version=2)
        assert ref.chunks >= 2
        lost = {1}
        run.server.drop = lambda agent, i: i in lost and not lost.discard(i)  # chunk 2's first answer is lost
        app.releases.resend_s = 0.3
        run.server.desire(AGENT, "detector-2", rollout_id="ro-1")
        await until(lambda: "active" in run.server.states(), timeout=30, what="the release active")
        states = run.server.states()
        assert states[0] == "downloading" and states[-2:] == ["verified", "active"]
        final = run.server.reports[-1]
        assert (final.release_id, final.active, final.rollout_id, final.chunks_done) == (
            "detector-2", "detector-2", "ro-1", ref.chunks)
        asked = [i for r in run.server.requests for i in range(r.first, r.first + r.count)]
        assert asked.count(1) >= 2, "the lost chunk was asked for again"
        model = tmp_path / "data" / "releases" / "detector-2" / MODEL_FILE
        assert camera_model(app) == model and model.read_bytes() == REAL_MODEL.read_bytes()
        assert model_tag(model) == "detector-2" == app.components[0].workers[0].model_tag
        record = json.loads((tmp_path / "data" / "releases" / ACTIVE_FILE).read_text())
        assert record["release_id"] == "detector-2"
        assert not list((tmp_path / "data" / "releases").glob("*.part"))

        # The same wish again (a retained message after a reconnect) changes nothing.
        component = app.components[0]
        run.server.desire(AGENT, "detector-2", rollout_id="ro-1")
        await until(lambda: len(run.server.reports) > len(states), what="the repeated wish answered")
        assert run.server.reports[-1].state == "active" and app.components[0] is component

        # Withdrawn: the config's model runs again.
        run.server.desire(AGENT, None, rollout_id="ro-1")
        await until(lambda: run.server.states()[-1] == "reverted", what="the release withdrawn")
        assert camera_model(app) == BUNDLED_MODEL and run.server.reports[-1].active is None
        assert not (tmp_path / "data" / "releases" / ACTIVE_FILE).exists()
    finally:
        await run.close()


@pytest.mark.parametrize(("package", "reason"), [
    (lambda: model_package(REAL_MODEL.parent, model=b"not a model"), "not a TFLite model"),
    (lambda: model_package(REAL_MODEL.parent, model=b"\0\0\0\0TFL3" + b"\0" * 4000),
     "the cameras could not start with it"),
    (lambda: model_package(REAL_MODEL.parent, labels=b"water\nflame\n"), "the cameras could not start with it"),
])
async def test_a_release_the_cameras_cannot_use_fails_with_the_reason_and_the_old_model_runs_on(
        tmp_path, package, reason):
    run = Running(tmp_path)
    app = await run.start()
    try:
        component = app.components[0]
        run.server.offer("bad-1", package())
        run.server.desire(AGENT, "bad-1")
        await until(lambda: "failed" in run.server.states(), timeout=30, what="the release refused")
        report = run.server.reports[-1]
        assert report.release_id == "bad-1" and report.active is None and reason in report.reason
        assert app.components[0] is component and camera_model(app) == BUNDLED_MODEL
        assert app.config_error is None  # a bad model is the release's failure, not the config's
        assert not (tmp_path / "data" / "releases" / ACTIVE_FILE).exists()
    finally:
        await run.close()


async def test_a_download_resumes_from_the_last_whole_chunk_on_disk(tmp_path):
    run = Running(tmp_path)
    package = model_package(REAL_MODEL.parent)
    ref = run.server.offer("detector-3", package)
    releases = tmp_path / "data" / "releases"
    releases.mkdir(parents=True)
    # what a power cut in the middle of writing chunk 3 leaves
    (releases / "detector-3.part").write_bytes(package[:2 * ref.chunk_bytes + 1000])
    app = await run.start()
    try:
        run.server.desire(AGENT, "detector-3")
        await until(lambda: "active" in run.server.states(), timeout=30, what="the release active")
        assert run.server.requests[0].first == 2, "it asked again only for what it did not have"
        assert run.server.reports[0].chunks_done == 2
        assert (releases / "detector-3" / MODEL_FILE).read_bytes() == REAL_MODEL.read_bytes()
        assert camera_model(app) == releases / "detector-3" / MODEL_FILE
    finally:
        await run.close()


async def test_the_active_release_survives_a_restart_but_a_changed_model_file_never_runs(tmp_path):
    run = Running(tmp_path)
    run.server.offer("detector-4", model_package(REAL_MODEL.parent))
    app = await run.start()
    model = tmp_path / "data" / "releases" / "detector-4" / MODEL_FILE
    try:
        run.server.desire(AGENT, "detector-4")
        await until(lambda: "active" in run.server.states(), timeout=30, what="the release active")
    finally:
        await run.close()
    run.broker.retained.clear()  # the hub says nothing this time: the agent decides from its disk

    app = await run.start()
    try:
        assert camera_model(app) == model, "the release runs again after a restart"
    finally:
        await run.close()

    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the file changed under the agent (a disk error, a hand edit)
    model.write_bytes(bytes(data))
    before = len(run.server.reports)
    app = await run.start()
    try:
        assert camera_model(app) == BUNDLED_MODEL
        await until(lambda: len(run.server.reports) > before, what="the problem reported")
        report = run.server.reports[-1]
        assert report.state == "failed" and "does not match its recorded SHA-256" in report.reason
        assert report.release_id == "detector-4"  # so the hub counts it against that release's rollout
    finally:
        await run.close()
