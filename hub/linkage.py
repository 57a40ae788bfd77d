"""Linked incidents from emergency systems (police 110, fire 119, ambulance 120): the
hub config's ``web.linkage`` section, the incident a partner posts, the type mapping and
the optional HMAC signature. Pure; the HTTP shell is :mod:`hub.web.linkage`.

A partner's system posts ``POST /api/v1/incidents`` with a ``linkage`` API token::

    {"source_system": "police-110", "external_id": "P20260701-0042",
     "type": "traffic_accident", "occurred_at": "2026-07-01T08:00:00+08:00",
     "location": {"lat": 31.205, "lon": 121.405},          # or {"address": ..., "grid_id": ...}
     "description": "two cars, one lane blocked", "photo_url": "https://..."}

The partner's ``type`` becomes a taxonomy subcategory through ``web.linkage.types``
(keys ``"<source_system>:<type>"``, ``"<type>"`` or ``"<source_system>:*"``, most
specific first). ``(source_system, external_id)`` is the idempotency key.

A ``source_system`` belongs to one partner, so no partner can take another's incident ids
(a squatted id would answer the real partner 409): a linkage token files only under its
partner's ``web.linkage.partners.<token name>.systems``, or, when none are listed, under
the one system named like the token (``cityops-hub token create --role linkage --name
police-110``). A system listed for one partner is reserved for it: no other token may
use it (:func:`source_system_refusal`), and no two partners may list it
(:func:`check_linkage_config`).

Signature (per partner, when a secret is configured): ``X-Cityops-Timestamp`` (Unix
seconds) and ``X-Cityops-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw
body>">``; a timestamp outside ``signature_window_s`` is refused, so a captured request
cannot be replayed later (and within the window a replay is a duplicate by key).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from protocol.base import StrictModel
from protocol.ids import Id, is_safe_id
from protocol.taxonomy import Taxonomy

from .geo import Grid

__all__ = [
    "DEFAULT_TYPES",
    "Incident",
    "IncidentLocation",
    "LinkageConfig",
    "LinkagePartner",
    "check_linkage_config",
    "check_signature",
    "check_times",
    "grid_point",
    "incident_digest",
    "linkage_token_problem",
    "map_type",
    "partner_systems",
    "sign",
    "source_system_refusal",
]

SIGNATURE_HEADER = "X-Cityops-Signature"
TIMESTAMP_HEADER = "X-Cityops-Timestamp"

DEFAULT_TYPES = {
    "police": "linkage.police_110",
    "fire": "linkage.fire_119",
    "ambulance": "linkage.ambulance_120",
    "medical": "linkage.ambulance_120",
}

ExternalId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
TypeCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class LinkagePartner(StrictModel):
    """One partner, keyed by its API token's name."""

    secret_env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="environment variable holding the partner's HMAC secret")
    require_signature: bool = Field(
        False, description="refuse unsigned posts from this partner (needs secret_env)")
    systems: list[Id] = Field(
        default_factory=list, max_length=100,
        description="source_system values reserved for this partner's tokens; empty: the one "
                    "named like the token")

    @model_validator(mode="after")
    def _secret_for_signature(self) -> LinkagePartner:
        if self.require_signature and not self.secret_env:
            raise ValueError("require_signature needs secret_env (the variable with the secret)")
        return self


class LinkageConfig(StrictModel):
    enabled: bool = True
    types: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TYPES),
        description="partner type → subcategory; keys '<source_system>:<type>', '<type>' "
                    "or '<source_system>:*' (most specific wins)")
    partners: dict[str, LinkagePartner] = Field(
        default_factory=dict, description="API token name → its source systems and signature "
                                          "settings")
    max_body_bytes: int = Field(16 * 1024, ge=1024, le=256 * 1024,
                                description="larger posts are refused (413)")
    signature_window_s: int = Field(300, ge=10, le=3600,
                                    description="a signed post's timestamp must be this close to now")
    max_age_h: float = Field(72, gt=0, description="incidents older than this are refused")
    max_future_s: float = Field(300, ge=0, description="clock skew allowed for occurred_at")


class IncidentLocation(StrictModel):
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: Annotated[str, StringConstraints(max_length=200)] | None = None
    grid_id: Id | None = None

    @model_validator(mode="after")
    def _point_or_address(self) -> IncidentLocation:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give lat and lon together")
        if self.lat is None and not (self.address and self.grid_id):
            raise ValueError("give lat and lon, or address and grid_id")
        return self


class Incident(StrictModel):
    """What a partner posts (unknown fields are refused, so a typo is never ignored)."""

    source_system: Id = Field(description="the sending system, e.g. police-110")
    external_id: ExternalId = Field(description="the incident's id in that system")
    type: TypeCode = Field(description="the partner's incident type, mapped by web.linkage.types")
    occurred_at: AwareDatetime
    location: IncidentLocation
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    photo_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=200)] | None = \
        Field(None, description="kept as a link; the hub never fetches it")


def partner_systems(cfg: LinkageConfig, token_name: str) -> tuple[str, ...]:
    """The source systems a linkage token files under: its partner's ``systems``, else the
    one named like the token (none when the name is not a valid source_system)."""
    partner = cfg.partners.get(token_name)
    if partner is not None and partner.systems:
        return tuple(partner.systems)
    return (token_name,) if is_safe_id(token_name) else ()


def _owner(cfg: LinkageConfig, source_system: str) -> str | None:
    """The partner whose ``systems`` list ``source_system``, if any."""
    return next((name for name, p in cfg.partners.items() if source_system in p.systems), None)


