"""kill -9 of the hub in the middle of ingest loses nothing it acknowledged: an agent that
resends what was not acked (as its outbox does) ends with every event stored once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from hubtest import TestAgent, make_config, sensor_event, wait_for


def start_serve(path, broker):
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "CITYOPS_HUB_BROKER_PASSWORD": broker.settings.hub_password}
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    line = proc.stdout.readline()
    assert line.startswith("cityops-hub: serving"), line
    return proc


def test_kill_9_mid_ingest_loses_nothing_acknowledged(tmp_path, broker):
    cfg = make_config(tmp_path)
    path = tmp_path / "hub.yaml"
    path.write_text(
        f"grids: {cfg.grids}\nrouting: {cfg.routing}\ndatabase: {cfg.database}\n"
        f"snapshots_dir: {tmp_path / 'snaps'}\nweb: {{port: 0}}\n"
        f"broker: {{managed: false, host: {broker.host}, port: {broker.port}}}\n"
        "screening: {rules: {elderly_care: {merge_scope: source}}}\n")
    agent = TestAgent(broker)
    events = [sensor_event(seq=s, event_id=f"wm-{s // 5}", kind="new" if s % 5 == 0 else "update",
                           source=f"m{s // 5}") for s in range(1, 601)]
    proc = start_serve(path, broker)
    try:
        sender = threading.Thread(target=lambda: [agent.send(e) for e in events])
        sender.start()
        wait_for(lambda: agent.acks, what="first acks")
        os.killpg(proc.pid, signal.SIGKILL)  # the hub and its receiver process, mid-stream
        proc.wait(10)
        acked_before = {e.seq for e in events if agent.acked(e.seq)}
        sender.join(30)  # the rest is published while the hub is down
        assert 0 < len(acked_before) < len(events)
        proc = start_serve(path, broker)
        # The agent's outbox: resend whatever no ack covers yet, until all are covered.
        deadline = time.monotonic() + 60
        while not all(agent.acked(e.seq) for e in events):
            assert time.monotonic() < deadline, "not everything was acknowledged"
            for e in events:
                if not agent.acked(e.seq):
                    agent.send(e)
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        agent.close()
    db = sqlite3.connect(cfg.database)
    seqs = [r[0] for r in db.execute("SELECT seq FROM messages WHERE agent_id = 'agent-1'")]
    assert sorted(seqs) == list(range(1, 601))  # every event stored, none twice
    assert acked_before <= set(seqs)
    cases = db.execute("SELECT count(*), count(DISTINCT group_key) FROM cases").fetchone()
    assert cases[0] == cases[1] == len({e.source for e in events})  # one case per meter
