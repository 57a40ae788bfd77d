"""Who a simulated run tells (simulators/reach.py), checked by the hub's own loaders, and
the scorecard's notification figures and lines (simulators/notifycard.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import yaml

from hub.care import parse_care
from hub.geo import load_grids
from hub.notify.audience import case_audience
from hub.routing import parse_routing
from protocol.taxonomy import taxonomy
from simulators.clock import ScaledClock
from simulators.hubaudit import StoredDelivery
from simulators.notifycard import care_figures, format_notifications, notification_counts
from simulators.reach import care_registry, named_endpoints, routing_contacts
from simulators.scenarios import load_scenario
from simulators.stack import EXAMPLES

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def run_routing():
    """The example routing table with a run's contacts, as the stack writes it."""
    table = yaml.safe_load((EXAMPLES / "routing.yaml").read_text())
    places = [f["properties"] for f in json.loads((EXAMPLES / "grids.geojson").read_text())["features"]]
    departments = set(taxonomy().departments) | set(table.get("departments", {}))
    table["contacts"] = routing_contacts(table["contacts"], departments, [p["town"] for p in places],
                                         [p["district"] for p in places])
    return table


def endpoints_for(names: dict[str, set[str]]) -> dict[str, set[str] | None]:
    return {"email": None, "sms": None, **names}


def test_every_department_lead_and_the_operators_have_someone_the_hub_accepts():
    table = run_routing()
    care = care_registry(load_scenario("elderly-care").scenario)
    endpoints = endpoints_for(named_endpoints(table["contacts"], care))
    grids = load_grids(EXAMPLES / "grids.geojson")
    parsed = parse_routing(yaml.safe_dump(table), "routing.yaml", taxonomy(), grids, endpoints)
    contacts = parsed.contacts
    assert set(taxonomy().departments) <= set(contacts.departments)
    # the example's own contacts are kept, and emergency also has its system's webhook
    assert [(c.channel, c.address) for c in contacts.departments["drainage"]] == [
        ("email", "drainage-duty@example.org"), ("wecom", "drainage-group")]
    assert {c.channel for c in contacts.departments["emergency"]} == {"email", "webhook"}
    assert set(contacts.leads.town) == {"Jiuting", "Xinqiao"} and set(contacts.leads.district) == {"Songjiang"}
    assert contacts.leads.city and {c.channel for c in contacts.operators} == {"email", "feishu"}
    # an escalation to the district reaches its lead
    got = case_audience(parsed, "escalated", department="drainage", grid_id="g-05", town="Jiuting",
                        district="Songjiang", escalation_level=2, at=NOW)
    assert [(r.channel, r.address) for r in got] == [("email", "songjiang-lead@example.org")]


def test_the_care_registry_follows_each_rules_tiers():
    scenario = load_scenario("elderly-care").scenario
    care = care_registry(scenario)
    endpoints = endpoints_for(named_endpoints(run_routing()["contacts"], care))
    reg = parse_care(yaml.safe_dump(care, allow_unicode=True), "care.yaml", endpoints)
    # wm-1-101's tiers: grid worker, family, civil affairs
    assert [[c.role for _, c in reg.tier_contacts("estate-xq1", "wm-1-101", t)] for t in (1, 2, 3)] == [
        ["grid_worker"], ["family"], ["other"]]
    [(_, worker)] = reg.tier_contacts("estate-xq1", "wm-1-101", 1)
    assert [(w.channel, w.address) for w in worker.reach] == [("wecom", "grid-g-01")]
    [(_, family)] = reg.tier_contacts("estate-xq1", "wm-1-101", 2)
    assert [(w.channel, w.address) for w in family.reach] == [("email", "family-1-101@example.org")]
    # the default tiers: the grid worker, then the community (its doctor, by SMS)
    [(_, doctor)] = reg.tier_contacts("estate-xq3", "wm-5-301", 2)
    assert doctor.role == "community_doctor" and doctor.reach[0].channel == "sms"
    # a call button without tiers tells the grid worker and the family at once
    assert {c.role for _, c in reg.tier_contacts("estate-xq1", "call-1-102", 1)} == {"grid_worker", "family"}
    assert reg.tier_contacts("estate-xq1", "call-1-102", 2) == []
    watched = {(r.agent, r.source) for r in reg.residents}
    assert len(watched) == sum(1 for s in scenario.sites for d in s.devices
                               if d.rules.water_no_use or d.rules.call_button)


def delivery(state: str, channel: str = "email", error: str | None = None) -> StoredDelivery:
    return StoredDelivery("care_tier", channel, "family-1@example.org", state, 1, error)


def test_notification_figures_count_each_state_and_keep_the_reasons():
    rows = [delivery("sent"), delivery("sent", "wecom"), delivery("queued"), delivery("failed"),
            delivery("sending"), delivery("dead", error="PermanentError: SMTP 550 no such mailbox")]
    n = notification_counts(rows)
    assert (n["queued"], n["delivered"], n["failed"], n["pending"]) == (6, 2, 1, 3)
    assert n["dead"] == [{"kind": "care_tier", "channel": "email", "target": "family-1@example.org",
                          "attempts": 1, "reason": "PermanentError: SMTP 550 no such mailbox"}]
    care = care_figures({"tier_notifications": 2, "escalations_after_ack": 0, "alarms": 2, "acknowledged": 1,
                         "ended": 1})
    assert care == {"tier_notifications": 2, "escalations_after_ack": 0, "alarms": 2, "acknowledged": 1}
    received = {"received": 1, "by_channel": {"wecom": 1}, "failing_channel": "email",
                "messages": [{"channel": "wecom", "to": "grid-g-01", "subject": "[cityops] care alarm tier 1"}],
                "refused": [{"channel": "email", "to": "family-1@example.org", "answer": "550"}]}
    lines = format_notifications({"notifications": n, "care": care, "notifications_received": received})
    assert lines[0] == ("  notify   queued 6, delivered 2, failed 1, pending 3; care tiers told 2, "
                        "escalations after acknowledgement 0")
    assert "dead   care_tier by email to family-1@example.org: PermanentError: SMTP 550" in lines[1]
    assert lines[2] == "  notifications received: 1 (wecom 1), refused 1 (email made to refuse)"
    assert "grid-g-01" in lines[3]
    # a run that told no one shows nothing
    assert format_notifications({"notifications": notification_counts([]), "care": care_figures({})}) == []


def test_a_frozen_clock_moves_forward_only_when_asked():
    real = [0.0]
    clock = ScaledClock(NOW, 100.0, real=lambda: real[0])
    with pytest.raises(RuntimeError, match="freeze"):
        clock.advance_frozen(10)
    real[0] = 1.0
    clock.freeze()
    clock.advance_frozen(130.0)
    real[0] = 50.0
    assert clock.elapsed() == 130.0
    clock.advance_frozen(20.0)  # never back
    assert clock.elapsed() == 130.0
