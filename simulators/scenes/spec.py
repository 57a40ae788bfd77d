"""What a scene is: plain data, drawn from a seed.

A :class:`SceneSpec` fixes everything about one view (place, camera, light, weather,
objects); :func:`~simulators.scenes.render.render` turns it into pixels and ground truth.
Objects stand on a ground plane in metres (``x`` across, ``z`` away from the camera), so
sizes and perspective stay consistent whatever the camera angle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DISTRACTORS",
    "LABELS",
    "PLACES",
    "PROBLEM_KINDS",
    "CameraPose",
    "GroundTruthBox",
    "SceneObject",
    "SceneSpec",
    "random_object",
    "random_scene",
]

# The detector's classes, in label-file order.
LABELS: tuple[str, ...] = ("water", "flame", "smoke", "fallen_tree", "garbage", "vehicle")

# Object kinds the renderer draws, and the label each carries (None: a distractor).
PROBLEM_KINDS: dict[str, str] = {
    "puddle": "water",
    "flood": "water",
    "flame": "flame",
    "smoke": "smoke",
    "fallen_tree": "fallen_tree",
    "garbage": "garbage",
    "vehicle": "vehicle",
}
DISTRACTORS: tuple[str, ...] = ("cone", "bin", "tree", "lamp", "person", "bench")
PLACES: tuple[str, ...] = ("road", "pavement", "riverside", "estate")
LIGHTS: tuple[str, ...] = ("day", "overcast", "dusk", "night")
WEATHERS: tuple[str, ...] = ("clear", "clear", "rain", "fog")


@dataclass(frozen=True)
class CameraPose:
    height_m: float = 5.0  # above the ground
    horizon: float = 0.38  # horizon line as a fraction of the frame height
    focal: float = 0.9  # focal length as a fraction of the frame width
    roll_deg: float = 0.0
    pan_m: float = 0.0  # lateral offset of the camera

    def moved(self, rng: np.random.Generator, amount: float = 1.0) -> CameraPose:
        """The same camera nudged a little (a re-taken photo, a bumped mount)."""
        return CameraPose(
            height_m=self.height_m * (1 + rng.uniform(-0.03, 0.03) * amount),
            horizon=self.horizon + rng.uniform(-0.02, 0.02) * amount,
            focal=self.focal * (1 + rng.uniform(-0.04, 0.04) * amount),
            roll_deg=self.roll_deg + rng.uniform(-2.0, 2.0) * amount,
            pan_m=self.pan_m + rng.uniform(-0.4, 0.4) * amount,
        )


@dataclass(frozen=True)
class SceneObject:
    kind: str  # a PROBLEM_KINDS key or a DISTRACTORS entry
    x: float  # metres across (0 = centre of the view)
    z: float  # metres away from the camera
    size: float = 1.0  # scale factor on the kind's typical size
    seed: int = 0  # shape and colour variation
    angle: float = 0.0  # orientation on the ground, radians (trees, vehicles, puddles)

    @property
    def label(self) -> str | None:
        return PROBLEM_KINDS.get(self.kind)


@dataclass(frozen=True)
class GroundTruthBox:
    label: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised to 0..1
    kind: str = ""
    index: int = -1  # which SceneObject it came from

    def to_json(self) -> dict:
        return {"label": self.label, "kind": self.kind, "box": [round(v, 4) for v in self.box]}


@dataclass(frozen=True)
class SceneSpec:
    seed: int
    place: str = "road"
    camera: CameraPose = field(default_factory=CameraPose)
    light: str = "day"
    brightness: float = 1.0
    weather: str = "clear"
    noise: float = 2.0  # sensor noise sigma (0..255 scale)
    blur: float = 0.0  # Gaussian blur sigma in pixels at 640 px width
    jpeg_quality: int = 85
    fire_lane: bool = False  # a marked fire lane on the ground
    objects: tuple[SceneObject, ...] = ()
    # How water looks: "flat" (a tinted blob, what the bundled models v1-v3 learnt and the
    # demo, tests and benchmarks draw) or "photo" (water.py: muddy, reflecting, cutting
    # what stands in it), for training a model that has to see real floods.
    water: str = "flat"

    def with_objects(self, objects: tuple[SceneObject, ...] | list[SceneObject]) -> SceneSpec:
        return dataclasses.replace(self, objects=tuple(objects))

    def replace(self, **changes) -> SceneSpec:
        return dataclasses.replace(self, **changes)


# Where each kind may stand (x range across, in metres, relative to the road centre) and
# how far (z range); the renderer rejects ones too small to see.
_PLACEMENT: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "puddle": ((-4.0, 4.0), (0.0, 22.0)),
    "flood": ((-2.0, 2.0), (0.0, 16.0)),
    "flame": ((-7.0, 7.0), (0.0, 26.0)),
    "smoke": ((-7.0, 7.0), (4.0, 34.0)),
    "fallen_tree": ((-3.0, 3.0), (0.0, 24.0)),
    "garbage": ((-8.0, 8.0), (0.0, 22.0)),
    "vehicle": ((-5.0, 5.0), (0.0, 28.0)),
    "cone": ((-5.0, 5.0), (0.0, 18.0)),
    "bin": ((-8.0, 8.0), (0.0, 22.0)),
    "tree": ((-11.0, 11.0), (0.0, 30.0)),
    "lamp": ((-9.0, 9.0), (0.0, 30.0)),
    "person": ((-7.0, 7.0), (0.0, 22.0)),
    "bench": ((-8.0, 8.0), (0.0, 18.0)),
}


def near_z(camera: CameraPose) -> float:
    """Ground distance seen at the bottom edge of the frame (metres)."""
    aspect = 9 / 16
    return camera.focal * camera.height_m / max(1e-3, (1 - camera.horizon) * aspect)


def random_object(rng: np.random.Generator, kind: str, camera: CameraPose) -> SceneObject:
    (x0, x1), (dz0, dz1) = _PLACEMENT[kind]
    z0 = near_z(camera) * 1.08
    z = z0 + rng.uniform(dz0, dz1) * (0.6 + 0.4 * camera.height_m / 5.0)
    return SceneObject(
        kind=kind,
        x=float(rng.uniform(x0, x1) + camera.pan_m),
        z=float(z),
        size=float(rng.uniform(0.75, 1.3)),
        seed=int(rng.integers(0, 2**31)),
        angle=float(rng.uniform(-np.pi, np.pi)),
    )


def random_camera(rng: np.random.Generator) -> CameraPose:
    return CameraPose(
        height_m=float(rng.uniform(2.5, 8.0)),
        horizon=float(rng.uniform(0.2, 0.5)),
        focal=float(rng.uniform(0.7, 1.15)),
        roll_deg=float(rng.uniform(-4.0, 4.0)),
        pan_m=float(rng.uniform(-2.0, 2.0)),
    )


def random_scene(
    seed: int,
    *,
    problems: int | None = None,
    kinds: tuple[str, ...] | None = None,
    distractors: int | None = None,
) -> SceneSpec:
    """A random, fully specified scene. ``problems`` labelled objects (default 0-3) of
    ``kinds`` (default all), plus ``distractors`` unlabelled ones (default 0-4)."""
    rng = np.random.default_rng(seed)
    place = str(rng.choice(PLACES))
    camera = random_camera(rng)
    light = str(rng.choice(LIGHTS, p=[0.45, 0.25, 0.15, 0.15]))
    weather = str(rng.choice(WEATHERS))
    n_problems = int(rng.integers(0, 4)) if problems is None else problems
    n_distract = int(rng.integers(0, 5)) if distractors is None else distractors
    choices = kinds or tuple(PROBLEM_KINDS)
    objects = [random_object(rng, str(rng.choice(choices)), camera) for _ in range(n_problems)]
    # Fire comes with smoke more often than not.
    if any(o.kind == "flame" for o in objects) and rng.random() < 0.5 and (kinds is None or "smoke" in kinds):
        f = next(o for o in objects if o.kind == "flame")
        objects.append(dataclasses.replace(f, kind="smoke", z=f.z + 0.5, seed=f.seed + 1))
    objects += [random_object(rng, str(rng.choice(DISTRACTORS)), camera) for _ in range(n_distract)]
    return SceneSpec(
        seed=seed,
        place=place,
        camera=camera,
        light=light,
        brightness=float(rng.uniform(0.8, 1.2)),
        weather=weather,
        noise=float(rng.uniform(0.5, 6.0)),
        blur=float(rng.choice([0.0, 0.0, 0.6, 1.2])),
        jpeg_quality=int(rng.integers(35, 95)),
        fire_lane=bool(place in ("estate", "road") and rng.random() < 0.4),
        objects=tuple(objects),
    )
