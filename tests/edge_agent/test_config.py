"""Agent configs and register maps: strict models, errors that point at the place,
cross-object checks, desired-config overlays."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import apply_overlay, load_agent_config, load_register_map, merge_patch
from protocol.errors import ConfigError

BASE = """\
agent:
  id: agent-1
  location: {lat: 31.2, lon: 121.4}
register_maps:
  water_meter: @MAPS@/water_meter.yaml
  smoke: @MAPS@/smoke_detector.yaml
devices:
  - id: wm-1
    model: water_meter
    unit_id: 1
    tcp: {host: 127.0.0.1, port: 5020}
    rules:
      water_no_use: {hours: 8}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    return [str(p) for p in info.value.problems]


def test_a_valid_config_loads_with_its_maps_and_resolved_paths(tmp_path, write_config):
    loaded = load_agent_config(write_config(tmp_path, BASE))
    assert loaded.config.agent.id == "agent-1"
    assert set(loaded.maps) == {"water_meter", "smoke"}
    assert loaded.data_dir == tmp_path / "data"
    assert loaded.outbox_path == tmp_path / "data" / "outbox.sqlite"
    assert loaded.config.devices[0].rules.water_no_use.signal == "volume"


def test_unknown_key_points_at_file_line_column_with_a_suggestion(tmp_path, write_config):
    path = write_config(tmp_path, BASE.replace("    unit_id: 1\n", "    unit_idd: 1\n"))
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:10:5 devices[0].unit_idd:")
    assert "did you mean 'unit_id'?" in msg


def test_every_problem_is_reported_at_once(tmp_path, write_config):
    body = BASE.replace("lat: 31.2", "lat: 91")
    body = body.replace("hours: 8", "hours: 8, register: flow_rate")
    body += "  - id: wm-1\n    model: water_metre\n    unit_id: 1\n    tcp: {host: 127.0.0.1, port: 5020}\n"
    body += "  - id: wm-2\n    model: water_meter\n    unit_id: 1\n    tcp: {host: 127.0.0.1, port: 99999}\n"
    got = problems(write_config(tmp_path, body))
    joined = "\n".join(got)
    assert len(got) == 6, joined
    # Model errors and cross-object problems come in the same run.
    assert "agent.location.lat: Input should be less than or equal to 90" in joined
    assert "devices[2].tcp.port" in joined
    assert "devices[0].rules.water_no_use.register" in joined and "did you mean 'flow'?" in joined
    assert "devices[1].id" in joined and "already used" in joined
    assert "devices[1].model" in joined and "did you mean 'water_meter'?" in joined
    assert "devices[1].unit_id" in joined and "already device 'wm-1'" in joined


def test_device_needs_exactly_one_link(tmp_path, write_config):
    body = BASE.replace("    tcp: {host: 127.0.0.1, port: 5020}\n",
                        "    tcp: {host: 127.0.0.1, port: 5020}\n    rtu: {port: /dev/ttyS0}\n")
    (msg,) = problems(write_config(tmp_path, body))
    assert "devices[0]" in msg and "exactly one of `tcp:` or `rtu:`" in msg


def test_rule_needs_the_right_kind_of_signal(tmp_path, write_config):
    body = BASE.replace("water_no_use: {hours: 8}", "water_no_use: {register: status.leak}\n"
                        "      smoke_alarm: {register: flow}")
    got = "\n".join(problems(write_config(tmp_path, body)))
    assert "water_no_use.register: 'status.leak' is a flag; this rule needs a numeric register" in got
    assert "smoke_alarm.register: 'flow' is a float32; an alarm needs a flag" in got


def test_rtu_lines_must_agree_and_unit_ids_must_be_addressable(tmp_path, write_config):
    body = BASE + """\
  - id: s1
    model: smoke
    unit_id: 250
    rtu: {port: /dev/ttyUSB0, baudrate: 9600}
  - id: s2
    model: smoke
    unit_id: 2
    rtu: {port: /dev/ttyUSB0, baudrate: 19200}
"""
    got = "\n".join(problems(write_config(tmp_path, body)))
    assert "devices[1].unit_id: unit id 250 is not addressable on an RTU bus" in got
    assert "devices[2].rtu: serial port /dev/ttyUSB0 is set up differently in devices[1]" in got


def test_level_rule_that_could_never_fire_and_hysteresis(tmp_path, write_config):
    body = BASE.replace("  smoke: @MAPS@/smoke_detector.yaml\n", "  gauge: @MAPS@/water_level_gauge.yaml\n")
    body += """\
  - id: g1
    model: gauge
    unit_id: 2
    tcp: {host: 127.0.0.1, port: 5020}
    rules:
      level: {high: 40, clear_below: 39, rate_of_rise: 0.5, rate_window_min: 0.1}
  - id: g2
    model: gauge
    unit_id: 3
    tcp: {host: 127.0.0.1, port: 5020}
    rules:
      level: {high: 4, clear_below: 4.5}
"""  # g2 fails validation (hysteresis); g1's cross checks still run
    got = "\n".join(problems(write_config(tmp_path, body)))
    assert "level.high: high (40.0) is above the register's valid.max (30.0)" in got
    assert "rate_window_min: a rate of rise needs two readings" in got
    assert "devices[2].rules.level: clear_below (4.5) must be below high (4.0)" in got


