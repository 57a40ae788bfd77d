"""The writer settles an ingest batch's elderly-care messages together: the same alarms,
audit trails, notifications and deliveries as when each message is a batch of its own,
and a batch of many alarms reads and writes the care table in a bounded number of
statements (in-memory store, fake clock, the real outbox; no broker)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from caretest import AGENT, METER, care_setup
from hubtest import G01, T0, event

from hub.engine.core import CaseEngine
from hub.engine.intake import Ingestor
from hub.ingest.decode import classify
from hub.store.files import SnapshotFiles
from hub.store.sqlite import SqliteRepository
from protocol.codec import encode, encode_events
from protocol.messages import Status
from protocol.topics import Channel, agent_topic

OTHER = "wm-care-102"  # on the same agent, not in the care registry


def care(seq: int, kind: str, event_id: str, source: str = METER, **attrs):
    return event(AGENT, seq, event_id, kind, "elderly_care.water_no_use",
                 T0 + timedelta(seconds=seq), G01, source, 1.0, bbox=None, reading=40.0, **attrs)


def online(seconds: int) -> tuple[str, bytes]:
    status = Status(agent_id=AGENT, state="online", boot_id="b1",
                    at=T0 + timedelta(seconds=seconds), version="1")
    return agent_topic(AGENT, Channel.STATUS), encode(status)


def as_message(ev) -> tuple[str, bytes]:
    return agent_topic(AGENT, Channel.EVENTS), encode_events([ev])


# Before the operator acts: alarm-1 reaches tier 2 (told twice: a redelivery); alarm-2 of
# a resident the registry lacks ends, and that meter's next alarm joins its case (the care
# category waits for an operator: the screen holds the case open for one).
PHASE_1 = [as_message(care(1, "new", "alarm-1", tier=1, notify="family")),
           as_message(care(2, "update", "alarm-1")),
           as_message(care(3, "new", "alarm-2", OTHER)),
           as_message(care(4, "update", "alarm-1", tier=2, notify="grid_worker")),
           as_message(care(5, "update", "alarm-1", tier=2, notify="grid_worker")),
           as_message(care(6, "end", "alarm-2", OTHER, reason="water_used")),
           as_message(care(7, "new", "alarm-3", OTHER, tier=1))]
# After the operator accepted alarm-1's case: tier 3 comes late, the agent confirms, the
# agent says it is online (the hub reads its acknowledged alarms), the resident is fine,
# and the meter's next alarm joins the case.
PHASE_2 = [as_message(care(8, "update", "alarm-1", tier=3, notify="community_doctor")),
           as_message(care(9, "update", "alarm-1", tier=3, acknowledged=True)),
           online(10),
           as_message(care(10, "end", "alarm-1", reason="water_used")),
           as_message(care(11, "new", "alarm-4", tier=1))]


class Hub:
    def __init__(self, tmp_path, clock, smtp, http):
        tmp_path.mkdir(exist_ok=True)
        self.clock = clock
        self.repo = SqliteRepository.memory()
        self.engine = CaseEngine(care_setup(tmp_path, smtp, http), clock)
        self.ingestor = Ingestor(self.engine, SnapshotFiles(tmp_path / "snaps"))

    def batch(self, messages):
        with self.repo.transaction():
            result = self.ingestor.apply(self.repo, [classify(t, p) for t, p in messages])
        self.ingestor.installed(result)

    def accept(self, case_id: int, actor: str) -> None:
        with self.repo.transaction():
            self.engine.accept_case(self.repo, case_id, actor=actor)

    def record(self) -> dict:
        """Everything a person sees of the care loop, without row ids."""
        cases = self.repo.list_cases(category="elderly_care")
        out: dict = {"marked": sorted(self.engine.care.take_dirty())}
        for c in sorted(cases, key=lambda c: c.id):
            out[c.id] = {
                "alarms": [{k: v for k, v in dataclasses.asdict(a).items() if k != "id"}
                           for a in self.repo.care_alarms_for_case(c.id)],
                # (A source's end and the next one's start in one batch leave the case
                # uncleared: the batch folds a case's activity, care or not.)
                "audit": [(a.at, a.action, a.actor, a.detail, a.data)
                          for a in self.repo.audit_for_case(c.id) if a.action != "source_cleared"],
                "notifications": [{k: v for k, v in n.items() if k != "id"}
                                  for n in self.repo.notifications_for_case(c.id)],
                "deliveries": sorted((d.kind, d.fields.get("tier"), d.channel, d.target,
                                      d.idempotency_key, d.state, d.subject, d.text)
                                     for d in self.repo.deliveries_for_case(c.id)),
            }
        return out


def test_one_batch_settles_its_care_messages_as_message_by_message(tmp_path, clock, smtp, http):
    alone = Hub(tmp_path / "alone", clock, smtp, http)
    together = Hub(tmp_path / "together", clock, smtp, http)
    for message in PHASE_1:
        alone.batch([message])
    together.batch(PHASE_1)
    for hub in (alone, together):
        hub.accept(1, "op-li")
    for message in PHASE_2:
        alone.batch([message])
    together.batch(PHASE_2)

    seen = together.record()
    assert seen == alone.record()
    first = seen[1]
    [alarm_1, alarm_4] = first["alarms"]
    assert (alarm_1["tier"], alarm_1["tiers_seen"], alarm_1["tier_notifications"],
            alarm_1["escalations_after_ack"], alarm_1["acknowledged_by"],
            alarm_1["end_reason"]) == (3, [1, 2, 3], 2, 1, "op-li", "water_used")
    assert alarm_1["confirmed_at"] is not None and alarm_1["ended_at"] is not None
    assert (alarm_4["event_id"], alarm_4["tier_notifications"]) == ("alarm-4", 1)
    # The meter's next alarm joins after the previous one's end, in the case's trail.
    assert [a[1] for a in first["audit"] if a[1].startswith("care_") or a[1] == "event_joined"] == [
        "care_notified", "care_notified", "care_acknowledged", "care_escalation_after_ack",
        "care_ack_confirmed", "care_resident_ok", "event_joined", "care_notified"]
    assert sorted((d[1], d[2]) for d in first["deliveries"] if d[0] == "care_tier") == [
        (1, "email"), (1, "email"), (2, "wecom")]  # tier 3 came after the acknowledgement
    assert [a["event_id"] for a in seen[2]["alarms"]] == ["alarm-2", "alarm-3"]
    assert [a[1] for a in seen[2]["audit"] if a[1].startswith("care_") or a[1] == "event_joined"] == [
        "care_notified", "care_resident_ok", "event_joined", "care_notified"]  # nobody registered to tell
    assert seen["marked"] == [AGENT]


class Spy:
    """The store's connection, noting each statement it is given (executemany: once)."""

    def __init__(self, conn, seen: list[str]):
        self._conn, self._seen = conn, seen

    def execute(self, sql, *args):
        self._seen.append(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._seen.append(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_batch_of_many_alarms_costs_the_care_table_a_few_statements(tmp_path, clock, smtp,
                                                                      http):
    hub = Hub(tmp_path, clock, smtp, http)
    statements: list[str] = []
    hub.repo.conn = Spy(hub.repo.conn, statements)
    alarms = 40
    messages = [as_message(care(2 * i + 1, "new", f"alarm-{i}", f"wm-{i}"))
                for i in range(alarms)]
    messages += [as_message(care(2 * i + 2, "end", f"alarm-{i}", f"wm-{i}", reason="water_used"))
                 for i in range(alarms)]
    hub.batch(messages)
    care_sql = [s for s in statements if "care_alarms" in s]
    # One read of the batch's alarms and one write of the new ones (an alarm each, its end
    # folded in): not three statements an alarm.
    assert len(care_sql) == 2, care_sql
    assert hub.repo.care_counts()["ended"] == alarms
    notes = [a.action for c in range(1, alarms + 1) for a in hub.repo.audit_for_case(c)
             if a.action == "care_resident_ok"]
    assert len(notes) == alarms
