"""Malformed messages for an events topic, made from a seed.

:func:`storm` interleaves ``n`` malformed messages with valid ones from the same agent
(single events, exact resends, a full 500-event batch), so a test can check both that
nothing valid is lost and that every malformed message is accounted for. Every kind
issue 17 names is here (:data:`KINDS`); :func:`kinds_made` says which a list covers.

A :class:`Probe` is one MQTT message: its payload, the kind, how many valid events it
carries (0 for a malformed one), whether it is over the broker's size limit (such a
message must go over MQTT 3.1.1: paho 2.x drops an MQTT 5 connection on the broker's
answer), and the seqs it would take if it were accepted. Malformed messages that carry
a seq use fresh seqs far above the valid ones, so a refused seq that moves the
sequence state shows up in the agent's next ack.
"""

from __future__ import annotations

import codecs
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol import limits

__all__ = ["KINDS", "Probe", "StormPlan", "kinds_made", "storm", "valid_event", "with_literal"]

#: Malformed kinds and how many of every 100 malformed messages are of each kind. The
#: heavy ones (deep nesting, 1 MB) are rarer so a 2,000-message storm stays fast.
KINDS: dict[str, float] = {
    "random_bytes": 8,
    "empty": 3,
    "invalid_utf8": 5,
    "control_chars": 6,
    "truncated_json": 6,
    "wrong_shape": 6,
    "missing_field": 6,
    "wrong_type": 7,
    "huge_number": 6,
    "nan_infinity": 5,
    "deep_nesting": 1,
    "megabyte": 0.25,
    "near_limit": 0.5,
    "wrong_schema": 5,
    "bad_id": 7,
    "spoofed_agent": 5,
    "duplicate_keys": 4,
    "odd_encoding": 6,
    "bad_timestamp": 6,
    "two_contents": 3,
    "big_batch": 1,
}

NEST = 100_000  # nesting depth of the deep-nesting kind
MEGABYTE = 1 << 20
REFUSED_SEQ_BASE = 5_000_000  # first seq malformed messages use (valid ones stay far below)
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
# (lat, lon) inside the example grids (hub/examples/grids.geojson)
WHERE = (31.205, 121.405)


@dataclass(frozen=True)
class Probe:
    kind: str  # a KINDS key, or "valid" / "resend"
    payload: bytes
    valid_events: int = 0  # >0: a valid message of this many events
    oversize: bool = False  # over the broker's message_size_limit
    seqs: tuple[int, ...] = ()  # the seqs the message names (valid ones: what it stores)

    @property
    def malformed(self) -> bool:
        return self.kind not in ("valid", "resend")


@dataclass
class StormPlan:
    agent_id: str
    probes: list[Probe] = field(default_factory=list)
    valid_seqs: list[int] = field(default_factory=list)  # every seq a valid probe carries

    @property
    def malformed(self) -> list[Probe]:
        return [p for p in self.probes if p.malformed]


def valid_event(agent_id: str, seq: int, event_id: str | None = None, *, kind: str = "new",
                source: str | None = None, at: datetime | None = None,
                confidence: float = 1.0, **attributes: Any) -> dict[str, Any]:
    """A valid protocol v1 event (a water meter with no use: one case per source)."""
    when = (at or T0 + timedelta(seconds=seq)).astimezone(UTC)
    return {
        "schema": "cityops.event/1", "event_id": event_id or f"{agent_id}-e{seq}",
        "agent_id": agent_id, "seq": seq, "kind": kind, "category": "elderly_care",
        "subcategory": "elderly_care.water_no_use", "source": source or f"{agent_id}-m{seq % 7}",
        "observed_at": when.isoformat().replace("+00:00", "Z"),
        "location": {"lat": WHERE[0], "lon": WHERE[1], "place": "Xinqiao No. 3"},
        "confidence": confidence,
        "evidence": {"reading": {"name": "volume", "value": 0.0, "unit": "m3"}},
        "attributes": dict(attributes),
    }


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def with_literal(event: dict[str, Any], key: str, literal: str, *, path: tuple[str, ...] = ()) -> bytes:
    """``event`` as JSON with ``key`` (under ``path``) set to raw JSON text ``literal``."""
    marker = "\u2063MARK\u2063"
    target = event
    for p in path:
        target = target[p]
    target[key] = marker
    return _dump(event).replace(_dump(marker), literal.encode())


