"""The elderly-care registry (``care:`` in hub.yaml) and the pure decisions of a care alarm.

A no-use alarm of a water meter or a pressed call button reaches the hub as an event of
``elderly_care``; its attributes name the tier the agent reached (1, 2, ...). The registry
says, per resident (agent id + device id on that agent), who each tier tells::

    contacts:
      wang-family:
        name: 王女士 (daughter) / Ms Wang
        role: family
        reach:
          - {channel: email, address: wang.family@example.org}
          - {channel: sms, address: "+8613800000101"}
      grid-li:
        name: 李明 (grid worker) / Li Ming
        role: grid_worker
        reach: [{channel: wecom, address: grid-g01}]
    residents:
      - agent: demo-agent-1
        source: wm-demo-101
        ref: "1-101"            # a flat number or case reference: no name, no health data
        tiers:
          1: [wang-family]
          2: [grid-li]
          3: [dr-zhao]

Personal data is kept to what reaching someone needs: a contact's display name, role
and addresses; a resident is only a reference. Errors point at ``file:line:col``.

:func:`decide` is what one event of an alarm does, given what the hub knows of it
(:class:`AlarmFacts`): notify a tier's contacts, count an escalation that came after the
acknowledgement (notifying no one), note the agent's confirmation, or end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr

from protocol.base import StrictModel
from protocol.config import Document, parse_yaml, validate_document
from protocol.errors import ConfigError, ConfigProblem
from protocol.ids import Id

from .geo import read_config_text
from .notify.model import Recipient
from .routing import Contact

__all__ = [
    "CARE_CATEGORY",
    "AlarmFacts",
    "CareAlarm",
    "CareContact",
    "CareMessage",
    "CareRegistry",
    "CareStep",
    "FRESH",
    "NO_STEP",
    "Resident",
    "decide",
    "end_reason_text",
    "load_care",
    "parse_care",
    "parse_message",
    "recipients",
]

CARE_CATEGORY = "elderly_care"
MAX_TIER = 5
Tier = Annotated[int, Field(ge=1, le=MAX_TIER)]

_END_REASONS = {
    "water_used": "water use resumed",
    "cleared": "the call was cancelled",
    "rule_removed": "the rule was removed from the agent's config",
    "device_removed": "the device was removed from the agent's config",
}


class CareContact(StrictModel):
    """Someone a tier tells: a display name, a role and one or more ways to reach them."""

    name: str = Field(min_length=1, max_length=100, description="how the contact is shown "
                      "(a name or a role, Chinese and/or English)")
    role: Literal["family", "grid_worker", "community_doctor", "neighbour", "volunteer",
                  "other"] = Field(description="who they are to the resident")
    reach: list[Contact] = Field(min_length=1, max_length=5,
                                 description="channels and addresses (as in the routing table)")


class Resident(StrictModel):
    """One watched resident: the agent and device (water meter, call button) that watch
    them, and who each tier tells."""

    agent: Id = Field(description="the agent's id")
    source: Id = Field(description="the device id on that agent (the event's source)")
    ref: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="a reference for people reading the case: a flat number, not a name")
    tiers: dict[Tier, list[Id]] = Field(
        min_length=1, description="tier number (1 = when the alarm opens) → contact keys")


class CareRegistry(StrictModel):
    contacts: dict[Id, CareContact] = Field(default_factory=dict)
    residents: list[Resident] = Field(default_factory=list)
    _by_key: dict[tuple[str, str], Resident] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        self._by_key = {(r.agent, r.source): r for r in self.residents}

    def resident(self, agent_id: str, source: str) -> Resident | None:
        return self._by_key.get((agent_id, source))

    def tier_contacts(self, agent_id: str, source: str, tier: int) -> list[tuple[str, CareContact]]:
        """The contacts a tier of this resident tells (empty: none registered)."""
        r = self.resident(agent_id, source)
        if r is None:
            return []
        return [(key, self.contacts[key]) for key in r.tiers.get(tier, []) if key in self.contacts]


def recipients(contacts: list[tuple[str, CareContact]]) -> list[Recipient]:
    """Every address of these contacts, each once."""
    seen: dict[tuple[str, str], Recipient] = {}
    for _, c in contacts:
        for way in c.reach:
            seen.setdefault((way.channel, way.address), Recipient(way.channel, way.address))
    return list(seen.values())


# What hub.yaml's notify: section offers: channel → endpoint names (None: any address).
Endpoints = dict[str, set[str] | None]
_SECTION = {"email": "email", "sms": "sms", "webhook": "webhooks", "wecom": "wecom",
            "dingtalk": "dingtalk", "feishu": "feishu"}


def _cross_check(reg: CareRegistry, doc: Document, endpoints: Endpoints | None) -> None:
    problems: list[ConfigProblem] = []
    seen: dict[tuple[str, str], int] = {}
    for i, r in enumerate(reg.residents):
        key = (r.agent, r.source)
        if key in seen:
            problems.append(doc.problem(("residents", i), f"{r.agent}/{r.source} is listed "
                                        f"twice (also residents[{seen[key]}]); merge the entries"))
        seen.setdefault(key, i)
        for tier, names in r.tiers.items():
            for k, name in enumerate(names):
                if name not in reg.contacts:
                    problems.append(doc.problem(("residents", i, "tiers", tier, k),
                                                f"unknown contact {name!r}; add it under "
                                                "'contacts'"))
    if endpoints is not None:
        for key, c in reg.contacts.items():
            for j, way in enumerate(c.reach):
                path = ("contacts", key, "reach", j)
                if way.channel not in endpoints:
                    problems.append(doc.problem((*path, "channel"), f"channel {way.channel} is "
                                                f"not set up in hub.yaml: add notify."
                                                f"{_SECTION[way.channel]} there (docs/hub.md)"))
                    continue
                names = endpoints[way.channel]
                if names is not None and way.address not in names:
                    known = ", ".join(sorted(names)) or "none"
                    problems.append(doc.problem((*path, "address"), f"no {way.channel} named "
                                                f"{way.address!r} under notify."
                                                f"{_SECTION[way.channel]} in hub.yaml (known: "
                                                f"{known})"))
    if problems:
        raise ConfigError(problems)


def parse_care(text: str, filename: str, endpoints: Endpoints | None = None) -> CareRegistry:
    """``endpoints``: the channels hub.yaml's ``notify:`` sets up; with them every address
    must use one of those (None: not checked)."""
    doc = parse_yaml(text, filename)
    reg = validate_document(CareRegistry, doc)
    _cross_check(reg, doc, endpoints)
    return reg


def load_care(path: str | Path, endpoints: Endpoints | None = None) -> CareRegistry:
    return parse_care(read_config_text(path, "care registry"), str(path), endpoints)


# -- one alarm on the hub -------------------------------------------------------------------


@dataclass
class CareAlarm:
    """The hub's record of one care alarm (``care_alarms``): one lifecycle on an agent."""

    id: int
    agent_id: str
    event_id: str
    source: str
    subcategory: str
    case_id: int | None
    opened_at: datetime
    updated_at: datetime
    tier: int = 0  # the highest tier the agent reached
    tiers_seen: list[int] | None = None  # tiers handled (notified or counted after the ack)
    tier_notifications: int = 0
    escalations_after_ack: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    confirmed_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    def facts(self) -> AlarmFacts:
        return AlarmFacts(frozenset(self.tiers_seen or ()), self.acknowledged_at is not None,
                          self.confirmed_at is not None, self.ended_at is not None)


