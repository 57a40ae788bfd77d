"""Procedural street scenes with ground truth: the one renderer shared by model training,
the tests, the camera simulator (``simulators/camera.py``) and photo verification.

Everything is deterministic by seed (numpy + OpenCV only, no downloaded data)::

    spec = random_scene(seed=7)                 # a SceneSpec: place, camera, light, weather, objects
    image, boxes = render(spec, (640, 360))     # BGR uint8 frame + list[GroundTruthBox]
    clip = random_clip(seed=7, duration_s=30)   # a Clip: scene + timeline of problems
    pair = make_pair(seed=7, fixed=True)        # before/after photos for verification

Classes the renderer labels (``LABELS``): water (puddles, flooding), flame, smoke,
fallen_tree, garbage (overflowing bins), vehicle (any car; a fire-lane zone decides
whether it is a problem).
"""

from __future__ import annotations

from .clips import Clip, ClipEvent, random_clip, render_clip_frame, write_clip
from .pairs import PhotoPair, make_pair, write_pairs
from .render import fire_lane_zone, render
from .spec import LABELS, GroundTruthBox, SceneObject, SceneSpec, random_scene

__all__ = [
    "LABELS",
    "Clip",
    "ClipEvent",
    "GroundTruthBox",
    "PhotoPair",
    "SceneObject",
    "SceneSpec",
    "fire_lane_zone",
    "make_pair",
    "random_clip",
    "random_scene",
    "render",
    "render_clip_frame",
    "write_clip",
    "write_pairs",
]
