"""Video clips with a timeline: a fixed camera, problems that appear and disappear, and
the ground-truth log of when (and where) each one was visible."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .places import FIRE_LANE_XZ
from .render import MIN_BOX_FRACTION, fire_lane_zone, render
from .spec import (
    PROBLEM_KINDS,
    GroundTruthBox,
    SceneObject,
    SceneSpec,
    near_z,
    random_object,
    random_scene,
)

__all__ = ["Clip", "ClipEvent", "random_clip", "render_clip_frame", "scripted_clip", "write_clip"]


@dataclass(frozen=True)
class ClipEvent:
    index: int  # which object of the clip's scene
    label: str
    kind: str
    appear_s: float
    disappear_s: float  # the clip's end if it stays

    def visible(self, t: float) -> bool:
        return self.appear_s <= t < self.disappear_s

    def to_json(self) -> dict:
        return {"index": self.index, "label": self.label, "kind": self.kind,
                "appear_s": round(self.appear_s, 3), "disappear_s": round(self.disappear_s, 3)}


@dataclass(frozen=True)
class Clip:
    scene: SceneSpec  # every object that is ever visible
    events: tuple[ClipEvent, ...]  # the timed ones (all others are always there)
    duration_s: float = 60.0
    fps: float = 5.0
    size: tuple[int, int] = (1280, 720)

    def present(self, t: float) -> list[int]:
        """Indices of the scene's objects present at ``t``."""
        timed = {e.index: e for e in self.events}
        return [i for i in range(len(self.scene.objects)) if i not in timed or timed[i].visible(t)]

    def scene_at(self, t: float) -> SceneSpec:
        return self.scene.with_objects([self.scene.objects[i] for i in self.present(t)])

    @property
    def fire_lane(self) -> list[tuple[float, float]] | None:
        return fire_lane_zone(self.scene, self.size) if self.scene.fire_lane else None

    def truth(self) -> dict:
        """The clip's ground truth: metadata plus its timeline."""
        return {
            "seed": self.scene.seed, "place": self.scene.place, "light": self.scene.light,
            "weather": self.scene.weather, "duration_s": self.duration_s, "fps": self.fps,
            "size": list(self.size), "fire_lane": self.fire_lane,
            "events": [e.to_json() for e in self.events],
        }


def _in_lane(rng: np.random.Generator, spec: SceneSpec) -> SceneObject:
    x0, x1, dz, length = FIRE_LANE_XZ
    z0 = near_z(spec.camera) + dz
    return SceneObject("vehicle", x=float(rng.uniform(x0 + 0.6, x1 - 0.6)), z=float(rng.uniform(z0 + 3, z0 + length * 0.6)),
                       size=float(rng.uniform(0.9, 1.1)), seed=int(rng.integers(0, 2**31)), angle=float(rng.choice([0.0, np.pi / 2])))


def clearly_visible(spec: SceneSpec) -> bool:
    """Visible at every moment, with room to spare above the renderer's size floor."""
    for t in (0.0, 0.6, 1.3, 2.2, 3.7):
        _, seen = render(spec, (320, 180), t, artefacts=False)
        if not seen or any((g.box[2] - g.box[0]) < 1.5 * MIN_BOX_FRACTION or (g.box[3] - g.box[1]) < 1.5 * MIN_BOX_FRACTION for g in seen):
            return False
    return True


def _visible_object(rng: np.random.Generator, kind: str, base: SceneSpec) -> SceneObject:
    """A problem of ``kind`` the camera of ``base`` can actually see."""
    for attempt in range(40):
        obj = _in_lane(rng, base) if kind == "vehicle" else random_object(rng, kind, base.camera)
        if attempt >= 20:  # bring it closer, to the middle of the view
            obj = dataclasses.replace(obj, x=base.camera.pan_m + obj.x * 0.3, z=near_z(base.camera) * 1.05 + (obj.z - near_z(base.camera)) * 0.2, size=max(obj.size, 1.0))
        if clearly_visible(base.with_objects([obj])):
            break
    return obj


