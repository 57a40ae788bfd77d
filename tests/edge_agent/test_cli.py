"""`cityops-agent`: check-config over every shipped file, clear one-line errors, the
outbox inspector, and the command registry other parts of the agent extend."""

from __future__ import annotations

import subprocess
import sys

import pytest
from agent_testlib import ROOT

from edge_agent import cli
from edge_agent.cli import build_parser, command, commands, main
from edge_agent.config import load_agent_config
from edge_agent.outbox import Outbox

SHIPPED = sorted((ROOT / "firmware_configs").rglob("*.yaml"))


def test_there_are_shipped_configs_and_maps():
    names = {p.name for p in SHIPPED}
    assert {"water_meter.yaml", "water_level_gauge.yaml", "smoke_detector.yaml", "call_button.yaml"} <= names
    assert len([p for p in SHIPPED if p.parent.name == "agents"]) >= 2


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_check_config_accepts_every_shipped_file(path, capsys):
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    assert ": ok (" in capsys.readouterr().out


def test_check_config_reports_every_problem_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  id: a/b\n  location: {lat: 1, lon: 2}\ndevices: [{id: d}]\nmqtt: {port: 0}\n")
    good = ROOT / "firmware_configs" / "agents" / "underpass-gauges.yaml"
    assert main(["check-config", str(good), str(bad)]) == 1
    out = capsys.readouterr()
    assert f"{good}: ok" in out.out
    assert f"{bad}:2:3 agent.id:" in out.err and f"{bad}:5:8 mqtt.port:" in out.err
    assert "devices[0].model: Field required" in out.err and "1 of 2 file(s) invalid" in out.err


def test_installed_console_script_prints_one_line_errors_not_tracebacks(tmp_path):
    missing = tmp_path / "nope.yaml"
    proc = subprocess.run([sys.executable, "-m", "edge_agent", "run", "--config", str(missing)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[0].startswith("cityops-agent: error: invalid configuration")
    assert "Traceback" not in proc.stderr and "file not found" in proc.stderr


def test_outbox_command_shows_depth_and_counters(tmp_path, capsys, draft):
    config = tmp_path / "agent.yaml"
    config.write_text("agent: {id: agent-1, location: {lat: 1, lon: 2}}\n")
    loaded = load_agent_config(config)
    box = Outbox(loaded.outbox_path, "agent-1")
    box.emit(draft("new", "ev-1"))
    box.emit(draft("end", "ev-1"))
    box.take_backlog(1, 1 << 20)
    box.mark_sent([1])
    assert main(["outbox", "--config", str(config), "--rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "depth 2 rows" in out and "next seq 3" in out
    assert "'sent': 1" in out and "'pending': 1" in out
    assert "ev-1" in out
    box.close()


def test_outbox_command_without_an_outbox_says_so(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text("agent: {id: agent-1, location: {lat: 1, lon: 2}}\n")
    assert main(["outbox", "--config", str(config)]) == 1
    assert "no outbox here yet" in capsys.readouterr().err


def test_a_new_subcommand_is_one_registered_function(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))

    def configure(p):
        p.add_argument("--epochs", type=int, default=1)

    @command("self-test", "a made-up command", configure)
    def train(args):
        print(f"training {args.epochs}")
        return 0

    assert main(["self-test", "--epochs", "3"]) == 0
    assert capsys.readouterr().out == "training 3\n"


def test_every_command_is_documented():
    doc = (ROOT / "docs" / "agent.md").read_text()
    for name in commands():
        assert f"cityops-agent {name}" in doc, f"docs/agent.md does not document `cityops-agent {name}`"
    assert build_parser().prog == "cityops-agent"
