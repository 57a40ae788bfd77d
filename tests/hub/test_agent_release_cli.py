"""``cityops-hub release add --kind agent``: a wheel of the agent's software is checked the
way the agent checks it and stored as a release of kind agent (the rollout machinery then
ships it like a model; tests/faults/test_agent_update.py has the agent's side)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EDGE_TESTS = str(Path(__file__).resolve().parents[1] / "edge_agent")
if EDGE_TESTS not in sys.path:
    sys.path.insert(0, EDGE_TESTS)

from agent_testlib import agent_wheel  # noqa: E402
from hubtest import write_hub_yaml  # noqa: E402

from hub.cli import main as hub_main  # noqa: E402
from hub.store.sqlite import SqliteRepository  # noqa: E402
from protocol.releases import ReleaseKind, check_agent_package, sha256_hex  # noqa: E402
from vision.models import REAL_MODEL  # noqa: E402


def test_an_agent_wheel_is_stored_as_an_agent_release_and_anything_else_refused(tmp_path, capsys):
    cfg = write_hub_yaml(tmp_path, f"releases: {{dir: {tmp_path / 'rel'}}}\n")
    wheel = tmp_path / "cityops-0.2.0-py3-none-any.whl"
    wheel.write_bytes(agent_wheel("0.2.0"))
    assert hub_main(["release", "add", "--config", str(cfg), "--kind", "agent", "--name", "cityops-agent",
                     str(wheel)]) == 0
    assert capsys.readouterr().out.strip() == "cityops-agent-1"
    stored = (tmp_path / "rel" / "cityops-agent-1.whl").read_bytes()
    assert stored == wheel.read_bytes() and check_agent_package(stored).version == "0.2.0"
    assert hub_main(["release", "list", "--config", str(cfg), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["releases"]
    assert (row["kind"], row["sha256"]) == ("agent", sha256_hex(stored))

    # what the hub offers agents names the kind
    from hub.config import load_setup

    repo = SqliteRepository(load_setup(cfg).config.database)
    try:
        assert repo.release_get("cityops-agent-1").ref().kind == ReleaseKind.AGENT
    finally:
        repo.close()

    # a model folder is not an agent wheel, a wheel is not a model package, a wheel of
    # something else is refused by name
    assert hub_main(["release", "add", "--config", str(cfg), "--kind", "agent", "--name", "cityops-agent",
                     str(REAL_MODEL.parent)]) == 1
    assert "no such file (name a wheel" in capsys.readouterr().err
    assert hub_main(["release", "add", "--config", str(cfg), "--name", "detector", str(wheel)]) == 1
    assert "not a usable model package: unexpected file(s)" in capsys.readouterr().err
    other = tmp_path / "other.whl"
    other.write_bytes(agent_wheel("1.0", name="requests"))
    assert hub_main(["release", "add", "--config", str(cfg), "--kind", "agent", "--name", "cityops-agent",
                     str(other)]) == 1
    assert "not a usable agent wheel: the wheel is of 'requests'" in capsys.readouterr().err
    assert hub_main(["release", "list", "--config", str(cfg), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["releases"]) == 1
