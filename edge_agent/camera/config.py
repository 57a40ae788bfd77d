"""Camera and detector configuration: the ``cameras:``, ``zones:`` and ``detector:`` part
of an agent's firmware config, as one self-contained model, :class:`CameraSection`.

Every field has a default, a description and bounds, so the schema documents itself
(``CameraSection.model_json_schema()``). Cross-object checks live in
:meth:`CameraSection._cross_checks` and raise with the key path: a zone names a camera
that exists, a class maps onto a real camera subcategory of the taxonomy, the model file
exists and predicts as many classes as its labels file names.

Relative paths resolve against ``base_dir`` in the validation context (the config file's
folder when loaded with :func:`load_camera_section`), else the working directory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from protocol.base import StrictModel
from protocol.config import Document, format_path, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id, is_safe_id
from protocol.limits import MAX_LIVE_FPS, MAX_LIVE_FRAME_BYTES, MAX_LIVE_SECONDS
from protocol.taxonomy import Source, taxonomy
from vision.labels import LabelsError, read_labels
from vision.models import (
    BUNDLED_LABELS,
    BUNDLED_MODEL,
    DEFAULT_LIVE_THRESHOLD,
    NAMED_MODELS,
    live_threshold,
    read_thresholds,
)

__all__ = [
    "BUNDLED_CLASS_DEFAULTS",
    "BUNDLED_LABELS",
    "BUNDLED_MODEL",
    "CameraConfig",
    "CameraLocation",
    "CameraSection",
    "ClassSettings",
    "ClipConfig",
    "DetectorConfig",
    "LiveConfig",
    "MotionConfig",
    "PeopleConfig",
    "TrackingConfig",
    "ZoneConfig",
    "ZonePurpose",
    "camera_problems",
    "checked_model",
    "default_class_settings",
    "load_camera_section",
    "locate_cross_checks",
    "people_reading",
]


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]
Polygon = Annotated[list[Point], Field(min_length=3, max_length=64)]


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        return Path(base) / value
    return value


class CameraLocation(StrictModel):
    lat: float = Field(31.2304, ge=-90, le=90, description="latitude of what the camera looks at")
    lon: float = Field(121.4737, ge=-180, le=180, description="longitude")
    grid_id: Id | None = Field(None, description="the management grid this view belongs to")
    place: str | None = Field(None, max_length=200, description="place text shown to operators")


class MotionConfig(StrictModel):
    enabled: bool = Field(True, description="run the detector only on motion (plus the rules below)")
    width: int = Field(96, ge=16, le=640, description="width of the downscaled gray frame the gate compares")
    threshold: int = Field(18, ge=1, le=255, description="per-pixel gray difference that counts as change")
    min_ratio: float = Field(0.004, ge=0.0, le=1.0, description="changed fraction of unmasked pixels that counts as motion")
    background_rate: float = Field(0.05, gt=0.0, le=1.0, description="how fast the background model follows the scene")
    idle_detect_s: float = Field(1.0, ge=0.5, le=3600, description="run the detector at least this often without motion (a small or low-contrast object can appear without tripping the gate; 1 s keeps such an event within 3 s)")


class ClassSettings(StrictModel):
    enabled: bool = Field(True, description="false: detections of this class are ignored on this camera (not tracked, not reported)")
    min_score: float = Field(0.45, ge=0.0, le=1.0, description="median score a track needs before it is reported")
    min_frames: int = Field(3, ge=1, le=100, description="frames a track needs before it is reported")
    subcategory: str | None = Field(None, description="override the detector's class mapping for this camera")


# Defaults per label: the operating point the bundled model ships with, in
# ``vision/models/thresholds.json`` beside it (written by its training; how each was chosen
# is in that file and docs/model_card.md). A camera's ``classes`` overrides them.
BUNDLED_CLASS_DEFAULTS: dict[str, ClassSettings] = {
    label: ClassSettings(min_score=score) for label, score in (read_thresholds(BUNDLED_MODEL) or {}).items()
}


def default_class_settings(label: str) -> ClassSettings:
    """The thresholds a label gets when the camera's ``classes`` does not name it."""
    return BUNDLED_CLASS_DEFAULTS.get(label) or ClassSettings()


