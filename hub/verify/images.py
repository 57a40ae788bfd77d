"""The OpenCV side of photo verification: decode, align, measure. No decisions here.

* :func:`align` finds ORB features in both photos (the problem's own region is masked out
  of the before-photo so it cannot anchor the alignment), keeps matches that pass Lowe's
  ratio test and fits a RANSAC homography mapping the after-photo onto the before-photo.
* :func:`measure` warps the after-photo into the before-photo's frame, fits a per-channel
  gain and offset on the ring around the region (photometric normalisation: a relit or
  re-exposed photo), and reports the SSIM of the ring (is the alignment good there?), the
  SSIM of the region, and the share of the region whose colour changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .decide import AlignStats
from .imagesize import ImageRefused, decode_image

__all__ = ["Aligned", "Crop", "align", "decode", "measure", "region_crop", "ssim_map"]

WORK_WIDTH = 640  # photos are compared at this width (speed; the detail needed is coarse)
# A pixel "changed" when a channel differs by more than a level that adapts to how well the
# surroundings match (noise, JPEG, small misalignment): 2.5 × the ring's median difference
# + 10, kept within 12..30 (0..255 scale).
CHANGE_FLOOR, CHANGE_CEILING = 12.0, 30.0


def decode(jpeg: bytes, work_width: int = WORK_WIDTH) -> np.ndarray | None:
    """BGR image scaled to ``work_width``; None when it is not a decodable image, or its
    header claims more pixels than :mod:`hub.verify.imagesize` allows (never decoded)."""
    try:
        img = decode_image(jpeg, cv2.IMREAD_COLOR)
    except ImageRefused:
        return None
    if img.shape[0] < 16 or img.shape[1] < 16:
        return None
    h, w = img.shape[:2]
    if w != work_width:
        img = cv2.resize(img, (work_width, max(16, round(h * work_width / w))), interpolation=cv2.INTER_AREA)
    return img


@dataclass(frozen=True)
class Crop:
    """The region (box) inside a crop that also holds a margin of context (the ring)."""

    x0: int
    y0: int
    x1: int
    y1: int  # the crop in image pixels
    bx0: int
    by0: int
    bx1: int
    by1: int  # the region inside the crop


def region_crop(shape: tuple[int, ...], region: tuple[float, float, float, float] | None,
                margin: float, min_margin_px: int = 16) -> Crop:
    """The region (normalised x1, y1, x2, y2; None: the middle half of the photo) with
    ``margin`` × its size of context on each side, clipped to the image."""
    h, w = shape[:2]
    x1, y1, x2, y2 = region if region is not None else (0.25, 0.25, 0.75, 0.75)
    bx0, bx1 = sorted((int(round(x1 * w)), int(round(x2 * w))))
    by0, by1 = sorted((int(round(y1 * h)), int(round(y2 * h))))
    bx0, by0 = max(0, min(bx0, w - 2)), max(0, min(by0, h - 2))
    bx1, by1 = max(bx0 + 2, min(bx1, w)), max(by0 + 2, min(by1, h))
    mx = max(min_margin_px, int((bx1 - bx0) * margin))
    my = max(min_margin_px, int((by1 - by0) * margin))
    x0, y0 = max(0, bx0 - mx), max(0, by0 - my)
    cx1, cy1 = min(w, bx1 + mx), min(h, by1 + my)
    return Crop(x0, y0, cx1, cy1, bx0 - x0, by0 - y0, bx1 - x0, by1 - y0)


def _orb_features(gray: np.ndarray, mask: np.ndarray | None, n: int):
    orb = cv2.ORB_create(nfeatures=n, scaleFactor=1.2, nlevels=8, fastThreshold=10)
    return orb.detectAndCompute(gray, mask)


@dataclass(frozen=True)
class Aligned:
    stats: AlignStats
    matrix: np.ndarray | None  # after → before, the whole view
    local: np.ndarray | None = None  # after → before, fitted on the matches near the region


LOCAL_MIN_INLIERS = 12


def _local_homography(src: np.ndarray, dst: np.ndarray, crop: Crop, width: int,
                      global_matrix: np.ndarray, reproj_px: float) -> np.ndarray | None:
    """A homography from the matches around the region only. A re-taken photo has parallax:
    the plane the whole-view fit follows (often the far buildings) is not the ground the
    problem lies on. None when there are too few matches near the region, or when the local
    fit disagrees wildly with the global one (then it fits noise)."""
    cx, cy = crop.x0 + (crop.bx0 + crop.bx1) / 2, crop.y0 + (crop.by0 + crop.by1) / 2
    diag = float(np.hypot(crop.bx1 - crop.bx0, crop.by1 - crop.by0))
    radius = max(2.0 * diag, 0.25 * width)
    d = dst.reshape(-1, 2)
    near = np.hypot(d[:, 0] - cx, d[:, 1] - cy) <= radius
    if int(near.sum()) < LOCAL_MIN_INLIERS + 4:
        return None
    matrix, inliers = cv2.findHomography(src[near], dst[near], cv2.RANSAC, reproj_px * 0.75,
                                         maxIters=2000, confidence=0.999)
    if matrix is None or inliers is None or int(inliers.sum()) < LOCAL_MIN_INLIERS:
        return None
    corners = np.float32([[crop.x0 + crop.bx0, crop.y0 + crop.by0], [crop.x0 + crop.bx1, crop.y0 + crop.by0],
                          [crop.x0 + crop.bx1, crop.y0 + crop.by1], [crop.x0 + crop.bx0, crop.y0 + crop.by1]])
    # where each fit says the region's corners are in the after-photo
    try:
        inv_l, inv_g = np.linalg.inv(matrix), np.linalg.inv(global_matrix)
    except np.linalg.LinAlgError:  # a singular fit squashes the view onto a line: no re-take
        return None
    pl = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), inv_l).reshape(-1, 2)
    pg = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), inv_g).reshape(-1, 2)
    if not np.all(np.isfinite(pl)) or float(np.abs(pl - pg).max()) > 0.15 * width:
        return None
    return matrix


def align(before: np.ndarray, after: np.ndarray, crop: Crop | None, *, features: int = 3000,
          ratio: float = 0.8, reproj_px: float = 4.0) -> Aligned:
    gb = cv2.cvtColor(before, cv2.COLOR_BGR2GRAY)
    ga = cv2.cvtColor(after, cv2.COLOR_BGR2GRAY)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))  # relit photos: local contrast
    gb, ga = clahe.apply(gb), clahe.apply(ga)
    mask = None
    if crop is not None:  # the problem itself must not anchor the alignment
        mask = np.full(gb.shape, 255, np.uint8)
        pad = 4
        mask[max(0, crop.y0 + crop.by0 - pad):crop.y0 + crop.by1 + pad,
             max(0, crop.x0 + crop.bx0 - pad):crop.x0 + crop.bx1 + pad] = 0
    kb, db = _orb_features(gb, mask, features)
    ka, da = _orb_features(ga, None, features)
    counts = (len(kb), len(ka))
    if db is None or da is None or len(kb) < 8 or len(ka) < 8:
        return Aligned(AlignStats(counts, 0, 0, None), None)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 8:
        return Aligned(AlignStats(counts, len(good), 0, None), None)
    src = np.float32([ka[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kb[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    matrix, inliers = cv2.findHomography(src, dst, cv2.RANSAC, reproj_px, maxIters=4000, confidence=0.999)
    if matrix is None or inliers is None:
        return Aligned(AlignStats(counts, len(good), 0, None), None)
    n_in = int(inliers.sum())
    local = None
    if crop is not None:
        local = _local_homography(src, dst, crop, before.shape[1], matrix, reproj_px)
    return Aligned(AlignStats(counts, len(good), n_in, tuple(tuple(float(v) for v in row) for row in matrix)),
                   matrix, local)


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Structural similarity per pixel of two float gray images (Wang et al. 2004,
    Gaussian window, constants for an 8-bit range)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sigma)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _photometric(before: np.ndarray, after: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """``after`` with a per-channel gain and offset fitted so its ring matches the before's."""
    out = np.empty_like(after)
    for c in range(3):
        a, b = after[..., c][ring], before[..., c][ring]
        sa = float(a.std())
        gain = float(b.std()) / sa if sa > 2.0 else 1.0
        gain = float(np.clip(gain, 0.5, 2.0))
        out[..., c] = (after[..., c] - a.mean()) * gain + b.mean()
    return out


