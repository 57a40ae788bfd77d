"""Model releases on a running hub (hub/releases/), over the real broker and SQLite:
packages added, listed and refused with the reason; chunks served only for the release
desired for the asking agent, reassembling byte-exact; rollouts that promote their canary
to every agent in scope, and roll back to what each agent had before."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import zipfile
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from hubtest import await_for, make_setup

from hub.app import Hub
from hub.cli import main as hub_main
from hub.releases.package import ReleaseError, add_release, build_package
from protocol.codec import decode_desired_release, encode
from protocol.messages import Status
from protocol.releases import (
    MODEL_FILE,
    ChunkRequest,
    DesiredRelease,
    ReleaseReport,
    check_model_package,
    decode_release_chunk,
    sha256_hex,
)
from protocol.topics import Channel, agent_topic
from vision.models import REAL_MODEL

MODEL_DIR = REAL_MODEL.parent


class ReleaseAgent:
    """A fake agent made of a plain paho client with its own broker account: it is born
    (status), takes its desired release, asks for chunks and reports its state."""

    __test__ = False

    def __init__(self, broker, agent_id: str) -> None:
        password = f"pw-{agent_id}-0123456789"
        broker.auth.set_user(agent_id, password)
        broker.reload()
        self.agent_id = agent_id
        self.desired: list[DesiredRelease] = []
        self.chunks: dict[tuple[str, int], bytes] = {}
        self.changed = threading.Condition()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=agent_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(agent_id, password)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(
            [(agent_topic(agent_id, Channel.RELEASE), 1), (agent_topic(agent_id, Channel.BLOBS), 1)])
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        assert self._subscribed.wait(5), "fake agent could not subscribe"
        self.client = c
        self.status("online")

    def _on_message(self, client, userdata, msg) -> None:
        with self.changed:
            if msg.topic.endswith("/release"):
                self.desired.append(decode_desired_release(msg.payload, agent_id=self.agent_id))
            else:
                header, data = decode_release_chunk(msg.payload)
                self.chunks[(header.release_id, header.index)] = data
            self.changed.notify_all()

    def _send(self, channel: Channel, payload: bytes, retain: bool = False) -> None:
        self.client.publish(agent_topic(self.agent_id, channel), payload, qos=1, retain=retain).wait_for_publish(5)

    def status(self, state: str) -> None:
        self._send(Channel.STATUS, encode(Status(agent_id=self.agent_id, state=state, boot_id="b1",
                                                 at=datetime.now(UTC))), retain=True)

    def ask(self, release_id: str, first: int, count: int) -> None:
        self._send(Channel.FETCH, encode(ChunkRequest(agent_id=self.agent_id, release_id=release_id,
                                                      first=first, count=count, at=datetime.now(UTC))))

    def report(self, state: str, release_id: str | None, active: str | None = None, reason: str | None = None,
               rollout_id: str | None = None) -> None:
        self._send(Channel.RELEASE_STATE, encode(ReleaseReport(
            agent_id=self.agent_id, release_id=release_id, rollout_id=rollout_id, state=state, active=active,
            reason=reason, at=datetime.now(UTC))), retain=True)

    def wait(self, predicate, timeout: float = 10.0, what: str = "") -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"{self.agent_id}: timed out waiting for {what}"

    def latest(self) -> DesiredRelease | None:
        with self.changed:
            return self.desired[-1] if self.desired else None

    def download(self, ref) -> bytes:
        """Ask for the chunks a few at a time (as the agent does) and put them together."""
        for first in range(0, ref.chunks, 4):
            count = min(4, ref.chunks - first)
            self.ask(ref.release_id, first, count)
            self.wait(lambda f=first, n=count: all((ref.release_id, i) in self.chunks for i in range(f, f + n)),
                      what=f"chunks {first}..{first + count - 1}")
        return b"".join(self.chunks[(ref.release_id, i)] for i in range(ref.chunks))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
async def hub(tmp_path, clock):
    h = Hub(make_setup(tmp_path, releases={"dir": str(tmp_path / "releases"), "tick_s": 600,
                                           "offline_grace_s": 60}),
            clock=clock, run_scheduler=False)
    await h.start()
    yield h
    await h.stop()


async def agents(hub: Hub, *ids: str) -> list[ReleaseAgent]:
    out = [await asyncio.to_thread(ReleaseAgent, hub.broker, a) for a in ids]
    await await_for(lambda: hub.read(lambda repo: len(repo.agent_ids()) >= len(ids)), what="agents known")
    return out


async def add(hub: Hub, name: str = "detector", package: bytes | None = None):
    data = package if package is not None else build_package(MODEL_DIR)
    return await hub.write(lambda repo: add_release(repo, hub.config.releases.dir, data, name=name,
                                                    now=hub.clock.now(), by="test"))


# -- the release store ------------------------------------------------------------------------------

def test_release_add_and_list_from_the_cli_and_a_bad_package_refused(tmp_path, capsys):
    from hubtest import write_hub_yaml

    cfg = write_hub_yaml(tmp_path, f"releases: {{dir: {tmp_path / 'rel'}}}\n")
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"real_val_map": 0.51, "false_alarms_cut": 0.8}))
    assert hub_main(["release", "add", "--config", str(cfg), "--name", "detector", str(MODEL_DIR),
                     "--gate", str(gate), "--notes", "first"]) == 0
    assert capsys.readouterr().out.strip() == "detector-1"
    archive = tmp_path / "pkg.zip"
    archive.write_bytes(build_package(MODEL_DIR))
    assert hub_main(["release", "add", "--config", str(cfg), "--name", "detector", str(archive)]) == 0
    assert capsys.readouterr().out.strip() == "detector-2"
    stored = (tmp_path / "rel" / "detector-2.zip").read_bytes()
    assert set(check_model_package(stored)) == {MODEL_FILE, "labels.txt", "thresholds.json", "training.json"}
    assert hub_main(["release", "list", "--config", str(cfg), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["releases"]
    assert [r["release_id"] for r in listed] == ["detector-2", "detector-1"]
    first = listed[1]
    assert first["gate"] == {"real_val_map": 0.51, "false_alarms_cut": 0.8} and first["notes"] == "first"
    assert first["sha256"] == sha256_hex(build_package(MODEL_DIR)) and first["chunks"] == -(-first["bytes"] // first["chunk_bytes"])

    bad = tmp_path / "bad.zip"
    bad.write_bytes(zipped({MODEL_FILE: b"not a tflite model", "labels.txt": b"water\n"}))
    assert hub_main(["release", "add", "--config", str(cfg), "--name", "detector", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not a usable model package" in err and "not a TFLite model" in err
    no_model = tmp_path / "empty"
    no_model.mkdir()
    assert hub_main(["release", "add", "--config", str(cfg), "--name", "detector", str(no_model)]) == 1
    assert f"has no {MODEL_FILE}" in capsys.readouterr().err
    assert hub_main(["release", "list", "--config", str(cfg), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["releases"]) == 2  # nothing stored for the refusals


def test_a_package_with_unknown_files_is_refused_with_the_reason():
    with pytest.raises(ReleaseError, match="unexpected file"):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "x.zip"
            p.write_bytes(zipped({MODEL_FILE: MODEL_DIR.joinpath(MODEL_FILE).read_bytes(),
                                  "labels.txt": b"water\n", "run.sh": b"rm -rf /"}))
            build_package(p)


# -- serving ------------------------------------------------------------------------------------------

async def test_a_desired_release_downloads_byte_exact_and_others_are_refused(hub):
    a1, a2 = await agents(hub, "cam-a1", "cam-a2")
    try:
        release = await add(hub)
        other = await add(hub)
        rollout = await hub.releases.start_rollout(release.release_id, canary=["cam-a1"], agents="all",
                                                   canary_minutes=10, by="test")
        await hub.releases.tick()
        await asyncio.to_thread(a1.wait, lambda: a1.desired and a1.desired[-1].release is not None,
                                what="desired release")
        desired = a1.latest()
        assert desired.release.release_id == release.release_id and desired.rollout_id == rollout.rollout_id
        package = await asyncio.to_thread(a1.download, desired.release)
        assert package == (hub.config.releases.dir / release.file).read_bytes()
        assert sha256_hex(package) == desired.release.sha256
        assert hub.releases.stats["chunks_served"] == desired.release.chunks

        # a release not desired for the agent, and an agent with no desired release: refused
        refused = hub.releases.stats["requests_refused"]
        a1.ask(other.release_id, 0, 4)
        a2.ask(release.release_id, 0, 4)
        await await_for(lambda: hub.releases.stats["requests_refused"] == refused + 2, what="refusals")
        assert not any(k[0] == other.release_id for k in a1.chunks)
        assert not a2.chunks
    finally:
        for a in (a1, a2):
            a.close()


# -- rollouts -------------------------------------------------------------------------------------------

async def test_a_rollout_promotes_its_canary_to_every_agent_in_scope(hub, clock):
    c1, a2, a3 = await agents(hub, "cam-c1", "cam-a2", "cam-a3")
    try:
        release = await add(hub)
        rollout = await hub.releases.start_rollout(release.release_id, canary="cam-c1",
                                                   agents="cam-a2,cam-a3", canary_minutes=5, by="test")
        await hub.releases.tick()
        await asyncio.to_thread(c1.wait, lambda: bool(c1.desired), what="canary desired release")
        assert not a2.desired and not a3.desired  # the canary only
        c1.report("active", release.release_id, active=release.release_id, rollout_id=rollout.rollout_id)
        await await_for(lambda: hub.releases.stats["reports"] >= 1, what="report")
        await hub.releases.tick()
        assert hub.releases.decisions[rollout.rollout_id].action == "wait"  # the window has not elapsed
        clock.advance(minutes=6)
        await hub.releases.tick()  # promotes
        await hub.releases.tick()  # publishes to the rest
        for a in (a2, a3):
            await asyncio.to_thread(a.wait, lambda a=a: bool(a.desired), what="promoted release")
            assert a.latest().release.release_id == release.release_id
        for a in (a2, a3):
            a.report("active", release.release_id, active=release.release_id, rollout_id=rollout.rollout_id)
        await await_for(lambda: hub.releases.stats["reports"] >= 3, what="reports")
        await hub.releases.tick()
        row = await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))
        assert row.stage == "done"
        assert [h["stage"] for h in row.history] == ["canary", "all", "done"]
        assert "all 3 agents active" in row.history[-1]["reason"]
    finally:
        for a in (c1, a2, a3):
            a.close()


async def test_a_failed_canary_rolls_back_to_the_previous_release(hub, clock):
    c1, a2, a3 = await agents(hub, "cam-c1", "cam-a2", "cam-a3")
    try:
        good, bad = await add(hub), await add(hub)
        first = await hub.releases.start_rollout(good.release_id, canary="cam-c1", agents="all",
                                                 canary_minutes=1, by="test")
        await hub.releases.tick()
        c1.report("active", good.release_id, active=good.release_id)
        await await_for(lambda: hub.releases.stats["reports"] >= 1, what="report")
        clock.advance(minutes=2)
        await hub.releases.tick()
        await hub.releases.tick()
        for a in (a2, a3):
            a.report("active", good.release_id, active=good.release_id)
        await await_for(lambda: hub.releases.stats["reports"] >= 3, what="reports")
        await hub.releases.tick()
        assert (await hub.read(lambda repo: repo.rollout_get(first.rollout_id))).stage == "done"

        second = await hub.releases.start_rollout(bad.release_id, canary="cam-c1", agents="all",
                                                  canary_minutes=30, by="test")
        await hub.releases.tick()
        await asyncio.to_thread(c1.wait, lambda: c1.latest().release.release_id == bad.release_id,
                                what="the bad release")
        c1.report("failed", bad.release_id, active=good.release_id, reason="model does not load: bad flatbuffer")
        await await_for(lambda: hub.releases.stats["reports"] >= 4, what="failed report")
        await hub.releases.tick()  # rolls back
        await hub.releases.tick()  # publishes the previous release again
        row = await hub.read(lambda repo: repo.rollout_get(second.rollout_id))
        assert row.stage == "rolled_back"
        assert "canary agent cam-c1 failed: model does not load: bad flatbuffer" in row.reason
        await asyncio.to_thread(c1.wait, lambda: c1.latest().release.release_id == good.release_id,
                                what="the previous release again")
        assert c1.latest().rollout_id == first.rollout_id
        assert a2.latest().release.release_id == good.release_id  # never given the bad one
        assert all(d.release.release_id == good.release_id for d in a2.desired)

        # a manual rollback of the first rollout: back to the config's own model
        await hub.releases.roll_back(first.rollout_id, by="test")
        await hub.releases.tick()
        for a in (c1, a2, a3):
            await asyncio.to_thread(a.wait, lambda a=a: a.latest().release is None, what="release null")
        with pytest.raises(ReleaseError, match="already rolled back"):
            await hub.releases.roll_back(first.rollout_id, by="test")
        counts = hub.counts()["releases"]
        assert (counts["model_releases"], counts["rollouts"], counts["rolled_back"]) == (2, 2, 2)
        assert counts["reports"] >= 4 and counts["desired_published"] >= 6
    finally:
        for a in (c1, a2, a3):
            a.close()


async def test_a_canary_offline_past_the_grace_rolls_back(hub, clock):
    c1, a2 = await agents(hub, "cam-c1", "cam-a2")
    try:
        release = await add(hub)
        rollout = await hub.releases.start_rollout(release.release_id, canary="cam-c1", agents="all",
                                                   canary_minutes=30, by="test")
        await hub.releases.tick()
        c1.status("offline")
        await await_for(lambda: hub.read(lambda repo: repo.agent_last_status(["cam-c1"])["cam-c1"][0] == "offline"),
                        what="offline status")
        await hub.releases.tick()
        assert (await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))).stage == "canary"
        clock.advance(seconds=90)
        await hub.releases.tick()
        row = await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))
        assert row.stage == "rolled_back" and "cam-c1 offline" in row.reason
    finally:
        for a in (c1, a2):
            a.close()


async def test_rollouts_are_refused_with_the_reason(hub):
    (c1,) = await agents(hub, "cam-c1")
    try:
        release = await add(hub)
        with pytest.raises(ReleaseError, match="no release 'detector-9'"):
            await hub.releases.start_rollout("detector-9", canary="cam-c1", agents="all", canary_minutes=5, by="t")
        with pytest.raises(ReleaseError, match="unknown agent.*cam-zz"):
            await hub.releases.start_rollout(release.release_id, canary="cam-zz", agents="all",
                                             canary_minutes=5, by="t")
        with pytest.raises(ReleaseError, match="at least one canary"):
            await hub.releases.start_rollout(release.release_id, canary="", agents="all", canary_minutes=5, by="t")
        first = await hub.releases.start_rollout(release.release_id, canary="cam-c1", agents="all",
                                                 canary_minutes=5, by="t")
        with pytest.raises(ReleaseError, match=f"already in a rollout in progress: cam-c1 \\({first.rollout_id}\\)"):
            await hub.releases.start_rollout(release.release_id, canary="cam-c1", agents="all",
                                             canary_minutes=5, by="t")
    finally:
        c1.close()


async def test_canary_false_alarms_over_the_bar_roll_back(hub, clock):
    """Cases from the canary agent's events closed as false alarms: one in the window before
    the start, five since (over max(2 x 1, 1 + 3)): rolled back, the figures kept."""
    from hubtest import G01, event

    from protocol.codec import encode_events

    (c1,) = await agents(hub, "cam-c1")
    subs = ["flood.road_waterlogging", "roads.pothole", "garbage.overflow", "roads.obstruction",
            "garbage.illegal_dumping", "water.floating_debris"]

    async def false_alarm(i: int) -> None:
        c1._send(Channel.EVENTS, encode_events([event("cam-c1", seq=i + 1, event_id=f"ev-{i}", sub=subs[i],
                                                      at=clock.now(), where=G01, source=f"cam-{i}")]))
        case = await await_for(lambda: hub.read(lambda repo: next(
            (c for c in repo.list_cases() if c.origin_event == f"ev-{i}"), None)), what=f"case {i}")
        if case.state in ("new", "rejected"):  # held or screened out: accepted first
            await hub.accept(case.id, actor="op")
        await hub.close_case(case.id, actor="op", resolution="false_alarm")

    try:
        release = await add(hub)
        await false_alarm(0)
        clock.advance(minutes=1)
        rollout = await hub.releases.start_rollout(release.release_id, canary="cam-c1", agents="all",
                                                   canary_minutes=30, by="test")
        for i in range(1, 5):
            clock.advance(minutes=1)
            await false_alarm(i)
        await hub.releases.tick()
        row = await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))
        assert row.stage == "canary" and (row.false_alarms_before, row.false_alarms_after) == (1, 4)
        await false_alarm(5)
        await hub.releases.tick()
        row = await hub.read(lambda repo: repo.rollout_get(rollout.rollout_id))
        assert row.stage == "rolled_back" and (row.false_alarms_before, row.false_alarms_after) == (1, 5)
        assert "canary false alarms: 5 since the start, 1 in the window before (limit 4)" in row.reason
    finally:
        c1.close()


def test_the_token_bucket_bounds_the_rate():
    from hub.releases.serve import TokenBucket

    bucket = TokenBucket(rate=100, burst=10, now=0.0)
    waits = [bucket.take(0.0) for _ in range(12)]
    assert waits[:10] == [0.0] * 10  # the burst
    assert waits[10] == pytest.approx(0.01) and waits[11] == pytest.approx(0.02)
    assert bucket.take(1.0) == 0.0  # a second later it has refilled (to the burst, no more)
    assert sum(bucket.take(1.0) == 0.0 for _ in range(20)) == 9


async def test_a_rollout_started_and_rolled_back_from_the_cli_reaches_the_agents(tmp_path, clock, capsys):
    """The CLI only writes the store (a short second writer beside the running hub); the
    hub's release loop publishes what it wrote."""
    from hubtest import write_hub_yaml

    from hub.config import load_setup

    cfg = write_hub_yaml(tmp_path, f"releases: {{dir: {tmp_path / 'rel'}, tick_s: 600}}\n")
    hub = Hub(load_setup(cfg), clock=clock, run_scheduler=False)
    await hub.start()
    c1, a2 = await agents(hub, "cam-c1", "cam-a2")
    try:
        def cli(*argv: str) -> tuple[int, str, str]:
            code = hub_main([argv[0], argv[1], "--config", str(cfg), *argv[2:]])
            out = capsys.readouterr()
            return code, out.out, out.err

        assert (await asyncio.to_thread(cli, "release", "add", "--name", "detector", str(MODEL_DIR)))[0] == 0
        code, out, err = await asyncio.to_thread(cli, "release", "rollout", "detector-1", "--canary", "cam-c1",
                                                 "--canary-minutes", "15")
        assert code == 0 and out.strip() == "rollout-1" and "canary cam-c1 for 15 min, then all" in err
        code, _, err = await asyncio.to_thread(cli, "release", "rollout", "detector-1", "--canary", "cam-a2")
        assert code == 1 and "already in a rollout in progress: cam-a2 (rollout-1)" in err
        await hub.releases.tick()
        await asyncio.to_thread(c1.wait, lambda: bool(c1.desired), what="the canary's desired release")
        assert c1.latest().release.release_id == "detector-1" and not a2.desired
        code, _, err = await asyncio.to_thread(cli, "release", "rollback", "1", "--reason", "wrong model")
        assert code == 0 and "rollout-1 rolled back" in err
        await hub.releases.tick()
        await asyncio.to_thread(c1.wait, lambda: c1.latest().release is None, what="back to the config's model")
        code, out, _ = await asyncio.to_thread(cli, "release", "list")
        assert "rollout-1" in out and "rolled_back" in out and "manual, by cli: wrong model" in out
    finally:
        for a in (c1, a2):
            a.close()
        await hub.stop()


async def test_after_a_hub_restart_the_published_release_is_still_served(tmp_path, clock):
    """What the hub published before a restart is what it serves after (from the store)."""
    setup = dict(releases={"dir": str(tmp_path / "releases"), "tick_s": 600})
    hub = Hub(make_setup(tmp_path, **setup), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        (c1,) = await agents(hub, "cam-c1")
        release = await add(hub)
        await hub.releases.start_rollout(release.release_id, canary="cam-c1", agents="all", canary_minutes=5,
                                         by="test")
        await hub.releases.tick()
        await asyncio.to_thread(c1.wait, lambda: bool(c1.desired), what="desired release")
        c1.close()
    finally:
        await hub.stop()
    hub = Hub(make_setup(tmp_path, **setup), clock=clock, run_scheduler=False)
    await hub.start()
    try:
        assert hub.releases.desired == {"cam-c1": release.release_id}
        c1 = await asyncio.to_thread(ReleaseAgent, hub.broker, "cam-c1")
        package = await asyncio.to_thread(c1.download, release.ref())
        assert sha256_hex(package) == release.sha256
        c1.close()
    finally:
        await hub.stop()
