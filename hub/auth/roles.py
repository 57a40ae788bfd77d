"""Roles and what each may do. Pure.

A *principal* is a signed-in user (cookie session) or an API token. Every route names
the permission it needs (:data:`hub.web.routes.ROUTES`); case actions are offered and
allowed only when both the role permits them and the case's state does.

=============================  ========  ==========  =======  =====  ========  =======  =======  =======
permission                     operator  dispatcher  handler  admin  reporter  open311  monitor  linkage
=============================  ========  ==========  =======  =====  ========  =======  =======  =======
view (overview, cases, agents)    ✓          ✓                    ✓
case.accept / case.reject          ✓          ✓                    ✓
case.dispatch (one-key)            ✓          ✓                    ✓
case.reassign (choose dept)                   ✓                    ✓
case.review / close / reopen       ✓          ✓                    ✓
case.note                          ✓          ✓          ✓*        ✓
handler.* (own department)                               ✓*
plan.activate / deactivate         ✓          ✓                    ✓
plan.notices (plan notices)        ✓          ✓          ✓*        ✓
supervise (issue an order)         ✓†         ✓†                   ✓
supervision (queue, ack, answer)   ✓          ✓          ✓*        ✓
admin.* (users, tokens, enroll, plan upload/edit)                  ✓
report (Open311 POST)                                              ✓      ✓         ✓
reporter (one-key report page)                                            ✓
linkage (linked incident feed)                                                                        ✓
metrics                            ✓          ✓                    ✓                          ✓
=============================  ========  ==========  =======  =====  ========  =======  =======  =======

``*`` only on cases dispatched to the principal's department (and, for plan notices, only
the notices addressed to it; for supervision, the orders addressed to it). ``†`` a town
account may not issue orders (only a higher level: district, city, or an account without
a level).

Operators and dispatchers may carry a command level and scope (:mod:`hub.auth.scope`):
then every case they list, open, act on or watch is inside their grids; another grid's
case answers 404, as if it did not exist. ``reporter`` users see
only their own reports; a ``linkage`` token (police, fire, ambulance systems) may only
post incidents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..cases.states import CaseState

__all__ = [
    "CASE_ACTIONS",
    "PERMISSIONS",
    "TOKEN_ROLES",
    "USER_ROLES",
    "Principal",
    "Role",
    "case_actions",
    "has_permission",
]


class Role(StrEnum):
    OPERATOR = "operator"
    DISPATCHER = "dispatcher"
    HANDLER = "handler"
    ADMIN = "admin"
    REPORTER = "reporter"  # residents' committee one-key reports (issue 10)
    OPEN311 = "open311"  # a partner system posting Open311 requests (tokens only)
    MONITOR = "monitor"  # Prometheus and friends (tokens only)
    LINKAGE = "linkage"  # an emergency system posting linked incidents (tokens only)


USER_ROLES = (Role.OPERATOR, Role.DISPATCHER, Role.HANDLER, Role.ADMIN, Role.REPORTER)
TOKEN_ROLES = tuple(Role)
NEEDS_DEPARTMENT = frozenset({Role.HANDLER})

_OPS = {Role.OPERATOR, Role.DISPATCHER, Role.ADMIN}

PERMISSIONS: dict[str, frozenset[Role]] = {
    "view": frozenset(_OPS),
    "case.accept": frozenset(_OPS),
    "case.reject": frozenset(_OPS),
    "case.dispatch": frozenset(_OPS),
    "case.reassign": frozenset({Role.DISPATCHER, Role.ADMIN}),
    "case.review": frozenset(_OPS),
    "case.close": frozenset(_OPS),
    "case.reopen": frozenset(_OPS),
    "case.note": frozenset(_OPS | {Role.HANDLER}),
    "plan.activate": frozenset(_OPS),
    "plan.notices": frozenset(_OPS | {Role.HANDLER}),
    "supervise": frozenset(_OPS),
    "supervision": frozenset(_OPS | {Role.HANDLER}),
    "handler": frozenset({Role.HANDLER}),
    "admin": frozenset({Role.ADMIN}),
    "report": frozenset({Role.ADMIN, Role.REPORTER, Role.OPEN311}),
    "reporter": frozenset({Role.REPORTER}),
    "linkage": frozenset({Role.LINKAGE}),
    "metrics": frozenset(_OPS | {Role.MONITOR}),
    "snapshot": frozenset(_OPS | {Role.HANDLER}),
    "live": frozenset(_OPS),  # a camera's live view and the video wall
    "signed_in": frozenset(Role),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (``kind='user'``, with a session) or an API token."""

    kind: str  # "user" | "token"
    name: str  # user name, or the token's name
    role: Role
    department: str | None = None
    display_name: str = ""
    session_sha256: str | None = None
    csrf: str | None = None
    token_id: int | None = None
    token_sha256: str | None = None  # to look the token up again (a long-lived stream)
    level: str | None = None  # command level: town | district | city (hub.auth.scope)
    grids: frozenset[str] | None = None  # the grids it may see; None: everywhere

    def sees(self, grid_id: str | None) -> bool:
        """Whether a case in ``grid_id`` is inside this principal's scope (a case with no
        grid is the city's: only unscoped principals see it)."""
        return self.grids is None or (grid_id is not None and grid_id in self.grids)

    @property
    def actor(self) -> str:
        """How the audit trail names this principal."""
        return f"{self.name}" if self.kind == "user" else f"token:{self.name}"

    def can(self, permission: str) -> bool:
        return has_permission(self.role, permission)