@dataclass(frozen=True)
class Measures:
    context_similarity: float
    region_similarity: float
    changed: float
    valid: float  # share of the crop the warped after-photo covers


def measure(before: np.ndarray, after_aligned: np.ndarray, valid: np.ndarray, crop: Crop) -> Measures:
    """Compare the crop of the before-photo with the same crop of the aligned after-photo."""
    b = before[crop.y0:crop.y1, crop.x0:crop.x1].astype(np.float32)
    a = after_aligned[crop.y0:crop.y1, crop.x0:crop.x1].astype(np.float32)
    ok = valid[crop.y0:crop.y1, crop.x0:crop.x1] > 0
    inside = np.zeros(ok.shape, bool)
    inside[crop.by0:crop.by1, crop.bx0:crop.bx1] = True
    ring = ok & ~inside
    if ring.sum() < 50:  # a region that fills the photo: normalise on everything
        ring = ok
    a = _photometric(b, a, ring)
    # SSIM on slightly blurred gray: a fine texture (paving, a grid) one pixel off is
    # still the same surroundings
    gb = cv2.GaussianBlur(b.mean(axis=2), (0, 0), 1.2)
    ga = cv2.GaussianBlur(a.mean(axis=2), (0, 0), 1.2)
    s = ssim_map(gb, ga)
    region = inside & ok
    diff = cv2.GaussianBlur(np.abs(b - a).max(axis=2), (5, 5), 0)
    level = float(np.clip(2.5 * np.median(diff[ring]) + 10, CHANGE_FLOOR, CHANGE_CEILING))
    changed = diff > level
    return Measures(
        context_similarity=float(s[ring].mean()) if ring.any() else 0.0,
        region_similarity=float(s[region].mean()) if region.any() else 0.0,
        changed=float(changed[region].mean()) if region.any() else 0.0,
        valid=float(ok.mean()),
    )


