"""The hub owns its managed Mosquitto's whole lifetime (issue 17, points 1 and 6):
kill -9 of the hub takes its broker with it; a broker that survived anyway (its death
signal is cleared when it drops root for its ``user``) is stopped by the next start, which
comes back whole on the same port within seconds: an agent enrolled after the restart
connects; SIGTERM stops the hub and its broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from hubtest import make_config

from hub.broker import free_port, mqtt_probe
from protocol.provisioning import ENROLL_PATH, EnrollResponse

pytestmark = pytest.mark.asyncio


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _await(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


class Serve:
    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True)
        line = self.proc.stdout.readline()
        self.started_in = time.monotonic() - t0
        if not line.startswith("cityops-hub: serving"):
            self.proc.kill()
            raise AssertionError(line + self.proc.stderr.read())
        self.url = line.split()[2]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _broker_pid(data_dir: Path) -> int:
    return json.loads((data_dir / "mosquitto.pid").read_text())["pid"]


async def _enroll_and_connect(config: Path, url: str, agent_id: str) -> int | None:
    token = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "hub.cli", "enroll", "--config", str(config), "--agent-id", agent_id],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    async with aiohttp.ClientSession() as s, s.post(url.rstrip("/") + ENROLL_PATH,
                                                    json={"token": token}) as r:
        assert r.status == 200, await r.text()
        resp = EnrollResponse.model_validate(await r.json())
    return mqtt_probe(resp.mqtt.host, resp.mqtt.port, resp.username, resp.password)


async def test_kill_9_of_the_hub_leaves_no_broker_and_a_restart_comes_back_whole(tmp_path):
    cfg = make_config(tmp_path)
    data_dir, port = tmp_path / "broker", free_port()
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"grids: {cfg.grids}\nrouting: {cfg.routing}\ndatabase: {cfg.database}\n"
        f"snapshots_dir: {tmp_path / 'snaps'}\nbroker: {{data_dir: {data_dir}, port: {port}}}\n"
        "web: {port: 0}\nverification: {kind: none}\n")
    orphan = None
    hub = Serve(config)
    try:
        first = _broker_pid(data_dir)
        assert _alive(first)
        os.kill(hub.proc.pid, signal.SIGKILL)  # the hub alone, as `kill -9 PID` does
        hub.proc.wait(10)
        _await(lambda: not _alive(first), 5, "the killed hub's broker exits with it")

        # A broker that outlived its hub anyway: the same config, its own session.
        orphan = subprocess.Popen(["mosquitto", "-c", str(data_dir / "mosquitto.conf")],  # noqa: S603,S607
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        _await(lambda: mqtt_probe("127.0.0.1", port, "x", "y") is not None, 5, "orphan listening")

        hub = Serve(config)
        assert hub.started_in < 30, hub.started_in
        assert orphan.poll() is not None, "the orphan broker was left running"
        second = _broker_pid(data_dir)
        assert second != orphan.pid and _alive(second)
        # The new broker reads the current password file: an agent enrolled now connects.
        assert await _enroll_and_connect(config, hub.url, "after-restart") == 0

        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(30) == 0
        _await(lambda: not _alive(second), 5, "SIGTERM stops the broker too")
        assert not (data_dir / "mosquitto.pid").exists()
    finally:
        hub.close()
        if orphan is not None and orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
