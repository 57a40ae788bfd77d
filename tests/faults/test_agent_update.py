"""Agent software releases (issue 22): ``cityops-agent run`` as a real process on a real
Mosquitto is sent a wheel of its own software. A good wheel: the agent restarts into it
(the same process, now reporting the wheel's version), confirms it and reports it active;
``release: null`` takes it back to the installed version. A wheel that cannot start: the
service manager's restarts (stood in for here, ``Restart=on-failure`` as in
docs/cityops-agent.service) try it twice, then the installed version runs, reports the
release failed with the reason, and keeps publishing. A wheel that starts but never
reaches the broker is ended by the trial's deadline and falls back the same way."""

from __future__ import annotations

import asyncio
import json
import signal
import threading

import pytest
from agent_testlib import (
    AgentProcess,
    PahoHub,
    PahoReleaseServer,
    agent_wheel,
    pip_wheel,
    provisioned_agent,
    until,
)

from edge_agent import __version__ as INSTALLED
from edge_agent.selfupdate import TRIAL_ENV

pytestmark = pytest.mark.asyncio

AGENT = "agent-upd-1"
NEW = "0.1.0+update"
BAD = "0.1.0+broken"


@pytest.fixture(scope="session")
def good_wheel(tmp_path_factory) -> bytes:
    return pip_wheel(tmp_path_factory.mktemp("wheel"), NEW)  # built by pip, as an operator would


CRASHES = b'raise RuntimeError("this build cannot start")\n'
HANGS = b'import time\nprint("this build never connects", flush=True)\ntime.sleep(3600)\n'


class Supervisor:
    """What systemd's ``Restart=on-failure`` does for the agent: start it again when it
    exits with a failure (outside the project, so stood in for)."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.failures: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(0.1):
            rc = self.agent.proc.poll()
            if rc is not None and rc != 0 and not self.stopping.is_set():
                self.failures.append(rc)
                self.agent.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def setup_agent(tmp_path, broker) -> AgentProcess:
    return provisioned_agent(tmp_path, broker, AGENT)


def online(hub, version: str, after: int = 0) -> bool:
    return any(s.state == "online" and s.version == version for s in hub.status[after:])


async def test_agent_restarts_into_a_shipped_version_and_back(tmp_path, broker, good_wheel, monkeypatch):
    monkeypatch.setenv(TRIAL_ENV, "3")  # the trial's deadline: cleared by the confirmation
    server = PahoReleaseServer(broker)
    hub = PahoHub(broker, client_id="standin-hub-upd")
    server.offer("cityops-agent-2", good_wheel, version=2, kind="agent")
    releases = tmp_path / "data" / "releases"
    agent = setup_agent(tmp_path, broker).start()
    try:
        await until(lambda: online(hub, INSTALLED), timeout=30, what="the installed agent online")
        pid = agent.proc.pid
        seen = len(hub.status)
        server.desire(AGENT, "cityops-agent-2", rollout_id="ro-2")
        await until(lambda: online(hub, NEW, seen), timeout=40, what=f"the agent online as {NEW}")
        await until(lambda: any(r.state == "active" and r.release_id == "cityops-agent-2" for r in server.reports),
                    timeout=20, what="the agent release reported active")
        assert agent.proc.pid == pid and agent.running(), "restarted in place (exec), not a new process"
        record = json.loads((releases / "software.json").read_text())
        assert (record["release_id"], record["version"], record["state"], record["attempts"]) == (
            "cityops-agent-2", NEW, "active", 0)
        assert (releases / "cityops-agent-2" / "site" / "edge_agent" / "__init__.py").is_file()
        assert not list(releases.glob("*.staging")) and not list(releases.glob("*.part"))
        active = next(r for r in server.reports if r.state == "active")
        assert active.rollout_id == "ro-2"
        states = server.states(AGENT)
        assert states.index("verified") < states.index("active"), states  # verified went out before the restart
        telemetry = len(hub.telemetry)
        await until(lambda: len(hub.telemetry) > telemetry + 4, timeout=15, what="telemetry from the new version")
        assert agent.running() and agent.proc.pid == pid, "the confirmed version outlived the trial's deadline"

        # the power goes; the service manager starts the installed command: it runs the new version
        agent.kill9()
        seen = len(hub.status)
        agent.start()
        await until(lambda: online(hub, NEW, seen), timeout=40, what=f"{NEW} again after a cold start")
        assert not online(hub, INSTALLED, seen)
        assert json.loads((releases / "software.json").read_text())["state"] == "active"
        pid = agent.proc.pid

        seen = len(hub.status)
        server.desire(AGENT, None, rollout_id="ro-3")
        await until(lambda: online(hub, INSTALLED, seen), timeout=40, what="the installed version online again")
        await until(lambda: server.reports and server.reports[-1].state == "reverted", timeout=20,
                    what="reverted reported")
        assert not (releases / "software.json").exists()
        assert agent.proc.pid == pid
        log = agent.log()
        assert "restarting into it" in log and "restarting on the installed version" in log
        assert agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        server.close()
        hub.close()
        await asyncio.sleep(0)


@pytest.mark.parametrize(("main", "exits"), [(CRASHES, 1), (HANGS, -signal.SIGALRM)], ids=["crashes", "hangs"])
async def test_a_version_that_does_not_start_falls_back_to_the_installed_one(tmp_path, broker, monkeypatch,
                                                                             main, exits):
    monkeypatch.setenv(TRIAL_ENV, "4")  # a trial that has not reached the broker in 4 s is ended
    bad_wheel = agent_wheel(BAD, files={"edge_agent/__main__.py": main})
    server = PahoReleaseServer(broker, client_id="standin-releases-bad")
    hub = PahoHub(broker, client_id="standin-hub-bad")
    server.offer("cityops-agent-3", bad_wheel, version=3, kind="agent")
    releases = tmp_path / "data" / "releases"
    agent = setup_agent(tmp_path, broker).start()
    supervisor = Supervisor(agent)
    try:
        await until(lambda: online(hub, INSTALLED), timeout=30, what="the installed agent online")
        seen = len(hub.status)
        server.desire(AGENT, "cityops-agent-3", rollout_id="ro-3")
        failed = await until(lambda: next((r for r in server.reports if r.state == "failed"), None), timeout=60,
                             what="the release reported failed")
        assert failed.release_id == "cityops-agent-3" and failed.rollout_id == "ro-3"
        assert f"version {BAD} (release cityops-agent-3) did not start" in failed.reason
        assert supervisor.failures == [exits, exits], "tried twice, then the installed version"
        assert main.decode().split('"')[1] in agent.log()
        record = json.loads((releases / "software.json").read_text())
        assert record["state"] == "failed" and record["attempts"] == 2
        # the installed version runs and keeps publishing
        await until(lambda: online(hub, INSTALLED, seen), timeout=10, what="the installed version online")
        assert not online(hub, BAD)
        telemetry = len(hub.telemetry)
        await until(lambda: len(hub.telemetry) > telemetry + 1, timeout=10, what="telemetry after the fall-back")
        # the hub's wish (retained) is not tried again: the failure is reported again instead
        reports = len(server.reports)
        server.desire(AGENT, "cityops-agent-3", rollout_id="ro-3")
        await until(lambda: len(server.reports) > reports, timeout=10, what="a report on the repeated wish")
        assert server.reports[-1].state == "failed" and agent.running() and len(supervisor.failures) == 2
        supervisor.stop()
        assert agent.terminate() == 0
    finally:
        supervisor.stop()
        agent.ensure_stopped()
        server.close()
        hub.close()
        await asyncio.sleep(0)
