"""A receiver child hands decoded messages to the writer in pieces of bounded size, in
arrival order, each message exactly once (hub/ingest/process.py)."""

from __future__ import annotations

from hubtest import sensor_event

from hub.ingest.decode import EventsItem, RefusedItem
from hub.ingest.process import decoded_chunks
from protocol.codec import encode, encode_events
from protocol.topics import Channel, agent_topic

TOPIC = agent_topic("agent-1", Channel.EVENTS)


def replay(first_seq: int, n: int) -> bytes:
    return encode_events([sensor_event(seq=first_seq + i, event_id=f"wm-{first_seq + i}") for i in range(n)])


def test_a_backlog_of_replay_messages_is_handed_over_in_pieces_in_order():
    """Three replay messages of 150 events, a bad message and a single event, in pieces of
    about 200 events: the writer can start on the first piece while the rest is decoded."""
    batch = [(TOPIC, replay(1, 150)), (TOPIC, replay(151, 150)), (TOPIC, b"{not json"),
             (TOPIC, replay(301, 150)), (TOPIC, encode(sensor_event(seq=451, event_id="wm-451")))]
    chunks = list(decoded_chunks(batch, decode_all=True, events=200))
    assert [len(c) for c in chunks] == [2, 3]  # 300 events, then 150 + a refusal + 1
    items = [item for chunk in chunks for item in chunk]
    assert isinstance(items[2], RefusedItem)
    seqs = [r.seq for item in items if isinstance(item, EventsItem) for r in item.records]
    assert seqs == list(range(1, 452))


def test_with_decode_batches_only_replay_arrays_are_decoded():
    single = encode(sensor_event(seq=9, event_id="wm-9"))
    chunks = list(decoded_chunks([(TOPIC, single), (TOPIC, replay(1, 3))], decode_all=False, events=2))
    assert chunks[0][0] == (TOPIC, single)  # raw: the writer decodes it
    assert isinstance(chunks[0][1], EventsItem) and len(chunks) == 1  # 1 + 3 events: one piece


def test_decoded_messages_cross_the_pipe_unchanged():
    """Records travel as plain tuples (cheaper to pickle) and come back as the same
    EventsItem of EventRecords."""
    import pickle

    from hub.ingest.decode import EventRecord

    items = next(decoded_chunks([(TOPIC, replay(1, 5)), (TOPIC, b"{not json")]))
    back = pickle.loads(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == items
    assert type(back[0]) is EventsItem and all(type(r) is EventRecord for r in back[0].records)
    assert back[0].records[2].seq == 3 and isinstance(back[1], RefusedItem)
