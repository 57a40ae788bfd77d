"""Errors as the client wants them: RFC 9457 problem documents for the JSON API (with a
stable ``code`` and, for bad input, the ``errors`` per field), an HTML page for people.

Views raise :class:`WebError` (or :class:`FieldErrors` for a form or body that did not
validate); the error middleware renders it for the route's kind.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..errors import HubError
from .i18n import _, language_headers
from .labels import N_

__all__ = ["FieldErrors", "WebError", "error_title", "field_errors_from", "problem"]

# A human title per stable code (RFC 9457's ``title``, in the request's language); a code
# not listed here is titled by its HTTP status.
TITLES = {
    "invalid_input": N_("Invalid input"), "forbidden": N_("Not allowed"),
    "not_signed_in": N_("Not signed in"), "csrf": N_("Form expired"),
    "not_found": N_("Not found"), "no_such_case": N_("No such case"),
    "no_such_action": N_("No such action"), "no_such_photo": N_("No such photo"),
    "no_such_snapshot": N_("No such snapshot"), "no_such_request": N_("No such request"),
    "no_such_media": N_("No such media"), "illegal_transition": N_("Not possible in this state"),
    "other_department": N_("Another department's case"), "too_large": N_("Too large"),
    "too_many_requests": N_("Too many requests"), "internal_error": N_("Internal error"),
    "method_not_allowed": N_("Method not allowed"), "bad_photo": N_("Bad photo"),
    "photo_required": N_("Photo required"), "photo_too_large": N_("Photo too large"),
    "unknown_plan": N_("No such plan"), "invalid_plan": N_("Invalid plan"),
    "plan_state": N_("Not possible in the plan's state"), "busy": N_("Busy"),
    "awaiting_review": N_("Awaiting review"), "not_closed": N_("Not closed"),
    "bad_token": N_("Bad token"), "bad_date": N_("Bad date"),
    "unsupported_media_type": N_("Unsupported media type"),
    "scoped_account": N_("Outside the account's scope"),
}
STATUS_TITLES = {
    400: N_("Bad request"), 401: N_("Not signed in"), 403: N_("Not allowed"),
    404: N_("Not found"), 405: N_("Method not allowed"), 409: N_("Conflict"),
    413: N_("Too large"), 415: N_("Unsupported media type"), 422: N_("Cannot be processed"),
    429: N_("Too many requests"), 500: N_("Internal error"), 503: N_("Unavailable"),
}


def error_title(code: str, status: int | None = None) -> str:
    """The human title of an error ``code`` in the request's language."""
    if code in TITLES:
        return _(TITLES[code])
    if status in STATUS_TITLES:
        return _(STATUS_TITLES[status])
    return code.replace("_", " ")


class WebError(HubError):
    """An HTTP error with a stable code and a sentence that names the cause and the fix."""

    def __init__(self, status: int, code: str, detail: str, *,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        super().__init__(detail)


class FieldErrors(WebError):
    """Input that did not validate: ``fields`` maps a field name to what is wrong."""

    def __init__(self, fields: dict[str, str], *, form: str = "", status: int = 400,
                 code: str = "invalid_input") -> None:
        self.fields = fields
        self.form = form
        detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
        super().__init__(status, code, detail)


def field_errors_from(exc: ValidationError, form: str = "") -> FieldErrors:
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = _("unknown field; remove it")
        elif err.get("type") == "missing":
            msg = _("required")
        fields.setdefault(loc, msg.removeprefix("Value error, "))
    return FieldErrors(fields, form=form)


def problem(status: int, code: str, detail: str, *, extra: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """An RFC 9457 problem document with a stable ``code``; ``title`` and ``detail`` in the
    request's language (said by Content-Language)."""
    body: dict[str, Any] = {"type": "about:blank", "title": error_title(code, status),
                            "status": status, "code": code, "detail": detail}
    if extra:
        body.update(extra)
    return web.json_response(body, status=status, content_type="application/problem+json",
                             headers={**language_headers(), **(headers or {})})
