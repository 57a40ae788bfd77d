"""Live view on the agent, its pure parts: the JPEG fitted under the size cap, the window a
request opens (capped, extended, stopped), the rate cap, and the protocol messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.camera.config import CameraConfig, LiveConfig, load_camera_section
from edge_agent.camera.live import LiveTap, LiveWindow, fit_jpeg, window_for
from edge_agent.camera.sources import Frame
from protocol.clock import FakeClock
from protocol.codec import decode_frame, decode_live_request, decode_message, encode, encode_frame
from protocol.errors import ConfigError, ProtocolError
from protocol.limits import MAX_LIVE_FRAME_BYTES, MAX_LIVE_SECONDS
from protocol.messages import FrameHeader, LiveRequest

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def noisy(w: int = 1920, h: int = 1080, seed: int = 1) -> np.ndarray:
    """A hard image for JPEG: noise everywhere (a full-HD frame of it is ~1.5 MB at q70)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def request(seconds: float, rid: str = "r1", camera: str = "cam-1") -> LiveRequest:
    return LiveRequest(agent_id="a1", camera=camera, request_id=rid, seconds=seconds, issued_at=T0)


def test_a_full_hd_noise_frame_is_fitted_under_the_default_50kB():
    cfg = LiveConfig()
    jpeg, w, h = fit_jpeg(noisy(), max_side=cfg.max_side, quality=cfg.quality, max_bytes=cfg.max_bytes)
    assert len(jpeg) <= 50_000
    assert w <= 640 and h <= 640 and abs(w / h - 16 / 9) < 0.02
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (h, w)


def test_a_small_frame_is_never_enlarged_and_keeps_its_quality():
    img = np.full((180, 320, 3), 120, np.uint8)
    jpeg, w, h = fit_jpeg(img, max_side=640, quality=70, max_bytes=50_000)
    assert (w, h) == (320, 180) and len(jpeg) < 5000


def test_an_impossible_budget_gives_none():
    assert fit_jpeg(noisy(400, 300), max_side=400, quality=70, max_bytes=100) is None


def test_a_request_opens_a_window_capped_by_the_config_and_zero_stops():
    cfg = LiveConfig(max_seconds=20)
    w = window_for(request(300), cfg, 100.0, None)
    assert w is not None and w.until == 120.0
    same = window_for(request(5), cfg, 110.0, w)
    assert same is w and w.until == 115.0  # the same stream: its end moves
    other = window_for(request(5, "r2"), cfg, 111.0, w)
    assert other is not w and other.request_id == "r2"
    assert window_for(request(0), cfg, 112.0, other) is None
    assert window_for(request(5), LiveConfig(enabled=False), 0.0, None) is None


def test_the_rate_cap():
    w = LiveWindow("r1", until=10.0)
    assert w.due(0.0, 1.0)
    w.last_sent = 0.0
    assert not w.due(0.5, 1.0) and w.due(1.0, 1.0)
    assert not w.due(10.0, 1.0)  # closed


@pytest.mark.parametrize("field,value", [("fps", 0), ("fps", 6), ("max_bytes", 1000),
                                         ("max_bytes", MAX_LIVE_FRAME_BYTES + 1),
                                         ("quality", 10), ("max_seconds", MAX_LIVE_SECONDS + 1)])
def test_bad_live_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        CameraConfig.model_validate({"id": "c1", "device": 0, "live": {field: value}})
    assert [e["loc"] for e in err.value.errors()] == [("live", field)]


def test_a_bad_live_setting_in_a_file_names_the_file_line_key_and_bound(tmp_path, bundled_model):
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - id: gate\n    device: 0\n    live:\n      fps: 2\n"
                    "      max_bytes: 500000\n")
    with pytest.raises(ConfigError) as err:
        load_camera_section(path)
    text = str(err.value)
    assert "cameras.yaml:6:7 cameras[0].live.max_bytes: Input should be less than or equal to 131072" in text
    ok = tmp_path / "ok.yaml"
    ok.write_text("cameras:\n  - id: gate\n    device: 0\n    live: {fps: 0.5, max_bytes: 20000}\n")
    live = load_camera_section(ok).cameras[0].live
    assert (live.fps, live.max_bytes, live.max_side) == (0.5, 20000, 640)


async def test_the_tap_sends_only_inside_a_window_and_at_most_the_rate():
    clock = FakeClock(T0)
    tap = LiveTap("a1", "cam-1", LiveConfig(fps=1.0), clock)
    sent: list[bytes] = []
    tap.send = lambda payload: sent.append(payload) or True
    img = noisy(640, 360)

    async def offer(n: int, step: float) -> None:
        for _ in range(n):
            tap.offer(Frame(img, clock.monotonic(), 0))
            await asyncio.gather(*tap._tasks)  # noqa: SLF001 - let the encode finish
            clock.advance(step)

    await offer(4, 0.5)  # no request yet: nothing
    assert sent == []
    assert tap.request(request(3)) == "started"  # the newest frame goes out at once
    await asyncio.gather(*tap._tasks)  # noqa: SLF001
    assert len(sent) == 1
    await offer(8, 0.5)  # 4 s at 2 frames/s read: window of 3 s at 1 frame/s
    assert 3 <= len(sent) <= 4
    n = len(sent)
    await offer(6, 0.5)
    assert len(sent) == n and tap.window is None  # stopped on its own
    headers = [decode_frame(p, agent_id="a1")[0] for p in sent]
    assert [h.n for h in headers] == list(range(1, n + 1))
    assert all(h.request_id == "r1" and h.camera == "cam-1" for h in headers)


def test_live_messages_round_trip_and_refuse_another_agent():
    req = request(30)
    assert decode_live_request(encode(req), agent_id="a1") == req
    with pytest.raises(ProtocolError):
        decode_live_request(encode(req), agent_id="a2")
    with pytest.raises(ValidationError):
        request(MAX_LIVE_SECONDS + 1)
    ok, enc = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    header = FrameHeader(agent_id="a1", camera="cam-1", request_id="r1", n=1, taken_at=T0,
                         width=8, height=8, remaining_s=2)
    payload = encode_frame(header, enc.tobytes())
    decoded = decode_message("cityops/v1/agents/a1/frames", payload)
    assert decoded.message == (header, enc.tobytes())
    with pytest.raises(ProtocolError) as err:
        decode_message("cityops/v1/agents/a2/frames", payload)
    assert err.value.reason.value == "topic_mismatch"
    with pytest.raises(ProtocolError):
        decode_frame(encode(header) + b"\nnot a jpeg")
    with pytest.raises(ProtocolError):
        encode_frame(header, b"\xff\xd8" + b"x" * MAX_LIVE_FRAME_BYTES)