def model_class_defaults(model: Path) -> dict[str, ClassSettings]:
    """Per label, the thresholds a camera gets from its detector's model: the model's own
    ``thresholds.json`` over the bundled defaults (a model without one gets those)."""
    shipped = read_thresholds(model) or {}
    return {**BUNDLED_CLASS_DEFAULTS, **{label: ClassSettings(min_score=score) for label, score in shipped.items()}}


class TrackingConfig(StrictModel):
    match_iou: float = Field(0.25, ge=0.0, le=1.0, description="IoU at which a detection continues a track")
    match_distance: float = Field(0.12, ge=0.0, le=1.0, description="...or centre distance (fraction of the frame) when IoU is low")
    end_after_s: float = Field(8.0, ge=0.5, le=3600, description="a track unseen this long ends (event 'end')")
    update_min_interval_s: float = Field(30.0, ge=0.0, le=86400, description="at most one 'update' per track this often")
    update_iou: float = Field(0.6, ge=0.0, le=1.0, description="send 'update' when the box's IoU with the last sent box falls below this")
    update_score_delta: float = Field(0.15, ge=0.0, le=1.0, description="...or the score moves this much")
    score_window: int = Field(7, ge=1, le=100, description="frames the median score is taken over")
    duplicate_iou: float = Field(0.5, ge=0.0, le=1.0, description="a track overlapping an older one of its class this much (IoU, or this share of its own box) is the same object: merged, never reported twice")


class ZonePurpose(StrEnum):
    FIRE_LANE = "fire_lane"  # a vehicle dwelling here blocks the fire lane
    NO_PARKING = "no_parking"  # a vehicle dwelling here is parked illegally
    WATCH = "watch"  # report the listed classes only here (with the zone in the evidence)
    IGNORE = "ignore"  # never report anything seen here (nor count it as a person)
    COUNT = "count"  # count the people standing here (telemetry reading <camera>.<zone>.people); no events


_PURPOSE_SUBCATEGORY = {ZonePurpose.FIRE_LANE: "roads.fire_lane_blocked", ZonePurpose.NO_PARKING: "roads.illegal_parking"}


class ZoneConfig(StrictModel):
    id: Id = Field(description="zone id, shown in the event's evidence")
    camera: Id = Field(description="the camera this zone is drawn on")
    polygon: Polygon = Field(description="outline as [x, y] fractions of the frame (0..1), at least 3 points")
    purpose: ZonePurpose = Field(ZonePurpose.WATCH, description="fire_lane | no_parking | watch | ignore | count")
    classes: list[str] = Field(default_factory=list, description="detector labels this zone applies to (empty: vehicle for fire_lane/no_parking, all for watch/ignore)")
    dwell_s: float = Field(0.0, ge=0.0, le=86400, description="seconds an object must stay inside before it is reported")
    subcategory: str | None = Field(None, description="what to report (default: roads.fire_lane_blocked / roads.illegal_parking / the class mapping)")
    min_overlap: float = Field(0.3, ge=0.0, le=1.0, description="fraction of the box's bottom third inside the polygon that counts as inside")

    def applies_to(self, label: str) -> bool:
        """Whether this zone's event rule (or ignoring) applies to ``label``. A count zone
        has no event rule: it only counts people (``edge_agent/camera/people.py``)."""
        if self.purpose == ZonePurpose.COUNT:
            return False
        if self.classes:
            return label in self.classes
        if self.purpose in _PURPOSE_SUBCATEGORY:
            return label == "vehicle"
        return True

    def reported_subcategory(self) -> str | None:
        return self.subcategory or _PURPOSE_SUBCATEGORY.get(self.purpose)


