"""What a verdict stores. Pure: the web form, the closure and the export use these.

A verdict on a snapshot is one of :data:`VERDICTS`:

* ``true_alarm`` — the detector was right; the label is the class it reported (or the one
  the operator picks), the box the event's (or the one the operator drew);
* ``wrong_class`` — something is there, but another class: the operator names it (one of
  :data:`LABELS`, and not the class reported), with the event's box or a corrected one;
* ``false_alarm`` — nothing of the kind is there: a negative. The event's box is kept as
  where the detector fired, for the record; the export does not train on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vision.labels import read_labels
from vision.models import BUNDLED_LABELS

from ..errors import HubError
from ..store.repo import LifecycleRow

__all__ = ["LABELS", "SOURCES", "VERDICTS", "Box", "DatasetError", "bbox_problem", "detected_label",
           "event_model", "example_label", "is_camera_event"]

LABELS: tuple[str, ...] = tuple(read_labels(BUNDLED_LABELS))  # the detector's classes
VERDICTS = ("true_alarm", "false_alarm", "wrong_class")
SOURCES = ("operator", "closure")
Box = tuple[float, float, float, float]


class DatasetError(HubError):
    """A verdict that cannot be stored. ``field`` names the input at fault (``label``,
    ``bbox``, ``snapshot``), ``code`` the reason (for the web's translated message)."""

    def __init__(self, field: str, code: str, detail: str) -> None:
        self.field = field
        self.code = code
        self.detail = detail
        super().__init__(f"{field}: {detail}")


def bbox_problem(box: Box) -> str | None:
    """Why ``box`` is not a normalised ``x1, y1, x2, y2`` box: ``range`` (a value outside
    0..1 or not a number), ``order`` (x2 <= x1 or y2 <= y1); None when it is one."""
    if any(not math.isfinite(v) or v < 0.0 or v > 1.0 for v in box):
        return "range"
    if box[2] <= box[0] or box[3] <= box[1]:
        return "order"
    return None


def _attributes(event: LifecycleRow) -> Mapping[str, Any]:
    attrs = event.attributes
    return attrs if isinstance(attrs, Mapping) else {}


def detected_label(event: LifecycleRow) -> str | None:
    """The class the detector reported for this event (``attributes.label``), if any."""
    label = _attributes(event).get("label")
    return label if isinstance(label, str) and label else None


def event_model(event: LifecycleRow) -> str | None:
    """The model that saw it: ``attributes.model`` (the release id or bundled name the
    agent sends), None when the event named none."""
    model = _attributes(event).get("model")
    return str(model)[:200] if model not in (None, "") else None


def is_camera_event(event: LifecycleRow) -> bool:
    """A detector's event: it has a box or names the class it saw (a sensor's or a
    resident's report has neither)."""
    return event.bbox is not None or detected_label(event) is not None


def example_label(verdict: str, chosen: str | None, detected: str | None) -> str | None:
    """The class a verdict stores; :class:`DatasetError` (field ``label``) when there is
    none to store or it is not one of :data:`LABELS`."""
    if verdict not in VERDICTS:
        raise DatasetError("verdict", "verdict", f"unknown verdict {verdict!r}; one of {', '.join(VERDICTS)}")
    if verdict == "false_alarm":
        return None
    if chosen is not None and chosen not in LABELS:
        raise DatasetError("label", "unknown", f"unknown class {chosen!r}; one of {', '.join(LABELS)}")
    if verdict == "wrong_class":
        if chosen is None:
            raise DatasetError("label", "missing", "wrong class: choose the class it is")
        if chosen == detected:
            raise DatasetError("label", "same", f"{chosen} is the class the detector reported: "
                                                "mark it a true alarm, or choose the class it is")
        return chosen
    label = chosen or detected
    if label is None:
        raise DatasetError("label", "missing", "the event names no class: choose the class it is")
    if label not in LABELS:
        raise DatasetError("label", "unknown", f"the event's class {label!r} is not one of the "
                                               f"detector's ({', '.join(LABELS)}): choose one")
    return label
