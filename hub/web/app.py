"""App factory and route table.

Every route names the permission it needs (see :mod:`hub.auth.roles`) and its kind,
which decides how errors look: ``page`` (HTML for people), ``api`` (JSON problem
documents) or ``open311`` (GeoReport v2's error array, JSON or XML). The security
middleware enforces the permission before a view runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import web

from protocol.provisioning import ENROLL_PATH

from ..auth.passwords import PasswordChecker
from ..auth.ratelimit import LoginLimiter
from . import (
    admin,
    handler_api,
    linkage,
    liveview,
    mapview,
    open311,
    pages,
    plans_web,
    releases_web,
    reporter,
    supervision,
    survey,
    verdicts,
    views,
)
from .i18n import _, locale_middleware, switch_language
from .live import LiveFeed
from .metrics import HttpMetrics
from .problems import FieldErrors, WebError, problem
from .render import Renderer
from .security import PRINCIPAL, SecurityState, security_middleware

if TYPE_CHECKING:
    from ..app import Hub

__all__ = ["HUB_KEY", "ROUTES", "Route", "create_app"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("hub.web.access")

HUB_KEY: web.AppKey = web.AppKey("hub", object)
LIVE_KEY: web.AppKey = web.AppKey("live", LiveFeed)
MAP_KEY: web.AppKey = web.AppKey("map", mapview.MapService)
METRICS_KEY: web.AppKey = web.AppKey("metrics", HttpMetrics)
RENDER_KEY: web.AppKey = web.AppKey("render", Renderer)
SECURITY_KEY: web.AppKey = web.AppKey("security", SecurityState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CASE = "{case_id:\\d+}"
FMT = "{fmt:(json|xml)}"
SHA = "{sha256:[0-9a-f]{64}}"
PLAN = "{name:[a-z0-9][a-z0-9_\\-]{0,63}}"
CAMERA = "{agent_id:[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}}/{camera:[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}}"


class Route(NamedTuple):
    method: str
    path: str
    handler: Handler
    name: str
    permission: str  # "public", or a permission of hub.auth.roles.PERMISSIONS
    kind: str = "api"  # "page" | "api" | "open311"


ROUTES: list[Route] = [
    # -- pages for people ---------------------------------------------------------------
    Route("GET", "/", pages.overview, "overview", "signed_in", "page"),
    Route("GET", "/login", pages.login_form, "login", "public", "page"),
    Route("GET", "/lang/{locale}", switch_language, "language", "public", "page"),
    Route("POST", "/login", pages.login, "login_post", "public", "page"),
    Route("POST", "/logout", pages.logout, "logout", "signed_in", "page"),
    Route("GET", "/cases", pages.cases, "cases_page", "view", "page"),
    Route("GET", f"/cases/{CASE}", pages.case, "case_page", "signed_in", "page"),
    # before the generic action route, which would take "supervise" for an action name
    Route("POST", f"/cases/{CASE}/supervise", supervision.issue_form, "supervise_page",
          "supervise", "page"),
    Route("POST", f"/cases/{CASE}/satisfaction", survey.satisfaction_form,
          "satisfaction_page", "case.close", "page"),
    Route("POST", f"/cases/{CASE}/verdicts", verdicts.verdict_form, "verdict_page",
          "case.review", "page"),
    Route("POST", f"/cases/{CASE}/{{action:[a-z]+}}", pages.case_action, "case_action_page",
          "signed_in", "page"),
    Route("GET", "/my", pages.my_cases, "my_cases", "handler", "page"),
    Route("GET", "/supervision", supervision.queue_page, "supervision_page", "supervision", "page"),
    Route("POST", "/supervision/{order_id:\\d+}/acknowledge", supervision.acknowledge_form,
          "supervision_ack_page", "supervision", "page"),
    Route("POST", "/supervision/{order_id:\\d+}/answer", supervision.answer_form,
          "supervision_answer_page", "supervision", "page"),
    Route("GET", "/agents", pages.agents, "agents_page", "view", "page"),
    Route("GET", "/scores", pages.scores, "scores_page", "view", "page"),
    Route("GET", "/rejected", pages.rejected, "rejected_page", "view", "page"),
    Route("GET", "/dead-letters", pages.dead_letters, "dead_letters_page", "view", "page"),
    Route("GET", "/admin", admin.admin_page, "admin_page", "admin", "page"),
    Route("POST", "/admin/users", admin.user_add_form, "admin_user_add", "admin", "page"),
    Route("POST", "/admin/users/{username}/{action:(disable|enable|password)}",
          admin.user_change_form, "admin_user_change", "admin", "page"),
    Route("POST", "/admin/tokens", admin.token_create_form, "admin_token_create", "admin", "page"),
    Route("POST", "/admin/tokens/{token_id:\\d+}/revoke", admin.token_revoke_form,
          "admin_token_revoke", "admin", "page"),
    Route("POST", "/admin/enroll", admin.enroll_form, "admin_enroll", "admin", "page"),
    Route("GET", "/releases", releases_web.releases_page, "releases_page", "admin", "page"),
    Route("POST", "/releases/rollouts", releases_web.rollout_start_form, "rollout_start", "admin", "page"),
    Route("POST", f"/releases/rollouts/{releases_web.ROLLOUT}/rollback", releases_web.rollout_rollback_form,
          "rollout_rollback", "admin", "page"),
    Route("GET", "/report", reporter.report_page, "report_page", "reporter", "page"),
    Route("POST", "/report", reporter.submit, "report_submit", "reporter", "page"),
    Route("GET", "/report/{report_id:\\d+}/{which:(before|after)}.jpg", reporter.photo,
          "report_photo", "reporter", "page"),
    # the reporter's one-tap satisfaction survey: the token in the link is the credential
    Route("GET", f"/survey/{survey.TOKEN}", survey.survey_page, "survey_page", "public", "page"),
    Route("POST", f"/survey/{survey.TOKEN}", survey.answer, "survey_answer", "public", "page"),
    Route("GET", f"/survey/{survey.TOKEN}/after.jpg", survey.survey_photo, "survey_photo",
          "public", "page"),
    Route("GET", "/plans", plans_web.plans_page, "plans_page", "view", "page"),
    Route("POST", "/plans", plans_web.plan_upload_form, "plan_upload", "admin", "page"),
    Route("GET", f"/plans/{PLAN}", plans_web.plan_page, "plan_page", "view", "page"),
    Route("POST", f"/plans/{PLAN}", plans_web.plan_save_form, "plan_save", "admin", "page"),
    Route("POST", f"/plans/{PLAN}/{{action:(activate|deactivate)}}", plans_web.plan_action_form,
          "plan_action_page", "plan.activate", "page"),
    Route("GET", "/map", mapview.map_page, "map_page", "view", "page"),
    Route("GET", f"/cameras/{CAMERA}/live", liveview.camera_page, "live_page", "live", "page"),
    Route("GET", f"/plans/{PLAN}/wall", liveview.wall_page, "wall_page", "live", "page"),
    Route("GET", "/static/{name}", pages.static, "static", "public", "page"),
    Route("GET", "/static/vendor/{path:[A-Za-z0-9_./-]+}", mapview.vendor_file, "vendor",
          "public", "page"),
    # -- operations -----------------------------------------------------------------------
    Route("GET", "/healthz", views.healthz, "healthz", "public"),
    Route("GET", "/metrics", views.metrics, "metrics", "public"),
    # -- JSON API for the page and for city tools -------------------------------------------
    Route("GET", "/api/v1/me", views.me, "me", "signed_in"),
    Route("GET", "/api/v1/overview", views.overview_json, "overview_json", "view"),
    Route("GET", "/api/v1/live", views.live, "live", "signed_in"),
    Route("GET", "/api/v1/cases", views.cases_json, "cases", "view"),
    Route("GET", f"/api/v1/cases/{CASE}", views.case_json, "case", "view"),
    Route("POST", f"/api/v1/cases/{CASE}/accept", views.case_action, "case_accept", "case.accept"),
    Route("POST", f"/api/v1/cases/{CASE}/reject", views.case_action, "case_reject", "case.reject"),
    Route("POST", f"/api/v1/cases/{CASE}/dispatch", views.case_action, "case_dispatch",
          "case.dispatch"),
    Route("POST", f"/api/v1/cases/{CASE}/reassign", views.case_action, "case_reassign",
          "case.reassign"),
    Route("POST", f"/api/v1/cases/{CASE}/review", views.case_action, "case_review", "case.review"),
    Route("POST", f"/api/v1/cases/{CASE}/close", views.case_action, "case_close", "case.close"),
    Route("POST", f"/api/v1/cases/{CASE}/reopen", views.case_action, "case_reopen", "case.reopen"),
    Route("POST", f"/api/v1/cases/{CASE}/notes", views.case_action, "case_note", "case.note"),
    Route("POST", f"/api/v1/cases/{CASE}/satisfaction", survey.satisfaction_json,
          "case_satisfaction", "case.close"),
    Route("POST", f"/api/v1/cases/{CASE}/verdicts", verdicts.verdict_json, "case_verdict",
          "case.review"),
    # -- supervision (督办): orders on cases, each level's queue -----------------------------------
    Route("GET", f"/api/v1/cases/{CASE}/supervision", supervision.case_orders_json,
          "case_supervision", "supervision"),
    Route("POST", f"/api/v1/cases/{CASE}/supervision", supervision.issue_json,
          "case_supervise", "supervise"),
    Route("GET", "/api/v1/supervision", supervision.queue_json, "supervision_queue", "supervision"),
    Route("POST", "/api/v1/supervision/{order_id:\\d+}/acknowledge", supervision.acknowledge_json,
          "supervision_acknowledge", "supervision"),
    Route("POST", "/api/v1/supervision/{order_id:\\d+}/answer", supervision.answer_json,
          "supervision_answer", "supervision"),
    Route("GET", "/api/v1/agents", views.agents_json, "agents", "view"),
    Route("GET", "/api/v1/grids", views.grids_json, "grids", "view"),
    Route("GET", "/api/v1/map", mapview.map_json, "map", "view"),
    Route("GET", "/api/v1/map/live", mapview.map_stream, "map_live", "view"),
    Route("GET", f"/api/v1/cameras/{CAMERA}/live", liveview.camera_stream, "camera_live", "live"),
    Route("GET", "/api/v1/live-view", liveview.streams_json, "live_view", "view"),
    Route("GET", "/api/v1/scores", views.scores_json, "scores", "view"),
    Route("GET", "/api/v1/dead-letters", views.dead_letters_json, "dead_letters", "view"),
    Route("GET", "/api/v1/stats", views.stats_json, "stats", "view"),
    Route("GET", f"/api/v1/snapshots/{SHA}.jpg", views.snapshot, "snapshot", "snapshot"),
    Route("GET", f"/api/v1/clips/{SHA}.mp4", views.clip, "clip", "snapshot"),
    Route("POST", ENROLL_PATH, views.enroll, "enroll", "public"),
    # -- response plans and vital signs (docs/plans.md) --------------------------------------------
    Route("GET", "/api/v1/vitals", plans_web.vitals_json, "vitals", "view"),
    Route("GET", "/api/v1/plans", plans_web.plans_json, "plans", "view"),
    Route("POST", "/api/v1/plans", plans_web.plan_create_json, "plan_create", "admin"),
    Route("GET", f"/api/v1/plans/{PLAN}", plans_web.plan_json, "plan", "view"),
    Route("PUT", f"/api/v1/plans/{PLAN}", plans_web.plan_update_json, "plan_update", "admin"),
    Route("GET", f"/api/v1/plans/{PLAN}/versions", plans_web.plan_versions_json, "plan_versions", "view"),
    Route("GET", f"/api/v1/plans/{PLAN}/export", plans_web.plan_export, "plan_export", "view"),
    Route("POST", f"/api/v1/plans/{PLAN}/activate", plans_web.activate_json, "plan_activate",
          "plan.activate"),
    Route("POST", f"/api/v1/plans/{PLAN}/deactivate", plans_web.deactivate_json, "plan_deactivate",
          "plan.activate"),
    Route("GET", "/api/v1/plan-notices", plans_web.notices_json, "plan_notices", "plan.notices"),
    # -- model releases and rollouts (docs/hub.md, Model releases) ---------------------------
    Route("GET", "/api/v1/releases", releases_web.releases_json, "releases", "view"),
    Route("GET", f"/api/v1/rollouts/{releases_web.ROLLOUT}", releases_web.rollout_json, "rollout", "view"),
    # -- administration --------------------------------------------------------------------------
    Route("GET", "/api/v1/admin/users", admin.users_json, "admin_users", "admin"),
    Route("POST", "/api/v1/admin/users", admin.user_add_json, "admin_users_add", "admin"),
    Route("POST", "/api/v1/admin/users/{username}/{action:(disable|enable|password)}",
          admin.user_change_json, "admin_users_change", "admin"),
    Route("GET", "/api/v1/admin/tokens", admin.tokens_json, "admin_tokens", "admin"),
    Route("POST", "/api/v1/admin/tokens", admin.token_create_json, "admin_tokens_create", "admin"),
    Route("POST", "/api/v1/admin/tokens/{token_id:\\d+}/revoke", admin.token_revoke_json,
          "admin_tokens_revoke", "admin"),
    Route("GET", "/api/v1/admin/enrollment-tokens", admin.enrollment_json, "admin_enrollment",
          "admin"),
    Route("POST", "/api/v1/admin/enrollment-tokens", admin.enroll_json, "admin_enrollment_add",
          "admin"),
    # -- departments (HANDLER_API.md) ----------------------------------------------------------
    Route("GET", "/api/v1/handler/cases", handler_api.list_cases, "handler_cases", "handler"),
    Route("GET", f"/api/v1/handler/cases/{CASE}", handler_api.get_case, "handler_case", "handler"),
    Route("POST", f"/api/v1/handler/cases/{CASE}/accept", handler_api.accept, "handler_accept",
          "handler"),
    Route("POST", f"/api/v1/handler/cases/{CASE}/reject", handler_api.reject, "handler_reject",
          "handler"),
    Route("POST", f"/api/v1/handler/cases/{CASE}/notes", handler_api.note, "handler_note",
          "handler"),
    Route("POST", f"/api/v1/handler/cases/{CASE}/resolve", handler_api.resolve,
          "handler_resolve", "handler"),
    # -- linked incidents from emergency systems (hub/linkage.py) -------------------------------
    Route("POST", "/api/v1/incidents", linkage.post_incident, "incidents_post", "linkage"),
    # -- Open311 GeoReport v2 ---------------------------------------------------------------------
    Route("GET", f"/open311/v2/discovery.{FMT}", open311.discovery, "open311_discovery", "public",
          "open311"),
    Route("GET", f"/open311/v2/services.{FMT}", open311.services, "open311_services", "public",
          "open311"),
    Route("GET", "/open311/v2/services/{service_code}." + FMT, open311.service_definition,
          "open311_service", "public", "open311"),
    Route("GET", f"/open311/v2/requests.{FMT}", open311.requests, "open311_requests", "public",
          "open311"),
    Route("POST", f"/open311/v2/requests.{FMT}", open311.post_request, "open311_post", "public",
          "open311"),
    Route("GET", "/open311/v2/requests/{request_id}." + FMT, open311.request, "open311_request",
          "public", "open311"),
    Route("GET", f"/open311/v2/media/{SHA}.jpg", open311.media, "open311_media", "public",
          "open311"),
]

# Whole request bodies: a 256 KiB photo plus its form fields.
CLIENT_MAX_SIZE = 320 * 1024


def _error_response(request: web.Request, kind: str, exc: WebError) -> web.StreamResponse:
    if kind == "open311":
        return open311.error_response(request, exc.status, exc.detail, exc.headers or None)
    if kind == "page":
        return pages.error_page(request, exc)
    extra = {"errors": exc.fields} if isinstance(exc, FieldErrors) else None
    return problem(exc.status, exc.code, exc.detail, extra=extra, headers=exc.headers or None)


def _errors_middleware(route_kind: dict[str, str]):
    @web.middleware
    async def middleware(request: web.Request, handler):
        # No route matched under /open311/ (a 404 or 405 there): still GeoReport's errors.
        kind = route_kind.get(request.match_info.route.name or "",
                              "open311" if request.path.startswith("/open311/") else "api")
        try:
            return await handler(request)
        except WebError as exc:
            return _error_response(request, kind, exc)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(request, kind, WebError(
                413, "too_large", _("the request is larger than %(n)s KiB; photos must be JPEGs of "
                                    "at most 256 KiB") % {"n": CLIENT_MAX_SIZE // 1024}))
        except web.HTTPException as exc:
            if exc.status >= 400 and kind != "page":
                allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
                return _error_response(request, kind, WebError(exc.status, exc.reason.lower().replace(" ", "_"),
                                                               exc.text or exc.reason, headers=allow))
            raise
        except Exception:
            log.exception("error serving %s %s", request.method, request.path)
            return _error_response(request, kind, WebError(
                500, "internal_error", _("the hub failed on this request; see its log")))

    return middleware


def _access_middleware(metrics: HttpMetrics, enabled: bool):
    @web.middleware
    async def middleware(request: web.Request, handler):
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - start
            name = request.match_info.route.name or "unmatched"
            metrics.observe(name, request.method, status, elapsed)
            if enabled:
                who = request.get(PRINCIPAL)
                access_log.info("%s %s %s %.1f ms", request.method, request.path, status,
                                elapsed * 1000, extra={
                                    "http_method": request.method, "path": request.path,
                                    "route": name, "status": status,
                                    "duration_ms": round(elapsed * 1000, 2),
                                    "remote": request.remote,
                                    "principal": who.actor if who else None})

    return middleware


def create_app(hub: Hub) -> web.Application:
    cfg = hub.config.web
    info = {r.name: r for r in ROUTES}
    security = SecurityState(LoginLimiter(cfg.login_limits.per_account, cfg.login_limits.per_address,
                                          cfg.login_limits.window_min * 60), {}, {},
                             PasswordChecker())
    metrics = HttpMetrics()
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=[
        _access_middleware(metrics, cfg.access_log),
        locale_middleware(),  # before errors: error pages and problems use the language
        _errors_middleware({r.name: r.kind for r in ROUTES}),
        security_middleware(hub, security, info),
    ])
    app[HUB_KEY] = hub
    app[METRICS_KEY] = metrics
    app[SECURITY_KEY] = security
    app[RENDER_KEY] = Renderer(hub)
    app[open311.STATE_KEY] = open311.Open311State.for_hub(hub)
    live = LiveFeed(hub)
    app[LIVE_KEY] = live
    app[MAP_KEY] = mapview.MapService(hub)
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler, name=r.name)

    async def start_live(_app: web.Application) -> None:
        await live.start()

    async def stop_live(_app: web.Application) -> None:
        await live.stop()
        await app[MAP_KEY].stop()

    async def stop_pools(_app: web.Application) -> None:
        security.passwords.close()

    app.on_startup.append(start_live)
    app.on_shutdown.append(stop_live)
    app.on_cleanup.append(stop_pools)
    return app
