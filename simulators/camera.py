"""Camera simulator: rendered street scenes as video files and live MJPEG streams.

Files and live MJPEG-over-HTTP streams, with a ground-truth log of when each problem
appears and disappears, scripted after-frames and before/after photo pairs for photo
verification.

Serves the edge agent's camera sources (``edge_agent/camera/sources.py``: ``MjpegSource``
reads ``/cameras/{id}.mjpg``, ``OpenCVSource`` plays the ``.avi`` files)::

    cityops-sim camera render-clip --seed 3 --problems 1 --kinds flame --out clip.avi --truth clip.json
    cityops-sim camera serve --port 8090 --camera gate=3 --camera lane=11:vehicle --truth-log truth.jsonl
    cityops-sim camera pairs --out pairs/ --count 50
    cityops-sim camera after --seed 3 --kinds flame --not-fixed --out after.jpg --before before.jpg

HTTP endpoints of ``serve``: ``GET /cameras`` (ids, stream URLs, timelines),
``GET /cameras/{id}.mjpg`` (the live stream), ``GET /cameras/{id}/truth`` (the clip's
ground truth and when it started), ``GET /cameras/{id}/after.jpg?fixed=0|1&seed=N`` (a
scripted after-frame: the camera's scene re-taken with its problem gone or still there,
for photo verification), ``POST /cameras/{id}/outage?seconds=N`` (drop every client and
refuse new ones for N seconds: a broken camera for watchdog tests).

``--truth-log`` appends one JSON line per appearance and disappearance as it happens:
``{"at", "camera", "event": "appear"|"disappear", "label", "kind", "loop", "t"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web

from protocol.cliutil import run_main
from protocol.errors import CityopsError

from .handlers.photos import encode_jpeg
from .scenes import Clip, random_clip, render_clip_frame, write_clip, write_pairs
from .scenes.pairs import retake
from .scenes.spec import PROBLEM_KINDS

__all__ = ["CameraStream", "after_frame", "build_app", "main", "parse_camera", "serve"]

log = logging.getLogger("cityops.sim.camera")
BOUNDARY = "cityopsframe"
CAMERAS = web.AppKey("cameras", dict)
TRUTH_LOG = web.AppKey("truth_log", Path)
TRUTH_TASK = web.AppKey("truth_task", asyncio.Task)


class SimulatorError(CityopsError):
    pass


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 1280x720)") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"size {text!r} out of range (16..4096)")
    return w, h


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in PROBLEM_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown problem kind(s) {', '.join(bad)}; choose from {', '.join(PROBLEM_KINDS)}")
    return kinds


def parse_camera(text: str) -> tuple[str, int, tuple[str, ...] | None]:
    """``ID=SEED[:KIND,KIND...]`` → (id, seed, kinds)."""
    cam_id, sep, rest = text.partition("=")
    seed_text, _, kinds_text = rest.partition(":")
    if not sep or not cam_id or not seed_text.isdigit():
        raise argparse.ArgumentTypeError(f"camera {text!r} is not ID=SEED[:KIND,...] (e.g. gate=3:flame,smoke)")
    return cam_id, int(seed_text), parse_kinds(kinds_text) if kinds_text else None


@dataclass
class CameraStream:
    """One simulated camera: a looping clip, rendered lazily and cached as JPEG."""

    id: str
    clip: Clip
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    quality: int = 80
    outage_until: float = 0.0
    clients: int = 0
    _cache: dict[int, bytes] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _drop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def frames(self) -> int:
        return max(1, int(round(self.clip.duration_s * self.clip.fps)))

    def frame_index(self, now: float | None = None) -> int:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return int(elapsed * self.clip.fps) % self.frames

    def _encode(self, index: int) -> bytes:
        img, _ = render_clip_frame(self.clip, index / self.clip.fps)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SimulatorError(f"camera {self.id}: JPEG encoding failed")
        return enc.tobytes()

    async def jpeg(self, index: int) -> bytes:
        async with self._lock:
            if index not in self._cache:
                self._cache[index] = await asyncio.to_thread(self._encode, index)
            return self._cache[index]

    def down(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds
        self._drop.set()

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.outage_until

    def timeline(self, loops: int = 1) -> list[dict]:
        """Ground-truth log entries (wall times) for the first ``loops`` plays."""
        out = []
        for loop in range(loops):
            offset = loop * self.clip.duration_s
            for e in self.clip.events:
                for what, at in (("appear", e.appear_s), ("disappear", e.disappear_s)):
                    if what == "disappear" and at >= self.clip.duration_s and loops == 1:
                        continue
                    when = self.started_at + timedelta(seconds=offset + at)
                    out.append({"at": when.isoformat(), "camera": self.id, "event": what, "label": e.label,
                                "kind": e.kind, "loop": loop, "t": round(offset + at, 3)})
        return sorted(out, key=lambda r: r["t"])


async def _stream(request: web.Request) -> web.StreamResponse:
    cam: CameraStream | None = request.app[CAMERAS].get(request.match_info["id"])
    if cam is None:
        raise web.HTTPNotFound(text="no such camera")
    if cam.is_down:
        raise web.HTTPServiceUnavailable(text="camera is down (simulated outage)")
    resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    cam.clients += 1
    cam._drop.clear()
    period = 1.0 / cam.clip.fps
    try:
        next_at = time.monotonic()
        while not cam.is_down:
            data = await cam.jpeg(cam.frame_index())
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            await resp.write(head + data + b"\r\n")
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -1.0:
                next_at = time.monotonic()
            elif delay > 0:
                try:
                    await asyncio.wait_for(cam._drop.wait(), timeout=delay)
                except TimeoutError:
                    pass
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        cam.clients -= 1
    # An outage: cut the connection without a clean end, as a dying camera would.
    if request.transport is not None:
        request.transport.close()
    return resp


def after_frame(clip: Clip, fixed: bool, seed: int = 0, size: tuple[int, int] | None = None) -> tuple[bytes, list[dict]]:
    """A scripted after-frame of the clip's scene: the same view re-taken (camera nudged,
    other light) with the clip's first problem gone (``fixed``) or still there; JPEG bytes
    and the frame's ground-truth boxes."""
    if not clip.events:
        raise SimulatorError("the clip has no problem to show fixed or not fixed")
    problem = clip.scene.objects[clip.events[0].index]
    others = [o for i, o in enumerate(clip.scene.objects) if i not in {e.index for e in clip.events}]
    _, img, boxes = retake(clip.scene, problem, fixed, np.random.default_rng([seed, 29]), others=others,
                           size=size or clip.size)
    return encode_jpeg(img), [b.to_json() for b in boxes]