def refine(before: np.ndarray, warped: np.ndarray, valid: np.ndarray, crop: Crop,
           matrix: np.ndarray) -> np.ndarray:
    """Correct the homography with a small translation fitted on the ring around the region
    (ECC, the region itself masked out): a re-taken photo has parallax, so the plane the
    global homography follows (often the far buildings) is not quite the ground the problem
    lies on. Returns the corrected after → before matrix (the same one when ECC fails)."""
    b = cv2.cvtColor(before[crop.y0:crop.y1, crop.x0:crop.x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    a = cv2.cvtColor(warped[crop.y0:crop.y1, crop.x0:crop.x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    mask = (valid[crop.y0:crop.y1, crop.x0:crop.x1] > 0).astype(np.uint8)
    mask[crop.by0:crop.by1, crop.bx0:crop.bx1] = 0
    if mask.sum() < 200 or float(b[mask > 0].std()) < 2.0:
        return matrix  # nothing around the region to align on
    shift = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    try:
        _, shift = cv2.findTransformECC(b, a, shift, cv2.MOTION_TRANSLATION, criteria, mask, 5)
    except cv2.error:
        return matrix
    dx, dy = float(shift[0, 2]), float(shift[1, 2])
    if abs(dx) > 0.1 * before.shape[1] or abs(dy) > 0.1 * before.shape[0]:
        return matrix  # ECC wandered off: keep the global alignment
    # ECC found warped(x + d) ≈ before(x): move the warped photo back by d.
    return np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1]], dtype=np.float64) @ matrix


def match_light(before: np.ndarray, warped: np.ndarray, valid: np.ndarray, crop: Crop) -> np.ndarray:
    """The aligned after-photo with its light matched to the before-photo (per-channel gain
    and offset fitted on everything but the region), for the detector: a darker or
    brighter re-take should not change what it sees."""
    mask = valid > 0
    mask[crop.y0 + crop.by0:crop.y0 + crop.by1, crop.x0 + crop.bx0:crop.x0 + crop.bx1] = False
    if mask.sum() < 100:
        return warped
    out = _photometric(before.astype(np.float32), warped.astype(np.float32), mask)
    return np.clip(out, 0, 255).astype(np.uint8)


def warp(after: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The after-photo in the before-photo's frame, and where it has pixels."""
    h, w = shape[:2]
    # Replicated borders, not black ones: the detector looks at the warped photo, and a black
    # wedge next to the problem is not what it was trained on. ``valid`` says what is real.
    warped = cv2.warpPerspective(after, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = cv2.warpPerspective(np.full(after.shape[:2], 255, np.uint8), matrix, (w, h),
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped, cv2.erode(valid, np.ones((5, 5), np.uint8))
