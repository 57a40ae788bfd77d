"""Frame sources: odd frames, files (rate-limited, looped), MJPEG over HTTP."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edge_agent.camera.config import CameraConfig
from edge_agent.camera.sources import (
    MjpegSource,
    OpenCVSource,
    SourceError,
    normalize_frame,
    open_source,
)
from simulators.camera import CameraStream, serve
from simulators.scenes import random_clip, write_clip


def test_normalize_frame_handles_odd_frames():
    assert normalize_frame(np.zeros((40, 60), np.uint8), None).shape == (40, 60, 3)
    assert normalize_frame(np.zeros((40, 60, 4), np.uint8), None).shape == (40, 60, 3)
    assert normalize_frame(np.zeros((40, 60, 1), np.uint8), None).shape == (40, 60, 3)
    assert normalize_frame(np.full((40, 60, 3), 65535, np.uint16), None).max() == 255
    assert normalize_frame(np.zeros((400, 600, 3), np.uint8), (320, 180)).shape == (180, 320, 3)
    for bad in (None, np.zeros((0, 0, 3), np.uint8), np.zeros((40, 60, 2), np.uint8), np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(ValueError):
            normalize_frame(bad, None)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = random_clip(4, duration_s=4, fps=10, size=(320, 180), problems=1)
    return write_clip(clip, tmp_path_factory.mktemp("clip") / "c.avi")


async def test_file_source_skips_to_the_configured_rate_and_loops(clip_file):
    cam = CameraConfig(id="f", file=clip_file, fps=2, realtime=False, loop=True)
    src = open_source(cam)
    assert isinstance(src, OpenCVSource)
    await src.open()
    try:
        frames = [await src.read() for _ in range(12)]  # 4 s at 2 fps = 8 per play: this loops
    finally:
        await src.close()
    times = [f.t - frames[0].t for f in frames]
    assert times == pytest.approx([i * 0.5 for i in range(12)], abs=0.02)
    assert src.skipped >= 40  # 4 of every 5 frames grabbed but never decoded
    assert frames[0].image.shape == (180, 320, 3)


async def test_file_that_ends_raises(clip_file):
    src = OpenCVSource(CameraConfig(id="f", file=clip_file, fps=10, realtime=False, loop=False))
    await src.open()
    with pytest.raises(SourceError, match="end of file"):
        for _ in range(100):
            await src.read()
    await src.close()


async def test_mjpeg_source_reads_the_simulator_and_decodes_at_reduced_size(unused_tcp_port):
    clip = random_clip(4, duration_s=6, fps=10, size=(640, 360), problems=1)
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve({"cam": CameraStream("cam", clip)}, "127.0.0.1", unused_tcp_port, None, stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    cam = CameraConfig(id="cam", url=f"http://127.0.0.1:{unused_tcp_port}/cameras/cam.mjpg", fps=4, decode_scale=2)
    src = open_source(cam)
    assert isinstance(src, MjpegSource)
    try:
        await src.open()
        frames = [await asyncio.wait_for(src.read(), 10) for _ in range(6)]
        assert frames[0].image.shape == (180, 320, 3)  # 640x360 decoded at 1/2
        rate = (len(frames) - 1) / (frames[-1].t - frames[0].t)
        assert 2.5 < rate < 5.5
        assert src.skipped > 0
        bad = MjpegSource(CameraConfig(id="x", url=f"http://127.0.0.1:{unused_tcp_port}/cameras", fps=2))
        with pytest.raises(SourceError, match="not an MJPEG stream"):
            await bad.open()
        missing = MjpegSource(CameraConfig(id="x", url=f"http://127.0.0.1:{unused_tcp_port}/cameras/nope.mjpg", fps=2))
        with pytest.raises(SourceError, match="HTTP 404"):
            await missing.open()
    finally:
        await src.close()
        stop.set()
        await server
