"""The writer survives what it is fed: a poison message is dead-lettered and the valid one
behind it is stored and acknowledged; a failure of the writer's own loop restarts it in
place, keeps the queue and shows in the hub's health (hub/writer.py). Real SQLite store,
real ingest engine; only the MQTT publish of the acks is a list."""

from __future__ import annotations

import json
import threading

import pytest
from hubtest import event, make_setup, wait_for

from hub.engine.core import CaseEngine
from hub.engine.intake import Ingestor
from hub.ingest.decode import EventsItem
from hub.store.files import SnapshotFiles
from hub.writer import Writer
from protocol.codec import decode_ack, encode_events
from protocol.topics import Channel, agent_topic

TOPIC = agent_topic("agent-1", Channel.EVENTS)


class Acks:
    """Stands in for the MQTT link: records the acks the writer publishes."""

    def __init__(self) -> None:
        self.sent: list = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, qos: int) -> bool:
        with self.lock:
            self.sent.append(decode_ack(payload))
        return True

    def covers(self, agent: str, seq: int) -> bool:
        with self.lock:
            return any(a.agent_id == agent and a.covers(seq) for a in self.sent)

    def rejected(self, agent: str) -> list[int]:
        with self.lock:
            return [r.seq for a in self.sent if a.agent_id == agent for r in a.rejected]


@pytest.fixture
def writer(tmp_path, clock, repo):
    setup = make_setup(tmp_path)
    ingestor = Ingestor(CaseEngine(setup, clock), SnapshotFiles(tmp_path / "snaps"))
    acks = Acks()
    w = Writer(repo, ingestor, acks, batch_wait_s=0)
    w.acks = acks
    w.start()
    yield w
    w.stop(5)


def stored_seqs(repo, agent="agent-1") -> list[int]:
    return [r[0] for r in repo.conn.execute(
        "SELECT seq FROM messages WHERE agent_id = ? ORDER BY seq", (agent,))]


def poison(seq_text: str) -> bytes:
    """A valid event whose seq is replaced by ``seq_text`` (any JSON number)."""
    body = json.loads(encode_events([event(seq=7, event_id="ev-poison")]))
    return json.dumps(body).replace('"seq": 7', f'"seq": {seq_text}').encode()


@pytest.mark.parametrize("seq_text", [str(2**63), "1" + "0" * 400, "1e309", "9" * 4000])
def test_a_poison_seq_is_a_dead_letter_and_the_next_valid_event_is_stored_and_acked(
        writer, repo, seq_text):
    # seq = 2**63 made SQLite raise OverflowError, then the one-by-one fallback raised
    # again in note_agents_seen and the writer thread died: no more acks for anyone.
    writer.submit([(TOPIC, poison(seq_text)), (TOPIC, encode_events([event(seq=1)]))])
    wait_for(lambda: writer.acks.covers("agent-1", 1), what="the valid event's ack")
    assert stored_seqs(repo) == [1]
    dead = repo.list_dead_letters()
    assert [d.reason for d in dead] in (["invalid"], ["malformed"], ["too_large"])
    assert writer.alive() and writer.stats.writer_restarts == 0
    # A further event still flows: the writer lives on.
    writer.submit([(TOPIC, encode_events([event(seq=2, event_id="ev-2", kind="update")]))])
    wait_for(lambda: writer.acks.covers("agent-1", 2), what="the next ack")


def test_a_message_that_fails_in_the_store_costs_no_other_message(writer, repo, monkeypatch):
    """A failure on one message (here the engine raising for one lifecycle, standing for
    any bug) rolls back its batch; the others are stored one by one, it is dead-lettered."""
    placer = writer.ingestor.placer
    real = placer.apply

    def apply(repo_, rec, *args, **kwargs):
        if rec.event_id == "ev-bad":
            raise RecursionError("maximum recursion depth exceeded (injected)")
        return real(repo_, rec, *args, **kwargs)

    monkeypatch.setattr(placer, "apply", apply)
    batch = [(TOPIC, encode_events([event(seq=s, event_id=f"ev-{s}", source=f"cam-{s}")]))
             for s in (1, 2)]
    batch.insert(1, (TOPIC, encode_events([event(seq=3, event_id="ev-bad")])))
    writer.submit(batch)
    wait_for(lambda: writer.acks.covers("agent-1", 2), what="acks of the good events")
    assert stored_seqs(repo) == [1, 2]
    (dead,) = repo.list_dead_letters()
    assert dead.reason == "invalid" and "RecursionError" in dead.detail
    assert writer.stats.batch_failures == 1 and writer.alive()