def scripted_clip(
    seed: int,
    problems: list[tuple[str, float, float]],
    *,
    duration_s: float,
    fps: float = 5.0,
    size: tuple[int, int] = (1280, 720),
) -> Clip:
    """A clip with a script: each ``(kind, appear_s, disappear_s)`` problem shows up and
    goes when told (the demo's cameras follow the scenario's timeline). Daylight, clear
    weather and few distractors: the scenario tests the system, not the detector's
    limits."""
    rng = np.random.default_rng([seed, 13])
    base = random_scene(seed, problems=0, distractors=int(rng.integers(1, 3)))
    base = base.replace(light=str(rng.choice(["day", "overcast"])), weather="clear", fire_lane=False,
                        blur=0.0, noise=min(base.noise, 2.0), jpeg_quality=max(base.jpeg_quality, 75))
    objects = list(base.objects)
    events = []
    for kind, appear, disappear in problems:
        if kind not in PROBLEM_KINDS or kind == "vehicle":
            raise ValueError(f"a scripted problem is one of {', '.join(k for k in PROBLEM_KINDS if k != 'vehicle')}, not {kind!r}")
        if not 0 <= appear < disappear:
            raise ValueError(f"{kind}: appear_s must be >= 0 and before disappear_s")
        objects.append(_visible_object(rng, kind, base.with_objects(objects)))
        events.append(ClipEvent(len(objects) - 1, PROBLEM_KINDS[kind], kind, appear, min(disappear, duration_s)))
    return Clip(base.with_objects(objects), tuple(events), duration_s, fps, size)


def random_clip(
    seed: int,
    *,
    duration_s: float = 60.0,
    fps: float = 5.0,
    size: tuple[int, int] = (1280, 720),
    problems: int = 1,
    kinds: tuple[str, ...] | None = None,
) -> Clip:
    """A clip where ``problems`` objects each appear once (after a quiet start, so the
    appearance is an event) and half of them disappear before the end. A ``vehicle``
    problem parks in a marked fire lane."""
    rng = np.random.default_rng([seed, 7])
    base = random_scene(seed, problems=0, distractors=int(rng.integers(1, 4)))
    choices = kinds or tuple(k for k in PROBLEM_KINDS if k != "flood")
    picked = [str(rng.choice(choices)) for _ in range(problems)]
    if "vehicle" in picked:
        base = base.replace(place=base.place if base.place in ("road", "estate") else "estate", fire_lane=True)
    else:
        base = base.replace(fire_lane=False)
    # Keep distractors out of the fire lane, so it is clear unless a timed car parks there.
    objects = [o for o in base.objects if not (base.fire_lane and abs(o.x) < 2.5)]
    events = []
    for kind in picked:
        obj = _visible_object(rng, kind, base)
        appear = float(rng.uniform(duration_s * 0.1, duration_s * 0.4))
        stays = rng.random() < 0.5
        disappear = duration_s if stays else float(rng.uniform(appear + duration_s * 0.3, duration_s * 0.95))
        objects.append(obj)
        events.append(ClipEvent(len(objects) - 1, PROBLEM_KINDS[kind], kind, appear, disappear))
    # One fixed camera, one compression level: milder artefacts than training stills.
    scene = base.with_objects(objects).replace(blur=min(base.blur, 0.6), jpeg_quality=max(base.jpeg_quality, 60))
    return Clip(scene, tuple(events), duration_s, fps, size)


def render_clip_frame(clip: Clip, t: float, size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[GroundTruthBox]]:
    """The frame at ``t`` seconds and its ground truth (boxes of what is visible then;
    ``index`` refers to ``clip.scene.objects``)."""
    present = clip.present(t)
    img, truth = render(clip.scene_at(t), size or clip.size, t)
    return img, [dataclasses.replace(g, index=present[g.index]) for g in truth]


def write_clip(clip: Clip, video: Path | str, truth: Path | str | None = None, *, boxes: bool = False) -> Path:
    """Write the clip as an MJPEG ``.avi`` (any OpenCV reads it) and its ground truth as
    JSON (``truth``; with ``boxes`` also every frame's boxes). Returns the video path."""
    video = Path(video)
    video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), clip.fps, clip.size)
    if not writer.isOpened():
        raise OSError(f"cannot write video {video}")
    frames = []
    try:
        for i in range(int(round(clip.duration_s * clip.fps))):
            t = i / clip.fps
            img, gt = render_clip_frame(clip, t)
            writer.write(img)
            if boxes:
                frames.append({"t": round(t, 3), "boxes": [b.to_json() for b in gt]})
    finally:
        writer.release()
    if truth is not None:
        data = clip.truth()
        if boxes:
            data["frames"] = frames
        Path(truth).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return video
