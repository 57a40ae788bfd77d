"""Command levels and scopes of accounts (town → district → city). Pure.

An operator or dispatcher account (user or API token) may carry a *command level*
(``town``, ``district`` or ``city``) and a *scope*: names of grids, towns or districts
from the grids file (:mod:`hub.geo`). The scope resolves to a set of grid ids each time
the account is used, so a grid added to a town later is in that town's scope at once.

* ``town`` and ``district`` accounts need a scope; they see and act on the cases of
  their grids only (a district account names its district, so it sees its towns).
* ``city`` accounts may name a scope; without one they see the whole city.
* An account without a level is the city command centre as before: everything.

A scope that resolves to nothing (every name removed from the grids file) sees nothing:
scopes fail closed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from .errors import AuthError

__all__ = ["LEVELS", "LEVEL_RANK", "SCOPED_ROLES", "check_level_scope", "level_covers",
           "resolve_scope"]

LEVELS = ("town", "district", "city")
LEVEL_RANK = {name: i + 1 for i, name in enumerate(LEVELS)}  # = cases.escalation_level
SCOPED_ROLES = frozenset({"operator", "dispatcher"})
MAX_SCOPE_NAMES = 200


class _Grid(Protocol):
    grid_id: str
    town: str
    district: str


class _Grids(Protocol):
    grids: Sequence[_Grid]


def _matches(name: str, grid: _Grid) -> bool:
    return name in (grid.grid_id, grid.town, grid.district)


def resolve_scope(level: str | None, names: Iterable[str], grids: _Grids | None) -> frozenset[str] | None:
    """The grid ids an account may see; ``None`` means everywhere (no level, or a city
    account without a scope). Names match a grid id, a town or a district."""
    wanted = [n for n in names if n]
    if level is None or (level == "city" and not wanted):
        return None
    if grids is None:
        return frozenset()
    return frozenset(g.grid_id for g in grids.grids if any(_matches(n, g) for n in wanted))


def check_level_scope(role: str, level: str | None, scope: Collection[str],
                      grids: _Grids) -> tuple[str | None, list[str]]:
    """Validate an account's level and scope (at creation or change); returns them clean.
    Raises :class:`AuthError` naming the field and what would be right."""
    names = sorted({s.strip() for s in scope if s and s.strip()})
    if not level:
        if names:
            raise AuthError("level_required", "a scope needs a command level: give --level "
                            "town, district or city", field="level")
        return None, []
    if level not in LEVELS:
        raise AuthError("bad_level", f"unknown command level {level!r}; one of "
                        f"{', '.join(LEVELS)}", field="level")
    if role not in SCOPED_ROLES:
        raise AuthError("bad_level", f"a command level is for operator and dispatcher "
                        f"accounts, not {role}", field="level")
    if level != "city" and not names:
        raise AuthError("scope_required", f"a {level} account is scoped: give --scope with "
                        f"its {level} name (or grid ids)", field="scope")
    if len(names) > MAX_SCOPE_NAMES:
        raise AuthError("bad_scope", f"at most {MAX_SCOPE_NAMES} scope names", field="scope")
    known = {g.grid_id for g in grids.grids} | {g.town for g in grids.grids if g.town} \
        | {g.district for g in grids.grids if g.district}
    unknown = [n for n in names if n not in known]
    if unknown:
        towns = sorted({g.town for g in grids.grids if g.town})
        districts = sorted({g.district for g in grids.grids if g.district})
        raise AuthError("unknown_scope", f"{', '.join(map(repr, unknown))} is not a grid, town "
                        f"or district of the grids file (towns: {', '.join(towns) or '-'}; "
                        f"districts: {', '.join(districts) or '-'})", field="scope")
    return level, names


def level_covers(level: str | None, escalation_level: int) -> bool:
    """Whether a case escalated to ``escalation_level`` (1 town, 2 district, 3 city) has
    reached an account of ``level`` (no level: the city)."""
    rank = LEVEL_RANK.get(level or "city", 3)
    return escalation_level >= rank
