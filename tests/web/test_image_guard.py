"""Decompression bombs (issue 17, point 16): a few hundred bytes of JPEG whose header
claims a huge frame are refused from the header, before OpenCV allocates anything, for
uploads (422) and for agents' MQTT snapshots (the verifier never decodes them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from webtest import make_token, open_case, real_jpeg

from hub.verify import images
from hub.verify.imagesize import MAX_PIXELS, ImageRefused, check_image, image_size


def claims(width: int, height: int, *, progressive: bool = False) -> bytes:
    """A tiny real JPEG whose frame header is rewritten to claim ``width`` × ``height``."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 50]
    if progressive:
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8), params)
    assert ok
    data = bytearray(buf.tobytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(("w", "h", "progressive"), [(320, 240, False), (4032, 3024, False),
                                                    (17, 5, True), (1, 1, False)])
def test_the_header_gives_the_size_of_real_jpegs(w, h, progressive):
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    ok, buf = cv2.imencode(".jpg", np.zeros((h, w, 3), np.uint8), params)
    size = image_size(buf.tobytes())
    assert size is not None and (size.kind, size.width, size.height) == ("jpeg", w, h)


def test_the_header_gives_the_size_of_a_png_and_nothing_for_other_bytes():
    ok, buf = cv2.imencode(".png", np.zeros((7, 300), np.uint8))
    size = image_size(buf.tobytes())
    assert size is not None and (size.kind, size.width, size.height) == ("png", 300, 7)
    for junk in (b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"GIF89a" + b"\0" * 40,
                 b"\xff\xd8\xff\xe0" + b"\xff" * 50, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"):
        assert image_size(junk) is None, junk[:12]
        with pytest.raises(ImageRefused) as exc:
            check_image(junk)
        assert exc.value.code == "not_an_image"


@pytest.mark.parametrize(("w", "h"), [(16384, 16384), (8192, 8192), (4097, 4096), (65535, 10)])
def test_a_bomb_is_refused_from_its_header(w, h):
    bomb = claims(w, h)
    assert len(bomb) < 1024
    with pytest.raises(ImageRefused) as exc:
        check_image(bomb)
    assert exc.value.code == "too_many_pixels" and f"{w}x{h}" in exc.value.detail
    check_image(claims(4096, 4096))  # the cap itself is allowed


def test_an_mqtt_snapshot_bomb_is_never_decoded_by_the_verifier():
    start = time.perf_counter()
    assert images.decode(claims(16384, 16384, progressive=True)) is None
    assert images.decode(claims(8192, 8192)) is None
    assert time.perf_counter() - start < 0.5  # the old decode took 1.8 s and 1 GB
    assert images.decode(real_jpeg(1)) is not None


def test_opencv_itself_is_capped_once_the_hub_is_imported():
    """The second fence: ``import hub`` sets OpenCV's pixel cap before cv2 loads, so even
    a decode that skipped the header check refuses a bomb."""
    code = ("import hub, cv2, numpy as np, sys\n"
            "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
            "try:\n    cv2.imdecode(data, cv2.IMREAD_COLOR)\nexcept cv2.error as e:\n"
            "    print('refused', 'CV_IO_MAX_IMAGE_PIXELS' in str(e))\nelse:\n    print('decoded')\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    out = subprocess.run([sys.executable, "-c", code], input=claims(4100, 4100), env=env,
                         capture_output=True, timeout=60, check=True)
    assert out.stdout.decode().split() == ["refused", "True"]
    assert MAX_PIXELS < 4100 * 4100


def photo_form(data: bytes):
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("photo", data, filename="after.jpg", content_type="image/jpeg")
    form.add_field("note", "done")
    return form


@pytest.mark.parametrize(("w", "h"), [(8192, 8192), (16384, 16384)])
async def test_an_after_photo_bomb_is_refused_and_nothing_changes(hub, client, agent, w, h):
    case_id = await open_case(hub, agent)
    drain = await make_token(hub, "handler", "drainage")
    start = time.perf_counter()
    r = await client.post(f"/api/v1/handler/cases/{case_id}/resolve", token=drain,
                          data=photo_form(claims(w, h)))
    assert time.perf_counter() - start < 1.0
    assert r.status == 422, r.text
    body = r.json()
    assert body["code"] == "photo_too_many_pixels" and f"{w}x{h}" in body["errors"]["photo"]
    case = await hub.read(lambda repo: repo.get_case(case_id))
    assert case.state == "dispatched" and case.after_sha256 is None