def test_a_dead_letter_that_cannot_be_written_is_counted_not_raised(writer, repo, monkeypatch):
    real = repo.add_dead_letter
    calls = []

    def add_dead_letter(fingerprint, topic, agent_id, reason, detail, payload, *rest):
        calls.append(reason)
        if payload:  # the full refusal fails; the minimal one (no payload) goes in
            raise ValueError("the store does not like this payload (injected)")
        return real(fingerprint, topic, agent_id, reason, detail, payload, *rest)

    monkeypatch.setattr(repo, "add_dead_letter", add_dead_letter)
    writer.submit([(TOPIC, b"\x00\xff{garbage"), (TOPIC, encode_events([event(seq=1)]))])
    wait_for(lambda: writer.acks.covers("agent-1", 1), what="the valid event's ack")
    (dead,) = repo.list_dead_letters()
    assert dead.reason == "malformed" and "could not be stored" in dead.detail and dead.payload == ""
    assert writer.stats.dead_letter_failures == 1 and writer.stats.refused == 1
    assert writer.alive()


def test_the_writer_loop_restarts_after_an_unexpected_failure_and_keeps_its_queue(
        writer, repo, monkeypatch):
    """A bug that escapes the writer's own fallback (here: dropping its caches fails once)
    used to end the hub-writer thread; now the loop restarts in place, the message it held
    is stored, and health says it happened."""
    ingestor = writer.ingestor
    real_forget, real_seen = ingestor.forget, repo.note_agents_seen
    failures = {"forget": 1, "seen": 1}

    def forget():
        if failures["forget"]:
            failures["forget"] -= 1
            raise RuntimeError("cache drop failed (injected)")
        real_forget()

    def note_agents_seen(*args):
        if failures["seen"]:
            failures["seen"] -= 1
            raise RuntimeError("agents table hiccup (injected)")
        return real_seen(*args)

    monkeypatch.setattr(ingestor, "forget", forget)
    monkeypatch.setattr(repo, "note_agents_seen", note_agents_seen)
    writer.submit([(TOPIC, encode_events([event(seq=1)]))])
    wait_for(lambda: writer.acks.covers("agent-1", 1), what="the held message, after the restart")
    writer.submit([(TOPIC, encode_events([event(seq=2, event_id="ev-2", kind="update")]))])
    wait_for(lambda: writer.acks.covers("agent-1", 2), what="the next message")
    assert stored_seqs(repo) == [1, 2] and not repo.list_dead_letters()
    health = writer.health()
    assert health["alive"] and health["restarts"] == 1
    assert "cache drop failed" in health["last_failure"]
    assert writer.stats.writer_restarts == 1


def test_a_message_the_loop_keeps_failing_on_is_dead_lettered_and_the_rest_go_on(
        writer, repo, monkeypatch):
    ingestor = writer.ingestor
    real_apply, real_forget = ingestor.apply, ingestor.forget
    state = {"armed": True}

    def apply(repo_, items):
        if any(isinstance(i, EventsItem) and i.records[0].event_id == "ev-evil" for i in items):
            raise RuntimeError("engine bug on this message (injected)")
        return real_apply(repo_, items)

    def forget():
        real_forget()
        if state["armed"]:
            raise RuntimeError("and the fallback fails too (injected)")

    monkeypatch.setattr(ingestor, "apply", apply)
    monkeypatch.setattr(ingestor, "forget", forget)
    writer.submit([(TOPIC, encode_events([event(seq=1, event_id="ev-evil")])),
                   (TOPIC, encode_events([event(seq=2, event_id="ev-2", source="cam-2")]))])
    wait_for(lambda: writer.acks.covers("agent-1", 2), what="the good message's ack")
    state["armed"] = False
    assert stored_seqs(repo) == [2]
    (dead,) = repo.list_dead_letters()
    assert "writer failed on this message" in dead.detail and "ev-evil" in dead.payload
    assert writer.alive() and writer.stats.writer_restarts >= 2