async def _after(request: web.Request) -> web.Response:
    cam = request.app[CAMERAS].get(request.match_info["id"])
    if cam is None:
        raise web.HTTPNotFound(text="no such camera")
    fixed = request.query.get("fixed", "1")
    if fixed not in ("0", "1"):
        raise web.HTTPBadRequest(text="fixed must be 0 or 1")
    try:
        seed = int(request.query.get("seed", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="seed must be an integer") from None
    try:
        data, boxes = await asyncio.to_thread(after_frame, cam.clip, fixed == "1", seed)
    except SimulatorError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"X-Ground-Truth": json.dumps(boxes, separators=(",", ":"))})


async def _list(request: web.Request) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    return web.json_response({cid: {"stream": f"{base}/cameras/{cid}.mjpg", "truth": f"{base}/cameras/{cid}/truth",
                                    "down": cam.is_down, "clients": cam.clients}
                              for cid, cam in request.app[CAMERAS].items()})


async def _truth(request: web.Request) -> web.Response:
    cam = request.app[CAMERAS].get(request.match_info["id"])
    if cam is None:
        raise web.HTTPNotFound(text="no such camera")
    return web.json_response({**cam.clip.truth(), "camera": cam.id, "started_at": cam.started_at.isoformat(),
                              "timeline": cam.timeline()})


async def _outage(request: web.Request) -> web.Response:
    cam = request.app[CAMERAS].get(request.match_info["id"])
    if cam is None:
        raise web.HTTPNotFound(text="no such camera")
    try:
        seconds = float(request.query.get("seconds", "10"))
    except ValueError:
        raise web.HTTPBadRequest(text="seconds must be a number") from None
    if not 0 <= seconds <= 86400:
        raise web.HTTPBadRequest(text="seconds must be within 0..86400")
    cam.down(seconds)
    return web.json_response({"camera": cam.id, "down_for_s": seconds})


