"""Server-rendered HTML: a Jinja2 environment (autoescaping every value) with the
filters the templates use, and :meth:`Renderer.page` that adds what every page needs
(who is signed in, their CSRF token, the navigation, wall mode)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..cases.sla import LEVELS
from .security import principal_of
from .serialize import names
from .svg import grid_map, heat_class

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["STATIC_DIR", "Renderer", "reltime"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"

STATE_LABELS = {
    "new": ("New", "新建"), "accepted": ("Accepted", "已受理"), "rejected": ("Rejected", "不予受理"),
    "dispatched": ("Dispatched", "已派遣"), "in_progress": ("In progress", "处置中"),
    "escalated": ("Escalated", "已升级"), "resolved": ("Resolved", "已办结"),
    "closed": ("Closed", "已结案"), "reopened": ("Reopened", "已重开"), "merged": ("Merged", "已合并"),
}
LEVEL_LABELS = [("Grid / department", "网格"), *[(name.title(), zh) for name, zh in
                                               zip(LEVELS, ("镇街", "区", "市"), strict=True)]]


def reltime(value: str | datetime | None, now: datetime) -> str:
    if not value:
        return "–"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    secs = int((now - when).total_seconds())
    a = abs(secs)
    if a < 60:
        text = f"{a} s"
    elif a < 3600:
        text = f"{a // 60} min"
    elif a < 86400 * 2:
        text = f"{a // 3600} h {a % 3600 // 60:02d} min" if a < 36000 else f"{a // 3600} h"
    else:
        text = f"{a // 86400} d"
    return f"{text} ago" if secs >= 0 else f"in {text}"


class Renderer:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True)
        tax = hub.setup.taxonomy
        self.env.filters["en"] = lambda code: names(tax, code)["en"] if code else "–"
        self.env.filters["zh"] = lambda code: names(tax, code)["zh"] if code else ""
        self.env.filters["local"] = self.local_time
        self.env.globals["STATE_LABELS"] = STATE_LABELS
        self.env.globals["LEVEL_LABELS"] = LEVEL_LABELS
        self.env.globals["heat_class"] = heat_class
        self.map_viewbox, self.map_shapes = grid_map(hub.setup.grids.grids)
        self.departments = {**{k: (v.en, v.zh) for k, v in tax.departments.items()},
                            **{k: (v.en, v.zh) for k, v in hub.setup.routing.departments.items()}}
        self.env.globals["DEPARTMENTS"] = self.departments
        self.env.globals["CATEGORIES"] = [(c.code, c.name.en, c.name.zh) for c in tax.categories]
        self.env.globals["GRIDS"] = [(g.grid_id, g.name) for g in hub.setup.grids.grids]
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
            "live_version": live_version,
            **context,
        }
        html = self.env.get_template(template).render(**ctx)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                     "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
                                     "form-action 'self'; base-uri 'none'",
                                     "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "same-origin"})
