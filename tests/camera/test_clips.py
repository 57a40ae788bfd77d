"""Event clips on the agent (edge_agent/camera/clips.py): the ring buffer keeps the
seconds before an event and the recording the seconds after; a real encode (PyAV,
libx264) gives an MP4 that decodes to the expected frames and duration; the encoder's
bounded queue says when it cannot keep up; the clip goes into the outbox as chunk rows
after its event, off the live path, and back into the same bytes."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import threading
from datetime import UTC, datetime

import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.camera.clips import ClipEncoder, ClipRecorder, EncodedClip, encode_mp4
from edge_agent.camera.config import CameraConfig, ClipConfig
from edge_agent.emit import ClipDraft, EventDraft
from edge_agent.outbox import Outbox
from edge_agent.outbox.replay import build_messages
from protocol.clips import MAX_CLIP_CHUNK_BYTES, assemble_clip
from protocol.clock import FakeClock
from protocol.codec import decode_message
from protocol.messages import Ack, EventKind, Location
from protocol.topics import Channel, parse_topic

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@functools.cache
def _texture(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (21, 21), 0)


def scene(i: int, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """A textured street-like frame with a red block moving 12 px a frame."""
    w, h = size
    base = _texture(w, h).copy()
    x = (40 + 12 * i) % (w - 100)
    base[h // 3:h // 3 + 90, x:x + 90] = (0, 0, 230)
    return base


def feed(rec: ClipRecorder, seconds: float, fps: float, trigger_at: float | None = None,
         start: float = 0.0) -> list:
    done = []
    n = int(round(seconds * fps))
    for i in range(n):
        t = start + i / fps
        done += rec.add(t, scene(i))
        if trigger_at is not None and abs(t - trigger_at) < 1e-9:
            assert rec.trigger("ev-1", t)
    return done


def test_the_ring_keeps_the_seconds_before_and_the_recording_the_seconds_after():
    cfg = ClipConfig(pre_s=10, post_s=20)
    rec = ClipRecorder("cam-1", cfg, camera_fps=4.0)  # clip.fps unset: the camera's 4 fps
    done = feed(rec, 25, 4.0, trigger_at=15.0)
    assert done == []  # 10 s after the event: still recording
    assert rec.ring[0].t >= 25 - 0.25 - 10 - 1e-9 and len(rec.ring) <= 10 * 4 + 1  # only pre_s kept
    # Bounded: ring and recording share frames, within the config's stated memory.
    assert 0 < rec.memory_bytes() <= cfg.memory_bytes(4.0)
    # 80 frames (5.0 .. 24.75 s at 4 fps, once each), held as JPEG: a fraction of raw I420
    assert rec.memory_bytes() < 80 * 320 * 270 / 3
    done = feed(rec, 20, 4.0, start=25.0)
    (clip,) = done
    times = [f.t for f in clip.frames]
    assert times[0] == pytest.approx(5.0) and times[-1] == pytest.approx(35.0)  # [event-10, event+20]
    assert len(times) == 30 * 4 + 1
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert clip.frames[0].size == (320, 180) and clip.frames[0].yuv.shape == (270, 320)  # I420
    assert rec.recordings == [] and rec.memory_bytes() == sum(f.nbytes for f in rec.ring)


def test_frames_faster_than_the_clip_rate_are_not_kept_and_overlaps_are_counted():
    rec = ClipRecorder("cam-1", ClipConfig(pre_s=2, post_s=1, fps=2, max_recording=1), camera_fps=10)
    for i in range(30):  # 3 s at 10 fps
        rec.add(i / 10, scene(i, (640, 360)))
    assert len(rec.ring) == 5  # 2 s at 2 fps (+ the frame at the edge)
    assert rec.trigger("ev-1", 2.9)
    assert not rec.trigger("ev-2", 2.9)  # max_recording: 1
    assert rec.overlapping == 1


def test_a_real_encode_is_an_h264_mp4_of_the_expected_frames_and_duration():
    rec = ClipRecorder("cam-1", ClipConfig(pre_s=4, post_s=6), camera_fps=2.0)
    (done,) = feed(rec, 14, 2.0, trigger_at=5.0)
    clip = encode_mp4(rec.job(done, T0))
    assert clip.data[4:8] == b"ftyp" and clip.frames == 21
    assert clip.duration_s == pytest.approx(10.5) and clip.event_offset_s == pytest.approx(4.0)
    assert clip.started_at == datetime(2026, 6, 1, 7, 59, 56, tzinfo=UTC)
    with av.open(io.BytesIO(clip.data)) as f:
        stream = f.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (320, 180)
        decoded = list(f.decode(video=0))
        assert len(decoded) == 21
        assert float(decoded[-1].pts * decoded[-1].time_base) == pytest.approx(10.0, abs=0.01)
        assert f.duration / 1e6 == pytest.approx(10.5, abs=0.1)
        # The moving block is where it was: the video shows the frames it was given.
        img = decoded[10].to_ndarray(format="bgr24")
    red = np.argwhere((img[:, :, 2] > 150) & (img[:, :, 1] < 90))
    x_expected = (40 + 12 * 12) * 320 / 1280  # the clip starts at t = 1 s: frame 2 of the feed
    assert abs(red[:, 1].min() - x_expected) < 4


def test_opencv_decodes_the_clip_too(tmp_path):
    rec = ClipRecorder("cam-1", ClipConfig(pre_s=1, post_s=2), camera_fps=2.0)
    (done,) = feed(rec, 5, 2.0, trigger_at=1.0)
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode_mp4(rec.job(done, T0)).data)
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == len(done.frames) == 7


def test_a_full_encoder_queue_refuses_the_clip_and_says_so_in_telemetry():
    started, release = threading.Event(), threading.Event()

    def slow(job):
        started.set()
        release.wait(10)
        return EncodedClip(job.camera_id, job.event_id, b"mp4", 2, 2, 1.0, 1, 1.0, T0, 0.0, 5.0)

    rec = ClipRecorder("cam-1", ClipConfig(pre_s=1, post_s=1), camera_fps=2.0)
    (done,) = feed(rec, 3, 2.0, trigger_at=0.5)
    encoder = ClipEncoder(queue_size=1, encode=slow)
    try:
        first = encoder.submit(rec.job(done, T0))
        assert started.wait(10)  # the thread holds the first job
        second = encoder.submit(rec.job(done, T0))  # queued
        third = encoder.submit(rec.job(done, T0))  # no room: refused, not waited for
        assert first is not None and second is not None and third is None
        tele = encoder.telemetry("cam-1", rec, recorded=0, failed=0)
        assert tele.busy == 1
        release.set()
        assert first.result(10).data == b"mp4" and second.result(10).data == b"mp4"
    finally:
        release.set()
        encoder.stop(10)
    assert encoder.telemetry("cam-1", rec, 2, 0).encode_ms == 5.0


def test_clip_settings_are_validated_with_the_fix_named():
    base = {"id": "cam-1", "url": "rtsp://cam/1", "fps": 2}
    with pytest.raises(ValidationError, match=r"clip.fps 4 is above the camera's fps 2"):
        CameraConfig.model_validate({**base, "clip": {"fps": 4}})
    with pytest.raises(ValidationError, match=r"MiB on this camera .* lower clip.pre_s"):
        CameraConfig.model_validate({**base, "fps": 10, "clip": {"pre_s": 60, "post_s": 120, "width": 1280}})
    with pytest.raises(ValidationError, match="post_s"):
        CameraConfig.model_validate({**base, "clip": {"post_s": 0}})
    with pytest.raises(ValidationError, match="extra"):
        CameraConfig.model_validate({**base, "clip": {"pre": 5}})
    cam = CameraConfig.model_validate(base)
    assert (cam.clip.pre_s, cam.clip.post_s, cam.clip.rate(cam.fps)) == (10, 20, 2)
    assert cam.clip.memory_bytes(cam.fps) == 62 * 320 * 180 * 3 // 2  # 5.1 MiB, as documented


def draft(event_id: str = "ev-1") -> EventDraft:
    return EventDraft(event_id=event_id, kind=EventKind.NEW, category="community_safety",
                      subcategory="community_safety.fire", source="cam-1", observed_at=T0,
                      location=Location(lat=31.2, lon=121.4))


def test_a_clip_goes_to_the_outbox_as_chunks_after_its_event_and_off_the_live_path(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", "agent-1", clock=FakeClock(T0))
    box.start_delivery()
    event_seq = box.emit(draft())
    data = np.random.default_rng(3).integers(0, 256, 2 * MAX_CLIP_CHUNK_BYTES + 1000, dtype=np.uint8).tobytes()
    seqs = box.add_clip(ClipDraft("ev-1", data, 320, 180, 2.0, 61, 30.5, T0, 10.0))
    assert seqs == [event_seq + 1, event_seq + 2, event_seq + 3]
    assert [r.seq for r in box.take_live()] == [event_seq]  # the event alone goes live
    rows = box.take_backlog(10, 10 * MAX_CLIP_CHUNK_BYTES)
    assert [r.kind for r in rows] == ["clip"] * 3
    messages = build_messages("agent-1", rows)
    assert len(messages) == 3
    chunks = {}
    for m in messages:
        parsed = parse_topic(m.topic)
        assert parsed.channel is Channel.CLIPS and parsed.event_id == "ev-1"
        header, part = decode_message(m.topic, m.payload).message
        assert header.seq == m.seqs[0] and header.count == 3 and header.duration_s == 30.5
        chunks[header.index] = part
    assert assemble_clip(chunks, 3, hashlib.sha256(data).hexdigest(), len(data)) == data
    box.apply_ack(Ack(agent_id="agent-1", upto=event_seq + 3, at=T0))
    assert box.depth == 0
    box.close()


def test_a_full_outbox_drops_clip_chunks_before_anything_else(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite", "agent-1", max_events=4, clock=FakeClock(T0))
    box.emit(draft("ev-1"))
    box.add_clip(ClipDraft("ev-1", b"\x00" * (MAX_CLIP_CHUNK_BYTES + 5), 320, 180, 2.0, 3, 1.5))
    box.emit(draft("ev-2"))
    box.emit(draft("ev-3"))  # four rows were there: the oldest clip chunk makes room
    kinds = [r["kind"] for r in box.rows()]
    assert kinds == ["new", "clip", "new", "new"]
    assert box.counters()["dropped.clip"] == 1 and box.telemetry().dropped == 1
    box.close()


async def test_the_worker_records_encodes_and_ships_a_clip_without_waiting(tmp_path):
    """A camera event's clip reaches the sink after the event; the frame loop never waits."""
    from edge_agent.camera.worker import CameraWorker
    from edge_agent.emit import MemorySink
    from edge_agent.tracking import Lifecycle  # noqa: F401 - the worker's decisions

    cam = CameraConfig.model_validate({"id": "cam-1", "url": "rtsp://cam/1", "fps": 2,
                                       "clip": {"pre_s": 2, "post_s": 2}})
    clock = FakeClock(T0)
    worker = CameraWorker(cam, [], lambda image: None, {}, clock, lambda c: None)
    worker.encoder = ClipEncoder()
    sink = MemorySink()
    try:
        for i in range(4):
            worker._clip_step(type("F", (), {"t": i / 2, "image": scene(i)})(), [], sink)
        worker.clips.trigger("ev-9", 1.5)
        for i in range(4, 9):
            worker._clip_step(type("F", (), {"t": i / 2, "image": scene(i)})(), [], sink)
        assert worker.shipping, "the finished recording is being encoded"
        await asyncio.wait(set(worker.shipping), timeout=20)
    finally:
        worker.encoder.stop(10)
    (clip,) = sink.clips
    assert clip.event_id == "ev-9" and clip.frames == 8 and clip.event_offset_s == pytest.approx(1.5)
    assert worker.telemetry().clips.recorded == 1
