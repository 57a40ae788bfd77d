"""Verdicts on camera snapshots (hub/dataset/): the form under each snapshot on the case
page, and the same through the JSON API.

``POST /cases/{id}/verdicts`` (form: ``snapshot``, ``verdict`` true_alarm | false_alarm |
wrong_class, ``label``, optional box ``x1 y1 x2 y2`` as fractions of the image, drawn by
dragging on the snapshot or typed) and ``POST /api/v1/cases/{id}/verdicts`` (JSON:
``snapshot_id``, ``verdict``, ``label``, ``bbox`` [x1, y1, x2, y2]) store one labelled
example; a bad value answers 400 naming the field and the fix. The case's scope and the
role are checked as for the other case actions (permission ``case.review``); the form's
CSRF token by the security middleware.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..dataset.rules import LABELS, VERDICTS, Box, DatasetError, bbox_problem
from ..dataset.service import LabelTarget, label_targets
from ..store.repo import Repository
from ..store.sqlite_dataset import ExampleRow
from .actions import load_case_for
from .common import hub_of, json_response, principal
from .i18n import _
from .labels import N_
from .problems import FieldErrors
from .serialize import snapshot_url

__all__ = ["VERDICT_LABELS", "labels_view", "load_labels", "parse_verdict", "verdict_form",
           "verdict_json"]

VERDICT_LABELS = {"true_alarm": N_("true alarm"), "false_alarm": N_("false alarm"),
                  "wrong_class": N_("wrong class")}
CLASS_LABELS = {"water": N_("water"), "flame": N_("flame"), "smoke": N_("smoke"),
                "fallen_tree": N_("fallen tree"), "garbage": N_("garbage"), "vehicle": N_("vehicle")}
BOX_FIELDS = ("x1", "y1", "x2", "y2")
FORM = "verdict"


def load_labels(repo: Repository, case_id: int) -> tuple[list[LabelTarget], list[ExampleRow]]:
    """The case's camera snapshots and the verdicts recorded on them (one read)."""
    targets = label_targets(repo.lifecycles_for_case(case_id), repo.snapshots_for_case(case_id))
    return targets, repo.examples_for_case(case_id)


def _example_view(e: ExampleRow) -> dict[str, Any]:
    return {"id": e.id, "verdict": e.verdict, "verdict_name": _(VERDICT_LABELS[e.verdict]),
            "label": e.label, "label_name": _(CLASS_LABELS.get(e.label, e.label)) if e.label else None,
            "bbox": list(e.bbox) if e.bbox else None, "source": e.source, "by": e.by,
            "at": e.at.isoformat(), "model": e.model}


def labels_view(targets: list[LabelTarget], examples: list[ExampleRow]) -> dict[str, Any]:
    """Each camera snapshot of the case with what the form needs and its verdicts so far
    (newest last), and the classes an operator may choose, named in the page's language."""
    snapshots = []
    for t in targets:
        s, e = t.snapshot, t.event
        mine = [x for x in examples if x.image_sha256 == s.sha256 and x.agent_id == e.agent_id
                and x.event_id == e.event_id]
        attrs = e.attributes if isinstance(e.attributes, Mapping) else {}
        detected = t.detected
        snapshots.append({
            "snapshot_id": s.id, "url": snapshot_url(s.sha256), "width": s.width, "height": s.height,
            "agent_id": e.agent_id, "event_id": e.event_id, "camera": e.source, "detected": detected,
            "detected_name": _(CLASS_LABELS.get(detected, detected)) if detected else None,
            "model": attrs.get("model"), "bbox": list(e.bbox) if e.bbox else None,
            "verdicts": [_example_view(x) for x in mine]})
    return {"snapshots": snapshots,
            "classes": [(code, _(CLASS_LABELS.get(code, code))) for code in LABELS]}


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):  # JSON true is not 1
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _box(raw: Any) -> Box | None:
    """The box of a form (four fields) or a JSON body (a list of four); None when not
    given. FieldErrors (``bbox``) when it is given but is not a box in 0..1."""
    if raw is None:
        return None
    values = [_number(v) for v in raw]
    if len(values) != 4 or any(v is None for v in values):
        raise FieldErrors({"bbox": _("give all four of x1, y1, x2, y2 as numbers from 0 to 1 "
                                     "(or none, to keep the detector's box)")}, form=FORM)
    box: Box = (values[0], values[1], values[2], values[3])  # type: ignore[assignment]
    why = bbox_problem(box)
    if why == "range":
        raise FieldErrors({"bbox": _("x1, y1, x2, y2 are fractions of the image: each from 0 to 1 "
                                     "(got %(box)s)") % {"box": ", ".join(f"{v:g}" for v in box)}},
                          form=FORM)
    if why == "order":
        raise FieldErrors({"bbox": _("x2 must be greater than x1 and y2 greater than y1: the box "
                                     "runs from its top-left to its bottom-right corner (got %(box)s)")
                           % {"box": ", ".join(f"{v:g}" for v in box)}}, form=FORM)
    return box