class _Maker:
    """Makes the payload of each kind. ``ctx.fresh()`` hands out seqs above REFUSED_SEQ_BASE."""

    def __init__(self, rng: random.Random, agent_id: str, spoof_as: str) -> None:
        self.rng = rng
        self.agent = agent_id
        self.spoof_as = spoof_as
        self._next = REFUSED_SEQ_BASE
        self.sent_valid: list[tuple[int, dict[str, Any]]] = []  # for two_contents / resend

    def fresh(self) -> int:
        self._next += 1
        return self._next

    def base(self) -> tuple[int, dict[str, Any]]:
        seq = self.fresh()
        return seq, valid_event(self.agent, seq, f"{self.agent}-bad{seq}")

    # -- one function per kind: (payload, seqs named, oversize) --------------------------
    def random_bytes(self) -> tuple[bytes, tuple[int, ...], bool]:
        return self.rng.randbytes(self.rng.randint(1, 700)), (), False

    def empty(self):
        return self.rng.choice([b"", b" ", b"\n", b"\x00"]), (), False

    def invalid_utf8(self):
        seq, ev = self.base()
        text = _dump(ev)
        bad = self.rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"])
        cut = text.index(b'"place":"') + len(b'"place":"')
        return text[:cut] + bad + text[cut:], (seq,), False

    def control_chars(self):
        seq, ev = self.base()
        ch = chr(self.rng.choice([0, 1, 7, 8, 11, 12, 27, 31, 127]))
        where = self.rng.choice(["event_id", "source", "place", "raw"])
        if where == "raw":  # an unescaped control character inside a JSON string: not JSON
            text = _dump(ev)
            cut = text.index(b'"place":"') + len(b'"place":"')
            return text[:cut] + ch.encode() + text[cut:], (seq,), False
        if where == "place":
            ev["location"]["place"] = f"X{ch}\x0c\x01Y"
        else:
            ev[where] = f"id{ch}{seq}"
        return json.dumps(ev).encode(), (seq,), False

    def truncated_json(self):
        seq, ev = self.base()
        text = _dump(ev) if self.rng.random() < 0.7 else _dump([ev, valid_event(self.agent, self.fresh())])
        return text[: self.rng.randint(1, len(text) - 1)], (seq,), False

    def wrong_shape(self):
        seq, ev = self.base()
        shape = self.rng.choice([
            42, "an event", None, True, [], [1, 2, 3], [[ev]], {"event": ev}, [ev, 7],
            {"not": "an event", "seq": seq}, [None], {"schema": "cityops.event/1"},
        ])
        return _dump(shape), (seq,), False

    def missing_field(self):
        seq, ev = self.base()
        key = self.rng.choice(["event_id", "agent_id", "seq", "kind", "category", "subcategory",
                               "source", "observed_at", "location"])
        del ev[key]
        if self.rng.random() < 0.3 and "location" in ev:
            del ev["location"]["lat"]
        return _dump(ev), (seq,), False

    def wrong_type(self):
        seq, ev = self.base()
        key, value = self.rng.choice([
            ("seq", str(seq)), ("seq", True), ("seq", float(seq) + 0.5), ("seq", None), ("seq", [seq]),
            ("seq", -seq), ("seq", 0), ("confidence", "high"), ("confidence", 7),
            ("location", "Xinqiao"), ("location", [31.2, 121.4]), ("observed_at", [2026, 7, 1]),
            ("evidence", []), ("attributes", ["a", "b"]), ("kind", "started"), ("kind", 1),
            ("event_id", 12345), ("agent_id", None),
        ])
        ev[key] = value
        return _dump(ev), (seq,), False

    def huge_number(self):
        seq, ev = self.base()
        literal = self.rng.choice(["1e309", "-1e309", "1" + "0" * 400, "9" * 100_000, str(2**63),
                                   str(2**64 + 1), "-" + "9" * 30, "1E400"])
        key, path = self.rng.choice([("seq", ()), ("confidence", ()), ("lat", ("location",)),
                                     ("value", ("evidence", "reading")), ("n", ("attributes",))])
        body = with_literal(ev, key, literal, path=path)
        if len(body) > limits.MAX_EVENT_BYTES or self.rng.random() < 0.5:
            body = b"[" + body + b"]"  # as a batch: the receivers decode it themselves
        return body, (seq,), False

    def nan_infinity(self):
        seq, ev = self.base()
        literal = self.rng.choice(["NaN", "Infinity", "-Infinity", "nan", "inf"])
        key, path = self.rng.choice([("seq", ()), ("confidence", ()), ("lon", ("location",)),
                                     ("value", ("evidence", "reading")), ("x", ("attributes",))])
        return with_literal(ev, key, literal, path=path), (seq,), False

    def deep_nesting(self):
        seq, ev = self.base()
        form = self.rng.choice(["bare", "attribute", "object"])
        if form == "bare":
            return b"[" * NEST + b"]" * NEST, (), False
        if form == "object":  # {"a":{"a":...}} is 5 bytes a level: within the broker's limit
            depth = min(NEST, (limits.BROKER_MESSAGE_SIZE_LIMIT - 64) // 6)
            return b'[{"a":' + b'{"a":' * depth + b"1" + b"}" * (depth + 1) + b"]", (), False
        body = with_literal(ev, "deep", "[" * NEST + "]" * NEST, path=("attributes",))
        return b"[" + body + b"]", (seq,), False

    def megabyte(self):
        seq, ev = self.base()
        ev["attributes"] = {"pad": "x" * MEGABYTE}
        return b"[" + _dump(ev) + b"]", (seq,), True

    def near_limit(self):
        """Under the broker's limit, over the protocol's: the hub refuses it (too large)."""
        seq, ev = self.base()
        pad = limits.MAX_EVENTS_MESSAGE_BYTES + 1024 - len(_dump(ev))
        ev["attributes"] = {"pad": "y" * pad}
        body = b"[" + _dump(ev) + b"]"
        assert limits.MAX_EVENTS_MESSAGE_BYTES < len(body) < limits.BROKER_MESSAGE_SIZE_LIMIT
        return body, (seq,), False

    def wrong_schema(self):
        seq, ev = self.base()
        choice = self.rng.choice(["cityops.event/2", "cityops.event/0", "cityops.event/1 ", "CITYOPS.EVENT/1",
                                  "cityops.status/1", "", None, 1, "missing"])
        if choice == "missing":
            del ev["schema"]
        else:
            ev["schema"] = choice
        return _dump(ev), (seq,), False

    def bad_id(self):
        seq, ev = self.base()
        value = self.rng.choice([
            "a/b", "+", "#", "cityops/v1/agents/+/events", "x\x00y", "..", "../../etc/passwd", ".hidden",
            "'; DROP TABLE messages; --", "1 OR 1=1", "<script>alert(1)</script>", "<b>x</b>&amp;",
            "z" * 10_240, "", " ", "\u202eevil", "事件",
        ])
        ev[self.rng.choice(["event_id", "source", "agent_id"])] = value
        return _dump(ev), (seq,), False

    def spoofed_agent(self):
        seq, ev = self.base()
        ev["agent_id"] = self.spoof_as
        return _dump(ev), (seq,), False

    def duplicate_keys(self):
        seq, ev = self.base()
        text = _dump(ev)
        extra = self.rng.choice([
            f'"agent_id":"{self.spoof_as}"', f'"seq":{self.fresh()}', '"kind":"end"', '"schema":"cityops.event/9"',
            '"confidence":"x"',
        ])
        return text[:-1] + b"," + extra.encode() + b"}", (seq,), False

    def odd_encoding(self):
        seq, ev = self.base()
        ev["location"]["place"] = "新桥镇 3号"
        text = json.dumps(ev, ensure_ascii=False)
        enc = self.rng.choice(["bom", "utf-16", "utf-16-be", "utf-32", "gb18030", "gzip", "latin-1"])
        if enc == "bom":
            return codecs.BOM_UTF8 + text.encode(), (seq,), False
        if enc == "gzip":
            return gzip.compress(text.encode(), mtime=0), (seq,), False
        if enc == "latin-1":
            ev["location"]["place"] = "Café No. 3"
            return json.dumps(ev, ensure_ascii=False).encode("latin-1"), (seq,), False
        return text.encode(enc), (seq,), False

    def bad_timestamp(self):
        seq, ev = self.base()
        key = self.rng.choice(["observed_at", "started_at"])
        ev[key] = self.rng.choice([
            "yesterday", "", "2026-13-45T25:61:00Z", "2026-07-01T08:00:00", "2026-07-01",
            "99999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
            "2026-07-01T08:00:00+25:00", 1e20, -1, "1969-12-31T23:59:59Z", "2026-07-01T08:00:00\x00Z",
        ])
        return _dump(ev), (seq,), False

    def two_contents(self):
        """A seq and event id already sent, with other content: a conflict."""
        if not self.sent_valid:
            return self.bad_id()
        seq, ev = self.rng.choice(self.sent_valid)
        other = dict(ev, confidence=0.5, attributes={"changed": self.rng.randint(1, 10**6)})
        return _dump(other), (seq,), False

    def big_batch(self):
        form = self.rng.choice(["over_count", "one_bad", "empty_array", "over_bytes"])
        if form == "empty_array":
            return b"[]", (), False
        n = limits.MAX_EVENTS_PER_MESSAGE + 1 if form == "over_count" else limits.MAX_EVENTS_PER_MESSAGE
        seqs = [self.fresh() for _ in range(n)]
        events = [valid_event(self.agent, s, f"{self.agent}-bb{s}") for s in seqs]
        if form == "one_bad":
            events[self.rng.randrange(n)]["seq"] = "not a seq"
        if form == "over_bytes":
            events = events[:40]
            seqs = seqs[:40]
            for e in events:
                e["attributes"] = {f"k{i}": "w" * 199 for i in range(32)}
        body = _dump(events)
        return body, tuple(seqs), len(body) > limits.BROKER_MESSAGE_SIZE_LIMIT


def _weighted_kinds(rng: random.Random, n: int) -> list[str]:
    """``n`` kinds, each at least once, in proportion to KINDS, shuffled."""
    names = list(KINDS)
    out = list(names)
    total = sum(KINDS.values())
    for name in names:
        out += [name] * max(0, round((n - len(names)) * KINDS[name] / total))
    while len(out) < n:
        out.append(rng.choices(names, weights=list(KINDS.values()))[0])
    out = out[:n]
    rng.shuffle(out)
    return out


def storm(seed: int, agent_id: str, *, malformed: int = 2000, spoof_as: str = "normal-1",
          valid_every: int = 8, batch_at: float = 0.5, first_seq: int = 1) -> StormPlan:
    """``malformed`` malformed messages with a valid event after every ``valid_every`` of
    them, an exact resend of a valid one now and then, and one valid batch of 500 events
    half-way. Valid seqs run from ``first_seq`` without a gap."""
    rng = random.Random(seed)
    maker = _Maker(rng, agent_id, spoof_as)
    plan = StormPlan(agent_id)
    seq = first_seq
    kinds = _weighted_kinds(rng, malformed)
    batch_index = int(len(kinds) * batch_at)
    makers: dict[str, Callable[[], tuple[bytes, tuple[int, ...], bool]]] = {
        k: getattr(maker, k) for k in KINDS}
    for i, kind in enumerate(kinds):
        if i % valid_every == 0:
            ev = valid_event(agent_id, seq, source=f"{agent_id}-m{seq % 5}")
            plan.probes.append(Probe("valid", _dump(ev), 1, seqs=(seq,)))
            maker.sent_valid.append((seq, ev))
            plan.valid_seqs.append(seq)
            seq += 1
            if i % (valid_every * 10) == valid_every * 5:
                old_seq, old = rng.choice(maker.sent_valid)
                plan.probes.append(Probe("resend", _dump(old), 1, seqs=(old_seq,)))
        if i == batch_index:
            batch = [valid_event(agent_id, s, f"{agent_id}-vb{s}") for s in range(seq, seq + limits.MAX_EVENTS_PER_MESSAGE)]
            plan.probes.append(Probe("valid", _dump(batch), len(batch), seqs=tuple(range(seq, seq + len(batch)))))
            plan.valid_seqs.extend(range(seq, seq + len(batch)))
            seq += len(batch)
        payload, seqs, oversize = makers[kind]()
        plan.probes.append(Probe(kind, payload, 0, oversize, seqs))
    ev = valid_event(agent_id, seq, source=f"{agent_id}-m{seq % 5}")
    plan.probes.append(Probe("valid", _dump(ev), 1, seqs=(seq,)))
    plan.valid_seqs.append(seq)
    return plan


def kinds_made(probes: list[Probe]) -> set[str]:
    return {p.kind for p in probes if p.malformed}
