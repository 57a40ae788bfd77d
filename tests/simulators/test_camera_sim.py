"""``cityops-sim camera``: rendered clips as files, live MJPEG streams read by OpenCV and by
the agent's own camera source, the ground-truth log, scripted after-frames."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import cv2
import numpy as np
from simtestlib import SimProcess, until

from edge_agent.camera.config import CameraConfig
from edge_agent.camera.sources import MjpegSource
from simulators.cli import SIMULATORS, main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_camera_and_handlers_are_registered(capsys):
    assert SIMULATORS["camera"] == "simulators.camera"
    assert SIMULATORS["handlers"] == "simulators.handlers.cli"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "camera" in out and "handlers" in out and "unavailable" not in out


def test_render_clip_writes_a_video_opencv_plays_and_its_truth(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    assert main(["camera", "render-clip", "--seed", "3", "--kinds", "flame", "--duration", "4", "--fps", "5",
                 "--size", "320x180", "--out", str(video)]) == 0
    printed = json.loads(capsys.readouterr().out)
    truth = json.loads(Path(printed["truth"]).read_text())
    assert [e["label"] for e in truth["events"]] == ["flame"]
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 20 and frames[0].shape == (180, 320, 3)


def test_after_frames_show_the_problem_gone_or_still_there(tmp_path, capsys):
    got = {}
    for flag in ("--fixed", "--not-fixed"):
        out = tmp_path / f"after{flag}.jpg"
        assert main(["camera", "after", "--seed", "3", "--kinds", "flame", "--size", "320x180", flag,
                     "--out", str(out), "--before", str(tmp_path / "before.jpg")]) == 0
        got[flag] = json.loads(capsys.readouterr().out)
        img = cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (180, 320, 3)
    assert any(b["label"] == "flame" for b in got["--fixed"]["before_boxes"])
    assert not any(b["label"] == "flame" for b in got["--fixed"]["after_boxes"])
    assert any(b["label"] == "flame" for b in got["--not-fixed"]["after_boxes"])


async def test_serve_streams_mjpeg_to_opencv_and_the_agent_with_a_truth_log(tmp_path):
    port = free_port()
    log = tmp_path / "truth.jsonl"
    async with SimProcess("camera", "serve", "--port", str(port), "--camera", "gate=3:flame",
                          "--camera", "lane=11:vehicle", "--duration", "4", "--fps", "5", "--size", "320x180",
                          "--truth-log", str(log)) as sim:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:

            async def listing():
                try:
                    async with http.get(f"{base}/cameras") as r:
                        return await r.json() if r.status == 200 else None
                except aiohttp.ClientError:
                    return None
            cams = None
            deadline = time.monotonic() + 60
            while cams is None and time.monotonic() < deadline:
                cams = await listing()
                await asyncio.sleep(0.1)
            assert cams is not None and set(cams) == {"gate", "lane"}
            assert cams["gate"]["stream"] == f"{base}/cameras/gate.mjpg"

            # OpenCV (FFmpeg) reads the live stream
            def opencv_frames(n: int) -> list:
                cap = cv2.VideoCapture(cams["gate"]["stream"])
                out = [cap.read()[1] for _ in range(n)]
                cap.release()
                return out
            frames = await asyncio.to_thread(opencv_frames, 3)
            assert all(f is not None and f.shape == (180, 320, 3) for f in frames)

            # ...and so does the agent's own MJPEG source
            source = MjpegSource(CameraConfig(id="gate", url=cams["gate"]["stream"], fps=5, decode_scale=1))
            await source.open()
            try:
                first = await source.read()
                second = await source.read()
            finally:
                await source.close()
            assert first.image.shape == (180, 320, 3) and second.index == first.index + 1

            async with http.get(f"{base}/cameras/gate/truth") as r:
                truth = await r.json()
            flame = truth["events"][0]
            assert flame["label"] == "flame" and truth["camera"] == "gate"
            async with http.get(f"{base}/cameras/gate/after.jpg?fixed=0&seed=2") as r:
                assert r.status == 200 and r.content_type == "image/jpeg"
                boxes = json.loads(r.headers["X-Ground-Truth"])
                assert (await r.read()).startswith(b"\xff\xd8")
            assert any(b["label"] == "flame" for b in boxes)
            async with http.get(f"{base}/cameras/nope.mjpg") as r:
                assert r.status == 404

        # the ground-truth log: the flame's appearance, written when it happened
        def appeared():
            if not log.exists():
                return None
            rows = [json.loads(x) for x in log.read_text().splitlines()]
            return [r for r in rows if r["camera"] == "gate" and r["event"] == "appear"]
        rows = await until(appeared, timeout=30, what="the flame's appearance in the truth log")
        written_at = datetime.fromisoformat(rows[0]["at"])
        assert rows[0]["label"] == "flame" and written_at <= datetime.now(UTC)
        assert abs(rows[0]["t"] - flame["appear_s"]) < 1e-3
        await sim.stop()


async def test_serve_refuses_bad_cameras_in_one_line():
    async with SimProcess("camera", "serve", "--camera", "gate=x") as sim:
        await asyncio.wait_for(sim.proc.wait(), 30)
        code, err = await sim.stop()
    assert code == 2 and "ID=SEED" in err and "Traceback" not in err
