"""``cityops-sim fleet``: virtual agents as real MQTT clients against the real hub and its
Mosquitto; every event they publish is stored once and acknowledged, through a broker
restart too; provisioning and bad input on the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys

import pytest
import yaml
from simtestlib import ROOT, until

from hub.app import Hub
from hub.broker import BrokerAuth, BrokerSettings
from hub.config import HubConfig, build_setup
from simulators.fleet import Fleet, FleetOptions, provision, run_fleet

EXAMPLES = ROOT / "hub" / "examples"


@pytest.fixture
async def hub(tmp_path):
    h = Hub(build_setup(HubConfig.model_validate({
        "broker": {"managed": True, "data_dir": str(tmp_path / "broker"), "port": 0},
        "database": str(tmp_path / "hub.sqlite"), "snapshots_dir": str(tmp_path / "snaps"),
        "web": {"port": 0}, "grids": str(EXAMPLES / "grids.geojson"),
        "routing": str(EXAMPLES / "routing.yaml"), "ingest": {"receivers": 0, "batch_wait_ms": 2},
        "screening": {"rules": {"elderly_care": {"merge_scope": "source"}}},
    })), run_scheduler=False)
    await h.start()
    yield h
    await h.stop()


async def test_fleet_births_heartbeats_events_acked_and_survives_a_broker_restart(hub):
    creds = provision(hub.broker_auth, 40, "vt")
    await asyncio.to_thread(hub.broker_auth.reload)
    fleet = Fleet(FleetOptions(hub.broker_host, hub.broker_port, creds, event_rate=40.0,
                               heartbeat_s=1.0, ramp_s=1.0, loops=2))
    fleet.start()
    try:
        await until(lambda: fleet.stats()["connected"] == 40, what="40 agents connected")
        await until(lambda: hub.counts()["agents_online"] == 40, what="the hub seeing 40 births")
        await until(lambda: fleet.stats()["events_acked"] >= 40, what="events acked by the hub")
        await asyncio.to_thread(hub.broker.restart)
        await until(lambda: fleet.stats()["reconnects"] >= 40 and fleet.stats()["connected"] == 40,
                    timeout=60, what="every agent back after the restart")
        before = fleet.stats()["events_published"]
        await until(lambda: fleet.stats()["events_published"] > before + 40, what="events after it")
        assert await asyncio.to_thread(fleet.quiesce, 30), "every event acknowledged by the hub"
        stats = fleet.stats()
    finally:
        await asyncio.to_thread(fleet.stop)
    assert stats["events_acked"] == stats["events_published"]
    assert stats["heartbeats"] >= 40 and stats["births"] >= 80
    assert not [e for e in stats["errors"] if e.startswith(("rejected", "auth", "bad ack"))], stats["errors"]
    counts = hub.counts()
    assert counts["messages_stored"] == stats["events_published"]  # stored once, re-sends deduplicated
    # (seq_gaps counts gaps the hub saw while the broker was down; they were filled by re-sends)
    assert counts["dead_letters"] == 0
    assert stats["connect_ms"]["n"] == stats["births"]


def test_provision_writes_the_password_file_and_credentials(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())", "fleet",
         "--agents", "5", "--prefix", "box", "--provision", str(tmp_path / "broker"),
         "--credentials", str(tmp_path / "creds.yaml")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    creds = yaml.safe_load((tmp_path / "creds.yaml").read_text())
    assert sorted(creds) == [f"box-{i:05d}" for i in range(5)]
    auth = BrokerAuth(BrokerSettings(data_dir=tmp_path / "broker"))
    assert all(auth.check(user, pw) for user, pw in creds.items())
    assert (tmp_path / "creds.yaml").stat().st_mode & 0o077 == 0


def test_bad_targets_are_one_line_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())",
                               "fleet", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)

    (tmp_path / "few.yaml").write_text("a: b\n")
    for args, message in [(["--agents", "3", "--broker", "127.0.0.1:1"], "needs --credentials"),
                          (["--agents", "3", "--broker", "127.0.0.1:1", "--credentials", str(tmp_path / "few.yaml")],
                           "holds 1 credentials, fewer than --agents 3"),
                          (["--agents", "0"], "at least 1")]:
        out = run(*args)
        assert out.returncode == 1 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


async def test_fleet_reports_each_agent_beside_the_hubs_own_count(hub):
    """Issue 17, point 8: totals alone cannot show which agent lost what. Each agent's
    published and acked counts match the hub's stored count for that agent."""
    creds = provision(hub.broker_auth, 4, "pa")
    await asyncio.to_thread(hub.broker_auth.reload)
    opts = FleetOptions(hub.broker_host, hub.broker_port, creds, event_rate=40.0, heartbeat_s=5.0,
                        ramp_s=0.5, loops=1)
    args = argparse.Namespace(duration=1.5, progress_every=60.0, quiet=True, drain_s=30.0)
    result = await asyncio.to_thread(run_fleet, opts, args)
    assert result["drained"] and result["drain_s"] == 30.0
    per = result["per_agent"]
    assert sorted(per) == sorted(creds)
    assert sum(a["published"] for a in per.values()) == result["events_published"] > 0
    assert sum(a["acked"] for a in per.values()) == result["events_acked"]
    stored = await hub.read(lambda repo: repo.messages_stored_by_agent(list(per)))
    assert {a: (c["published"], c["acked"], c["unacked"]) for a, c in per.items()} == {
        a: (stored[a], stored[a], 0) for a in per}


def test_fleet_json_has_per_agent_figures_and_honours_drain_s(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())", "fleet",
         "--agents", "3", "--rate", "15", "--ramp", "0.5", "--duration", "1.5", "--heartbeat", "1",
         "--drain-s", "20", "--json", "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["drained"] is True and result["drain_s"] == 20.0
    per = result["per_agent"]
    assert sorted(per) == [f"fleet-{i:05d}" for i in range(3)]
    assert all(set(c) == {"published", "acked", "rejected", "unacked"} for c in per.values())
    assert sum(c["published"] for c in per.values()) == result["events_published"] > 0
    assert all(c["published"] == c["acked"] and c["unacked"] == 0 for c in per.values())
    bad = subprocess.run(
        [sys.executable, "-c", "import sys; from simulators.cli import main; sys.exit(main())", "fleet",
         "--agents", "1", "--drain-s", "-1"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 1 and "--drain-s must be 0 or more" in bad.stderr
