"""WGS-84 ↔ GCJ-02 (pure): the datum Chinese base maps (AMap, Tencent, Tianditu's GCJ
layers) are drawn in, so a point the hub stores in WGS-84 lands on the right street.

GCJ-02 is WGS-84 shifted by a smooth, position-dependent offset (a few hundred metres in
the seed district), defined by the published formula on the Krasovsky ellipsoid
(``A = 6378245``, ``EE = 0.006693421622965943``). Outside a box around mainland China
the offset is not applied (points there are the same in both datums).

``to_gcj02`` is the formula itself. ``to_wgs84`` inverts it by fixed-point iteration (the
offset changes slowly, so each step gains several digits); it stops at ``1e-9``° (under a
millimetre) or after 30 steps.
"""

from __future__ import annotations

import math

__all__ = ["A", "EE", "in_china", "to_gcj02", "to_wgs84"]

A = 6378245.0  # Krasovsky 1940 semi-major axis, metres
EE = 0.00669342162296594323  # its first eccentricity squared

# The usual bounding box of mainland China in which the offset applies.
_LON_MIN, _LON_MAX = 72.004, 137.8347
_LAT_MIN, _LAT_MAX = 0.8293, 55.8271


def in_china(lat: float, lon: float) -> bool:
    return _LON_MIN <= lon <= _LON_MAX and _LAT_MIN <= lat <= _LAT_MAX


def _waves(x: float) -> float:
    """The term both components share (x: lon - 105)."""
    return (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0


def _d_lat(x: float, y: float) -> float:
    out = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    out += _waves(x)
    out += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    out += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return out


def _d_lon(x: float, y: float) -> float:
    out = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    out += _waves(x)
    out += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    out += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return out


def _offset(lat: float, lon: float) -> tuple[float, float]:
    """(dlat, dlon) in degrees that GCJ-02 adds at this WGS-84 point."""
    x, y = lon - 105.0, lat - 35.0
    rad = lat / 180.0 * math.pi
    s = math.sin(rad)
    magic = 1.0 - EE * s * s
    root = math.sqrt(magic)
    dlat = _d_lat(x, y) * 180.0 / ((A * (1.0 - EE)) / (magic * root) * math.pi)
    dlon = _d_lon(x, y) * 180.0 / (A / root * math.cos(rad) * math.pi)
    return dlat, dlon


def to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 (lat, lon) → GCJ-02 (lat, lon)."""
    if not in_china(lat, lon):
        return lat, lon
    dlat, dlon = _offset(lat, lon)
    return lat + dlat, lon + dlon


def to_wgs84(lat: float, lon: float, tolerance: float = 1e-9) -> tuple[float, float]:
    """GCJ-02 (lat, lon) → WGS-84 (lat, lon): the point whose GCJ-02 image is the given one."""
    if not in_china(lat, lon):
        return lat, lon
    w_lat, w_lon = lat, lon
    for _ in range(30):
        g_lat, g_lon = to_gcj02(w_lat, w_lon)
        e_lat, e_lon = g_lat - lat, g_lon - lon
        w_lat, w_lon = w_lat - e_lat, w_lon - e_lon
        if abs(e_lat) < tolerance and abs(e_lon) < tolerance:
            break
    return w_lat, w_lon