def test_missing_map_file_is_reported_at_its_reference(tmp_path, write_config):
    path = write_config(tmp_path, BASE.replace("smoke_detector.yaml", "nope.yaml"))
    (msg,) = problems(path)
    assert msg.startswith(f"{path}:6:3 register_maps.smoke:") and "not found" in msg


def test_yaml_syntax_error_has_its_line(tmp_path, write_config):
    path = write_config(tmp_path, BASE + "  - id: [unclosed\n")
    (msg,) = problems(path)
    assert f"{path}:" in msg and "YAML syntax error" in msg


MAP = """\
model: test_map
registers:
  a: {address: 0, type: uint32, word_order: little}
  b: {address: 1, type: int16}
  c: {address: 10, type: uint16, word_order: big}
  d: {address: 11, type: float32, count: 1}
  e: {address: 20, type: uint16, bits: {x: 0}}
  f: {address: 21, type: bitfield, scale: 2, bits: {x: 0, y: 0}}
  g: {address: 22, type: uint16, scale: 0, valid: {min: 5, max: 1}}
  h: {address: 1, type: int16, function: 4}
  i: {address: 30, type: float64}
  j: {address: 31, type: uint16}
  k: {address: 33, type: uint16}
"""


def test_register_map_checks_list_every_impossible_thing(tmp_path, write_config):
    path = tmp_path / "map.yaml"
    path.write_text(MAP)
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    got = "\n".join(str(p) for p in info.value.problems)
    assert f"{path}:4:7 registers.b.address: overlaps register 'a' (function 3, addresses 0..1)" in got
    assert "registers.c.word_order: a uint16 is a single register, so a word order is impossible" in got
    assert "registers.d.count: a float32 spans 2 register(s), so count 1 is impossible" in got
    assert "registers.e.bits: bits name flags of a bitfield register" in got
    assert "registers.f.scale: a bitfield is a set of flags" in got
    assert "registers.f.bits.y: bit 0 is already named 'x'" in got
    assert "registers.g.scale: scale 0" in got
    assert "registers.g.valid: valid.min (5.0) is above valid.max (1.0)" in got
    assert "registers.h" not in got  # function 4 is another table: no overlap
    assert "registers.j.address: overlaps register 'i'" in got
    assert "registers.k.address: overlaps register 'i' (function 3, addresses 30..33)" in got
    assert len(info.value.problems) == 10


def test_unknown_data_type_names_the_choices(tmp_path, write_config):
    path = tmp_path / "map.yaml"
    path.write_text("model: m\nregisters:\n  a: {address: 0, type: int24}\n")
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    (p,) = info.value.problems
    assert p.line == 3 and p.path == "registers.a.type"
    assert "'int16'" in p.message and "'bitfield'" in p.message


def test_merge_patch_follows_rfc7386():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(base, {"a": {"b": 2, "c": [3]}, "d": None, "e": 5}) == \
        {"a": {"b": 2, "c": [3]}, "e": 5}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_overlay_is_merged_onto_the_file_validated_and_versioned(tmp_path, write_config):
    loaded = load_agent_config(write_config(tmp_path, BASE))
    new = apply_overlay(loaded, {"telemetry": {"interval_s": 5},
                                 "devices": [{**loaded.file_data["devices"][0], "poll_period_s": 2}]}, 3)
    assert new.version == 3
    assert new.config.telemetry.interval_s == 5
    assert new.config.devices[0].poll_period_s == 2
    # A second overlay is merged onto the file, not onto the first overlay.
    newer = apply_overlay(new, {"outbox": {"ack_timeout_s": 5}}, 4)
    assert newer.config.telemetry.interval_s == 30 and newer.config.outbox.ack_timeout_s == 5


def test_bad_overlay_is_refused_with_every_reason(tmp_path, write_config):
    loaded = load_agent_config(write_config(tmp_path, BASE))
    with pytest.raises(ConfigError) as info:
        apply_overlay(loaded, {"telemetry": {"interval_s": 0, "color": 1}}, 5)
    got = "\n".join(str(p) for p in info.value.problems)
    assert "desired config v5 telemetry.interval_s" in got and "telemetry.color" in got
    with pytest.raises(ConfigError, match="mqtt: cannot be changed remotely"):
        apply_overlay(loaded, {"mqtt": {"host": "evil.example"}}, 6)
    with pytest.raises(ConfigError, match="agent.id: cannot be changed remotely"):
        apply_overlay(loaded, {"agent": {"id": "other"}}, 7)
