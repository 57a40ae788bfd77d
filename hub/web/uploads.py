"""Checks for uploaded photos: a JPEG (magic bytes) that OpenCV decodes, at most the
protocol's snapshot size. Pure apart from the decode."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from protocol.limits import MAX_SNAPSHOT_BYTES

from .problems import FieldErrors

__all__ = ["MAX_PHOTO_BYTES", "CheckedPhoto", "check_jpeg"]

MAX_PHOTO_BYTES = MAX_SNAPSHOT_BYTES  # 256 KiB, like an agent's snapshot
_MAX_SIDE = 8192


@dataclass(frozen=True)
class CheckedPhoto:
    data: bytes
    sha256: str
    width: int
    height: int


def check_jpeg(data: bytes | None, field: str = "photo") -> CheckedPhoto:
    """Refuse anything that is not a decodable JPEG of at most 256 KiB."""
    if not data:
        raise FieldErrors({field: "the file is empty; attach a JPEG photo"}, code="bad_photo")
    if len(data) > MAX_PHOTO_BYTES:
        raise FieldErrors({field: f"the photo is {len(data) // 1024} KiB; at most "
                           f"{MAX_PHOTO_BYTES // 1024} KiB (resize or recompress it)"},
                          status=413, code="photo_too_large")
    if not data.startswith(b"\xff\xd8\xff"):
        raise FieldErrors({field: "not a JPEG (it does not start with the JPEG signature); "
                           "send a .jpg photo"}, status=415, code="not_a_jpeg")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise FieldErrors({field: "the JPEG could not be decoded (corrupt or truncated)"},
                          status=415, code="not_a_jpeg")
    height, width = image.shape[:2]
    if width > _MAX_SIDE or height > _MAX_SIDE:
        raise FieldErrors({field: f"the photo is {width}x{height}; at most {_MAX_SIDE} pixels "
                           "a side"}, code="bad_photo")
    return CheckedPhoto(data, hashlib.sha256(data).hexdigest(), int(width), int(height))