def source_system_refusal(cfg: LinkageConfig, token_name: str, source_system: str) -> str | None:
    """None when the token may file under ``source_system``; else why not and the fix."""
    owner = _owner(cfg, source_system)
    if owner is not None and owner != token_name:
        return (f"source_system {source_system!r} is reserved for another partner; this token "
                f"({token_name!r}) files under {_listed(partner_systems(cfg, token_name))}")
    allowed = partner_systems(cfg, token_name)
    if source_system in allowed:
        return None
    return (f"this token ({token_name!r}) files under {_listed(allowed)}, not "
            f"{source_system!r}; a partner's systems are listed in "
            f"web.linkage.partners.{token_name}.systems (or the token is named after its one "
            "system), so ask the hub's administrator")


def linkage_token_problem(cfg: LinkageConfig, token_name: str) -> str | None:
    """Why a linkage token of this name would be useless or would take another partner's
    system (refused when it is created), else None."""
    allowed = partner_systems(cfg, token_name)
    if not allowed:
        return (f"a linkage token files under the source_system it is named after, and "
                f"{token_name!r} is not one (1-64 of A-Z a-z 0-9 _ . -); name it after its "
                f"system (e.g. police-110) or list its systems in "
                f"web.linkage.partners.{token_name}.systems")
    taken = [s for s in allowed if _owner(cfg, s) not in (None, token_name)]
    if taken:
        return (f"source_system {taken[0]!r} is reserved for another partner in "
                "web.linkage.partners; name the token after its own system")
    return None


def _listed(systems: tuple[str, ...]) -> str:
    return ", ".join(repr(s) for s in systems) if systems else "no source_system"


def map_type(types: Mapping[str, str], source_system: str, type_: str) -> str | None:
    """The subcategory for a partner's type, or None when nothing maps it."""
    for key in (f"{source_system}:{type_}", type_, f"{source_system}:*"):
        if key in types:
            return types[key]
    return None


def check_times(incident: Incident, now: datetime, cfg: LinkageConfig) -> dict[str, str]:
    """Field errors for an occurred_at in the future or too far in the past."""
    if incident.occurred_at > now + timedelta(seconds=cfg.max_future_s):
        return {"occurred_at": f"{incident.occurred_at.isoformat()} is in the future (the hub's "
                               f"time is {now.isoformat()}); check the sender's clock"}
    if incident.occurred_at < now - timedelta(hours=cfg.max_age_h):
        return {"occurred_at": f"{incident.occurred_at.isoformat()} is more than "
                               f"{cfg.max_age_h:g} h ago; report it to the operators directly"}
    return {}


def incident_digest(incident: Incident) -> str:
    """sha256 of the incident's canonical JSON: the same incident re-sent with other
    whitespace or key order has the same digest."""
    return hashlib.sha256(incident.model_dump_json().encode()).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a partner sends."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_signature(secret: str, timestamp: str | None, signature: str | None, body: bytes,
                    now_unix: float, window_s: int) -> str | None:
    """None when the signature is good; otherwise what is wrong and how to fix it."""
    if not timestamp or not signature:
        return (f"this partner signs its posts: send {TIMESTAMP_HEADER} (Unix seconds) and "
                f"{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of '<timestamp>.<body>'>")
    try:
        ts = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} must be whole Unix seconds (got {timestamp[:20]!r})"
    if abs(now_unix - ts) > window_s:
        return (f"{TIMESTAMP_HEADER} is {int(now_unix - ts)} s from the hub's clock (at most "
                f"{window_s} s): sign each post when sending it, and check the sender's clock")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.strip().encode()):
        return (f"{SIGNATURE_HEADER} does not match: HMAC-SHA256 with the shared secret over "
                f"'<timestamp>.<raw body>', hex, prefixed 'sha256='")
    return None


def grid_point(grid: Grid) -> tuple[float, float]:
    """A point inside the grid (lat, lon): the bounding-box centre when it is inside,
    else the first inside point of a coarse lattice (concave grids)."""
    lat, lon = grid.centroid()
    if grid.contains(lat, lon):
        return lat, lon
    x0, y0, x1, y1 = grid.bbox
    for i in range(1, 20):
        for j in range(1, 20):
            la, lo = y0 + (y1 - y0) * i / 20, x0 + (x1 - x0) * j / 20
            if grid.contains(la, lo):
                return la, lo
    return lat, lon  # pragma: no cover - a degenerate polygon


def check_linkage_config(cfg: LinkageConfig, tax: Taxonomy) -> list[tuple[tuple, str]]:
    """(key path under web.linkage, message) for every mapping to an unknown code, and
    every source system reserved for two partners."""
    out: list[tuple[tuple, str]] = []
    claimed: dict[str, str] = {}
    for name, partner in cfg.partners.items():
        for i, system in enumerate(partner.systems):
            if claimed.setdefault(system, name) != name:
                out.append((("partners", name, "systems", i),
                            f"{system!r} is already reserved for partner {claimed[system]!r}; "
                            "a source_system belongs to one partner"))
    for name, partner in cfg.partners.items():
        if not partner.systems and claimed.get(name, name) != name:
            out.append((("partners", name),
                        f"this partner lists no systems, so its tokens file under {name!r}, "
                        f"which is reserved for partner {claimed[name]!r}; list its systems"))
    for key, code in cfg.types.items():
        try:
            sub = tax.subcategory(code)
        except KeyError:
            out.append((("types", key), f"unknown subcategory {code!r}; see protocol/taxonomy.yaml"))
            continue
        if sub.retired:
            out.append((("types", key), f"subcategory {code!r} is retired; map to its successor"))
    return out
