"""The reporter's satisfaction survey (``/survey/{token}``) and the operators' record of a
satisfaction taken by phone (回访).

* ``GET /survey/{token}``: public; the token in the link is the credential. Shows the
  reporter's own request (id, category, department, the result in plain words, the
  after-photo when there is one) and three buttons: satisfied / not satisfied / not
  fixed. A GET never answers (mail scanners open links).
* ``POST /survey/{token}``: the answer, once. Refused unless the form's token matches the
  double-submit cookie the page set (``SameSite=Strict``) and the request is not
  cross-site (``Origin`` / ``Sec-Fetch-Site``). "Not fixed" reopens the case.
* An unknown (forged) token is a 404 page; one already answered, expired, or whose case
  was reopened since is a 410 page that says which.
* ``GET /survey/{token}/after.jpg``: the after-photo, while the link has not expired.
* ``POST /cases/{id}/satisfaction`` (form) and ``POST /api/v1/cases/{id}/satisfaction``
  (``{"score": 1-5, "note": "..."}``): an operator records what a reporter said by phone.

The page shows nothing but the reporter's own request: no other report's text, place or
contact, no operator's note, no camera snapshot.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import Field, ValidationError

from protocol.base import StrictModel

from ..engine.reporters import (
    ANSWER_LABELS,
    ANSWERS,
    SurveyRefused,
    result_text,
    survey_status,
    token_hash,
)
from ..errors import CaseError
from ..privacy import is_reporter_kind, mask_address
from ..store.repo import CaseRow, ReporterContactRow, Repository, SurveyRow
from .actions import load_case_for
from .common import hub_of, json_response, principal
from .i18n import _
from .labels import N_
from .problems import FieldErrors, WebError, field_errors_from
from .security import csrf_ok, set_cookie

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["COOKIE", "TOKEN", "answer", "delivery_view", "reporters_view", "satisfaction_form",
           "satisfaction_json", "survey_page", "survey_photo"]

TOKEN = "{token:[A-Za-z0-9_\\-]{16,128}}"
COOKIE = "cityops_survey"

REFUSALS = {
    "unknown": (404, N_("This survey link is not valid"),
                N_("The link is not one the city sent, or it was copied incompletely. Open the "
                "link from your message again.")),
    "answered": (410, N_("This survey was already answered"),
                 N_("Each link can be used once, and this one has been. Thank you for your answer.")),
    "expired": (410, N_("This survey link has expired"),
                N_("The link worked for a limited time after your report was closed. If the "
                "problem is still there, please report it again.")),
    "superseded": (410, N_("This survey is no longer open"),
                   N_("The case was reopened after this link was sent. You will get a new link "
                   "when it is closed again.")),
}
# The closings in plain words (hub.engine.reporters.result_text), for the page's language.
RESULTS = (N_("closed: on inspection no problem was found"),
           N_("fixed; a photo taken after the work confirmed it"),
           N_("fixed; the sensors read normal again"), N_("fixed; an operator confirmed it"))


def _service(hub: Hub, case: CaseRow) -> tuple[str, str]:
    try:
        sub = hub.setup.taxonomy.subcategory(case.subcategory)
        return sub.name.en, sub.name.zh
    except KeyError:
        return case.subcategory, ""


def _department(hub: Hub, case: CaseRow) -> str | None:
    if not case.department:
        return None
    n = hub.setup.taxonomy.departments.get(case.department) or \
        hub.setup.routing.departments.get(case.department)
    return f"{n.en} ({n.zh})" if n is not None else case.department


def _token(request: web.Request) -> str:
    return request.match_info["token"]


async def _load(hub: Hub, token: str) -> tuple[SurveyRow | None, CaseRow | None, ReporterContactRow | None]:
    sha = token_hash(token)

    def load(repo: Repository):
        survey = repo.get_survey(sha)
        if survey is None:
            return None, None, None
        contact = next((c for c in repo.reporter_contacts_for_case(survey.case_id)
                        if c.id == survey.contact_id), None)
        return survey, repo.get_case(survey.case_id), contact

    return await hub.read(load)


def _render(request: web.Request, *, status: int = 200, **context: Any) -> web.Response:
    from .app import RENDER_KEY

    response = request.app[RENDER_KEY].page(request, "survey.html", status=status,
                                            title=_("How did we do?"), **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _refusal(request: web.Request, status_name: str) -> web.Response:
    status, heading, text = REFUSALS[status_name]
    return _render(request, status=status, refused=status_name, heading=_(heading), text=_(text))


async def survey_page(request: web.Request) -> web.Response:
    hub = hub_of(request)
    token = _token(request)
    survey, case, contact = await _load(hub, token)
    state = survey_status(survey, case, hub.clock.now())
    if state != "open":
        return _refusal(request, state)
    assert case is not None and survey is not None
    form_token = request.cookies.get(COOKIE) or secrets.token_urlsafe(24)
    en, zh = _service(hub, case)
    response = _render(
        request, token=token, form_token=form_token, answers=ANSWER_LABELS,
        request_id=contact.request_id if contact else case.id, case_id=case.id,
        service_en=en, service_zh=zh, department=_department(hub, case),
        result=result_text(case), closed_at=case.closed_at, after_photo=bool(case.after_sha256),
        expires_at=survey.expires_at)
    set_cookie(response, COOKIE, form_token, tls=hub.config.web.tls is not None, max_age=86400)
    return response


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin.rstrip("/") != f"{request.scheme}://{request.host}"
    return origin == "null"


async def answer(request: web.Request) -> web.Response:
    hub = hub_of(request)
    token = _token(request)
    form = await request.post()
    given = form.get("csrf_token")
    if _cross_site(request) or not csrf_ok(request.cookies.get(COOKIE),
                                           given if isinstance(given, str) else None):
        return _render(request, status=403, refused="csrf", heading=_("The form has expired"),
                       text=_("Open the link from your message again and answer there."))
    choice = form.get("answer")
    comment = form.get("comment")
    if not isinstance(choice, str) or choice not in ANSWERS:
        raise WebError(400, "bad_answer", f"answer is one of {', '.join(ANSWERS)}")
    try:
        done = await hub.answer_survey(token, choice, comment if isinstance(comment, str) else "")
    except SurveyRefused as exc:
        return _refusal(request, exc.status)
    return _render(request, done=True, answer=ANSWER_LABELS[done.answer], note=done.note,
                   reopened=done.reopened)


async def survey_photo(request: web.Request) -> web.Response:
    hub = hub_of(request)
    survey, case, _ = await _load(hub, _token(request))
    state = survey_status(survey, case, hub.clock.now())
    # The photo stays visible after the answer, until the link expires.
    sha = case.after_sha256 if case is not None and state in ("open", "answered") else None
    data = await asyncio.to_thread(hub.files.get, sha) if sha else None
    if data is None:
        raise WebError(404, "no_such_photo", "no after-photo for this survey")
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600",
                                 "Referrer-Policy": "no-referrer"})


# -- operators: satisfaction taken by phone ------------------------------------------------------
class SatisfactionBody(StrictModel):
    score: int = Field(ge=1, le=5, description="1 (very unhappy) .. 5 (satisfied)")
    note: str = Field("", max_length=500, description="how it was taken, e.g. 'by phone'")


def _body(data: dict[str, Any]) -> SatisfactionBody:
    clean = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()
             if k != "csrf_token"}
    try:
        return SatisfactionBody.model_validate(clean)
    except ValidationError as exc:
        raise field_errors_from(exc, form="satisfaction") from None


async def _record(request: web.Request, body: SatisfactionBody) -> CaseRow:
    hub = hub_of(request)
    who = principal(request)
    case_id = int(request.match_info["case_id"])
    await load_case_for(hub, who, case_id)  # scope: another grid's case is a 404
    try:
        return await hub.record_satisfaction(case_id, body.score, actor=who.actor,
                                             note=body.note or "taken by an operator")
    except CaseError as exc:
        raise WebError(409, "not_closed", exc.detail) from None


async def satisfaction_json(request: web.Request) -> web.Response:
    from .serialize import case_json as case_view
    from .views import _json_body

    hub = hub_of(request)
    case = await _record(request, _body(await _json_body(request)))
    return json_response({"case": case_view(case, hub.setup.taxonomy,
                                            hub.setup.routing.departments, hub.clock.now())})


async def satisfaction_form(request: web.Request) -> web.StreamResponse:
    from .pages import case_page_with

    case_id = int(request.match_info["case_id"])
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    try:
        await _record(request, _body(dict(values)))
    except FieldErrors as exc:
        return await case_page_with(request, case_id, status=exc.status,
                                    errors={"satisfaction": exc.fields},
                                    values={"satisfaction": values})
    except WebError as exc:
        if exc.status == 404:
            raise
        return await case_page_with(request, case_id, status=exc.status,
                                    errors={"satisfaction": {"_": exc.detail}},
                                    values={"satisfaction": values})
    raise web.HTTPSeeOther(f"/cases/{case_id}?done=satisfaction")


def reporters_view(contacts: list[ReporterContactRow], surveys: list[SurveyRow],
                   full: bool) -> list[dict[str, Any]]:
    """The case's reporters for its page: contacts in full for those who call them back
    (``full``: operators), masked for everyone else; each one's surveys (no token)."""
    def shown(value: str | None) -> str | None:
        return value if full or value is None else mask_address(value)

    return [{"request_id": c.request_id, "channel": c.channel, "name": c.name if full else None,
             "email": shown(c.email), "phone": shown(c.phone),
             "surveys": [{"cycle": s.cycle, "sent_at": s.created_at.isoformat(),
                          "expires_at": s.expires_at.isoformat(),
                          "answered_at": s.answered_at.isoformat() if s.answered_at else None,
                          "answer": s.answer, "comment": s.comment}
                         for s in surveys if s.contact_id == c.id]}
            for c in contacts]


def delivery_view(view: dict[str, Any], full: bool) -> dict[str, Any]:
    """A delivery as the case page shows it: a reporter's address masked unless ``full``."""
    if full or not is_reporter_kind(str(view.get("kind", ""))):
        return view
    return {**view, "target": mask_address(str(view["target"]))}
