"""Property tests of the firmware-config loader: the shipped agent configs and register
maps, mutated line by line (deleted, duplicated, re-indented, values replaced, bytes
inserted, truncated), either load or raise ConfigError whose every problem names the
file and, once the YAML parsed, the line. Never another exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import load_agent_config, load_register_map
from protocol.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2] / "firmware_configs"
AGENTS = sorted((ROOT / "agents").glob("*.yaml"))
MAPS = sorted((ROOT / "register_maps").glob("*.yaml"))
TOKENS = ["", "0", "-1", "1e309", "nan", "~", "null", "[]", "{}", "[1, 2", "'", '"x', "yes", "no",
          "&a", "*a", "!!python/object:os.system", "%", "@", "\t", "grid-1", "../../etc/passwd",
          "x" * 300, "0x10", "2026-13-45", "2026-02-30", "!!int abc", "!!float x", "!!binary x!",
          "1:2:3", "- a", "{a: 1, a: 2}"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A copy of firmware_configs/, so relative register-map paths resolve."""
    dest = tmp_path_factory.mktemp("fw") / "firmware_configs"
    shutil.copytree(ROOT, dest)
    return dest


@st.composite
def mutated(draw, sources: list[Path]) -> tuple[Path, str]:
    source = draw(st.sampled_from(sources))
    lines = source.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "indent", "value", "insert", "key", "truncate"]))
        if how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(i, lines[i])
        elif how == "indent":
            lines[i] = " " * draw(st.integers(0, 7)) + lines[i].lstrip()
        elif how == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(TOKENS) | st.text(max_size=20))}"
        elif how == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=6)) + lines[i][at:]
        elif how == "key" and ":" in lines[i]:
            rest = lines[i].split(":", 1)[1]
            indent = len(lines[i]) - len(lines[i].lstrip())
            lines[i] = " " * indent + draw(st.sampled_from(["unknown_key", "id", "devices", "- x"])) + ":" + rest
        elif how == "truncate":
            lines = lines[:i]
    return source, "\n".join(lines) + "\n"


def check_problems(exc: ConfigError, path: Path) -> None:
    assert exc.problems
    for p in exc.problems:
        assert p.file == str(path), p
        assert p.message, p
        if "not found" not in p.message and "cannot read" not in p.message:
            assert p.line is not None and p.line >= 1, f"no line number: {p}"
        assert str(p).startswith(str(path)), p


@given(mutated(AGENTS), st.integers(0, 10**9))
def test_mutated_agent_configs_load_or_point_at_the_line(work, case, n):
    source, text = case
    path = work / "agents" / f"fuzz-{n}-{source.name}"
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    try:
        load_agent_config(path)
    except ConfigError as exc:
        check_problems(exc, path)
    finally:
        path.unlink()


@given(mutated(MAPS), st.integers(0, 10**9))
def test_mutated_register_maps_load_or_point_at_the_line(work, case, n):
    source, text = case
    path = work / "register_maps" / f"fuzz-{n}-{source.name}"
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    try:
        load_register_map(path)
    except ConfigError as exc:
        check_problems(exc, path)
    finally:
        path.unlink()


@given(st.binary(max_size=400), st.integers(0, 10**9))
def test_random_bytes_are_a_config_error(work, data, n):
    path = work / "agents" / f"bytes-{n}.yaml"
    path.write_bytes(data)
    try:
        with pytest.raises(ConfigError) as info:
            load_agent_config(path)
        for p in info.value.problems:
            assert p.file == str(path) and p.message
    finally:
        path.unlink()
