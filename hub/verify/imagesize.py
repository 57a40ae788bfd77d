"""How big an image says it is, read from its header before anything decodes it.

A JPEG of a few hundred bytes can claim 16384×16384 pixels; decoding it allocates the
whole frame (768 MiB for BGR) and holds the CPU for seconds. Every image that comes from
outside (a handler's after-photo, a reporter's or an Open311 photo, an agent's MQTT
snapshot) is measured here first and refused above :data:`MAX_PIXELS` or
:data:`MAX_SIDE`; only then does OpenCV see it.

* :func:`image_size` — pure: the (format, width, height) the header claims, or None;
* :func:`check_image` — pure: that size, or :class:`ImageRefused` with the reason;
* :func:`decode_image` — the check, then ``cv2.imdecode``.

The limits are well above what the hub needs (agents send crops of at most 320 pixels a
side, and a 12 MP phone photo of 4032×3024 fits), far below what hurts: one decoded image
at the cap is 48 MiB of BGR. OpenCV's own cap (``OPENCV_IO_MAX_IMAGE_PIXELS``) is set to
the same value in ``hub/__init__.py`` (before anything imports ``cv2``); it is a second
fence, not the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import HubError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MAX_PIXELS", "MAX_SIDE", "ImageRefused", "ImageSize", "check_image", "decode_image",
           "image_size"]

MAX_PIXELS = 4096 * 4096  # 16.8 MP
MAX_SIDE = 8192

# Markers that start a frame (SOF0..SOF15), except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM, RST0..7, SOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageSize:
    kind: str  # "jpeg" | "png"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageRefused(HubError):
    """An image refused before decoding. ``code``: ``not_an_image`` (no JPEG/PNG header
    with a size), ``too_many_pixels``; ``undecodable`` from :func:`decode_image`."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)


def _jpeg_size(data: bytes) -> ImageSize | None:
    """The largest frame size of the SOF segments before the first scan."""
    i, n, best = 2, len(data), None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # not a marker where one must be
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan: no frame header follows
            return best
        if i + 2 > n:
            return None
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2:
            return None
        if marker in _SOF:
            if i + 7 > n or length < 8:
                return None
            height = int.from_bytes(data[i + 3:i + 5], "big")
            width = int.from_bytes(data[i + 5:i + 7], "big")
            if best is None or width * height > best.pixels:
                best = ImageSize("jpeg", width, height)
        i += length
    return best


def image_size(data: bytes) -> ImageSize | None:
    """The size a JPEG's frame header or a PNG's IHDR claims; None for anything else, or
    a header cut short."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:8] == _PNG and data[12:16] == b"IHDR" and len(data) >= 24:
        return ImageSize("png", int.from_bytes(data[16:20], "big"),
                         int.from_bytes(data[20:24], "big"))
    return None


def check_image(data: bytes, *, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> ImageSize:
    """The image's size when it is small enough to decode; :class:`ImageRefused` if not."""
    size = image_size(data)
    if size is None:
        raise ImageRefused("not_an_image", "no JPEG or PNG header with the image's size was "
                           "found (not a photo, or cut short)")
    if size.width == 0 or size.height == 0:
        raise ImageRefused("not_an_image", f"the header claims {size.width}x{size.height} "
                           "pixels; a photo needs both sides")
    if size.width > max_side or size.height > max_side or size.pixels > max_pixels:
        raise ImageRefused("too_many_pixels", f"the image claims {size.width}x{size.height} "
                           f"pixels ({size.pixels / 1e6:.1f} MP); at most {max_pixels / 1e6:.1f} MP "
                           f"and {max_side} pixels a side: resize it")
    return size


def decode_image(data: bytes, flags: int | None = None) -> np.ndarray:
    """Check the header, then decode with OpenCV (``IMREAD_COLOR`` by default).
    Raises :class:`ImageRefused`; never returns an empty image."""
    check_image(data)
    import cv2
    import numpy as np

    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error as exc:  # OpenCV's own pixel cap, or a decoder failure
        raise ImageRefused("undecodable", f"the image could not be decoded ({exc.msg or exc})") from None
    if img is None or img.size == 0:
        raise ImageRefused("undecodable", "the image could not be decoded (corrupt or truncated)")
    return img

