"""App factory and route table. Later layers (operator UI, auth, handler API, Open311)
add their routes here and their views beside :mod:`hub.web.views`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from protocol.provisioning import ENROLL_PATH

from . import views

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["HUB_KEY", "ROUTES", "create_app"]

HUB_KEY: web.AppKey = web.AppKey("hub", object)

ROUTES = [
    ("GET", "/", views.status_page, "status"),
    ("GET", "/healthz", views.healthz, "healthz"),
    ("GET", "/api/v1/agents", views.agents_json, "agents"),
    ("GET", "/api/v1/cases", views.cases_json, "cases"),
    ("GET", "/api/v1/cases/{case_id:\\d+}", views.case_json, "case"),
    ("GET", "/api/v1/dead-letters", views.dead_letters_json, "dead_letters"),
    ("GET", "/api/v1/stats", views.stats_json, "stats"),
    ("GET", "/snapshots/{sha256:[0-9a-f]{64}}.jpg", views.snapshot, "snapshot"),
    ("POST", ENROLL_PATH, views.enroll, "enroll"),
]


def create_app(hub: Hub) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[views.errors_middleware])
    app[HUB_KEY] = hub
    for method, path, handler, name in ROUTES:
        app.router.add_route(method, path, handler, name=name)
    return app
