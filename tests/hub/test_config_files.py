"""Hub config, grids GeoJSON and routing table: loading, cross-checks, precise errors."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hubtest import EXAMPLES, G01, G05

from hub.config import load_config, load_setup
from hub.geo import GridIndex, parse_grids, point_in_polygon
from hub.routing import on_duty, parse_routing, route
from protocol.errors import ConfigError
from protocol.taxonomy import taxonomy

SH = ZoneInfo("Asia/Shanghai")


def test_the_example_config_loads_with_everything_it_names():
    setup = load_setup(EXAMPLES / "hub.yaml")
    assert len(setup.grids) == 6 and setup.routing.routes
    assert setup.grids.locate(*G01).grid_id == "g-01"
    assert setup.grids.locate(*G05).town == "Jiuting"
    assert setup.config.database.is_absolute()
    assert setup.rules["elderly_care.water_no_use"].merge_scope == "source"


def test_unknown_key_points_at_file_line_and_suggests(tmp_path):
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"grids: {EXAMPLES / 'grids.geojson'}\nweb:\n  prot: 8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert f"{cfg}:3:3 web.prot" in text and "did you mean 'port'" in text


def test_external_broker_takes_its_password_from_the_environment(tmp_path):
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"grids: {EXAMPLES / 'grids.geojson'}\nbroker: {{managed: false, host: mq, port: 8883}}\n")
    with pytest.raises(ConfigError, match="CITYOPS_HUB_BROKER_PASSWORD"):
        load_config(cfg, env={})
    config, _ = load_config(cfg, env={"CITYOPS_HUB_BROKER_PASSWORD": "s3cret-from-env"})
    assert config.broker.password == "s3cret-from-env"


def test_screening_rules_are_cross_checked(tmp_path):
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(
        f"grids: {EXAMPLES / 'grids.geojson'}\n"
        "screening:\n  rules:\n    flood.road_waterloging: {min_confidence: 0.7}\n"
        "  maintenance:\n    - {name: x, start: '2026-07-01T00:00:00Z', end: '2026-07-02T00:00:00Z',"
        " grids: [g-99]}\n")
    with pytest.raises(ConfigError) as info:
        load_setup(cfg)
    text = str(info.value)
    assert "2 problems" in text
    assert ":4:5 screening.rules.flood.road_waterloging: unknown category" in text
    assert "screening.maintenance[0].grids[0]: unknown grid 'g-99'" in text


# -- grids ---------------------------------------------------------------------------------------

def test_point_in_polygon_with_a_hole():
    outer = [(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)]
    hole = [(4, 4), (6, 4), (6, 6), (4, 6), (4, 4)]
    assert point_in_polygon(1, 1, [outer, hole])
    assert not point_in_polygon(5, 5, [outer, hole])
    assert not point_in_polygon(11, 5, [outer, hole])


def _fc(*features):
    return json.dumps({"type": "FeatureCollection", "features": list(features)}, indent=1)


def _feature(gid, ring):
    return {"type": "Feature", "properties": {"grid_id": gid},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def test_grid_lookup_agrees_with_testing_every_grid():
    """The bucket index and the remembered points give the answer a scan of every grid in
    file order gives: inside, on shared edges, in overlaps (the first grid wins), in holes
    and outside, for a mesh of 400 grids with an overlapping and a holed one on top."""
    features = []
    for i in range(20):
        for j in range(20):
            x, y = 121.0 + i * 0.01, 31.0 + j * 0.01
            ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
            features.append({"type": "Feature", "properties": {"grid_id": f"m-{i}-{j}"},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    big = [[121.05, 31.05], [121.12, 31.05], [121.12, 31.09], [121.05, 31.09], [121.05, 31.05]]
    hole = [[121.06, 31.06], [121.07, 31.06], [121.07, 31.07], [121.06, 31.07], [121.06, 31.06]]
    features.insert(0, {"type": "Feature", "properties": {"grid_id": "over"},
                        "geometry": {"type": "Polygon", "coordinates": [big, hole]}})
    index = parse_grids(json.dumps({"type": "FeatureCollection", "features": features}), "mesh.geojson")
    rng = np.random.default_rng(5)
    points = [(31.0 + rng.random() * 0.22 - 0.01, 121.0 + rng.random() * 0.22 - 0.01) for _ in range(3000)]
    points += [(31.0 + j * 0.01, 121.0 + i * 0.01) for i in range(21) for j in range(21)]  # corners
    points += [(31.065, 121.065), (31.2, 121.2), (30.0, 121.1)]  # in the hole, the far corner, outside
    for _ in range(2):  # the second round answers from the remembered points
        for lat, lon in points:
            want = next((g for g in index.grids if g.contains(lat, lon)), None)
            assert index.locate(lat, lon) is want, (lat, lon)
    assert index.locate(31.065, 121.065).grid_id == "m-6-6"  # the hole falls through to the mesh
    assert index.locate(31.08, 121.08).grid_id == "over"
    assert index.locate(30.0, 121.1) is None


def test_grid_errors_name_the_place():
    square = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    with pytest.raises(ConfigError) as info:
        parse_grids(_fc(_feature("g1", square), _feature("g1", square)), "grids.geojson")
    assert "features[1].properties.grid_id: grid_id 'g1' is already used" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_grids(_fc(_feature("g1", square[:-1] + [[0.5, 0.5]])), "grids.geojson")
    assert "must end where it starts" in str(info.value) and "grids.geojson:" in str(info.value)
    with pytest.raises(ConfigError, match=r"grids.geojson:1:\d+: not valid JSON"):
        parse_grids("{oops", "grids.geojson")


# -- routing ---------------------------------------------------------------------------------------

@pytest.fixture
def grids() -> GridIndex:
    return load_setup(EXAMPLES / "hub.yaml").grids


def test_routing_first_match_town_and_fallback(grids):
    table = parse_routing((EXAMPLES / "routing.yaml").read_text(), "routing.yaml", taxonomy(), grids)
    at = datetime(2026, 7, 1, 10, 0, tzinfo=SH)
    d = route(table, subcategory="flood.road_waterlogging", grid_id="g-05", town="Jiuting",
              district="Songjiang", default_department="drainage", at=at)
    assert (d.department, d.handler, d.deadline_min, d.matched) == ("drainage", "drainage-day", 60, "routes[0]")
    d = route(table, subcategory="flood.road_waterlogging", grid_id="g-01", town="Xinqiao",
              district="Songjiang", default_department="drainage", at=at.replace(hour=23))
    assert (d.handler, d.deadline_min, d.matched) == ("drainage-night", None, "taxonomy")
    assert on_duty(table, "drainage", "g-01", at.replace(hour=3)) == "drainage-night"
    assert on_duty(table, "civil_affairs", "g-05", at) == "grid-worker-jiuting"
    table.fallback = "queue"
    assert route(table, subcategory="roads.pothole", grid_id="g-01", town="Xinqiao", district="",
                 default_department="road_maintenance", at=at) is None


def test_routing_cross_checks_point_at_the_line(grids):
    text = ("version: 1\nroutes:\n  - categories: [flood.nope]\n    grids: [g-77]\n"
            "    department: drainage\n  - department: nobody\n    towns: [Atlantis]\n")
    with pytest.raises(ConfigError) as info:
        parse_routing(text, "routing.yaml", taxonomy(), grids)
    text = str(info.value)
    assert "routing.yaml:3:18 routes[0].categories[0]: unknown category 'flood.nope'" in text
    assert "routing.yaml:4:13 routes[0].grids[0]: unknown grid 'g-77'" in text
    assert "routes[1].department: unknown department 'nobody'" in text
    assert "routes[1].towns[0]: no grid has town 'Atlantis'" in text


def test_routing_shift_syntax_is_checked(grids):
    with pytest.raises(ConfigError, match=r"routing.yaml:3:\d+ duty.drainage\[0\].from"):
        parse_routing("duty:\n  drainage:\n    - {handler: x, from: '25:00'}\n", "routing.yaml",
                      taxonomy(), grids)
