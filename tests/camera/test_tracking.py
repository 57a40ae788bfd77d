"""The pure tracker and lifecycle, driven by timestamps."""

from __future__ import annotations

import itertools

import pytest

from edge_agent.camera.config import ClassSettings, TrackingConfig, ZoneConfig, ZonePurpose
from edge_agent.tracking import Tracker, box_in_polygon
from protocol.messages import EventKind
from vision.postprocess import Detection

MAP = {"flame": "community_safety.fire", "vehicle": None, "water": "flood.road_waterlogging"}


def det(label, score, box):
    return Detection(0, score, box, label)


def ids():
    counter = itertools.count(1)
    return lambda: f"ev{next(counter)}"


def make(zones=(), **cfg):
    return Tracker(TrackingConfig(**{"end_after_s": 5.0, "update_min_interval_s": 10.0, **cfg}), MAP, zones=zones,
                   class_settings=lambda _l: ClassSettings(min_frames=3, min_score=0.5), new_id=ids())


FLAME = (0.4, 0.4, 0.5, 0.6)


def test_new_needs_min_frames_and_median_score_then_end_after_gone():
    tr = make()
    assert tr.step([det("flame", 0.9, FLAME)], 0.0) == []
    assert tr.step([det("flame", 0.2, FLAME)], 0.5) == []
    out = tr.step([det("flame", 0.8, FLAME)], 1.0)  # median(0.9, 0.2, 0.8) = 0.8
    assert [(d.kind, d.event_id, d.subcategory, d.frames) for d in out] == [(EventKind.NEW, "ev1", "community_safety.fire", 3)]
    assert out[0].first_seen == 0.0
    assert tr.step([], 3.0) == []
    assert tr.tick(5.9) == []
    end = tr.tick(6.0)
    assert [(d.kind, d.event_id) for d in end] == [(EventKind.END, "ev1")]
    assert not tr.active


def test_low_median_score_is_never_reported():
    tr = make()
    for i in range(10):
        assert tr.step([det("flame", 0.4, FLAME)], i * 0.5) == []


def test_jittering_box_stays_one_track_and_updates_are_rate_limited():
    tr = make()
    for i in range(3):
        tr.step([det("flame", 0.9, FLAME)], i)
    moved = (0.42, 0.38, 0.62, 0.7)  # grown: IoU with the sent box < 0.6
    assert tr.step([det("flame", 0.9, moved)], 4.0) == []  # too soon after new (10 s)
    out = tr.step([det("flame", 0.9, moved)], 12.0)
    assert [(d.kind, d.event_id) for d in out] == [(EventKind.UPDATE, "ev1")]
    assert tr.step([det("flame", 0.9, moved)], 23.0) == []  # unchanged since the update
    assert len(tr.tracks) == 1


def test_two_objects_two_events():
    tr = make()
    other = (0.05, 0.05, 0.15, 0.2)
    out = []
    for i in range(3):
        out += tr.step([det("flame", 0.9, FLAME), det("flame", 0.9, other)], i)
    assert sorted(d.event_id for d in out) == ["ev1", "ev2"]


def test_one_object_boxed_twice_is_one_event():
    """The detector sometimes boxes one flame twice (the whole flame and its core): the
    spare box must not become a second fire event; two separate flames still are two."""
    tr = make()
    core = (0.42, 0.45, 0.49, 0.58)  # inside FLAME: 91 % of its area
    near_copy = (0.41, 0.41, 0.5, 0.62)  # IoU 0.78 with FLAME
    out = []
    for i in range(6):
        out += tr.step([det("flame", 0.9, FLAME), det("flame", 0.9, core if i % 2 else near_copy)], i * 0.5)
    assert [(d.kind, d.event_id) for d in out] == [(EventKind.NEW, "ev1")]
    assert len(tr.tracks) == 1
    off = make(duplicate_iou=1.0)  # switched off: the old behaviour, one event per box
    out = []
    for i in range(6):
        out += off.step([det("flame", 0.9, FLAME), det("flame", 0.9, core)], i * 0.5)
    assert sorted(d.event_id for d in out) == ["ev1", "ev2"]


def test_a_gap_shorter_than_end_after_keeps_the_event():
    tr = make()
    for i in range(3):
        tr.step([det("flame", 0.9, FLAME)], i)
    assert tr.step([], 4.0) == []
    assert tr.step([det("flame", 0.9, FLAME)], 6.5) == []
    assert [d.kind for d in tr.tick(11.6)] == [EventKind.END]


LANE = [(0.2, 0.5), (0.6, 0.5), (0.6, 1.0), (0.2, 1.0)]
CAR_IN = (0.25, 0.5, 0.55, 0.8)
CAR_OUT = (0.7, 0.2, 0.9, 0.4)


def test_vehicle_in_fire_lane_after_dwell():
    zone = ZoneConfig(id="lane", camera="c", polygon=LANE, purpose=ZonePurpose.FIRE_LANE, dwell_s=30)
    tr = make([zone])
    out = []
    for t in range(0, 40, 2):
        out += tr.step([det("vehicle", 0.8, CAR_IN), det("vehicle", 0.8, CAR_OUT)], float(t))
    news = [d for d in out if d.kind == EventKind.NEW]
    assert len(news) == 1
    assert (news[0].subcategory, news[0].zone, news[0].t) == ("roads.fire_lane_blocked", "lane", 30.0)
    # The car drives out of the lane (still visible): the event ends after end_after_s.
    out = []
    for t in range(40, 50, 2):
        out += tr.step([det("vehicle", 0.8, CAR_OUT), det("vehicle", 0.8, (0.62, 0.3, 0.85, 0.48))], float(t))
    assert [d.kind for d in out] == [EventKind.END]


def test_vehicle_outside_zones_is_not_a_problem():
    tr = make()
    for t in range(10):
        assert tr.step([det("vehicle", 0.9, CAR_IN)], float(t)) == []


def test_ignore_zone_drops_detections_and_watch_zone_limits_reporting():
    ignore = ZoneConfig(id="tree", camera="c", polygon=LANE, purpose=ZonePurpose.IGNORE)
    tr = make([ignore])
    for t in range(5):
        assert tr.step([det("flame", 0.9, CAR_IN)], float(t)) == []
    watch = ZoneConfig(id="road", camera="c", polygon=LANE, purpose=ZonePurpose.WATCH, classes=["water"])
    tr = make([watch])
    out = []
    for t in range(5):
        out += tr.step([det("water", 0.9, CAR_IN), det("water", 0.9, CAR_OUT)], float(t))
    assert [(d.kind, d.zone) for d in out] == [(EventKind.NEW, "road")]


def test_box_in_polygon_uses_the_bottom_of_the_box():
    assert box_in_polygon(CAR_IN, LANE, 0.5)
    assert not box_in_polygon(CAR_OUT, LANE, 0.1)
    # Roof inside, wheels outside: not in the lane.
    assert not box_in_polygon((0.3, 0.3, 0.5, 0.49), LANE, 0.3)


@pytest.mark.parametrize("score", [0.49, 0.51])
def test_thresholds_are_per_class(score):
    tr = Tracker(TrackingConfig(), MAP, class_settings=lambda label: ClassSettings(min_frames=1, min_score=0.5 if label == "flame" else 0.9))
    out = tr.step([det("flame", score, FLAME), det("water", 0.85, CAR_OUT)], 0.0)
    assert [d.label for d in out] == (["flame"] if score > 0.5 else [])
