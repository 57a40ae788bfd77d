"""Checks for uploaded photos: a JPEG (magic bytes) of at most the protocol's snapshot
size, whose header claims at most :data:`hub.verify.imagesize.MAX_PIXELS`, that OpenCV
decodes.

:func:`check_jpeg` is the check; views call :func:`checked_jpeg`, which runs it off the
event loop in a small pool of its own. At most :data:`DECODE_WORKERS` photos decode at
once and at most :data:`DECODE_PENDING` wait or run; past that the upload is refused with
503 and ``Retry-After`` (a flood of uploads never queues without bound, never blocks the
loop and never starves the default executor the database reads run in).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2

from protocol.limits import MAX_SNAPSHOT_BYTES

from ..verify.imagesize import ImageRefused, check_image, decode_image
from .i18n import _
from .problems import FieldErrors, WebError

__all__ = ["DECODE_PENDING", "DECODE_WORKERS", "MAX_PHOTO_BYTES", "CheckedPhoto", "check_jpeg",
           "checked_jpeg"]

MAX_PHOTO_BYTES = MAX_SNAPSHOT_BYTES  # 256 KiB, like an agent's snapshot
DECODE_WORKERS = 2
DECODE_PENDING = 8

_pool = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="hub-photo-decode")
_pending = 0  # decodes waiting or running; changed on the event loop's thread only


@dataclass(frozen=True)
class CheckedPhoto:
    data: bytes
    sha256: str
    width: int
    height: int


def check_jpeg(data: bytes | None, field: str = "photo") -> CheckedPhoto:
    """Refuse anything that is not a decodable JPEG of at most 256 KiB and 16.8 MP.
    The size in the header is checked before anything is decoded."""
    if not data:
        raise FieldErrors({field: _("the file is empty; attach a JPEG photo")}, code="bad_photo")
    if len(data) > MAX_PHOTO_BYTES:
        raise FieldErrors({field: _("the photo is %(n)s KiB; at most %(max)s KiB (resize or "
                                   "recompress it)") % {"n": len(data) // 1024,
                                                        "max": MAX_PHOTO_BYTES // 1024}},
                          status=413, code="photo_too_large")
    if not data.startswith(b"\xff\xd8\xff"):
        raise FieldErrors({field: _("not a JPEG (it does not start with the JPEG signature); "
                                   "send a .jpg photo")}, status=415, code="not_a_jpeg")
    try:
        size = check_image(data)
    except ImageRefused as exc:
        if exc.code == "too_many_pixels":
            raise FieldErrors({field: exc.detail}, status=422, code="photo_too_many_pixels") from None
        raise FieldErrors({field: _("the JPEG could not be decoded: %(why)s") % {"why": exc.detail}},
                          status=415, code="not_a_jpeg") from None
    try:
        image = decode_image(data, cv2.IMREAD_UNCHANGED)
    except ImageRefused as exc:
        raise FieldErrors({field: _("the JPEG could not be decoded: %(why)s") % {"why": exc.detail}},
                          status=415, code="not_a_jpeg") from None
    height, width = image.shape[:2]
    if (width, height) != (size.width, size.height):  # the decoder and the header disagree
        raise FieldErrors({field: _("the JPEG decodes to %(w)sx%(h)s but its header says "
                                   "%(hw)sx%(hh)s; send an ordinary photo")
                           % {"w": width, "h": height, "hw": size.width, "hh": size.height}},
                          status=415, code="not_a_jpeg")
    return CheckedPhoto(data, hashlib.sha256(data).hexdigest(), int(width), int(height))


async def checked_jpeg(data: bytes | None, field: str = "photo") -> CheckedPhoto:
    """:func:`check_jpeg` in the decode pool. 503 ``busy`` when too many photos are
    being decoded already."""
    global _pending
    if _pending >= DECODE_PENDING:
        raise WebError(503, "busy", _("%(n)s photos are being checked already; send this one "
                                     "again in a moment") % {"n": _pending},
                       headers={"Retry-After": "2"})
    _pending += 1
    try:
        # in the request's context: its errors are in the request's language
        return await asyncio.get_running_loop().run_in_executor(
            _pool, contextvars.copy_context().run, check_jpeg, data, field)
    finally:
        _pending -= 1

