from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from protocol.base import StrictModel
from protocol.config import load_model_file, parse_yaml, validate_document
from protocol.errors import ConfigError


class Register(StrictModel):
    name: str
    address: int = Field(ge=0, le=65535)
    type: Literal["uint16", "int16", "float32"] = "uint16"


class Device(StrictModel):
    id: str
    registers: list[Register]


class Doc(StrictModel):
    agent_id: str
    devices: list[Device] = []


GOOD = """\
agent_id: a1
devices:
  - id: m1
    registers:
      - {name: volume, address: 0, type: float32}
"""


def test_valid_document_loads():
    doc = validate_document(Doc, parse_yaml(GOOD, "agent.yaml"))
    assert doc.devices[0].registers[0].type == "float32"


def test_every_problem_is_reported_with_1_based_line_and_column():
    text = """\
agent_id: a1
devices:
  - id: m1
    registers:
      - name: volume
        address: 70000
      - name: flow
        adress: 2
        type: float16
"""
    with pytest.raises(ConfigError) as info:
        validate_document(Doc, parse_yaml(text, "agent.yaml"))
    problems = {p.path: p for p in info.value.problems}
    p = problems["devices[0].registers[0].address"]
    assert (p.line, p.column) == (6, 9)
    assert "70000" in p.message
    typo = problems["devices[0].registers[1].adress"]
    assert typo.line == 8
    assert "did you mean 'address'" in typo.message
    assert problems["devices[0].registers[1].type"].line == 9
    assert "float16" in problems["devices[0].registers[1].type"].message
    missing = problems["devices[0].registers[1].address"]
    assert "add it" in missing.message
    text_out = str(info.value)
    assert "agent.yaml:6:9 devices[0].registers[0].address:" in text_out


def test_yaml_syntax_error_points_at_the_line():
    with pytest.raises(ConfigError) as info:
        parse_yaml("agent_id: a1\ndevices: [\n  - x\n", "bad.yaml")
    (problem,) = info.value.problems
    assert problem.file == "bad.yaml"
    assert problem.line is not None and problem.line >= 2
    assert "YAML syntax error" in problem.message


def test_duplicate_keys_are_errors_not_silently_overwritten():
    with pytest.raises(ConfigError) as info:
        parse_yaml("agent_id: a1\nagent_id: a2\n", "dup.yaml")
    assert "duplicate key" in info.value.problems[0].message
    assert info.value.problems[0].line == 2


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError) as info:
        validate_document(Doc, parse_yaml("- a\n- b\n", "list.yaml"))
    assert "mapping" in str(info.value)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_model_file(tmp_path / "nope.yaml", Doc)
    assert "file not found" in str(info.value)


def test_a_character_yaml_forbids_is_located_by_line_and_column():
    from protocol.config import parse_yaml
    from protocol.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_yaml("agent:\n  id: a\x1fb\n", "agent.yaml")
    (p,) = info.value.problems
    assert (p.file, p.line, p.column) == ("agent.yaml", 2, 8)
    assert "#x001f" in p.message and str(p).startswith("agent.yaml:2:8")


@pytest.mark.parametrize("text", ["when: 2026-13-45\n", "n: !!int abc\n", "x: !!python/name:os.system\n",
                                  "b: !!binary not-base64!\n"])
def test_values_yaml_cannot_construct_point_at_their_place(text):
    from protocol.config import parse_yaml
    from protocol.errors import ConfigError

    with pytest.raises(ConfigError) as info:  # a ConfigError, never a bare ValueError
        parse_yaml(text, "agent.yaml")
    (p,) = info.value.problems
    assert (p.line, p.column) == (1, text.index(":") + 3)