async def _truth_log(app: web.Application) -> None:
    """Append appear/disappear entries to the truth log as they happen."""
    path: Path = app[TRUTH_LOG]
    pending = sorted((e for cam in app[CAMERAS].values() for e in cam.timeline(loops=1000)), key=lambda r: r["at"])
    for entry in pending:
        delay = (datetime.fromisoformat(entry["at"]) - datetime.now(UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def build_app(cameras: dict[str, CameraStream], truth_log: Path | None = None) -> web.Application:
    app = web.Application()
    app[CAMERAS] = cameras
    app.router.add_get("/cameras", _list)
    app.router.add_get("/cameras/{id}.mjpg", _stream)
    app.router.add_get("/cameras/{id}/truth", _truth)
    app.router.add_get("/cameras/{id}/after.jpg", _after)
    app.router.add_post("/cameras/{id}/outage", _outage)
    if truth_log is not None:
        app[TRUTH_LOG] = truth_log

        async def start_log(app: web.Application) -> None:
            app[TRUTH_TASK] = asyncio.create_task(_truth_log(app))

        async def stop_log(app: web.Application) -> None:
            app[TRUTH_TASK].cancel()

        app.on_startup.append(start_log)
        app.on_cleanup.append(stop_log)
    return app


async def serve(cameras: dict[str, CameraStream], host: str, port: int, truth_log: Path | None,
                stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
    runner = web.AppRunner(build_app(cameras, truth_log))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SimulatorError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from None
    log.info("serving %d camera(s) on http://%s:%d/cameras", len(cameras), host, port)
    if ready is not None:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="cityops-sim camera", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def clip_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--duration", type=float, default=60.0, help="clip length in seconds (default 60)")
        p.add_argument("--fps", type=float, default=5.0, help="frames per second (default 5)")
        p.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default 1280x720)")
        p.add_argument("--problems", type=int, default=1, help="problems that appear in each clip (default 1)")

    p = sub.add_parser("render-clip", help="render one clip to an MJPEG .avi file and its ground truth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", type=parse_kinds, default=None, help=f"comma-separated problem kinds ({', '.join(PROBLEM_KINDS)})")
    p.add_argument("--out", type=Path, required=True, help="the video file (.avi)")
    p.add_argument("--truth", type=Path, default=None, help="ground truth JSON (default: beside the video)")
    p.add_argument("--boxes", action="store_true", help="include every frame's boxes in the ground truth")
    clip_args(p)

    p = sub.add_parser("serve", help="serve live MJPEG streams over HTTP")
    p.add_argument("--camera", type=parse_camera, action="append", required=True, help="ID=SEED[:KIND,...], repeatable")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--quality", type=int, default=80, help="JPEG quality of the stream")
    p.add_argument("--truth-log", type=Path, default=None, help="append appear/disappear entries (JSON lines) here")
    clip_args(p)

    p = sub.add_parser("after", help="a scripted after-frame of a clip's scene (fixed or not) and its before-frame")
    p.add_argument("--seed", type=int, default=0, help="the clip (as for render-clip and serve)")
    p.add_argument("--kinds", type=parse_kinds, default=None)
    p.add_argument("--out", type=Path, required=True, help="the after-frame (.jpg)")
    p.add_argument("--before", type=Path, default=None, help="also write the frame with the problem in view")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fixed", dest="fixed", action="store_true", default=True, help="the problem is gone (default)")
    group.add_argument("--not-fixed", dest="fixed", action="store_false", help="the problem is still there")
    p.add_argument("--retake-seed", type=int, default=0, help="how the view is re-taken")
    clip_args(p)

    p = sub.add_parser("pairs", help="write before/after photo pairs with fixed/not_fixed labels")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=parse_size, default=(960, 540))
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "render-clip":
        clip = random_clip(args.seed, duration_s=args.duration, fps=args.fps, size=args.size,
                           problems=args.problems, kinds=args.kinds)
        truth = args.truth or args.out.with_suffix(".json")
        write_clip(clip, args.out, truth, boxes=args.boxes)
        print(json.dumps({"video": str(args.out), "truth": str(truth), "events": [e.to_json() for e in clip.events]}))
        return 0
    if args.command == "after":
        clip = random_clip(args.seed, duration_s=args.duration, fps=args.fps, size=args.size,
                           problems=args.problems, kinds=args.kinds)
        data, boxes = after_frame(clip, args.fixed, args.retake_seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
        out = {"after": str(args.out), "fixed": args.fixed, "after_boxes": boxes, "problem": clip.events[0].to_json()}
        if args.before is not None:
            e = clip.events[0]
            img, before_boxes = render_clip_frame(clip, (e.appear_s + e.disappear_s) / 2)
            args.before.write_bytes(encode_jpeg(img))
            out.update(before=str(args.before), before_boxes=[b.to_json() for b in before_boxes])
        print(json.dumps(out))
        return 0
    if args.command == "pairs":
        labels = write_pairs(args.out, args.count, seed=args.seed, size=args.size)
        print(json.dumps({"pairs": args.count, "labels": str(labels)}))
        return 0
    ids = [c[0] for c in args.camera]
    if len(set(ids)) != len(ids):
        raise SimulatorError("camera ids must be unique")
    cameras = {cid: CameraStream(cid, random_clip(seed, duration_s=args.duration, fps=args.fps, size=args.size,
                                                  problems=args.problems, kinds=kinds), quality=args.quality)
               for cid, seed, kinds in args.camera}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(serve(cameras, args.host, args.port, args.truth_log))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(lambda: run(args), "cityops-sim camera")


if __name__ == "__main__":
    raise SystemExit(main())
