"""The web UI's languages: gettext catalogues (Babel), the language each request gets,
and ``_`` for the Python side (flashes, form errors, problem documents).

The source strings are English. ``locale/zh_CN/LC_MESSAGES/messages.po`` holds their
Chinese; ``locale/en/...`` is the English catalogue (an empty ``msgstr`` keeps the
English source). The ``.po`` files are compiled in memory when first used, so a fresh
clone needs no build step (docs/web.md, "Languages").

A request's language (:func:`choose`): the ``lang`` cookie the user set with the
language switch, else the first supported language of ``Accept-Language``, else
Simplified Chinese (the seed is a Shanghai centre).
"""

from __future__ import annotations

import gettext as _gettext
import io
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["COOKIE", "DEFAULT", "HTML_LANG", "LOCALES", "LOCALE_DIR", "_", "choose",
           "current", "gettext", "language_headers", "locale_middleware", "ngettext", "switch_language",
           "translations", "use"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LOCALES = ("zh_CN", "en")
DEFAULT = "zh_CN"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
COOKIE = "lang"

# A request's language is set by the locale middleware before anything runs. Outside a
# request (the CLI, logs, a function called directly) the source language stays: English.
_locale: ContextVar[str] = ContextVar("cityops_locale", default="en")


@cache
def translations(locale: str) -> _gettext.GNUTranslations:
    """The compiled catalogue of ``locale`` (fuzzy entries left out, as msgfmt does)."""
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return _gettext.GNUTranslations(buf)


def _tag(value: str) -> str | None:
    """A supported locale for a language tag ("zh-CN", "zh", "en-GB", "zh_Hans"), else None."""
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return {"zh": "zh_CN", "en": "en"}.get(primary)


def parse_accept_language(header: str | None) -> list[str]:
    """The supported locales an ``Accept-Language`` header names, best first (q=0 drops one)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _eq, val = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        loc = _tag(tag) if tag.strip() and tag.strip() != "*" else None
        if loc and q > 0:
            ranked.append((-q, i, loc))
    out: list[str] = []
    for _q, _i, loc in sorted(ranked):
        if loc not in out:
            out.append(loc)
    return out


def choose(preference: str | None, accept_language: str | None) -> str:
    """The locale for a request: the user's own choice, else the browser's, else Chinese."""
    if preference in LOCALES:
        return preference
    ranked = parse_accept_language(accept_language)
    return ranked[0] if ranked else DEFAULT


def use(locale: str) -> None:
    """Make ``locale`` the current request's language (a context variable: one per task)."""
    _locale.set(locale if locale in LOCALES else DEFAULT)


def current() -> str:
    return _locale.get()


def language_headers() -> dict[str, str]:
    """What a response in the current language says about it (its text depends on the
    request's Accept-Language and language cookie)."""
    return {"Content-Language": HTML_LANG[_locale.get()], "Vary": "Accept-Language, Cookie"}


def gettext(message: str) -> str:
    return translations(_locale.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_locale.get()).ngettext(singular, plural, n)


_ = gettext


# -- the thin aiohttp shell: the request's language, the language switch -------------------

def locale_middleware() -> Any:
    """Sets each request's language before anything (errors included) is rendered."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        use(choose(request.cookies.get(COOKIE), request.headers.get("Accept-Language")))
        return await handler(request)

    return middleware


async def switch_language(request: web.Request) -> web.StreamResponse:
    """GET /lang/{locale}?next=/path: remember the user's language (a cookie, a year) and
    go back to the page."""
    from .common import hub_of
    from .pages import safe_next
    from .security import set_cookie

    locale = request.match_info["locale"]
    if locale not in LOCALES:
        raise web.HTTPNotFound(text=f"no such language {locale!r}; choose one of {', '.join(LOCALES)}")
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    set_cookie(response, COOKIE, locale, tls=hub_of(request).config.web.tls is not None,
               max_age=365 * 86400)
    raise response
