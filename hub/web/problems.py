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

__all__ = ["FieldErrors", "WebError", "field_errors_from", "problem"]


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
            msg = "unknown field; remove it"
        elif err.get("type") == "missing":
            msg = "required"
        fields.setdefault(loc, msg.removeprefix("Value error, "))
    return FieldErrors(fields, form=form)


def problem(status: int, code: str, detail: str, *, extra: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """An RFC 9457 problem document with a stable ``code``."""
    body: dict[str, Any] = {"type": "about:blank", "title": code.replace("_", " "),
                            "status": status, "code": code, "detail": detail}
    if extra:
        body.update(extra)
    return web.json_response(body, status=status, content_type="application/problem+json",
                             headers=headers)