class PeopleConfig(StrictModel):
    """People counting on one camera (``edge_agent/camera/people.py``): the count goes out
    in the telemetry ``readings``, where a hub vital-signs gauge of kind ``people`` reads it."""

    enabled: bool = Field(True, description="publish this camera's people count as telemetry readings <camera>.people and <camera>.<zone>.people (count zones)")
    labels: list[str] | None = Field(None, min_length=1, max_length=16, description="detector labels counted as people (default: person, when the model has it)")
    window_s: float = Field(10.0, ge=0.5, le=3600, description="the count published is the median of the counts of the frames analysed this long before the heartbeat")


PEOPLE_LABEL = "person"  # what a camera counts unless its people.labels says otherwise
PEOPLE_READING = "people"  # the reading's last part: <camera>.people, <camera>.<zone>.people


def people_reading(camera: str, zone: str | None = None) -> str:
    """The telemetry reading a camera's (or one of its count zones') people count goes out as."""
    return f"{camera}.{zone}.{PEOPLE_READING}" if zone else f"{camera}.{PEOPLE_READING}"


class LiveConfig(StrictModel):
    """Live view on the hub's request (``live`` topic): frames are sent only while a request
    runs, at most ``fps`` a second, each JPEG at most ``max_bytes`` (downscaled to
    ``max_side`` and re-encoded at lower quality, then smaller, until it fits)."""

    enabled: bool = Field(True, description="false: refuse the hub's live view requests for this camera")
    fps: float = Field(1.0, gt=0.0, le=MAX_LIVE_FPS, description="live frames per second at most")
    max_bytes: int = Field(50_000, ge=4096, le=MAX_LIVE_FRAME_BYTES, description=f"largest live JPEG in bytes (the protocol's cap is {MAX_LIVE_FRAME_BYTES})")
    max_side: int = Field(640, ge=96, le=1920, description="longest side of a live frame in pixels (downscaled, never enlarged)")
    quality: int = Field(70, ge=20, le=95, description="JPEG quality tried first (lowered, then the frame shrunk, until it fits max_bytes)")
    max_seconds: float = Field(120.0, ge=1.0, le=MAX_LIVE_SECONDS, description=f"longest a single request runs (the hub refreshes while somebody watches; protocol cap {MAX_LIVE_SECONDS})")


