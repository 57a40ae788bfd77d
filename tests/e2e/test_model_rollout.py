"""A model rollout end to end with nothing stood in: the real hub (release store, chunk
server, rollout loop) and its private Mosquitto, and the real agent running a camera.

A good release goes to the canary (the one agent), which downloads it, checks it and
switches its camera; the window passes, the rollout is promoted and done; rolling it
back from the hub brings the config's model back. A release whose model the camera
cannot start with is reported failed by the agent and rolled back by the hub on its own,
naming the agent and its reason, while the camera runs on."""

from __future__ import annotations

import asyncio
import io
import sys
import zipfile

import pytest
import yaml
from test_agent_to_hub import ROOT, until

from edge_agent.app import AgentApp
from edge_agent.config import load_agent_config
from hub.app import Hub
from hub.releases.package import add_release, build_package
from protocol.ids import new_secret
from protocol.releases import MODEL_FILE
from vision.models import BUNDLED_MODEL, REAL_MODEL

sys.path.insert(0, str(ROOT / "tests" / "edge_agent"))
from agent_testlib import write_gray_clip  # noqa: E402

pytestmark = pytest.mark.asyncio

AGENT = "cam-rollout-1"


def agent_app(tmp, hub: Hub) -> AgentApp:
    password = new_secret("mqp")
    hub.broker_auth.set_user(AGENT, password)
    hub.broker_auth.reload()
    (tmp / "credentials.yaml").write_text(f"username: {AGENT}\npassword: {password}\n")
    write_gray_clip(tmp / "street.avi")
    cfg = {"agent": {"id": AGENT, "location": {"lat": 31.2052, "lon": 121.4051}, "grid_id": "g-01",
                     "data_dir": str(tmp / "agent-data")},
           "mqtt": {"host": "127.0.0.1", "port": hub.broker_port, "credentials_file": str(tmp / "credentials.yaml"),
                    "reconnect": {"initial_s": 0.1, "max_s": 0.5}},
           "telemetry": {"interval_s": 1},
           "cameras": [{"id": "cam1", "file": str(tmp / "street.avi"), "fps": 2}]}
    (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
    return AgentApp(load_agent_config(tmp / "agent.yaml"))


def camera_model(app: AgentApp):
    (component,) = app.components
    return component.section.detector.model


async def reached(hub: Hub, rollout_id: str, stage: str) -> bool:
    return (await hub.read(lambda repo: repo.rollout_get(rollout_id))).stage == stage


async def test_a_release_reaches_the_real_agent_is_promoted_and_rolled_back(tmp_path, releasing_hub):
    hub = releasing_hub
    app = agent_app(tmp_path, hub)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await until(lambda: app.components and app.session.state == "connected", timeout=30, what="agent up")
        await until(lambda: hub.read(lambda repo: AGENT in repo.agent_ids()), timeout=10, what="agent known")
        package = build_package(REAL_MODEL.parent)
        release = await hub.write(lambda repo: add_release(repo, hub.config.releases.dir, package, name="detector",
                                                           now=hub.clock.now(), by="test"))
        rollout = await hub.releases.start_rollout(release.release_id, canary=AGENT, agents="all",
                                                   canary_minutes=0.02, by="test")
        model = tmp_path / "agent-data" / "releases" / release.release_id / MODEL_FILE
        await until(lambda: camera_model(app) == model, timeout=60, what="the camera on the release")
        await until(lambda: reached(hub, rollout.rollout_id, "done"), timeout=30, what="the rollout done")
        row = await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))
        assert [h["stage"] for h in row.history] == ["canary", "all", "done"]

        # Every release is reversible: the hub rolls it back, the camera runs the config's model.
        await hub.releases.roll_back(rollout.rollout_id, by="test", reason="operator's choice")
        await until(lambda: camera_model(app) == BUNDLED_MODEL, timeout=30, what="the config's model back")
        assert app.releases.last_report.state == "reverted"

        # A release the camera cannot start with (its labels do not fit the model's outputs):
        # the agent refuses it, the hub rolls the rollout back on its own, the camera runs on.
        bad = build_package(REAL_MODEL.parent)
        buf = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(bad)) as src, zipfile.ZipFile(buf, "w") as dst:
            for name in src.namelist():
                dst.writestr(name, b"water\nflame\n" if name == "labels.txt" else src.read(name))
        bad_release = await hub.write(lambda repo: add_release(repo, hub.config.releases.dir, buf.getvalue(),
                                                               name="detector", now=hub.clock.now(), by="test"))
        bad_rollout = await hub.releases.start_rollout(bad_release.release_id, canary=AGENT, agents="all",
                                                       canary_minutes=0.02, by="test")
        await until(lambda: reached(hub, bad_rollout.rollout_id, "rolled_back"), timeout=60,
                    what="the bad release rolled back")
        row = await hub.read(lambda repo: repo.rollout_get(bad_rollout.rollout_id))
        assert AGENT in row.history[-1]["reason"] and "could not start" in row.history[-1]["reason"]
        assert camera_model(app) == BUNDLED_MODEL and app.components
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
