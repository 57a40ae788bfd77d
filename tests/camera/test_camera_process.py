"""`cityops-agent run` on the shipped looped-clip camera config, as a real process with a
private Mosquitto (the `broker` fixture) and a stand-in hub over paho: camera events with
snapshots and camera telemetry arrive, a desired config pushed through the broker (the
way a plan raises a frame rate) is applied while the camera runs, and SIGTERM stops it
cleanly."""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from protocol.codec import encode
from protocol.messages import DesiredConfig, EventKind
from protocol.topics import Channel, agent_topic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edge_agent"))
from agent_testlib import ROOT, AgentProcess, PahoHub, until  # noqa: E402

pytestmark = pytest.mark.asyncio

EXAMPLE = ROOT / "firmware_configs" / "agents" / "camera-file-test.yaml"
FIRE = "community_safety.fire"


def setup_agent(tmp_path: Path, broker) -> tuple[str, AgentProcess]:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    agent_id = cfg["agent"]["id"]
    password = secrets.token_urlsafe(18)
    broker.auth.set_user(agent_id, password)
    broker.reload()
    (tmp_path / "credentials.yaml").write_text(f"username: {agent_id}\npassword: {password}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    cfg["agent"]["data_dir"] = str(tmp_path / "data")
    cfg["mqtt"].update(host=broker.host, port=broker.port, credentials_file=str(tmp_path / "credentials.yaml"))
    cfg["telemetry"] = {"interval_s": 1}
    cfg["cameras"][0]["file"] = str(EXAMPLE.parent / cfg["cameras"][0]["file"])
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return agent_id, AgentProcess(path, tmp_path / "agent.log")


async def test_the_camera_example_runs_as_a_process_and_takes_a_pushed_frame_rate(tmp_path, broker):
    agent_id, agent = setup_agent(tmp_path, broker)
    hub = PahoHub(broker)
    try:
        agent.start()
        await until(lambda: [e for e in hub.events if e.subcategory == FIRE and e.kind == EventKind.NEW],
                    timeout=40, what=f"a fire event from the looped clip; log:\n{agent.log()[-2000:]}")
        fire = next(e for e in hub.events if e.subcategory == FIRE)
        assert fire.source == "test-clip" and fire.evidence.bbox is not None
        await until(lambda: any(h.sha256 == fire.evidence.snapshot.sha256 for h, _ in hub.snapshots),
                    what="the snapshot")
        await until(lambda: hub.telemetry and "test-clip" in hub.telemetry[-1].cameras, what="camera telemetry")
        assert hub.telemetry[-1].cameras["test-clip"].state == "up"

        hub.publish(agent_topic(agent_id, Channel.CONFIG), encode(DesiredConfig(
            agent_id=agent_id, version=2, config={"cameras": {"test-clip": {"fps": 1}}},
            issued_at=datetime.now(UTC))), retain=True)
        await until(lambda: hub.status and hub.status[-1].config_version == 2, timeout=20,
                    what="the pushed config applied")
        assert hub.status[-1].config_error is None
        assert "camera settings changed in place" in agent.log()
        assert agent.terminate() == 0
        assert hub.status[-1].state == "offline" and hub.status[-1].reason == "shutdown"
        assert "Traceback" not in agent.log()
    finally:
        agent.ensure_stopped()
        hub.close()