def parse_verdict(data: Mapping[str, Any], *, box: Any) -> tuple[int, str, str | None, Box | None]:
    """(snapshot id, verdict, label or None, box or None) from the input; FieldErrors
    naming every bad field and its fix."""
    errors: dict[str, str] = {}
    raw_id = data.get("snapshot_id", data.get("snapshot"))
    snapshot_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    if snapshot_id is None and isinstance(raw_id, str) and raw_id.strip().isdigit():
        snapshot_id = int(raw_id.strip())
    if snapshot_id is None:
        errors["snapshot"] = _("required: the id of the snapshot the verdict is on")
    verdict = data.get("verdict")
    if verdict not in VERDICTS:
        errors["verdict"] = _("one of %(all)s") % {"all": ", ".join(VERDICTS)}
    label = data.get("label")
    label = label.strip() if isinstance(label, str) and label.strip() else None
    if label is not None and label not in LABELS:
        errors["label"] = (_("unknown class %(label)r; choose one of %(all)s")
                           % {"label": label[:40], "all": ", ".join(LABELS)})
    try:
        parsed_box = _box(box)
    except FieldErrors as exc:
        errors.update(exc.fields)
        parsed_box = None
    if errors:
        raise FieldErrors(errors, form=FORM)
    return snapshot_id, str(verdict), label, parsed_box  # type: ignore[return-value]


def _dataset_error(exc: DatasetError) -> FieldErrors:
    """The service's refusal as a form error in the request's language."""
    messages = {
        ("label", "missing"): _("this verdict needs a class: choose the class it is"),
        ("label", "same"): _("that is the class the detector reported: mark it a true alarm, or "
                             "choose the class it is"),
        ("label", "unknown"): _("the event's class is not one of the detector's: choose the class it is"),
        ("snapshot", "unknown"): _("not a camera snapshot of this case; reload the case page"),
        ("snapshot", "gone"): _("this snapshot's file was removed by retention; it cannot be labelled"),
    }
    return FieldErrors({exc.field: messages.get((exc.field, exc.code), exc.detail)}, form=FORM)


async def _record(request: web.Request, data: Mapping[str, Any], box: Any) -> ExampleRow:
    hub = hub_of(request)
    who = principal(request)
    case_id = int(request.match_info["case_id"])
    await load_case_for(hub, who, case_id)  # 404 outside the account's scope, as for actions
    snapshot_id, verdict, label, bbox = parse_verdict(data, box=box)
    try:
        return await hub.dataset.record(case_id, snapshot_id, verdict, label=label, bbox=bbox,
                                        by=who.actor)
    except DatasetError as exc:
        raise _dataset_error(exc) from None


async def verdict_form(request: web.Request) -> web.StreamResponse:
    """``POST /cases/{id}/verdicts``: the form under a snapshot; back to the case page."""
    from .pages import case_page_with

    case_id = int(request.match_info["case_id"])
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    typed = [values.get(k, "").strip() for k in BOX_FIELDS]
    box = typed if any(typed) else None
    try:
        await _record(request, values, box)
    except FieldErrors as exc:
        return await case_page_with(request, case_id, status=exc.status, errors={FORM: exc.fields},
                                    values={FORM: values})
    raise web.HTTPSeeOther(f"/cases/{case_id}?done=verdict#labels")


async def verdict_json(request: web.Request) -> web.Response:
    """``POST /api/v1/cases/{id}/verdicts``: 201 with the stored example."""
    from .views import _json_body

    data = await _json_body(request)
    unknown = sorted(set(data) - {"snapshot_id", "verdict", "label", "bbox"})
    if unknown:
        raise FieldErrors(dict.fromkeys(unknown, _("unknown field; remove it")), form=FORM)
    box = data.get("bbox")
    if box is not None and not isinstance(box, list):
        raise FieldErrors({"bbox": _("a list of four numbers [x1, y1, x2, y2] from 0 to 1")}, form=FORM)
    example = await _record(request, data, box)
    return json_response({"example": _example_view(example)}, status=201)
