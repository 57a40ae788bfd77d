"""Case actions, shared by the JSON API and the page's forms: validate the input, check
the role (and the department for handlers) and the case's state, call the hub.

Input models are strict (unknown fields are errors). What is legal for a state is the
state machine's and the engine's business: their refusal comes back as a 409 with the
reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError

from protocol.base import StrictModel

from ..auth.roles import CASE_ACTIONS, Principal, Role
from ..cases.states import CaseState
from ..errors import CaseError
from ..store.repo import CaseRow
from .i18n import _
from .labels import N_, STATE_LABELS
from .problems import FieldErrors, WebError, field_errors_from

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["ACTION_MODELS", "load_case_for", "parse_action", "perform"]

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Short = Annotated[str, Field(max_length=2000)]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class AcceptBody(StrictModel):
    note: Short = ""


class RejectBody(StrictModel):
    reason: Text


class DispatchBody(StrictModel):
    department: Code | None = None
    handler: Code | None = None


class ReassignBody(StrictModel):
    department: Code
    handler: Code | None = None


class ReviewBody(StrictModel):
    fixed: bool
    note: Short = ""


class CloseBody(StrictModel):
    resolution: Literal["fixed", "false_alarm"] = "fixed"
    note: Short = ""


class ReopenBody(StrictModel):
    reason: Text


class NoteBody(StrictModel):
    text: Text


class EmptyBody(StrictModel):
    pass


class ResolveBody(StrictModel):
    note: Short = ""


ACTION_MODELS: dict[str, type[StrictModel]] = {
    "accept": AcceptBody, "reject": RejectBody, "dispatch": DispatchBody,
    "reassign": ReassignBody, "review": ReviewBody, "close": CloseBody, "reopen": ReopenBody,
    "note": NoteBody, "start": EmptyBody, "return": RejectBody, "resolve": ResolveBody,
}


def parse_action(action: str, data: dict[str, Any]) -> StrictModel:
    model = ACTION_MODELS.get(action)
    if model is None:
        raise WebError(404, "no_such_action", _("there is no case action %(action)r; one of %(all)s")
                       % {"action": action, "all": ", ".join(ACTION_MODELS)})
    clean = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()
             if k != "csrf_token"}
    clean = {k: v for k, v in clean.items() if v != "" or k in ("note",)}
    try:
        return model.model_validate(clean)
    except ValidationError as exc:
        raise field_errors_from(exc, form=action) from None


async def load_case_for(hub: Hub, principal: Principal, case_id: int) -> CaseRow:
    """The case, when this principal may see it (handlers: their department's only; a
    scoped account: its grids' only; another grid's case is a 404 like a missing one, so
    its existence does not leak)."""
    case = await hub.read(lambda repo: repo.get_case(case_id))
    if case is None or not principal.sees(case.grid_id):
        raise WebError(404, "no_such_case", _("case %(id)s does not exist") % {"id": case_id})
    if principal.can("view"):
        return case
    if principal.role is Role.HANDLER and case.department == principal.department:
        return case
    if principal.role is Role.HANDLER:
        raise WebError(403, "other_department", _("case %(id)s is not dispatched to %(dep)s")
                       % {"id": case_id, "dep": principal.department})
    raise WebError(403, "forbidden", _("your role (%(role)s) may not see cases") % {"role": principal.role})


async def perform(hub: Hub, principal: Principal, case_id: int, action: str,
                  body: StrictModel, *, after_jpeg: bytes | None = None) -> CaseRow:
    """Do one action as ``principal``. Raises :class:`WebError` (403/404/409)."""
    permission, states = CASE_ACTIONS[action]
    if not principal.can(permission):
        raise WebError(403, "forbidden", _("your role (%(role)s) may not %(action)s cases")
                       % {"role": principal.role, "action": action})
    case = await load_case_for(hub, principal, case_id)
    if CaseState(case.state) not in states:
        raise WebError(409, "illegal_transition", _("a %(state)s case cannot be %(done)s")
                       % {"state": _(STATE_LABELS.get(case.state, case.state)).lower(),
                          "done": _past(action)})
    if action == "resolve" and case.state == CaseState.RESOLVED and case.review_reason:
        # the verifier handed this to an operator: a new photo must not take it back
        raise WebError(409, "awaiting_review", _("case %(id)s waits for an operator's review (%(why)s); a new after-photo "
                         "cannot replace that verdict. If it was not fixed, the operator sends "
                         "it back to you") % {"id": case_id, "why": case.review_reason})
    actor = principal.actor
    b: Any = body
    try:
        match action:
            case "accept":
                return await hub.accept(case_id, actor=actor, note=b.note)
            case "reject":
                return await hub.reject(case_id, reason=b.reason, actor=actor)
            case "dispatch" | "reassign":
                if b.department and b.department not in hub.engine.departments:
                    raise FieldErrors({"department": _("unknown department %(dep)r") % {"dep": b.department}},
                                      form=action)
                return await hub.dispatch(case_id, department=b.department, handler=b.handler,
                                          actor=actor)
            case "review":
                return await hub.review(case_id, fixed=b.fixed, actor=actor, note=b.note)
            case "close":
                return await hub.close_case(case_id, actor=actor, resolution=b.resolution,
                                            note=b.note)
            case "reopen":
                return await hub.reopen(case_id, actor=actor, reason=b.reason)
            case "note":
                return await hub.add_note(case_id, actor=actor, text=b.text)
            case "start":
                return await hub.start_work(case_id, actor=actor)
            case "return":
                return await hub.return_case(case_id, actor=actor, reason=b.reason)
            case "resolve":
                if after_jpeg is None and hub.engine.rules[case.subcategory].close.value == "photo":
                    raise FieldErrors({"photo": _("this category closes by photo: attach an "
                                                 "after-photo (JPEG, at most 256 KiB)")}, form="resolve",
                                      code="photo_required")
                return await hub.resolve(case_id, actor=actor, note=b.note, after_jpeg=after_jpeg)
    except CaseError as exc:
        raise WebError(409, "illegal_transition", exc.detail) from None
    raise WebError(404, "no_such_action", _("there is no case action %(action)r")
                   % {"action": action})


PAST = {"accept": N_("accepted"), "reject": N_("rejected"), "dispatch": N_("dispatched"),
        "reassign": N_("reassigned"), "review": N_("reviewed"), "close": N_("closed"),
        "reopen": N_("reopened"), "note": N_("noted"), "start": N_("started"),
        "return": N_("returned"), "resolve": N_("resolved")}


def _past(action: str) -> str:
    """What doing ``action`` to a case is called, in the request's language."""
    return _(PAST.get(action, action))
