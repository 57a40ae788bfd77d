"""The routing table: category × grid → department, on-duty handler, deadline.

Operators edit it as YAML (see ``hub/examples/routing.yaml``)::

    version: 1
    fallback: taxonomy        # no route matches: the taxonomy's department (or: queue)
    duty:                     # who is on duty for a department, by time of day
      drainage:
        - {handler: crew-north, from: "08:00", to: "20:00", grids: [g-01, g-02]}
        - {handler: night-crew, from: "20:00", to: "08:00"}
    routes:                   # first match wins: put specific routes first
      - categories: [flood.road_waterlogging]
        grids: [g-03]
        department: drainage
        deadline_min: 90

It is validated like the agent configs (``file:line:col key.path: message``), including
the cross-checks: category codes exist in the taxonomy, grids, towns and districts in the
grids file, departments in the taxonomy or the table's own ``departments``.

:func:`route` is pure: case facts and a time in, a :class:`RouteDecision` or ``None`` out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, Field, model_validator

from protocol.base import StrictModel
from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id
from protocol.taxonomy import Names, Taxonomy

from .geo import GridIndex, read_config_text

__all__ = ["Contact", "ContactBook", "Fallback", "Leads", "TimeZoneName", "RouteDecision",
           "RoutingTable", "load_routing", "on_duty", "on_duty_shift", "parse_routing", "route"]

def _check_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except Exception:
        raise ValueError(f"unknown time zone {v!r}; use an IANA name like Asia/Shanghai") from None
    return v


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
Clock = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, local time")]
Weekday = Annotated[str, Field(pattern=r"^(mon|tue|wed|thu|fri|sat|sun)$")]
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

ChannelName = Literal["email", "webhook", "wecom", "dingtalk", "feishu", "sms"]
_EMAIL = re.compile(r"^[^@\s<>(),;:\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")
_ENDPOINT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Contact(StrictModel):
    """Someone to tell, and how (hub/notify/). ``address``: an email address (email), a
    phone number (sms), or the name of a webhook or group robot under ``notify:`` in
    hub.yaml (webhook, wecom, dingtalk, feishu): URLs and secrets stay out of this file."""

    channel: ChannelName
    address: str = Field(min_length=1, max_length=254)
    name: str = Field("", max_length=100, description="who this is, for people reading the page")

    @model_validator(mode="after")
    def _address_fits_channel(self) -> Contact:
        a = self.address
        if self.channel == "email" and not _EMAIL.match(a):
            raise ValueError(f"address {a!r} is not an email address like duty@example.org")
        if self.channel == "sms" and not _PHONE.match(a):
            raise ValueError(f"address {a!r} is not a phone number (digits, optionally a leading +)")
        if self.channel not in ("email", "sms") and not _ENDPOINT.match(a):
            raise ValueError(f"address {a!r} must name a {self.channel} entry under notify: in "
                             "hub.yaml (lower-case letters, digits, - _ .), not a URL")
        return self


class Leads(StrictModel):
    """Who hears of an escalation, per level (town → district → city)."""

    town: dict[str, list[Contact]] = Field(default_factory=dict, description="by town name")
    district: dict[str, list[Contact]] = Field(default_factory=dict, description="by district name")
    city: list[Contact] = Field(default_factory=list)


class ContactBook(StrictModel):
    departments: dict[str, list[Contact]] = Field(
        default_factory=dict, description="told of every case dispatched to the department")
    operators: list[Contact] = Field(
        default_factory=list, description="told of cases waiting for an operator")
    leads: Leads = Field(default_factory=Leads)


class Fallback(StrEnum):
    TAXONOMY = "taxonomy"  # use the subcategory's default department
    QUEUE = "queue"  # leave the case in the operator queue


class Shift(StrictModel):
    handler: Id
    from_: Clock = Field("00:00", alias="from")
    to: Clock = "00:00"
    days: list[Weekday] = Field(default_factory=list, description="empty: every day")
    grids: list[str] = Field(default_factory=list, description="empty: every grid")
    contacts: list[Contact] = Field(default_factory=list,
                                    description="told of the department's cases while on duty")

    def covers(self, local: datetime, grid_id: str | None) -> bool:
        if self.grids and grid_id not in self.grids:
            return False
        start, end = _hhmm(self.from_), _hhmm(self.to)
        t = local.time()
        day = _DAYS[local.weekday()]
        if start == end:  # all day
            return not self.days or day in self.days
        if start < end:
            return start <= t < end and (not self.days or day in self.days)
        # crosses midnight: the shift belongs to the day it starts on
        if t >= start:
            return not self.days or day in self.days
        if t < end:
            yesterday = _DAYS[(local.weekday() - 1) % 7]
            return not self.days or yesterday in self.days
        return False


class Route(StrictModel):
    categories: list[str] = Field(default_factory=list, description="codes; empty: any")
    grids: list[str] = Field(default_factory=list, description="empty: any")
    towns: list[str] = Field(default_factory=list, description="empty: any")
    districts: list[str] = Field(default_factory=list, description="empty: any")
    department: str
    handler: Id | None = Field(None, description="a fixed handler; else the duty roster decides")
    deadline_min: int | None = Field(None, gt=0, description="overrides the category deadline")

    def matches(self, subcategory: str, grid_id: str | None, town: str, district: str) -> bool:
        category = subcategory.split(".", 1)[0]
        if self.categories and subcategory not in self.categories and category not in self.categories:
            return False
        if self.grids and grid_id not in self.grids:
            return False
        if self.towns and town not in self.towns:
            return False
        return not self.districts or district in self.districts


class RoutingTable(StrictModel):
    version: int = Field(1, ge=1, le=1)
    timezone: TimeZoneName = Field("Asia/Shanghai", description="for duty shifts")
    fallback: Fallback = Fallback.TAXONOMY
    departments: dict[Id, Names] = Field(
        default_factory=dict, description="departments beyond the taxonomy's"
    )
    duty: dict[str, list[Shift]] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    contacts: ContactBook = Field(default_factory=ContactBook, description="who is notified")

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class RouteDecision:
    department: str
    handler: str | None
    deadline_min: int | None  # None: the category's deadline
    matched: str  # "routes[3]", "taxonomy" or "operator"


def _hhmm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def on_duty_shift(table: RoutingTable, department: str, grid_id: str | None,
                  at: datetime) -> Shift | None:
    """The shift on duty for ``department`` at ``at`` (the first that covers it), or None."""
    local = at.astimezone(table.zone())
    for shift in table.duty.get(department, []):
        if shift.covers(local, grid_id):
            return shift
    return None


def on_duty(table: RoutingTable, department: str, grid_id: str | None, at: datetime) -> str | None:
    """The handler on duty for ``department`` at ``at`` (first matching shift), or None."""
    shift = on_duty_shift(table, department, grid_id, at)
    return None if shift is None else shift.handler


def route(
    table: RoutingTable,
    *,
    subcategory: str,
    grid_id: str | None,
    town: str,
    district: str,
    default_department: str,
    at: datetime,
) -> RouteDecision | None:
    """Where a case goes. ``None`` means unroutable: it waits in the operator queue."""
    for i, r in enumerate(table.routes):
        if r.matches(subcategory, grid_id, town, district):
            handler = r.handler or on_duty(table, r.department, grid_id, at)
            return RouteDecision(r.department, handler, r.deadline_min, f"routes[{i}]")
    if table.fallback is Fallback.TAXONOMY and default_department:
        return RouteDecision(
            default_department, on_duty(table, default_department, grid_id, at), None, "taxonomy"
        )
    return None


# -- loading with cross-checks ------------------------------------------------------

_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")


def _cross_check(table: RoutingTable, doc: Document, tax: Taxonomy, grids: GridIndex,
                 endpoints: Endpoints | None = None) -> None:
    problems: list[ConfigProblem] = []
    departments = set(tax.departments) | set(table.departments)
    codes = {c.code for c in tax.categories} | {s.code for s in tax.subcategories()}
    towns, districts = grids.towns(), grids.districts()

    def need_department(path: tuple, name: str) -> None:
        if name not in departments:
            problems.append(doc.problem(path, f"unknown department {name!r}; add it under "
                                              "'departments' or use one of the taxonomy's"))

    for dept, shifts in table.duty.items():
        need_department(("duty", dept), dept)
        for j, shift in enumerate(shifts):
            for k, g in enumerate(shift.grids):
                if g not in grids:
                    problems.append(doc.problem(("duty", dept, j, "grids", k),
                                                f"unknown grid {g!r}; it is not in the grids file"))
    for i, r in enumerate(table.routes):
        need_department(("routes", i, "department"), r.department)
        for k, code in enumerate(r.categories):
            if code not in codes:
                problems.append(doc.problem(("routes", i, "categories", k),
                                            f"unknown category {code!r}; see protocol/taxonomy.yaml"))
        for k, g in enumerate(r.grids):
            if g not in grids:
                problems.append(doc.problem(("routes", i, "grids", k),
                                            f"unknown grid {g!r}; it is not in the grids file"))
        for key, known, values in (("towns", towns, r.towns), ("districts", districts, r.districts)):
            for k, v in enumerate(values):
                if v not in known:
                    problems.append(doc.problem(("routes", i, key, k),
                                                f"no grid has {key[:-1]} {v!r}"))
    problems += _check_contacts(table, doc, departments, towns, districts, endpoints)
    if problems:
        raise ConfigError(problems)


# What hub.yaml's notify: section offers: channel → endpoint names (None: any address).
Endpoints = dict[str, set[str] | None]


def all_contacts(table: RoutingTable) -> Iterator[tuple[tuple, Contact]]:
    """Every contact in the table with its path (for checks and docs)."""
    book = table.contacts
    for dep, contacts in book.departments.items():
        for i, c in enumerate(contacts):
            yield ("contacts", "departments", dep, i), c
    for i, c in enumerate(book.operators):
        yield ("contacts", "operators", i), c
    for level in ("town", "district"):
        for where, contacts in getattr(book.leads, level).items():
            for i, c in enumerate(contacts):
                yield ("contacts", "leads", level, where, i), c
    for i, c in enumerate(book.leads.city):
        yield ("contacts", "leads", "city", i), c
    for dep, shifts in table.duty.items():
        for j, shift in enumerate(shifts):
            for i, c in enumerate(shift.contacts):
                yield ("duty", dep, j, "contacts", i), c


def _check_contacts(table: RoutingTable, doc: Document, departments: set[str], towns: set[str],
                    districts: set[str], endpoints: Endpoints | None) -> list[ConfigProblem]:
    problems = []
    for dep in table.contacts.departments:
        if dep not in departments:
            problems.append(doc.problem(("contacts", "departments", dep),
                                        f"unknown department {dep!r}; add it under 'departments' "
                                        "or use one of the taxonomy's"))
    for level, known in (("town", towns), ("district", districts)):
        for where in getattr(table.contacts.leads, level):
            if where not in known:
                problems.append(doc.problem(("contacts", "leads", level, where),
                                            f"no grid has {level} {where!r}"))
    if endpoints is None:
        return problems
    for path, c in all_contacts(table):
        if c.channel not in endpoints:
            problems.append(doc.problem((*path, "channel"),
                                        f"channel {c.channel} is not set up in hub.yaml: add "
                                        f"notify.{_SECTION[c.channel]} there (see docs/hub.md)"))
            continue
        names = endpoints[c.channel]
        if names is not None and c.address not in names:
            known = ", ".join(sorted(names)) or "none"
            problems.append(doc.problem((*path, "address"),
                                        f"no {c.channel} named {c.address!r} under notify."
                                        f"{_SECTION[c.channel]} in hub.yaml (known: {known})"))
    return problems


_SECTION = {"email": "email", "sms": "sms", "webhook": "webhooks", "wecom": "wecom",
            "dingtalk": "dingtalk", "feishu": "feishu"}


def parse_routing(text: str, filename: str, tax: Taxonomy, grids: GridIndex,
                  endpoints: Endpoints | None = None) -> RoutingTable:
    """``endpoints``: the channels hub.yaml's ``notify:`` sets up; with them every contact
    must use one of those (None: contacts are not checked against hub.yaml)."""
    doc = parse_yaml(text, filename)
    table = validate_document(RoutingTable, doc)
    _cross_check(table, doc, tax, grids, endpoints)
    return table


def load_routing(path: str | Path, tax: Taxonomy, grids: GridIndex,
                 endpoints: Endpoints | None = None) -> RoutingTable:
    return parse_routing(read_config_text(path, "routing table"), str(path), tax, grids, endpoints)