def has_permission(role: Role | str, permission: str) -> bool:
    allowed = PERMISSIONS.get(permission)
    if allowed is None:
        raise KeyError(f"unknown permission {permission!r}")
    return Role(role) in allowed


# -- what can be done to a case now -----------------------------------------------------------

S = CaseState

# action → (permission, states it can be done in)
CASE_ACTIONS: dict[str, tuple[str, frozenset[CaseState]]] = {
    "accept": ("case.accept", frozenset({S.NEW, S.REJECTED})),
    "reject": ("case.reject", frozenset({S.NEW, S.ACCEPTED})),
    "dispatch": ("case.dispatch", frozenset({S.ACCEPTED, S.REJECTED, S.REOPENED})),
    "reassign": ("case.reassign", frozenset({S.ACCEPTED, S.DISPATCHED, S.IN_PROGRESS,
                                              S.ESCALATED, S.REOPENED, S.REJECTED})),
    "review": ("case.review", frozenset({S.RESOLVED})),
    "close": ("case.close", frozenset({S.ACCEPTED, S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED,
                                       S.RESOLVED, S.REOPENED})),
    "reopen": ("case.reopen", frozenset({S.CLOSED})),
    "note": ("case.note", frozenset(CaseState)),
    "start": ("handler", frozenset({S.DISPATCHED, S.ESCALATED, S.REOPENED})),
    "return": ("handler", frozenset({S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED})),
    "resolve": ("handler", frozenset({S.DISPATCHED, S.IN_PROGRESS, S.ESCALATED, S.REOPENED,
                                      S.RESOLVED})),
}


def case_actions(principal: Principal, state: str, department: str | None,
                 review_reason: str | None = None) -> list[str]:
    """The actions to offer ``principal`` on a case in ``state`` (in display order)."""
    out = []
    for action, (permission, states) in CASE_ACTIONS.items():
        if not principal.can(permission) or CaseState(state) not in states:
            continue
        if permission in ("handler", "case.note") and principal.role is Role.HANDLER \
                and department != principal.department:
            continue
        if action == "review" and not review_reason:
            continue
        if action == "resolve" and state == S.RESOLVED and principal.role is Role.HANDLER:
            continue  # already resolved: waiting for verification
        out.append(action)
    return out

