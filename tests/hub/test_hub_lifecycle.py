"""Hub-level flows: photo verification through the Verifier seam, retention, and
`cityops-hub serve` as a process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time

import aiohttp
from hubtest import TestAgent, await_for, event, jpeg, make_setup, sensor_event

from hub.app import Hub
from hub.cases.closure import Outcome, Verdict


class ScriptedVerifier:
    """A test double for the Verifier seam: answers what the test scripted, and records
    what it was asked. (The real ORB+RANSAC+SSIM verifier is not part of this branch.)"""

    name = "scripted"

    def __init__(self, *verdicts: Verdict):
        self.verdicts = list(verdicts)
        self.calls: list[tuple[bytes, bytes, tuple | None]] = []

    def verify(self, before, after, region):
        self.calls.append((before, after, region))
        return self.verdicts.pop(0)


async def test_handler_photo_is_verified_and_the_case_closes(tmp_path, clock):
    before, after = jpeg(1), jpeg(2)
    verifier = ScriptedVerifier(Verdict(Outcome.NOT_FIXED, 0.9, "still flooded", "scripted"),
                                Verdict(Outcome.FIXED, 0.95, "road clear", "scripted"))
    async with Hub(make_setup(tmp_path), clock=clock, verifier=verifier, run_scheduler=False) as hub:
        agent = await asyncio.to_thread(TestAgent, hub.broker)
        agent.send_snapshot("ev-1", 1, before)
        agent.send(event(snapshot=before))
        await await_for(lambda: agent.acked(1), what="ack")
        await await_for(lambda: hub.read(lambda r: r.has_snapshot(hashlib.sha256(before).hexdigest())),
                        what="before-photo stored")
        await hub.resolve(1, actor="crew-3", after_jpeg=after)
        await await_for(lambda: hub.read(lambda r: r.get_case(1).state == "dispatched"), what="sent back")
        assert verifier.calls[0][:2] == (before, after) and verifier.calls[0][2] == (0.1, 0.1, 0.4, 0.4)
        await hub.resolve(1, actor="crew-3", after_jpeg=jpeg(3))
        await await_for(lambda: hub.read(lambda r: r.get_case(1).state == "closed"), what="closed")
        case = await hub.read(lambda r: r.get_case(1))
        assert case.closed_by == "auto_photo"
        outcomes = [v["outcome"] for v in await hub.read(lambda r: r.verifications_for_case(1))]
        assert outcomes == ["not_fixed", "fixed"]
        agent.close()


async def _resolved_for_review(hub):
    """A photo case (its snapshot passes the protocol's JPEG markers but is no image)
    resolved with another such photo; returns the case once it waits for a person."""
    agent = await asyncio.to_thread(TestAgent, hub.broker)
    photo = jpeg(4)
    agent.send_snapshot("ev-1", 1, photo)
    agent.send(event(snapshot=photo))
    await await_for(lambda: agent.acked(1), what="ack")
    agent.close()
    await hub.resolve(1, actor="crew", after_jpeg=jpeg(5))
    return await await_for(lambda: hub.read(lambda r: (c := r.get_case(1)).review_reason and c),
                           what="review")


async def test_without_a_verifier_photos_go_to_an_operator(tmp_path, clock):
    """verification.kind: none — every after-photo waits for a person."""
    async with Hub(make_setup(tmp_path, verification={"kind": "none"}), clock=clock,
                   run_scheduler=False) as hub:
        case = await _resolved_for_review(hub)
        assert case.state == "resolved" and "no photo verifier is configured" in case.review_reason
        case = await hub.review(1, fixed=True, actor="op")
        assert (case.state, case.closed_by) == ("closed", "operator")


async def test_the_photo_verifier_is_the_default_and_refuses_undecodable_photos(hub):
    """Without a verification section the hub runs the photo verifier; photos it cannot
    even decode go to an operator with the reason."""
    assert hub.verifier.name == "photo"
    case = await _resolved_for_review(hub)
    assert case.state == "resolved" and "before-photo cannot be decoded" in case.review_reason


async def test_retention_removes_old_messages_but_keeps_cases(hub, clock):
    agent = await asyncio.to_thread(TestAgent, hub.broker)
    agent.send(sensor_event())
    await await_for(lambda: agent.acked(1), what="ack")
    assert (await hub.sweep())["messages"] == 0
    clock.advance(days=91)
    assert (await hub.sweep())["messages"] == 1
    counts = await hub.read(lambda r: r.counts())
    assert counts["messages_stored"] == 0 and counts["cases_total"] == 1 and counts["lifecycles"] == 1
    agent.close()


def test_serve_runs_as_a_process_and_stops_on_sigterm(tmp_path):
    from hubtest import write_hub_yaml

    path = write_hub_yaml(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("cityops-hub: serving http://127.0.0.1:"), line + proc.stderr.read()
        assert "photo verification: photo (ORB + RANSAC, SSIM, detector photo_detector_int8.tflite)" in line
        url = line.split()[2]

        async def health():
            async with aiohttp.ClientSession() as s, s.get(url + "healthz") as r:
                return r.status, await r.json()

        deadline = time.monotonic() + 10
        while True:
            status, body = asyncio.run(health())
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200 and body["ok"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_broker_write_config_for_systemd(tmp_path, capsys, monkeypatch):
    from hubtest import make_config

    from hub.cli import main

    cfg = make_config(tmp_path)
    path = tmp_path / "hub.yaml"
    path.write_text(f"grids: {cfg.grids}\n"
                    f"broker: {{data_dir: {tmp_path / 'mq'}, port: 1884, hub_port: 1885}}\n")
    assert main(["broker", "write-config", "--config", str(path)]) == 1
    assert "CITYOPS_HUB_BROKER_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("CITYOPS_HUB_BROKER_PASSWORD", "from-the-environment-123")
    assert main(["broker", "write-config", "--config", str(path)]) == 0
    conf = (tmp_path / "mq" / "mosquitto.conf").read_text()
    assert "listener 1884 127.0.0.1" in conf and "allow_anonymous false" in conf
    assert "listener 1885 127.0.0.1" in conf  # the hub's own listener
    assert (tmp_path / "mq" / "passwd.hub").read_text().startswith("hub:$7$")
    assert "hub:" not in (tmp_path / "mq" / "passwd").read_text()  # agents' listener
    assert "pattern write cityops/v1/agents/%u/events" in (tmp_path / "mq" / "acl").read_text()
