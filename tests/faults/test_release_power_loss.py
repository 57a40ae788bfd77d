"""Power loss in the middle of a model download (issue 22): ``cityops-agent run`` as a real
process on a real Mosquitto is killed with SIGKILL after some chunks, with half of the
next chunk torn onto the end of its file. It must come back on the model its config
names (never a half-written one), resume from the last whole chunk, and end on the
release byte for byte."""

from __future__ import annotations

import asyncio

import pytest
from agent_testlib import (
    AgentProcess,
    PahoReleaseServer,
    model_package,
    provisioned_agent,
    until,
    write_gray_clip,
)

from protocol.releases import MODEL_FILE
from vision.models import REAL_MODEL

pytestmark = pytest.mark.asyncio

AGENT = "cam-ota-1"
CHUNK = 64 * 1024


def setup_agent(tmp_path, broker) -> AgentProcess:
    write_gray_clip(tmp_path / "street.avi")
    return provisioned_agent(tmp_path, broker, AGENT, "cameras:\n  - id: cam1\n    file: street.avi\n    fps: 2\n")


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
