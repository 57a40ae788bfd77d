"""The bundled detectors' files: ``cityops_detector_int8.tflite``, its float twin,
``labels.txt``, ``thresholds.json`` (the operating point it ships with) and
``training.json``; and in ``real/`` the same for the model trained on real photos. A
config names either by its name (:data:`NAMED_MODELS`). See docs/model_card.md."""

from __future__ import annotations

import json
from pathlib import Path

from protocol.errors import CityopsError

__all__ = ["BUNDLED_LABELS", "BUNDLED_MODEL", "DEFAULT_LIVE_THRESHOLD", "MODELS_DIR", "NAMED_MODELS", "REAL_MODEL",
           "THRESHOLDS_FILE", "labels_beside", "live_threshold", "model_path", "model_tag", "read_thresholds"]

MODELS_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL = MODELS_DIR / "cityops_detector_int8.tflite"
BUNDLED_LABELS = MODELS_DIR / "labels.txt"
REAL_MODEL = MODELS_DIR / "real" / "cityops_detector_int8.tflite"
# What a config or a command may write instead of a path.
NAMED_MODELS = {"bundled:rendered": BUNDLED_MODEL, "bundled:real": REAL_MODEL}
THRESHOLDS_FILE = "thresholds.json"
DEFAULT_LIVE_THRESHOLD = 0.3  # boxes below this never reach the tracker, unless the model ships lower


def read_thresholds(model: Path | str) -> dict[str, float] | None:
    """The per-class ``min_score`` a model ships with: ``thresholds.json`` in the model's
    folder (``{"min_score": {"water": 0.4, ...}}``, written by training), or None when the
    folder has none. A file that is there but wrong is an error naming the fix."""
    path = Path(model).with_name(THRESHOLDS_FILE)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scores = data["min_score"]
        out = {str(k): float(v) for k, v in scores.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CityopsError(f"{path}: not a thresholds file ({exc}); it must be "
                           '{"min_score": {"CLASS": SCORE, ...}}; retrain or delete it') from None
    bad = {k: v for k, v in out.items() if not 0.0 < v <= 1.0}
    if bad:
        raise CityopsError(f"{path}: min_score must be in (0, 1], not {bad}")
    return out


def live_threshold(model: Path | str, default: float = DEFAULT_LIVE_THRESHOLD) -> float:
    """The score below which a camera drops a box before tracking, when the installer set
    none: ``default``, or the lowest class threshold the model ships where that is lower
    (a class calibrated to fire at 0.15 must not be cut at 0.3 first)."""
    shipped = read_thresholds(model) or {}
    return min([default, *shipped.values()])


def model_path(value: Path | str) -> Path:
    """``value`` as a path: a name of :data:`NAMED_MODELS` becomes its bundled file."""
    return NAMED_MODELS.get(str(value), Path(value))


def labels_beside(model: Path | str, default: Path) -> Path:
    """The ``labels.txt`` in a model's folder (a trained or bundled model keeps its labels
    there), else ``default``."""
    beside = Path(model).with_name("labels.txt")
    return beside if beside.is_file() else default


def model_tag(model: Path | str) -> str:
    """A short name for the model a camera runs, carried in its events (``attributes.model``)
    so the hub can tell which model saw what: the bundled name, the release id of a model
    the hub shipped (``release.json`` beside it, edge_agent/ota.py), else the file name."""
    path = Path(model)
    for name, bundled in NAMED_MODELS.items():
        if path == bundled:
            return name
    release = path.with_name("release.json")
    if release.is_file():
        try:
            return str(json.loads(release.read_text(encoding="utf-8"))["release_id"])[:64]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return path.name[:64]
