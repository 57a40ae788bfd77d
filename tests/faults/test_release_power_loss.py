"""Power loss in the middle of a model download (issue 22): ``cityops-agent run`` as a real
process on a real Mosquitto is killed with SIGKILL after some chunks, with half of the
next chunk torn onto the end of its file. It must come back on the model its config
names (never a half-written one), resume from the last whole chunk, and end on the
release byte for byte."""

from __future__ import annotations

import asyncio
import secrets

import cv2
import numpy as np
import pytest
from agent_testlib import AgentProcess, PahoReleaseServer, model_package, until

from protocol.releases import MODEL_FILE
from vision.models import REAL_MODEL

pytestmark = pytest.mark.asyncio

AGENT = "cam-ota-1"
CHUNK = 64 * 1024


def setup_agent(tmp_path, broker) -> AgentProcess:
    password = secrets.token_urlsafe(18)
    broker.auth.set_user(AGENT, password)
    broker.reload()
    (tmp_path / "credentials.yaml").write_text(f"username: {AGENT}\npassword: {password}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    out = cv2.VideoWriter(str(tmp_path / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 90))
    for i in range(10):
        out.write(np.full((90, 160, 3), 60 + 10 * i, np.uint8))
    out.release()
    (tmp_path / "agent.yaml").write_text(f"""\
agent: {{id: {AGENT}, location: {{lat: 31.2, lon: 121.4}}, data_dir: data}}
mqtt:
  host: {broker.host}
  port: {broker.port}
  credentials_file: credentials.yaml
  reconnect: {{initial_s: 0.1, max_s: 0.5}}
telemetry: {{interval_s: 1}}
logging: {{level: info}}
cameras:
  - id: cam1
    file: street.avi
    fps: 2
""")
    return AgentProcess(tmp_path / "agent.yaml", tmp_path / "agent.log")


async def test_power_loss_mid_download_resumes_and_never_runs_a_half_written_model(tmp_path, broker):
    server = PahoReleaseServer(broker, chunk_bytes=CHUNK)
    package = model_package(REAL_MODEL.parent)
    ref = server.offer("detector-9", package, version=9)
    assert ref.chunks > 8
    server.serve_upto = 5  # the link dies after six chunks
    releases = tmp_path / "data" / "releases"
    part = releases / "detector-9.part"
    agent = setup_agent(tmp_path, broker).start()
    try:
        server.desire(AGENT, "detector-9", rollout_id="ro-9")
        await until(lambda: part.exists() and part.stat().st_size == 6 * CHUNK, timeout=60,
                    what="six chunks on disk")
        agent.kill9()
        assert not (releases / "detector-9").exists() and not (releases / "active.json").exists()
        with part.open("ab") as f:  # the power went while the seventh chunk was being written
            f.write(package[6 * CHUNK:6 * CHUNK + 5000])

        asked_before = len(server.requests)
        server.serve_upto = None
        agent.start()
        await until(lambda: any(r.state == "active" for r in server.reports), timeout=60,
                    what="the release active after the restart")
        resumed = server.requests[asked_before]
        assert (resumed.release_id, resumed.first) == ("detector-9", 6), "resumed at the first missing chunk"
        assert (releases / "detector-9" / MODEL_FILE).read_bytes() == REAL_MODEL.read_bytes()
        assert not part.exists()
        log = agent.log()
        assert "resuming at chunk 7 of" in log and "release detector-9 active" in log
        # until then the camera ran on the config's own model: it started, and no release was active
        assert log.index("resuming at chunk 7") < log.index("release detector-9 active")
        assert agent.running()
        assert agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        server.close()
        await asyncio.sleep(0)