def even_size(source: tuple[int, int], width: int) -> tuple[int, int]:
    """(width, height) of a clip frame from a ``source`` frame: at most ``width`` wide (never
    enlarged), the aspect ratio kept, both even (4:2:0 needs it)."""
    w = max(2, min(width, source[0]) // 2 * 2)
    h = max(2, round(source[1] * w / source[0]) // 2 * 2)
    return w, h


CLIP_MEMORY_LIMIT = 64 * 1024 * 1024  # frames one camera may hold for its clips
CLIP_DEFAULT_FPS_CAP = 5.0  # clip.fps unset: the camera's fps, at most this


class ClipConfig(StrictModel):
    """Event clips (``edge_agent/camera/clips.py``): the camera keeps its last ``pre_s``
    seconds of frames, downscaled to ``width``, in a ring buffer; when a problem event
    starts it records ``post_s`` seconds more and encodes the lot as an H.264 MP4 that goes
    to the hub through the outbox, after the event (docs/camera.md, Event clips)."""

    enabled: bool = Field(True, description="false: no ring buffer, no clips")
    pre_s: float = Field(10.0, ge=0.0, le=60.0, description="seconds before the event in its clip")
    post_s: float = Field(20.0, ge=1.0, le=120.0, description="seconds after the event in its clip (the clip ships once they have passed)")
    fps: float | None = Field(None, gt=0.0, le=10.0, description="frames per second kept for clips, at most the camera's fps (only frames the camera reads can be kept); none: the camera's fps, at most 5")
    width: int = Field(320, ge=64, le=1280, description="clip frame width in pixels (height keeps the aspect ratio; both rounded to even)")
    crf: int = Field(30, ge=18, le=45, description="H.264 constant rate factor: higher is smaller and blurrier (x264's scale; 23 is its default)")
    max_recording: int = Field(2, ge=1, le=8, description="clips one camera records at once; an event beyond them gets no clip (counted in telemetry as overlapping)")

    def rate(self, camera_fps: float) -> float:
        """The frames per second a clip keeps on a camera analysing ``camera_fps``."""
        return self.fps if self.fps is not None else min(camera_fps, CLIP_DEFAULT_FPS_CAP)

    def frame_bytes(self, source: tuple[int, int] = (1920, 1080)) -> int:
        """Bytes of one kept frame (YUV 4:2:0) from a source of that size."""
        w, h = even_size(source, self.width)
        return w * h * 3 // 2

    def memory_bytes(self, camera_fps: float, source: tuple[int, int] = (1920, 1080)) -> int:
        """Most bytes of frames one camera holds: the ring buffer and its recordings share
        frames, and together span at most ``pre_s + post_s`` seconds."""
        return (math.ceil((self.pre_s + self.post_s) * self.rate(camera_fps)) + 2) * self.frame_bytes(source)


class CameraConfig(StrictModel):
    id: Id = Field(description="camera id: the event's source")
    url: str | None = Field(None, max_length=2000, description="rtsp://, http(s):// (MJPEG) URL; never passed through a shell")
    file: Path | None = Field(None, description="a video file (for tests and demos)")
    device: int | None = Field(None, ge=0, le=63, description="a local video device index (/dev/videoN)")
    loop: bool = Field(True, description="play a file again from the start when it ends")
    realtime: bool = Field(True, description="play a file at its own frame rate (false: as fast as it decodes)")
    enabled: bool = Field(True, description="false: configured but not run")
    fps: float = Field(2.0, gt=0.0, le=30.0, description="frames per second analysed; the rest are skipped without decoding where the source allows")
    resolution: tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]] | None = Field(
        None, description="expected [width, height]; frames of another size are resized to it")
    decode_scale: Literal[1, 2, 4] = Field(2, description="decode MJPEG at 1/N size (cheaper; 720p at 2 is 640x360)")
    location: CameraLocation = Field(default_factory=CameraLocation, description="where the camera looks")
    masks: list[Polygon] = Field(default_factory=list, description="areas the motion gate ignores (trees in wind, a clock), [x, y] fractions")
    motion: MotionConfig = Field(default_factory=MotionConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    classes: dict[str, ClassSettings] = Field(default_factory=dict, description="per-class thresholds by detector label")
    stall_timeout_s: float = Field(10.0, ge=0.5, le=600, description="no frame for this long: reconnect")
    down_after_s: float = Field(15.0, ge=0.0, le=3600, description="report the camera DOWN after failing this long")
    reconnect_initial_s: float = Field(1.0, gt=0.0, le=600, description="first reconnect delay (then exponential with jitter)")
    reconnect_max_s: float = Field(60.0, gt=0.0, le=3600, description="longest reconnect delay")
    snapshot_width: int = Field(320, ge=64, le=1920, description="longest side of an event's snapshot crop")
    clip: ClipConfig = Field(default_factory=ClipConfig, description="event clips: the seconds around a problem event as an H.264 MP4")
    people: PeopleConfig = Field(default_factory=PeopleConfig, description="people counting, for the hub's people vital sign")
    live: LiveConfig = Field(default_factory=LiveConfig, description="live view on the hub's request: rate and size caps")

    @model_validator(mode="after")
    def _one_source(self) -> CameraConfig:
        given = [name for name in ("url", "file", "device") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, file, device (got {', '.join(given) or 'none'})")
        if self.url is not None and self.url.split("://", 1)[0].lower() not in ("rtsp", "rtsps", "http", "https", "rtmp"):
            raise ValueError("url must start with rtsp://, rtsps://, http://, https:// or rtmp://")
        if any(ch in (self.url or "") for ch in "\r\n\x00"):
            raise ValueError("url contains control characters")
        if self.clip.enabled:
            if self.clip.fps is not None and self.clip.fps > self.fps:
                raise ValueError(f"clip.fps {self.clip.fps:g} is above the camera's fps {self.fps:g}: a clip "
                                 "keeps only frames the camera reads; lower clip.fps or raise fps")
            need = self.clip.memory_bytes(self.fps)
            if need > CLIP_MEMORY_LIMIT:
                raise ValueError(
                    f"clip frames would take up to {need / 2**20:.0f} MiB on this camera ((clip.pre_s "
                    f"{self.clip.pre_s:g} + clip.post_s {self.clip.post_s:g}) x {self.clip.rate(self.fps):g} "
                    f"frames/s of width {self.clip.width}), over {CLIP_MEMORY_LIMIT // 2**20} MiB: "
                    "lower clip.pre_s, clip.post_s, clip.fps or clip.width")
        return self

    @field_validator("file")
    @classmethod
    def _file_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return v
        v = _resolve(v, info)
        if not v.is_file():
            raise ValueError(f"video file {v} not found")
        return v

    # The defaults of the section's detector model (set by CameraSection); None: the bundled ones.
    _model_defaults: dict[str, ClassSettings] | None = PrivateAttr(default=None)

    def class_settings(self, label: str) -> ClassSettings:
        if label in self.classes:
            return self.classes[label]
        if self._model_defaults is not None:
            return self._model_defaults.get(label) or ClassSettings()
        return default_class_settings(label)

    def source_key(self) -> tuple:
        """What opening the source depends on: a change here needs a new connection."""
        return (self.url, self.file, self.device, self.loop, self.realtime, self.resolution, self.decode_scale)


class DetectorConfig(StrictModel):
    model: Path = Field(BUNDLED_MODEL, description="the .tflite model, or a bundled one by name: bundled:rendered "
                        "(the default, trained on rendered scenes) or bundled:real (trained on real photos)")
    labels: Path = Field(BUNDLED_LABELS, description="labels file: one class name per line, in class-id order")
    layout: Literal["auto", "centernet", "ssd", "yolo"] = Field("auto", description="output layout; auto guesses from the output shapes")
    threads: int = Field(1, ge=1, le=16, description="interpreter threads (the one shared interpreter serves every camera)")
    input_order: Literal["rgb", "bgr"] = Field("rgb", description="channel order the model expects")
    input_range: Literal["0_255", "0_1", "-1_1"] = Field("0_255", description="pixel range a float model expects (quantized models use their own scale)")
    score_threshold: float = Field(DEFAULT_LIVE_THRESHOLD, ge=0.01, le=1.0, description="detections below this are dropped before tracking "
                                   "(unset: 0.3, or the model's lowest shipped class threshold where lower)")
    iou_threshold: float = Field(0.45, ge=0.0, le=1.0, description="NMS IoU for raw (YOLO) outputs")
    max_detections: int = Field(50, ge=1, le=500)
    classes: dict[str, str | None] | None = Field(
        None, description="label -> taxonomy subcategory (null: report only through zones); default: the bundled model's mapping")
    check_model: bool = Field(True, description="open the model at validation to check it against the labels")

    @field_validator("model", "labels")
    @classmethod
    def _resolve_paths(cls, v: Path, info: ValidationInfo) -> Path:
        if info.field_name == "model" and str(v) in NAMED_MODELS:
            return NAMED_MODELS[str(v)]
        return _resolve(v, info)

    @model_validator(mode="after")
    def _labels_of_a_named_model(self) -> DetectorConfig:
        """A bundled model named without ``labels`` reads the labels beside it."""
        if "labels" not in self.model_fields_set and self.model in NAMED_MODELS.values():
            self.labels = self.model.with_name("labels.txt")
        return self

    def live_score(self) -> float:
        """The ``score_threshold`` in force: the one set, else :func:`vision.models.live_threshold`
        of the model (0.3, or lower where the model ships a lower class threshold)."""
        if "score_threshold" in self.model_fields_set:
            return self.score_threshold
        return live_threshold(self.model, self.score_threshold)

    def class_map(self, labels: list[str]) -> dict[str, str | None]:
        from vision.labels import bundled_class_map

        if self.classes is not None:
            return {label: self.classes.get(label) for label in labels}
        bundled = bundled_class_map()
        return {label: bundled.get(label) for label in labels}


def _camera_subcategory(code: str) -> str | None:
    """None if ``code`` is a live camera subcategory, else the reason it is not."""
    try:
        sub = taxonomy().subcategory(code)
    except KeyError:
        return f"{code!r} is not a taxonomy subcategory"
    if sub.retired:
        return f"{code!r} is retired"
    if sub.source not in (Source.CAMERA, Source.REPORT):
        return f"{code!r} is a {sub.source.value} subcategory, not one a camera reports"
    return None


PathKey = tuple[str | int, ...]


def camera_problems(
    cameras: Sequence[tuple[int, CameraConfig]],
    zones: Sequence[tuple[int, ZoneConfig]],
    detector: DetectorConfig | None,
    *,
    camera_ids: Sequence[str] | None = None,
    check_model: bool = True,
) -> list[tuple[PathKey, str]]:
    """The cross-object checks of the camera part of a config, each as (key path, message):
    unique ids, zones on cameras that exist, labels and subcategories that exist, and the
    model file against its labels. ``cameras`` and ``zones`` carry their index in the file
    (a partly invalid file passes only the entries that validated; ``camera_ids`` then
    names every camera written, valid or not)."""
    out: list[tuple[PathKey, str]] = []
    ids = list(camera_ids) if camera_ids is not None else [c.id for _, c in cameras]
    first: dict[str, int] = {}
    for ci, cam in cameras:
        if cam.id in first:
            out.append((("cameras", ci, "id"), f"id {cam.id!r} is already used by cameras[{first[cam.id]}]; camera ids are unique"))
        first.setdefault(cam.id, ci)
    labels = None
    if detector is not None:
        try:
            labels = read_labels(detector.labels)
        except LabelsError as exc:
            out.append((("detector", "labels"), str(exc)))
    if labels is not None and detector is not None:
        for label, code in (detector.classes or {}).items():
            if label not in labels:
                out.append((("detector", "classes", label), f"not a label of {detector.labels.name} ({', '.join(labels)})"))
            elif code is not None and (why := _camera_subcategory(code)):
                out.append((("detector", "classes", label), why))
        for ci, cam in cameras:
            for label, cs in cam.classes.items():
                if label not in labels:
                    out.append((("cameras", ci, "classes", label), f"not a detector label ({', '.join(labels)})"))
                if cs.subcategory and (why := _camera_subcategory(cs.subcategory)):
                    out.append((("cameras", ci, "classes", label, "subcategory"), why))
            for label in cam.people.labels or ():
                if label not in labels:
                    out.append((("cameras", ci, "people", "labels"), f"{label!r} is not a detector label ({', '.join(labels)})"))
        if check_model and detector.check_model:
            from vision.runtime import ModelError

            try:
                checked_model(detector.model, tuple(labels), detector.layout)
            except ModelError as exc:
                out.append((("detector", "model"), exc.detail))
    zone_ids = [z.id for _, z in zones]
    for zi, zone in zones:
        if zone.camera not in ids:
            out.append((("zones", zi, "camera"), f"no camera {zone.camera!r} (cameras: {', '.join(ids) or 'none'})"))
        if zone_ids.count(zone.id) > 1:
            out.append((("zones", zi, "id"), f"{zone.id!r} is used twice; zone ids are unique"))
        if labels is not None:
            for label in zone.classes:
                if label not in labels:
                    out.append((("zones", zi, "classes"), f"{label!r} is not a detector label ({', '.join(labels)})"))
        if zone.subcategory and (why := _camera_subcategory(zone.subcategory)):
            out.append((("zones", zi, "subcategory"), why))
        if zone.purpose == ZonePurpose.COUNT:
            out.extend(_count_zone_problems(zi, zone))
    return out


def _count_zone_problems(zi: int, zone: ZoneConfig) -> list[tuple[PathKey, str]]:
    """A count zone reports no events, and its count goes out as a reading whose name is
    an id (at most 64 characters)."""
    out: list[tuple[PathKey, str]] = []
    for key in ("classes", "subcategory"):
        if getattr(zone, key):
            out.append((("zones", zi, key), "a count zone reports no events; it counts the camera's "
                        "people.labels (drop this key, or draw a watch zone for events)"))
    name = people_reading(zone.camera, zone.id)
    if not is_safe_id(name):
        out.append((("zones", zi, "id"), f"its count would go out as reading {name!r}, longer than 64 "
                    "characters; shorten the zone id"))
    return out


_CHECKED: dict[tuple, str | None] = {}


def checked_model(path: Path, labels: tuple[str, ...], layout: str) -> None:
    """:func:`~vision.runtime.inspect_model`, remembered per file version (a
    desired config applied at run time does not load the model again just to check it)."""
    from vision.runtime import ModelError, inspect_model

    try:
        st = path.stat()
        key: tuple = (str(path), st.st_mtime_ns, st.st_size, labels, layout)
    except OSError:
        key = (str(path), None, None, labels, layout)
    if key not in _CHECKED:
        try:
            inspect_model(path, list(labels), layout)  # type: ignore[arg-type]
            _CHECKED[key] = None
        except ModelError as exc:
            _CHECKED[key] = exc.detail
        if len(_CHECKED) > 64:
            _CHECKED.pop(next(iter(_CHECKED)))
    if _CHECKED[key] is not None:
        raise ModelError(path, _CHECKED[key])


class CameraSection(StrictModel):
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=256, description="the cameras this agent reads")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=1024, description="polygon zones on cameras")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="the shared detector")

    @model_validator(mode="after")
    def _cross_checks(self) -> CameraSection:
        problems = camera_problems(list(enumerate(self.cameras)), list(enumerate(self.zones)), self.detector)
        if problems:
            raise ValueError(CROSS_CHECK_SEPARATOR.join(f"{format_path(path)}: {msg}" for path, msg in problems))
        if self.detector.model != BUNDLED_MODEL:  # another model's own thresholds are the cameras' defaults
            defaults = model_class_defaults(self.detector.model)
            for cam in self.cameras:
                cam._model_defaults = defaults
        return self

    def zones_for(self, camera_id: str) -> list[ZoneConfig]:
        return [z for z in self.zones if z.camera == camera_id]


