"""A private Mosquitto and a hub in a child process, for load runs (``cityops-sim fleet``,
``benchmarks/fleet.py``).

The hub runs as ``cityops-hub serve`` (a separate process, so its CPU and memory can be
measured apart from the load generator) on the example grids and routing, against the
broker started here (``broker.managed: false``; its password travels in the
environment). Everything lives in one temporary directory, every port is a free port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from hub.broker import BrokerSettings, MosquittoBroker

from .errors import SimulatorError

__all__ = ["PrivateHub", "process_tree_usage"]

EXAMPLES = Path(__file__).resolve().parents[1] / "hub" / "examples"


def _stat(pid: int) -> tuple[float, int, list[int]]:
    """(cpu seconds, rss bytes, child pids) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(parts[21]) * os.sysconf("SC_PAGE_SIZE")
    children: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return cpu, rss, children


def process_tree_usage(pid: int) -> dict[str, float]:
    """CPU seconds and RSS (MiB) of a process and all its descendants."""
    cpu = rss = 0.0
    stack, seen = [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            c, r, kids = _stat(p)
        except (OSError, IndexError, ValueError):
            continue
        cpu += c
        rss += r
        stack += kids
    return {"cpu_s": cpu, "rss_mib": rss / 2**20, "processes": len(seen)}


class PrivateHub:
    """``with PrivateHub() as ph:`` … ``ph.broker``, ``ph.web_url``, ``ph.hub_pid``."""

    def __init__(self, *, hub: bool = True, receivers: int = 1, work_dir: Path | None = None,
                 max_queued_messages: int = 200_000) -> None:
        self.with_hub = hub
        self.receivers = receivers
        self._own = work_dir is None
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="cityops-fleet-"))
        self.broker = MosquittoBroker(BrokerSettings(data_dir=self.work / "broker", persistence=False,
                                                     max_queued_messages=max_queued_messages))
        self.hub_proc: subprocess.Popen[str] | None = None
        self.web_url: str | None = None

    def start(self, timeout: float = 60.0) -> PrivateHub:
        try:
            self.broker.start()
            if self.with_hub:
                self._start_hub(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def hub_config(self) -> dict[str, Any]:
        return {
            "broker": {"managed": False, "host": self.broker.host, "port": self.broker.port,
                       "data_dir": str(self.work / "broker")},
            "database": str(self.work / "hub.sqlite"),
            "snapshots_dir": str(self.work / "snapshots"),
            "web": {"host": "127.0.0.1", "port": 0},
            "grids": str(EXAMPLES / "grids.geojson"),
            "routing": str(EXAMPLES / "routing.yaml"),
            "screening": {"rules": {"elderly_care": {"merge_scope": "source"}}},
            "ingest": {"receivers": self.receivers},
            "releases": {"dir": str(self.work / "releases"), "tick_s": 1},
        }

    def _start_hub(self, timeout: float) -> None:
        config = self.work / "hub.yaml"
        config.write_text(yaml.safe_dump(self.hub_config()))
        env = {**os.environ, "CITYOPS_HUB_BROKER_PASSWORD": self.broker.settings.hub_password}
        log = open(self.work / "hub.log", "w")  # noqa: SIM115 - the child writes it
        self.hub_proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())",
             "--log-level", "warning", "serve", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        assert self.hub_proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.hub_proc.stdout.readline()
            if "serving http" in line:
                self.web_url = line.split("serving ", 1)[1].split()[0]
                return
            if not line and self.hub_proc.poll() is not None:
                break
        tail = (self.work / "hub.log").read_text()[-2000:]
        raise SimulatorError(f"the hub did not start within {timeout:g} s; its log ends:\n{tail}")

    def operator_token(self, name: str = "bench") -> str:
        """A fresh operator API token (``cityops-hub token create``, a short second writer),
        for load generators that read the signed-in pages and API."""
        if self.hub_proc is None:
            raise SimulatorError("the hub is not running: no token to create")
        env = {**os.environ, "CITYOPS_HUB_BROKER_PASSWORD": self.broker.settings.hub_password}
        done = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())",
             "token", "create", "--config", str(self.work / "hub.yaml"), "--role", "operator",
             "--name", name], capture_output=True, text=True, env=env, timeout=60, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            raise SimulatorError(f"cityops-hub token create failed: {done.stderr.strip()[-500:]}")
        return done.stdout.strip().splitlines()[0]

    @property
    def hub_pid(self) -> int | None:
        return self.hub_proc.pid if self.hub_proc else None

    def usage(self) -> dict[str, dict[str, float]]:
        out = {}
        if self.broker.pid:
            out["broker"] = process_tree_usage(self.broker.pid)
        if self.hub_pid:
            out["hub"] = process_tree_usage(self.hub_pid)
        return out

    def stop(self) -> None:
        if self.hub_proc is not None:
            if self.hub_proc.poll() is None:
                self.hub_proc.terminate()
                try:
                    self.hub_proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.hub_proc.kill()
                    self.hub_proc.wait(10)
            if self.hub_proc.stdout:
                self.hub_proc.stdout.close()
            self.hub_proc = None
        self.broker.stop()
        if self._own:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> PrivateHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
