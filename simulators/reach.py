"""Who a simulated run tells, and how: the routing table's contacts and the care registry
of a scenario, pointed at the demo's sinks (:mod:`simulators.sinks`). Pure: plain data in,
the YAML data the hub reads out.

* Routing contacts (``contacts:`` of the routing table, docs/hub.md "Notifications"): the
  example table's own contacts are kept (drainage by email and its WeCom group, the
  Jiuting leads' DingTalk robot, ...); every other department gets a duty mailbox
  (``civil-affairs@example.org``), emergency management also a signed webhook into its
  own system, the operators a Feishu robot, and each town, district and the city a lead
  mailbox where the example names none.
* The care registry (``care:``, docs/hub.md "Elderly care"): one resident per water meter
  with a no-use rule and per call button; tier N tells whom the rule's tier N names
  (``grid_worker``: the grid's WeCom group robot; ``family``: the flat's family by
  email; ``community_doctor``/``community``: the community doctor by SMS; anyone else
  by email). A call button without tiers tells the grid worker and the family at once.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from typing import Any

from .scenarios.model import Scenario

__all__ = ["care_registry", "named_endpoints", "routing_contacts"]

DOMAIN = "example.org"


def _mailbox(name: str) -> str:
    return f"{name.replace('_', '-').lower()}@{DOMAIN}"


def _phone(key: str) -> str:
    """A stable, obviously made-up mobile number for a contact key."""
    return f"+86138{int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10**8:08d}"


def routing_contacts(example: dict[str, Any] | None, departments: Iterable[str],
                     towns: Iterable[str], districts: Iterable[str]) -> dict[str, Any]:
    """The routing table's ``contacts:`` for a run: ``example``'s, completed so that every
    department, town, district and the city has someone to tell."""
    contacts = copy.deepcopy(example or {})
    depts = contacts.setdefault("departments", {})
    for d in sorted(set(departments)):
        if not depts.get(d):
            depts[d] = [{"channel": "email", "address": _mailbox(d), "name": f"{d} duty desk"}]
    if "emergency" in depts and not any(c["channel"] == "webhook" for c in depts["emergency"]):
        depts["emergency"].append({"channel": "webhook", "address": "emergency-system",
                                   "name": "emergency management's incident system"})
    operators = contacts.setdefault("operators", [])
    if not any(c["channel"] == "feishu" for c in operators):
        operators.append({"channel": "feishu", "address": "ops-room", "name": "operations room group"})
    leads = contacts.setdefault("leads", {})
    for level, names in (("town", towns), ("district", districts)):
        table = leads.setdefault(level, {})
        for n in sorted(set(names)):
            if not table.get(n):
                table[n] = [{"channel": "email", "address": _mailbox(f"{n}-lead"), "name": f"{n} {level} lead"}]
    if not leads.get("city"):
        leads["city"] = [{"channel": "email", "address": _mailbox("city-command"), "name": "city command"}]
    return contacts


def _contact(role: str, grid: str, ref: str) -> tuple[str, dict[str, Any]]:
    """(key, contact) for a tier's ``notify`` name."""
    if role == "grid_worker":
        return f"grid-worker-{grid}", {"name": f"grid worker of {grid}", "role": "grid_worker",
                                       "reach": [{"channel": "wecom", "address": f"grid-{grid}"}]}
    if role == "family":
        key = f"family-{ref}"
        return key, {"name": f"family of {ref}", "role": "family",
                     "reach": [{"channel": "email", "address": _mailbox(key)}]}
    if role in ("community_doctor", "community"):
        key = f"community-doctor-{grid}"
        return key, {"name": f"community doctor of {grid}", "role": "community_doctor",
                     "reach": [{"channel": "sms", "address": _phone(key)}]}
    key = role.replace("_", "-")
    return key, {"name": role.replace("_", " "), "role": "other",
                 "reach": [{"channel": "email", "address": _mailbox(key)}]}


def care_registry(scenario: Scenario) -> dict[str, Any]:
    """The care registry of a scenario's residents (see the module docstring)."""
    contacts: dict[str, Any] = {}
    residents = []
    for site in scenario.sites:
        for device in site.devices:
            rules = device.rules
            if rules.water_no_use is not None:
                ref = rules.water_no_use.resident or device.id
                roles = [[t.notify] for t in rules.water_no_use.tiers]
            elif rules.call_button is not None:
                ref = device.id
                tiers = rules.call_button.tiers
                roles = [[t.notify] for t in tiers] if tiers else [["grid_worker", "family"]]
            else:
                continue
            tier_keys: dict[int, list[str]] = {}
            for n, names in enumerate(roles, start=1):
                for role in names:
                    key, contact = _contact(role, site.grid, ref)
                    contacts.setdefault(key, contact)
                    tier_keys.setdefault(n, []).append(key)
            residents.append({"agent": site.id, "source": device.id, "ref": ref[:64], "tiers": tier_keys})
    return {"contacts": contacts, "residents": residents}


def named_endpoints(routing: dict[str, Any], care: dict[str, Any]) -> dict[str, set[str]]:
    """Channel → the webhook and robot names these contacts use (hub.yaml's ``notify:``
    must set each up)."""
    found: list[dict[str, Any]] = []
    found += [c for cs in routing.get("departments", {}).values() for c in cs]
    found += routing.get("operators", [])
    leads = routing.get("leads", {})
    for level in ("town", "district"):
        found += [c for cs in leads.get(level, {}).values() for c in cs]
    found += leads.get("city", [])
    found += [way for c in care.get("contacts", {}).values() for way in c["reach"]]
    out: dict[str, set[str]] = {}
    for c in found:
        if c["channel"] in ("webhook", "wecom", "dingtalk", "feishu"):
            out.setdefault(c["channel"], set()).add(c["address"])
    return out