@dataclass(frozen=True)
class AlarmFacts:
    tiers_seen: frozenset[int]
    acknowledged: bool
    confirmed: bool
    ended: bool


@dataclass(frozen=True)
class CareMessage:
    """What one event of an alarm says."""

    kind: str  # new | update | end
    tier: int | None  # the tier reached (None: the message names none)
    acknowledged: bool  # the agent took the hub's acknowledgement
    reason: str | None  # why it ended


@dataclass(frozen=True)
class CareStep:
    notify_tier: int | None = None  # tell this tier's contacts
    after_ack_tier: int | None = None  # a tier reached after the acknowledgement: count it
    confirm: bool = False  # the agent confirmed the acknowledgement
    end_reason: str | None = None  # the alarm ended (the resident is fine again)


def parse_message(kind: str, attributes: str | Mapping[str, Any] | None) -> CareMessage:
    """The care facts of an event's attributes (JSON text as stored, or a dict). A ``new``
    without a tier is tier 1 (a call button without tiers)."""
    attrs: Any = attributes
    if isinstance(attributes, str):
        if '"tier"' not in attributes and '"acknowledged"' not in attributes and (
                '"reason"' not in attributes):
            # Stored JSON text lacking all three keys says nothing beyond its kind: no
            # parsing needed to find them absent (most messages of an alarm).
            plain = _PLAIN.get(kind)
            return plain if plain is not None else CareMessage(kind, None, False, None)
        try:
            attrs = json.loads(attributes)
        except ValueError:
            attrs = {}
    if not isinstance(attrs, Mapping):
        attrs = {}
    tier = attrs.get("tier")
    if type(tier) is not int or not 1 <= tier <= MAX_TIER:
        tier = 1 if kind == "new" else None
    reason = attrs.get("reason")
    return CareMessage(kind, tier, attrs.get("acknowledged") is True,
                       str(reason)[:64] if reason is not None else None)


NO_STEP = CareStep()
_CONFIRM = CareStep(confirm=True)
_PLAIN = {kind: CareMessage(kind, 1 if kind == "new" else None, False, None)
          for kind in ("new", "update", "end")}
FRESH = AlarmFacts(frozenset(), acknowledged=False, confirmed=False, ended=False)


def decide(facts: AlarmFacts, msg: CareMessage) -> CareStep:
    """What the hub does with one message of an alarm. Pure and idempotent: a message
    seen again (redelivered, replayed) finds its tier handled and its ack confirmed."""
    if facts.ended:
        return NO_STEP
    if msg.kind == "end":
        return CareStep(end_reason=msg.reason or "ended")
    confirm = msg.acknowledged and not facts.confirmed
    tier = msg.tier
    if msg.acknowledged or tier is None or tier in facts.tiers_seen:
        return _CONFIRM if confirm else NO_STEP
    if facts.acknowledged:
        return CareStep(after_ack_tier=tier, confirm=confirm)
    return CareStep(notify_tier=tier, confirm=confirm)


def end_reason_text(reason: str | None, subcategory: str = "") -> str:
    if reason == "cleared" and not subcategory.endswith("call_button"):
        return "the alarm cleared"
    return _END_REASONS.get(reason or "", reason or "the alarm ended")
