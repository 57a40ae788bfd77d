"""Server-rendered HTML: a Jinja2 environment (autoescaping every value) with the
filters the templates use, and :meth:`Renderer.page` that adds what every page needs
(who is signed in, their CSRF token, the navigation, wall mode)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import i18n
from .i18n import _
from .labels import JS_MESSAGES, TEMPLATE_TABLES
from .problems import error_title
from .security import principal_of
from .serialize import names
from .svg import grid_map, heat_class

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["STATIC_DIR", "Renderer", "pick", "reltime"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"


def reltime(value: str | datetime | None, now: datetime) -> str:
    if not value:
        return "–"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    secs = int((now - when).total_seconds())
    a = abs(secs)
    if a < 60:
        text = _("%(n)d s") % {"n": a}
    elif a < 3600:
        text = _("%(n)d min") % {"n": a // 60}
    elif a < 36000:
        text = _("%(h)d h %(m)02d min") % {"h": a // 3600, "m": a % 3600 // 60}
    elif a < 86400 * 2:
        text = _("%(n)d h") % {"n": a // 3600}
    else:
        text = _("%(n)d d") % {"n": a // 86400}
    return _("%(span)s ago") % {"span": text} if secs >= 0 else _("in %(span)s") % {"span": text}


def pick_key() -> str:
    """Which of a bilingual name's ``en``/``zh`` the page's language shows."""
    return "zh" if i18n.current() == "zh_CN" else "en"


def pick(en: Any, zh: Any = None) -> Any:
    """A bilingual value in the page's language: ``pick(en, zh)``, ``pick((en, zh))`` or
    ``pick({"en": .., "zh": ..})`` (a name object with ``.en``/``.zh`` works too); English
    where the Chinese is missing."""
    if zh is None:
        if isinstance(en, dict):
            en, zh = en.get("en"), en.get("zh")
        elif isinstance(en, tuple | list):
            en, zh = en[0], en[1]
        elif hasattr(en, "en"):
            en, zh = en.en, getattr(en, "zh", None)
    if en is None and zh is None:
        return ""
    return zh if pick_key() == "zh" and zh else en


def other_locale() -> tuple[str, str]:
    """The language switch's target: (locale, its name in itself)."""
    return ("en", "English") if i18n.current() == "zh_CN" else ("zh_CN", "中文")


class Renderer:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True,
                               extensions=["jinja2.ext.i18n"])
        # gettext reads the request's language (i18n.use, set by the locale middleware)
        self.env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)
        tax = hub.setup.taxonomy
        self.env.filters["en"] = lambda code: names(tax, code)["en"] if code else "–"
        self.env.filters["zh"] = lambda code: names(tax, code)["zh"] if code else ""
        # a taxonomy code's name in the page's language (the taxonomy names both)
        self.env.filters["name"] = lambda code: names(tax, code)[pick_key()] if code else "–"
        self.env.globals["pick"] = pick
        self.env.filters["local"] = self.local_time
        self.env.globals.update(TEMPLATE_TABLES)
        self.env.globals["error_title"] = error_title
        self.env.globals["heat_class"] = heat_class
        self.map_viewbox, self.map_shapes = grid_map(hub.setup.grids.grids)
        self.departments = {**{k: (v.en, v.zh) for k, v in tax.departments.items()},
                            **{k: (v.en, v.zh) for k, v in hub.setup.routing.departments.items()}}
        self.env.globals["DEPARTMENTS"] = self.departments
        self.env.globals["CATEGORIES"] = [(c.code, c.name.en, c.name.zh) for c in tax.categories]
        # (id, (English name, Chinese name)): the templates show pick(name)
        self.env.globals["GRIDS"] = [(g.grid_id, (g.name, g.name_zh)) for g in hub.setup.grids.grids]
        self.static_version = str(int(max(p.stat().st_mtime for p in STATIC_DIR.iterdir())))

    def local_time(self, value: str | datetime | None, fmt: str = "%m-%d %H:%M") -> str:
        if not value:
            return "–"
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        return when.astimezone(self.hub.setup.zone).strftime(fmt)

    def page(self, request: web.Request, template: str, *, status: int = 200,
             title: str = "", **context: Any) -> web.Response:
        from .app import LIVE_KEY

        who = principal_of(request)
        now = self.hub.clock.now()
        live_version = request.app[LIVE_KEY].version  # the live feed's data this page has seen
        ctx = {
            "who": who, "csrf": who.csrf if who else "", "now": now,
            "rel": lambda v: reltime(v, now), "path": request.path, "title": title,
            "wall": request.query.get("wall") == "1", "static_version": self.static_version,
            "map_viewbox": self.map_viewbox, "map_shapes": self.map_shapes,
            "zone": self.hub.config.timezone, "errors": {}, "values": {}, "flash": None,
            "live_version": live_version, "locale": i18n.current(),
            "html_lang": i18n.HTML_LANG[i18n.current()], "other_locale": other_locale(),
            "js_messages": {k: _(v) for k, v in JS_MESSAGES.items()},
            **context,
        }
        html = self.env.get_template(template).render(**ctx)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                     "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
                                     "form-action 'self'; base-uri 'none'",
                                     "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "same-origin",
                                     **i18n.language_headers()})
