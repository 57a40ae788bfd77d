from __future__ import annotations

from protocol.taxonomy import Source, taxonomy

SEED_SCENARIOS = [
    "flood.road_waterlogging",
    "community_safety.fire",
    "community_safety.smoke",
    "flood.fallen_tree",
    "garbage.overflow",
    "roads.fire_lane_blocked",
    "flood.river_level",
    "flood.underpass_water_level",
    "elderly_care.water_no_use",
    "water.continuous_flow",
    "fire_alarm.smoke_detector",
    "elderly_care.call_button",
    "device.offline",
]
SEED_AI_CATEGORIES = [
    "hazchem", "flood", "construction", "roads", "water", "garbage", "community_safety", "governance",
]


def test_taxonomy_covers_the_seed_district():
    tax = taxonomy()
    codes = {s.code for s in tax.subcategories()}
    assert set(SEED_SCENARIOS) <= codes
    assert {c.code for c in tax.categories} >= set(SEED_AI_CATEGORIES)
    assert len(tax.categories) >= 8
    assert len(codes) >= 24


def test_every_subcategory_has_labels_deadline_department_and_evidence_rules():
    tax = taxonomy()
    for sub in tax.subcategories():
        assert sub.name.en and sub.name.zh
        assert sub.deadline_min > 0
        assert sub.department in tax.departments
        if sub.source == Source.CAMERA:
            assert "snapshot" in sub.evidence, sub.code
        if sub.source == Source.SENSOR:
            assert "reading" in sub.evidence, sub.code


def test_lookups():
    tax = taxonomy()
    assert tax.subcategory("flood.river_level").category == "flood"
    assert tax.is_valid_pair("flood", "flood.river_level")
    assert not tax.is_valid_pair("garbage", "flood.river_level")
    assert not tax.is_valid_pair("flood", "flood.nothing")
