"""Edge inference benchmark: the bundled detector and the camera pipeline on one core.

    ./dev bench edge_inference [--json PATH] [--quick] [--streams 16] [--seconds 60]

Measures, in one run (so ratios hold on a busy machine):

1. model latency, int8 vs float (same architecture and weights), one thread: invoke only
   and the whole ``Detector.detect`` (resize, quantize, invoke, decode); mean and p99;
2. the full per-frame pipeline at 720p (JPEG decode + motion gate + detect + track) as
   frames per second of one core's CPU time, with MJPEG decoded at full and half size;
3. one agent process pinned to one core reading N live MJPEG streams (720p, served by
   the camera simulator on the other core) at 2 fps each: frames analysed per second per
   stream, CPU use of its core, peak RSS;
4. accuracy on held-out rendered data: mAP@0.5 and event-level recall (``eval-model``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ROOT / "vision" / "models"


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core % (os.cpu_count() or 1)})


def stats(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"mean_ms": round(float(a.mean()), 3), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "n": len(ms)}


def frames_720p(count: int) -> list[np.ndarray]:
    from simulators.scenes import random_clip, render_clip_frame

    clip = random_clip(77, duration_s=count / 5, fps=5, size=(1280, 720), problems=2)
    return [render_clip_frame(clip, i / 5)[0] for i in range(count)]


def bench_model(frames: list[np.ndarray], runs: int) -> dict:
    from vision.labels import read_labels
    from vision.runtime import Detector

    labels = read_labels(MODELS / "labels.txt")
    out = {}
    for name in ("int8", "float"):
        if name == "float" and not (MODELS / "cityops_detector_float.tflite").is_file():
            continue  # a model shipped int8 only (vision/models/real)
        det = Detector(MODELS / f"cityops_detector_{name}.tflite", labels, threads=1)
        x = det._prepare(frames[0])
        inp = det._input["index"]
        for _ in range(20):
            det.interp.set_tensor(inp, x)
            det.interp.invoke()
        invoke, full = [], []
        for i in range(runs):
            t = time.perf_counter()
            det.interp.set_tensor(inp, x)
            det.interp.invoke()
            invoke.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            det.detect(frames[i % len(frames)])
            full.append((time.perf_counter() - t) * 1000)
        out[name] = {"invoke": stats(invoke), "detect_720p": stats(full),
                     "bytes": (MODELS / f"cityops_detector_{name}.tflite").stat().st_size}
    if "float" in out:
        out["int8_speedup"] = round(out["float"]["invoke"]["mean_ms"] / out["int8"]["invoke"]["mean_ms"], 2)
    return out


def bench_pipeline(frames: list[np.ndarray], seconds: float) -> dict:
    import cv2

    from edge_agent.camera.config import ClassSettings, MotionConfig, TrackingConfig
    from edge_agent.camera.motion import MotionGate
    from edge_agent.tracking import Tracker
    from vision.labels import bundled_class_map, read_labels
    from vision.runtime import Detector

    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for f in frames]
    det = Detector(MODELS / "cityops_detector_int8.tflite", read_labels(MODELS / "labels.txt"), threads=1)
    out = {}
    for scale, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2)):
        for gated in (False, True):
            gate = MotionGate(MotionConfig(enabled=gated))
            tracker = Tracker(TrackingConfig(), bundled_class_map(), class_settings=lambda _l: ClassSettings())
            n, detects = 0, 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - wall0 < seconds:
                img = cv2.imdecode(np.frombuffer(jpegs[n % len(jpegs)], np.uint8), flag)
                t = n / 2.0
                ratio = gate.measure(img)
                if gate.should_detect(ratio, t, tracking=tracker.active):
                    tracker.step(det.detect(img), t)
                    detects += 1
                else:
                    tracker.tick(t)
                n += 1
            cpu = time.process_time() - cpu0
            out[f"decode_1_{scale}{'_gated' if gated else ''}"] = {
                "frames": n, "detector_runs": detects, "fps_per_core": round(n / cpu, 1),
                "ms_per_frame": round(cpu * 1000 / n, 2)}
    return out


def serve_streams(port: int, streams: int, seconds: float) -> None:
    """(subprocess) The camera simulator with pre-rendered clips shared between streams."""
    from simulators.camera import CameraStream, serve
    from simulators.scenes import random_clip

    pin(1)
    clips = [random_clip(100 + k, duration_s=10, fps=5, size=(1280, 720), problems=1) for k in range(4)]
    cams = {}

    async def main() -> None:
        warm = [CameraStream(f"w{k}", c) for k, c in enumerate(clips)]
        for w in warm:
            for i in range(w.frames):
                await w.jpeg(i)
        for k in range(streams):
            cam = CameraStream(f"cam{k}", clips[k % 4])
            cam._cache = warm[k % 4]._cache
            cams[cam.id] = cam
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve(cams, "127.0.0.1", port, None, stop, ready))
        await ready.wait()
        print("READY", flush=True)
        await asyncio.sleep(seconds)
        stop.set()
        await task

    asyncio.run(main())


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def agent_streams(port: int, streams: int, seconds: float) -> None:
    """(subprocess) One agent process on one core reading the streams; prints JSON."""
    pin(0)
    import cv2

    cv2.setNumThreads(1)
    from edge_agent.camera.component import CameraComponent
    from edge_agent.camera.config import CameraSection
    from edge_agent.emit import MemorySink

    section = CameraSection.model_validate({
        "cameras": [{"id": f"cam{k}", "url": f"http://127.0.0.1:{port}/cameras/cam{k}.mjpg", "fps": 2} for k in range(streams)],
        "detector": {"threads": 1, "model": str(MODELS / "cityops_detector_int8.tflite"),
                     "labels": str(MODELS / "labels.txt")},
    })

    async def main() -> dict:
        comp = CameraComponent(section)
        sink, stop = MemorySink(), asyncio.Event()
        task = asyncio.create_task(comp.run(sink, stop))
        await asyncio.sleep(5)  # connect and settle
        rss_start = _rss_mb()
        f0 = {w.camera.id: w.frames for w in comp.workers}
        d0 = sum(w.detections for w in comp.workers)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        frames = {w.camera.id: w.frames - f0[w.camera.id] for w in comp.workers}
        detects = sum(w.detections for w in comp.workers) - d0
        tel = comp.telemetry()
        stop.set()
        await task
        rates = [n / wall for n in frames.values()]
        return {"streams": streams, "seconds": round(wall, 1), "fps_per_stream_min": round(min(rates), 2),
                "fps_per_stream_mean": round(float(np.mean(rates)), 2), "detector_runs_per_s": round(detects / wall, 1),
                "cpu_core_percent": round(100 * cpu / wall, 1),
                "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rss_at_start_mb": rss_start, "rss_at_end_mb": _rss_mb(),
                "cameras_up": sum(1 for c in tel["cameras"].values() if c["state"] == "up"),
                "events": len(sink.drafts)}

    print(json.dumps(asyncio.run(main())), flush=True)


def bench_streams(streams: int, seconds: float) -> dict:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    me = [sys.executable, __file__]
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    server = subprocess.Popen([*me, "--role", "serve", "--port", str(port), "--streams", str(streams),
                               "--seconds", str(seconds + 60)], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if "READY" not in line:
            raise RuntimeError("the camera simulator did not start")
        agent = subprocess.run([*me, "--role", "agent", "--port", str(port), "--streams", str(streams),
                                "--seconds", str(seconds), "--models", str(MODELS)],
                               capture_output=True, text=True, timeout=seconds + 120, env=env)
        if agent.returncode != 0:
            raise RuntimeError(agent.stderr[-2000:])
        return json.loads(agent.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)


def bench_accuracy(images: int, clips: int) -> dict:
    from training.evaluate import evaluate_boxes, evaluate_events
    from vision.labels import read_labels
    from vision.models import live_threshold
    from vision.runtime import Detector

    labels = read_labels(MODELS / "labels.txt")
    model = MODELS / "cityops_detector_int8.tflite"
    boxes = evaluate_boxes(Detector(model, labels, score_threshold=0.05), images)
    events = evaluate_events(Detector(model, labels, score_threshold=live_threshold(model)), clips)
    return {"boxes": boxes, "events": events}


def main(argv: list[str] | None = None) -> int:
    global MODELS  # --models replaces the bundled folder for every part of the run
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test of the benchmark)")
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the streams run")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--model-only", action="store_true",
                   help="only part 1, model latency (e.g. timing an untrained candidate's architecture)")
    p.add_argument("--models", type=Path, default=MODELS,
                   help="folder with cityops_detector_int8/float.tflite and labels.txt (default: the bundled "
                        "model): an older model's folder gives a baseline on the same machine")
    p.add_argument("--role", choices=["serve", "agent"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    MODELS = args.models.resolve()
    if args.role == "serve":
        serve_streams(args.port, args.streams, args.seconds)
        return 0
    if args.role == "agent":
        agent_streams(args.port, args.streams, args.seconds)
        return 0
    quick = args.quick
    pin(0)
    import cv2

    cv2.setNumThreads(1)
    frames = frames_720p(10 if quick else 40)
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "load_avg_at_start": [round(v, 2) for v in os.getloadavg()]}}
    results["model"] = bench_model(frames, 50 if quick else 500)
    if not args.model_only:
        results["pipeline_720p"] = bench_pipeline(frames, 2 if quick else 10)
        results["streams"] = bench_streams(args.streams, 10 if quick else args.seconds)
    if not (args.skip_accuracy or args.model_only):
        results["accuracy"] = bench_accuracy(60 if quick else 2000, 4 if quick else 60)
    results["machine"]["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]

    m = results["model"]
    print(f"{'model':8s} {'invoke mean':>12s} {'p99':>8s} {'detect 720p':>12s} {'p99':>8s} {'size':>9s}")
    for name in ("int8", "float"):
        if name not in m:
            continue
        r = m[name]
        print(f"{name:8s} {r['invoke']['mean_ms']:10.2f}ms {r['invoke']['p99_ms']:6.2f}ms "
              f"{r['detect_720p']['mean_ms']:10.2f}ms {r['detect_720p']['p99_ms']:6.2f}ms {r['bytes'] / 1024:7.0f}KB")
    if "int8_speedup" in m:
        print(f"int8 speed-up over float: {m['int8_speedup']}x")
    for k, v in results.get("pipeline_720p", {}).items():
        print(f"pipeline 720p {k:18s} {v['fps_per_core']:7.1f} frames/s per core ({v['ms_per_frame']} ms/frame)")
    if "streams" in results:
        s = results["streams"]
        print(f"{s['streams']} streams @2fps on one core: {s['fps_per_stream_min']}-{s['fps_per_stream_mean']} fps/stream, "
              f"CPU {s['cpu_core_percent']}% of the core, RSS peak {s['rss_peak_mb']} MB, {s['cameras_up']} up")
    if "accuracy" in results:
        a = results["accuracy"]
        print(f"held-out mAP@0.5 {a['boxes']['map50']} ({a['boxes']['images']} scenes); event recall "
              f"{a['events']['recall']} ({a['events']['found']}/{a['events']['events']}), "
              f"false {a['events']['false_per_camera_hour']}/camera-hour")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
