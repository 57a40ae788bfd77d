"""Event clips: what they cost the agent and the uplink (issue 21).

Rendered street scenes (the simulator's renderer, with a flame or a parked car coming and
going and mild sensor noise, sigma 3 grey levels, as a real camera has) are fed through
the agent's own clip code, ``edge_agent.camera.clips``, at the camera's analysed rate:

* **ring cost**: ``ClipRecorder.add`` per frame (downscale + YUV conversion), for 720p and
  for 640x360 input (an MJPEG camera at ``decode_scale: 2``); times 16 cameras at 2 fps it
  is the agent's steady share of a core;
* **encode cost**: ``encode_mp4`` per clip (one x264 thread, ``veryfast``), and whether it
  holds the GIL: a pure-Python loop's rate on the event loop's thread while clips encode
  beside it, against the same loop alone;
* **bandwidth**: the MP4's bytes and the chunk messages' bytes on the wire (headers
  included), per event; per camera-day at ``--events-per-day`` events (stated; default
  24: one an hour, a busy street camera; the busiest seed-district cameras report about
  that many problems a day).

Run it alone (``/tmp/coord/quiet``); ``--quick`` for a short check.

    python benchmarks/edge_clips.py [--clips 6] [--events-per-day 24] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.camera.clips import ClipRecorder, encode_mp4  # noqa: E402
from edge_agent.camera.config import ClipConfig  # noqa: E402
from protocol.clips import ClipChunkHeader, encode_clip_chunk, split_clip  # noqa: E402
from simulators.scenes import Clip, ClipEvent, SceneObject, SceneSpec  # noqa: E402
from simulators.scenes.clips import render_clip_frame  # noqa: E402
from simulators.scenes.spec import CameraPose, near_z  # noqa: E402

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def scenes(seed: int) -> Clip:
    """A street (or yard) with an object that comes and goes; the weather varies by seed."""
    cam = CameraPose(height_m=4.0 + seed % 3, horizon=0.35, focal=0.9)
    kind = ("flame", "vehicle", "garbage")[seed % 3]
    thing = SceneObject(kind, x=0.5 - seed % 2, z=near_z(cam) * 1.5, size=1.2, seed=seed)
    bench = SceneObject("bench", x=-3.0, z=near_z(cam) * 1.7, seed=seed + 1)
    spec = SceneSpec(seed=100 + seed, place=("road", "estate", "pavement")[seed % 3], camera=cam,
                     light=("day", "dusk", "overcast")[seed % 3], weather=("clear", "rain", "clear")[seed % 3],
                     objects=(bench, thing))
    return Clip(spec, (ClipEvent(1, kind, kind, 8.0, 26.0),), 32.0, 2.0, (1280, 720))


def frames_of(clip: Clip, fps: float, seconds: float, noise: np.random.Generator) -> list[np.ndarray]:
    out = []
    for i in range(int(seconds * fps)):
        img, _ = render_clip_frame(clip, i / fps)
        jitter = noise.normal(0, 3.0, img.shape).astype(np.int16)
        out.append(np.clip(img.astype(np.int16) + jitter, 0, 255).astype(np.uint8))
    return out


def ring_cost(frames: list[np.ndarray], size: tuple[int, int] | None, fps: float) -> float:
    """ms per frame of ClipRecorder.add (the steady cost: no recording running)."""
    import cv2

    imgs = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if size else f for f in frames]
    rec = ClipRecorder("cam", ClipConfig(), fps)
    times = []
    for rep in range(3):
        for i, img in enumerate(imgs):
            t = (rep * len(imgs) + i) / fps
            start = time.perf_counter()
            rec.add(t, img)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def chunk_bytes(data: bytes) -> tuple[int, int]:
    """(chunks, bytes on the wire) of a clip: each chunk message is its header line + bytes."""
    parts = split_clip(data)
    digest = hashlib.sha256(data).hexdigest()
    wire = 0
    for i, p in enumerate(parts):
        h = ClipChunkHeader(agent_id="camera-agent-01", event_id="01JEXAMPLEEVENTID0000000000", seq=10**6 + i,
                            index=i, count=len(parts), sha256=hashlib.sha256(p).hexdigest(),
                            clip_sha256=digest, clip_bytes=len(data), width=320, height=180, fps=2.0,
                            frames=61, duration_s=30.5, started_at=T0, event_offset_s=10.0)
        wire += len(encode_clip_chunk(h, p))
    return len(parts), wire


def python_rate(seconds: float, stop: threading.Event | None = None) -> float:
    """Iterations a second of a pure-Python loop (what the agent's event loop does)."""
    n = 0
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end and not (stop and stop.is_set()):
        for k in range(1000):
            x ^= k
        n += 1
    return n / seconds


def gil_check(jobs: list, seconds: float) -> dict[str, float]:
    """The event loop's Python rate alone, and while the encoder thread encodes clips."""
    alone = python_rate(seconds)
    busy = threading.Event()
    done = threading.Event()

    def encode_forever() -> None:
        busy.set()
        while not done.is_set():
            for job in jobs:
                encode_mp4(job)
                if done.is_set():
                    break

    t = threading.Thread(target=encode_forever, daemon=True)
    t.start()
    busy.wait()
    during = python_rate(seconds)
    done.set()
    t.join()
    return {"python_rate_alone": round(alone), "python_rate_while_encoding": round(during),
            "ratio": round(during / alone, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6, help="scenes to clip (default 6)")
    ap.add_argument("--events-per-day", type=float, default=24.0, help="events a camera reports a day (default 24)")
    ap.add_argument("--cameras", type=int, default=16, help="cameras on one agent (default 16)")
    ap.add_argument("--quick", action="store_true", help="two scenes, short GIL check")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    n = 2 if args.quick else args.clips
    cfg = ClipConfig()
    fps = cfg.rate(2.0)
    noise = np.random.default_rng(0)
    encode_ms, mp4_bytes, wire_bytes, chunks, durations, jobs = [], [], [], [], [], []
    ring_720 = ring_360 = 0.0
    for seed in range(n):
        clip = scenes(seed)
        frames = frames_of(clip, fps, cfg.pre_s + cfg.post_s + 1, noise)
        if seed == 0:
            ring_720 = ring_cost(frames, None, fps)
            ring_360 = ring_cost(frames, (640, 360), fps)
        rec = ClipRecorder("cam", cfg, 2.0)
        done = []
        for i, img in enumerate(frames):
            t = i / fps
            done += rec.add(t, img)
            if i == int(cfg.pre_s * fps):
                rec.trigger(f"ev-{seed}", t)
        (recording,) = done
        job = rec.job(recording, T0)
        jobs.append(job)
        encode_mp4(job)  # warm: FFmpeg's first open loads its libraries
        result = encode_mp4(job)
        k, wire = chunk_bytes(result.data)
        encode_ms.append(result.encode_ms)
        mp4_bytes.append(len(result.data))
        wire_bytes.append(wire)
        chunks.append(k)
        durations.append(result.duration_s)
    gil = gil_check(jobs[:2], 1.0 if args.quick else 4.0)
    per_event = statistics.mean(wire_bytes)
    frames_per_clip = round((cfg.pre_s + cfg.post_s) * fps) + 1
    figures = {
        "assumptions": {"camera_fps": 2.0, "clip": cfg.model_dump(), "clip_fps": fps,
                        "events_per_camera_day": args.events_per_day, "cameras": args.cameras,
                        "scenes": n, "noise_sigma": 3.0},
        "clip_seconds": round(statistics.mean(durations), 2),
        "frames_per_clip": frames_per_clip,
        "mp4_bytes": {"mean": round(statistics.mean(mp4_bytes)), "min": min(mp4_bytes), "max": max(mp4_bytes)},
        "bytes_per_event_on_wire": round(per_event),
        "chunks_per_event": round(statistics.mean(chunks), 2),
        "kbit_s_while_sending_30s": round(per_event * 8 / 1000 / 30, 1),
        "bytes_per_camera_day": round(per_event * args.events_per_day),
        "mb_per_camera_month": round(per_event * args.events_per_day * 30 / 1e6, 1),
        "encode_ms": {"mean": round(statistics.mean(encode_ms), 1), "max": round(max(encode_ms), 1),
                      "per_frame": round(statistics.mean(encode_ms) / frames_per_clip, 2)},
        "ring_ms_per_frame": {"720p": round(ring_720, 3), "640x360": round(ring_360, 3)},
        "agent_core_share": {
            "ring_720p_16cams_pct": round(ring_720 * 2.0 * args.cameras / 10, 2),
            "ring_360p_16cams_pct": round(ring_360 * 2.0 * args.cameras / 10, 2),
            "encoding_at_events_per_day_pct": round(
                statistics.mean(encode_ms) * args.events_per_day * args.cameras / 86400 / 10, 4),
            "burst_all_cameras_s": round(statistics.mean(encode_ms) * args.cameras / 1000, 2),
        },
        "memory_per_camera_bytes": cfg.memory_bytes(2.0),
        "gil": gil,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"clip: {figures['clip_seconds']} s, {frames_per_clip} frames of 320x180 at {fps:g} fps, crf {cfg.crf}")
    print(f"MP4 bytes per event: mean {figures['mp4_bytes']['mean']}, min {min(mp4_bytes)}, max {max(mp4_bytes)}"
          f" ({n} scenes)")
    print(f"on the wire per event: {round(per_event)} B in {figures['chunks_per_event']} chunk(s)"
          f" = {figures['kbit_s_while_sending_30s']} kbit/s averaged over 30 s")
    print(f"per camera-day at {args.events_per_day:g} events: {figures['bytes_per_camera_day'] / 1e6:.2f} MB"
          f" ({figures['mb_per_camera_month']} MB a month)")
    print(f"encode: mean {figures['encode_ms']['mean']} ms a clip ({figures['encode_ms']['per_frame']} ms a frame),"
          f" max {figures['encode_ms']['max']} ms")
    share = figures["agent_core_share"]
    print(f"ring: {ring_720:.3f} ms/frame at 720p, {ring_360:.3f} ms/frame at 640x360 -> "
          f"{share['ring_720p_16cams_pct']} % / {share['ring_360p_16cams_pct']} % of a core for "
          f"{args.cameras} cameras at 2 fps")
    print(f"encoding {args.events_per_day:g} events/camera-day x {args.cameras}: "
          f"{share['encoding_at_events_per_day_pct']} % of a core on average; all cameras at once: "
          f"{share['burst_all_cameras_s']} s of the encoder thread")
    print(f"memory per camera: {figures['memory_per_camera_bytes'] / 2**20:.1f} MiB at most")
    print(f"GIL: Python loop at {gil['ratio'] * 100:.0f} % of its rate alone while clips encode beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
