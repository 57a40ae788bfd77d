"""Agent software releases, the parts without a process: the wheel check (both sides use
it), unpacking, and the start decision (tests/faults/test_agent_update.py runs the real
agent through a restart and a fall-back)."""

from __future__ import annotations

import io
import json
import tomllib
import zipfile

import pytest
from agent_testlib import ROOT, agent_wheel

from edge_agent.selfupdate import (
    MAX_ATTEMPTS,
    argv_config,
    plan_start,
    read_record,
    running_from,
    unpack_wheel,
)
from protocol.releases import (
    AGENT_DISTRIBUTION,
    MAX_RELEASE_BYTES,
    PackageProblem,
    ReleaseKind,
    ReleaseRef,
    check_agent_package,
    sha256_hex,
)


@pytest.fixture(scope="module")
def wheel() -> bytes:
    return agent_wheel("0.2.0")


def rezip(wheel: bytes, drop: str = "", add: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(wheel)) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            if not (drop and info.filename.startswith(drop)):
                out.writestr(info.filename, src.read(info.filename))
        for name, data in (add or {}).items():
            out.writestr(name, data)
    return buf.getvalue()


def test_the_distribution_an_agent_wheel_must_carry_is_the_projects():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == AGENT_DISTRIBUTION


def test_a_wheel_of_the_agent_is_accepted_with_its_version(wheel):
    package = check_agent_package(wheel)
    assert (package.name, package.version) == ("cityops", "0.2.0")
    assert b'__version__ = "0.2.0"' in package.files["edge_agent/__init__.py"]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda w: b"not a zip at all", "not a zip archive"),
    (lambda w: rezip(w, drop="cityops-0.2.0.dist-info/METADATA"), "0 *.dist-info/METADATA"),
    (lambda w: agent_wheel("0.2.0", name="somebody-else"), "not of the agent's 'cityops'"),
    (lambda w: rezip(w, drop="cityops-0.2.0.dist-info/METADATA",
                     add={"cityops-0.2.0.dist-info/METADATA": b"Name: cityops\n"}), "no usable Version"),
    (lambda w: rezip(w, drop="protocol/"), "no protocol/ package"),
    (lambda w: rezip(w, drop="edge_agent/"), "no edge_agent/ package"),
    (lambda w: rezip(w, add={"../../etc/cron.d/x": b"boom"}), "outside its own tree: ../../etc/cron.d/x"),
    (lambda w: rezip(w, add={"/etc/passwd": b"boom"}), "outside its own tree"),
    (lambda w: b"\0" * (MAX_RELEASE_BYTES + 1), "over the release limit"),
])
def test_anything_but_an_agent_wheel_is_refused_naming_why(wheel, change, reason):
    with pytest.raises(PackageProblem) as exc:
        check_agent_package(change(wheel))
    assert reason in str(exc.value)


def _ref(package: bytes, release_id: str = "cityops-agent-2") -> ReleaseRef:
    return ReleaseRef(release_id=release_id, kind=ReleaseKind.AGENT, name="cityops-agent", version=2,
                      sha256=sha256_hex(package), bytes=len(package), chunk_bytes=128 * 1024,
                      chunks=-(-len(package) // (128 * 1024)))


def test_a_wheel_is_unpacked_whole_by_one_rename_and_a_bad_one_not_at_all(tmp_path, wheel):
    (tmp_path / "cityops-agent-2.staging" / "site").mkdir(parents=True)  # a power cut left this
    (tmp_path / "cityops-agent-2.staging" / "site" / "torn.py").write_text("half")
    assert unpack_wheel(tmp_path, _ref(wheel), wheel) is None
    site = tmp_path / "cityops-agent-2" / "site"
    assert b'"0.2.0"' in (site / "edge_agent" / "__init__.py").read_bytes()
    assert not (site / "torn.py").exists() and not (tmp_path / "cityops-agent-2.staging").exists()
    assert json.loads((tmp_path / "cityops-agent-2" / "release.json").read_text())["software"] == "0.2.0"
    assert running_from(tmp_path, str(site / "edge_agent" / "__init__.py")) == "cityops-agent-2"
    assert running_from(tmp_path, str(ROOT / "edge_agent" / "__init__.py")) is None

    bad = rezip(wheel, drop="protocol/")
    reason = unpack_wheel(tmp_path, _ref(bad, "cityops-agent-3"), bad)
    assert reason is not None and "no protocol/ package" in reason
    assert not (tmp_path / "cityops-agent-3").exists() and not (tmp_path / "cityops-agent-3.staging").exists()


def record(state: str = "trial", attempts: int = 0) -> dict:
    return {"release_id": "cityops-agent-2", "version": "0.2.0", "state": state, "attempts": attempts}


def test_the_start_decision():
    # nothing shipped: the installed version runs; a shipped one no longer wanted is left
    assert plan_start(None, None, False).action == "run"
    assert plan_start(None, "cityops-agent-2", False).action == "installed"
    assert plan_start(record("failed"), "cityops-agent-2", True).action == "installed"
    # a release to run: exec into it, counting the attempt; the process running it goes on
    plan = plan_start(record("trial", 0), None, True)
    assert (plan.action, plan.release_id, plan.record["attempts"]) == ("site", "cityops-agent-2", 1)
    assert plan_start(record("active", 0), None, True).action == "site"  # e.g. after a systemd restart
    running = plan_start(record("trial", 1), "cityops-agent-2", True)
    assert running.action == "run" and running.record["attempts"] == 1
    # tried MAX_ATTEMPTS times without confirming: given up, the installed version runs
    given_up = plan_start(record("trial", MAX_ATTEMPTS), None, True)
    assert given_up.action == "run" and given_up.record["state"] == "failed"
    assert "version 0.2.0 (release cityops-agent-2) did not start" in given_up.record["reason"]
    # its files gone: given up too
    missing = plan_start(record("active", 0), None, False)
    assert missing.action == "run" and missing.record["state"] == "failed" and "missing" in missing.record["reason"]


def test_an_unreadable_record_means_the_installed_version(tmp_path):
    (tmp_path / "software.json").write_text('{"release_id": "x", "state": "tri')
    assert read_record(tmp_path) is None


def test_only_run_with_a_config_boots():
    assert argv_config(["--log-format", "json", "run", "--config", "/etc/a.yaml"]) == "/etc/a.yaml"
    assert argv_config(["run", "--config=/etc/a.yaml"]) == "/etc/a.yaml"
    assert argv_config(["check-config", "/etc/a.yaml"]) is None
