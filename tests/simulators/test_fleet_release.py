"""The fleet's virtual agents follow a model release on the wire as real agents do: each
pulls the package in chunks from the server, checks it and reports active; a package
that does not match its SHA-256 is reported failed with the reason by every agent."""

from __future__ import annotations

import sys
import time

from simtestlib import ROOT

from simulators.fleet import Fleet, FleetOptions, provision
from vision.models import REAL_MODEL

sys.path.insert(0, str(ROOT / "tests" / "edge_agent"))
from agent_testlib import PahoReleaseServer, model_package  # noqa: E402


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def test_virtual_agents_fetch_check_and_activate_a_release(broker):
    creds = provision(broker.auth, 6, "ota")
    broker.reload()
    server = PahoReleaseServer(broker, chunk_bytes=64 * 1024)
    fleet = Fleet(FleetOptions(broker.host, broker.port, creds, event_rate=0, heartbeat_s=30, ramp_s=0.2,
                               loops=2)).start()
    try:
        wait_for(lambda: fleet.stats()["connected"] == 6, 30, "the fleet connected")
        server.offer("detector-5", model_package(REAL_MODEL.parent), version=5)
        for agent in creds:
            server.desire(agent, "detector-5", rollout_id="ro-5")
        wait_for(lambda: server.states().count("active") == 6, 60, "every agent active")
        figures = fleet.stats()["releases"]
        chunks = server.packages["detector-5"][0].chunks
        assert figures["activated"] == 6 and figures["failed"] == 0 and figures["chunks"] == 6 * chunks
        assert figures["download_ms"]["n"] == 6
        assert {r.agent_id for r in server.reports if r.state == "active"} == set(creds)

        # A package altered on the server after it was announced: every agent says so.
        ref, package = server.packages["detector-5"]
        bad = bytearray(package)
        bad[100] ^= 1
        server.packages["detector-6"] = (ref.model_copy(update={"release_id": "detector-6"}), bytes(bad))
        for agent in creds:
            server.desire(agent, "detector-6")
        wait_for(lambda: server.states().count("failed") == 6, 60, "every agent refused the altered package")
        assert all("SHA-256" in r.reason for r in server.reports if r.state == "failed")
        assert fleet.stats()["releases"]["activated"] == 6
    finally:
        fleet.stop()
        server.close()
