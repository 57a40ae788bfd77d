"""Supervision (督办) on the web: the case page's panel, a queue per command level, the
forms and the JSON API. Decisions are :mod:`hub.cases.supervision`'s; the writes are
:mod:`hub.engine.supervision`'s, one transaction each on the writer.

A level's queue shows the orders addressed to it (inside the account's scope) and the
open cases escalated to it or beyond. Town and district accounts see their own level's
queue (a district may look at its towns' too); accounts without a level choose the level
(``?level=town|district|city``); handlers see their department's orders and its
escalated cases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, ValidationError

from protocol.base import StrictModel

from ..auth.roles import Principal, Role
from ..auth.scope import LEVEL_RANK, LEVELS
from ..cases import supervision as sv
from ..cases.states import OPEN_STATES
from ..engine import supervision as ops
from ..store.repo import CaseFilter, CaseRow, SupervisionRow
from .actions import load_case_for
from .common import hub_of, json_response, principal, query_int
from .i18n import _
from .problems import FieldErrors, WebError, field_errors_from
from .serialize import case_json, jsonable

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["acknowledge_form", "acknowledge_json", "answer_form", "answer_json",
           "case_orders_json", "issue_form", "issue_json", "order_json", "queue_json",
           "queue_page", "supervise_offer"]


class IssueBody(StrictModel):
    target_kind: Literal["town", "district", "department"]
    department: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] | None = None
    note: Annotated[str, Field(min_length=1, max_length=2000)]
    deadline_h: Annotated[float, Field(ge=1 / 6, le=720)] = 24


class AnswerBody(StrictModel):
    text: Annotated[str, Field(min_length=1, max_length=2000)]


class EmptyBody(StrictModel):
    pass


def who_of(p: Principal) -> ops.Who:
    return ops.Who(p.actor, p.level, p.department, p.role is Role.HANDLER, p.grids,
                   p.can("supervise"))


def supervise_offer(p: Principal, case: CaseRow) -> list[str]:
    """The target kinds ``p`` may address an order to on this case now (empty: none)."""
    if not p.can("supervise") or case.state not in sv.ISSUABLE_STATES:
        return []
    rank = LEVEL_RANK.get(p.level or "city", 3)
    out = []
    if rank > 1 and case.town:
        out.append("town")
    if rank > 2 and case.district:
        out.append("district")
    if rank > 1:
        out.append("department")
    return out


def order_json(o: SupervisionRow, p: Principal, case: CaseRow, now: datetime | None = None) -> dict[str, Any]:
    """An order as the API and the page show it, with what ``p`` may do to it."""
    who = who_of(p).addressee(case)
    mine = sv.addressed_to(who, o.target_kind, o.target)
    data = jsonable(o)
    data.update(
        target_label=ops.target_label(o.target_kind, o.target),
        overdue=o.state != sv.ANSWERED and now is not None and now >= o.deadline_at,
        can_acknowledge=mine and o.state == sv.ISSUED,
        can_answer=mine and o.state != sv.ANSWERED)
    data.pop("due_at", None)
    return data


def _refused(exc: sv.SupervisionRefused) -> WebError:
    return WebError(exc.status, exc.code, exc.detail)


def _parse(model: type[StrictModel], data: dict[str, Any], form: str) -> Any:
    clean = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()
             if k != "csrf_token"}
    clean = {k: v for k, v in clean.items() if v not in ("", None)}
    try:
        return model.model_validate(clean)
    except ValidationError as exc:
        raise field_errors_from(exc, form=form) from None


async def _json(request: web.Request) -> dict[str, Any]:
    from .views import _json_body

    return await _json_body(request)


# -- the operations ---------------------------------------------------------------------------------
async def _issue(hub: Hub, p: Principal, case_id: int, body: IssueBody) -> SupervisionRow:
    await load_case_for(hub, p, case_id)  # 404 outside the account's scope
    if body.target_kind == "department" and not body.department:
        raise FieldErrors({"department": _("choose the department the order is for")},
                          form="supervise", status=422, code="bad_target")
    try:
        return await hub.write(lambda repo: ops.issue(
            hub.engine, repo, case_id, who_of(p), target_kind=body.target_kind,
            department=body.department, note=body.note,
            deadline=timedelta(hours=body.deadline_h)))
    except sv.SupervisionRefused as exc:
        raise _refused(exc) from None


async def _step(hub: Hub, p: Principal, order_id: int, action: str, text: str = "") -> SupervisionRow:
    try:
        if action == "acknowledge":
            return await hub.write(lambda repo: ops.acknowledge(hub.engine, repo, order_id, who_of(p)))
        return await hub.write(lambda repo: ops.answer(hub.engine, repo, order_id, who_of(p), text))
    except sv.SupervisionRefused as exc:
        raise _refused(exc) from None


async def _order_out(hub: Hub, p: Principal, order: SupervisionRow) -> dict[str, Any]:
    case = await hub.read(lambda repo: repo.get_case(order.case_id))
    assert case is not None
    return order_json(order, p, case, hub.clock.now())


# -- the queue ------------------------------------------------------------------------------------------
def _queue_level(request: web.Request, p: Principal) -> str:
    own = p.level or "city"
    asked = request.query.get("level", "").strip() or None
    if asked is None:
        return own
    if asked not in LEVELS:
        raise FieldErrors({"level": _("one of %(list)s") % {"list": ", ".join(LEVELS)}})
    if LEVEL_RANK[asked] > LEVEL_RANK[own]:
        raise WebError(403, "forbidden", _("a %(own)s account sees its own queue and the levels "
                                         "below it, not the %(asked)s queue")
                       % {"own": own, "asked": asked})
    return asked


async def queue_data(request: web.Request) -> dict[str, Any]:
    hub = hub_of(request)
    p = principal(request)
    limit = query_int(request, "limit", 100, 1, 500)
    open_states = sorted(s.value for s in OPEN_STATES if s.value != "new")
    if p.role is Role.HANDLER:
        level = None
        orders_q: dict[str, Any] = {"target_kind": "department", "targets": [p.department or ""]}
        cases_f = CaseFilter(states=open_states, department=p.department or "(none)", min_level=1)
    else:
        level = _queue_level(request, p)
        kind = None if level == "city" else level
        orders_q = {"target_kind": kind, "grid_ids": p.grids}
        cases_f = CaseFilter(states=open_states, min_level=LEVEL_RANK[level], grid_ids=p.grids)

    def read(repo):
        orders = repo.supervision_queue(limit=limit, **orders_q)
        cases, _ = repo.search_cases(cases_f, limit=limit, with_total=False)
        by_id = {c.id: c for c in cases}
        for o in orders:
            if o.case_id not in by_id:
                by_id[o.case_id] = repo.get_case(o.case_id)
        return orders, cases, by_id

    orders, cases, by_id = await hub.read(read)
    now = hub.clock.now()
    tax, deps = hub.setup.taxonomy, hub.setup.routing.departments
    return {
        "level": level,
        "department": p.department if p.role is Role.HANDLER else None,
        "orders": [{**order_json(o, p, by_id[o.case_id], now),
                    "case": case_json(by_id[o.case_id], tax, deps, now)} for o in orders],
        "escalated": [case_json(c, tax, deps, now) for c in cases],
    }


async def queue_json(request: web.Request) -> web.Response:
    return json_response(await queue_data(request))


async def queue_page(request: web.Request) -> web.Response:
    from .pages import page

    data = await queue_data(request)
    title = _("Supervision") + " · " + (data["level"] or data["department"] or "")
    return page(request, "supervision.html", title=title, q=data, levels=[
        lv for lv in LEVELS if LEVEL_RANK[lv] <= LEVEL_RANK[principal(request).level or "city"]])


# -- JSON -------------------------------------------------------------------------------------------------
async def case_orders_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    p = principal(request)
    case_id = int(request.match_info["case_id"])
    case = await load_case_for(hub, p, case_id)
    orders = await hub.read(lambda repo: repo.supervision_for_case(case_id))
    now = hub.clock.now()
    return json_response({"orders": [order_json(o, p, case, now) for o in orders],
                          "supervise": supervise_offer(p, case)})


async def issue_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    p = principal(request)
    body = _parse(IssueBody, await _json(request), "supervise")
    order = await _issue(hub, p, int(request.match_info["case_id"]), body)
    return json_response({"order": await _order_out(hub, p, order)}, status=201)


async def acknowledge_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    p = principal(request)
    _parse(EmptyBody, await _json(request), "acknowledge")
    order = await _step(hub, p, int(request.match_info["order_id"]), "acknowledge")
    return json_response({"order": await _order_out(hub, p, order)})


async def answer_json(request: web.Request) -> web.Response:
    hub = hub_of(request)
    p = principal(request)
    body = _parse(AnswerBody, await _json(request), "answer")
    order = await _step(hub, p, int(request.match_info["order_id"]), "answer", body.text)
    return json_response({"order": await _order_out(hub, p, order)})


# -- forms ------------------------------------------------------------------------------------------------
async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


async def issue_form(request: web.Request) -> web.StreamResponse:
    from .pages import case_page_with

    hub = hub_of(request)
    p = principal(request)
    case_id = int(request.match_info["case_id"])
    values = await _form(request)
    try:
        body = _parse(IssueBody, values, "supervise")
        await _issue(hub, p, case_id, body)
    except FieldErrors as exc:
        return await case_page_with(request, case_id, status=exc.status,
                                    errors={"supervise": exc.fields}, values={"supervise": values})
    except WebError as exc:
        if exc.status == 404:
            raise
        return await case_page_with(request, case_id, status=exc.status,
                                    errors={"supervise": {"_": exc.detail}},
                                    values={"supervise": values})
    raise web.HTTPSeeOther(f"/cases/{case_id}?done=supervise#supervision")


async def _step_form(request: web.Request, action: str) -> web.StreamResponse:
    from .pages import case_page_with

    hub = hub_of(request)
    p = principal(request)
    order_id = int(request.match_info["order_id"])
    values = await _form(request)
    try:
        text = ""
        if action == "answer":
            text = _parse(AnswerBody, {"text": values.get("text", "")}, "answer").text
        order = await _step(hub, p, order_id, action, text)
    except WebError as exc:
        if exc.status == 404:
            raise
        order = await hub.read(lambda repo: repo.get_supervision_order(order_id))
        assert order is not None
        fields = exc.fields if isinstance(exc, FieldErrors) else {"_": exc.detail}
        return await case_page_with(request, order.case_id, status=exc.status,
                                    errors={f"order-{order_id}": fields},
                                    values={f"order-{order_id}": values})
    raise web.HTTPSeeOther(f"/cases/{order.case_id}?done={action}#supervision")


async def acknowledge_form(request: web.Request) -> web.StreamResponse:
    return await _step_form(request, "acknowledge")


async def answer_form(request: web.Request) -> web.StreamResponse:
    return await _step_form(request, "answer")