CROSS_CHECK_SEPARATOR = " | "
_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for name, index in _PATH_PART.findall(text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def locate_cross_checks(error: ConfigError, doc: Document, prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """Split the cross-check message of :class:`CameraSection` into one problem per check,
    each at its own ``file:line:col`` (``prefix``: where the section sits in a bigger doc)."""
    problems: list[ConfigProblem] = []
    for p in error.problems:
        pieces = p.message.split(CROSS_CHECK_SEPARATOR)
        if len(pieces) == 1 and not re.match(r"^[a-z_]+(\[\d+\])?[.:]", p.message):
            problems.append(p)
            continue
        pieces[-1] = re.sub(r" \(got \{.*$", "", pieces[-1])
        for piece in pieces:
            where, _, message = piece.partition(": ")
            path = (*prefix, *_parse_path(where))
            problems.append(doc.problem(path, message))
    return ConfigError(problems)


def load_camera_section(path: str | Path, *, context: dict[str, Any] | None = None) -> CameraSection:
    """Load a YAML file that holds just the camera section (tests, ``check-config``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, None, "", f"cannot read file: {exc}")]) from None
    doc = parse_yaml(text, str(path))
    ctx = {"base_dir": path.resolve().parent, **(context or {})}
    try:
        return validate_document(CameraSection, doc, context=ctx)
    except ConfigError as exc:
        raise locate_cross_checks(exc, doc) from None
