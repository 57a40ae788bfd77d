"""The gazetteer file (``gazetteer:`` in hub.yaml): strict like every hub config file,
cross-checked against the grids, and matched by whole words."""

from __future__ import annotations

import pytest
from hubtest import EXAMPLES

from hub.config import load_config, load_setup
from hub.gazetteer import normalise, parse_gazetteer, stand_in_point
from protocol.errors import ConfigError


@pytest.fixture(scope="module")
def setup():
    return load_setup(EXAMPLES / "hub.yaml")


def test_the_example_gazetteer_loads_and_places_addresses(setup):
    g = setup.gazetteer
    assert len(g) == 5
    road = g.find("Jiuting Rd 88")
    assert (road.name, road.grid_id, road.lat, road.lon) == ("Jiuting Road", "g-05", 31.215, 121.415)
    assert g.find("九亭路88号").name == "Jiuting Road"  # CJK: each character is a word
    assert g.find("ＪＩＵＴＩＮＧ　ROAD, gate 2").name == "Jiuting Road"  # full-width, case
    garden = g.find("outside Jiuting Garden, building 3")
    assert garden.kind == "community" and garden.grid_id == "g-06"
    assert setup.grids.get("g-06").contains(garden.lat, garden.lon)  # default: inside its grid
    assert g.find("Jiutingroad 5") is None  # whole words only
    assert g.find("behind the old water tower") is None and g.find("") is None


def test_the_longest_name_wins_then_file_order(setup):
    text = ("version: 1\nplaces:\n"
            "  - {name: Jiuting, grid: g-04}\n"
            "  - {name: Jiuting Garden, grid: g-06}\n"
            "  - {name: Garden Street, grid: g-01}\n")
    g = parse_gazetteer(text, "gaz.yaml", setup.grids)
    assert g.find("Jiuting Garden gate").grid_id == "g-06"
    assert g.find("Jiuting market").grid_id == "g-04"
    assert normalise("Jiuting-Garden，3号") == ("jiuting", "garden", "3", "号")


def test_errors_point_at_file_line_and_column(setup):
    text = ("version: 1\nplaces:\n"
            "  - {name: A Road, grid: g-99}\n"
            "  - {name: B Road, grid: g-01, lat: 31.215, lon: 121.415}\n"
            "  - {name: C Road, aliases: [a road], grid: g-02}\n"
            "  - {name: '!!!', grid: g-02}\n")
    with pytest.raises(ConfigError) as info:
        parse_gazetteer(text, "gaz.yaml", setup.grids)
    msg = str(info.value)
    assert "gaz.yaml:3:" in msg and "places[0].grid: unknown grid 'g-99'" in msg
    assert "places[1].lat: the point (31.215, 121.415) is not inside grid 'g-01'" in msg
    assert "places[2].aliases[0]: 'a road' is also a name of places[0]" in msg
    assert "places[3].name: '!!!' has no letters or digits" in msg


def test_the_file_is_strict(setup):
    with pytest.raises(ConfigError) as info:
        parse_gazetteer("version: 1\nplaces:\n  - {name: X, grid: g-01, gird: g-02}\n",
                        "gaz.yaml", setup.grids)
    assert "gaz.yaml:3:" in str(info.value) and "gird" in str(info.value)
    with pytest.raises(ConfigError, match="both lat and lon"):
        parse_gazetteer("places:\n  - {name: X, grid: g-01, lat: 31.2}\n", "gaz.yaml", setup.grids)
    with pytest.raises(ConfigError, match="version"):
        parse_gazetteer("version: 2\nplaces: []\n", "gaz.yaml", setup.grids)


def test_hub_yaml_names_the_file_and_a_missing_one_is_an_error(tmp_path):
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(f"grids: {EXAMPLES / 'grids.geojson'}\ngazetteer: nowhere.yaml\n")
    config, _ = load_config(cfg)
    assert config.gazetteer == tmp_path / "nowhere.yaml"  # relative to the config file
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_setup(cfg)
    cfg.write_text(f"grids: {EXAMPLES / 'grids.geojson'}\n")
    assert load_setup(cfg).gazetteer.find("Jiuting Rd") is None  # none configured


def test_the_stand_in_point_is_the_middle_of_the_grids(setup):
    assert stand_in_point(setup.grids) == (31.21, 121.415)
