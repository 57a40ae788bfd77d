"""``cityops-sim handlers`` against a real hub (managed Mosquitto, SQLite, the web and its
handler API), on a scaled clock shared by hub and departments."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from simtestlib import SimProcess, until

from hub.app import Hub
from hub.auth.accounts import create_api_token
from hub.config import load_setup
from hub.engine.reports import Photo, Report
from hub.web.uploads import check_jpeg
from simulators.clock import ScaledClock
from simulators.handlers import Shares, plan_case
from simulators.handlers.cli import build_run
from simulators.handlers.photos import KnownScene, after_photo
from simulators.scenes import make_pair
from simulators.scenes.clips import scripted_clip
from simulators.scenes.pairs import retake
from simulators.stack import EXAMPLES

SCALE = 1800.0  # half an hour a second: a 4-hour deadline is 8 s


def _hub_yaml(tmp: Path) -> Path:
    data = yaml.safe_load((EXAMPLES / "hub.yaml").read_text())
    data["broker"] = {"managed": True, "data_dir": str(tmp / "broker"), "host": "127.0.0.1", "port": 0}
    data.update(database=str(tmp / "hub.sqlite"), snapshots_dir=str(tmp / "snapshots"),
                web={"host": "127.0.0.1", "port": 0}, grids=str(EXAMPLES / "grids.geojson"),
                routing=str(EXAMPLES / "routing.yaml"), vitals=str(EXAMPLES / "vitals.yaml"),
                plans=str(EXAMPLES / "plans"), gazetteer=str(EXAMPLES / "gazetteer.yaml"))
    data["sla"]["tick_s"] = 0.2
    data["ingest"] = {**data["ingest"], "receivers": 0}
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def hub(tmp_path):
    h = Hub(load_setup(_hub_yaml(tmp_path)), clock=ScaledClock(datetime.now(UTC), SCALE))
    await h.start()
    yield h
    await h.stop()


async def token(hub: Hub, department: str) -> str:
    deps = set(hub.setup.taxonomy.departments) | set(hub.setup.routing.departments)
    _, tok = await hub.write(lambda repo: create_api_token(repo, f"sim-{department}", "handler", hub.clock.now(),
                                                           departments=deps, department=department))
    return tok


async def report_cases(hub: Hub, n: int, subcategory: str = "garbage.overflow") -> list[int]:
    """``n`` citizen reports with a photo, far enough apart not to merge."""
    ids = []
    for i in range(n):
        ok, enc = cv2.imencode(".jpg", make_pair(500 + i, True, size=(480, 270), kind="garbage").before)
        checked = check_jpeg(enc.tobytes())
        photo = Photo(checked.sha256, len(checked.data), checked.width, checked.height)
        out = await hub.report(Report("open311", "tests", subcategory, 31.2005 + 0.0009 * (i % 10),
                                      121.4005 + 0.0009 * (i // 10), photo=photo),
                               actor="open311:tests", photo_jpeg=checked.data)
        ids.append(out.case_id)
    return ids


def test_plans_are_deterministic_and_follow_the_shares():
    shares = Shares(fixed=0.6, not_fixed=0.2, late=0.1, reject=0.1)
    plans = [plan_case(i, 1, 4 * 3600, shares, 7, photo=True) for i in range(2000)]
    assert plans == [plan_case(i, 1, 4 * 3600, shares, 7, photo=True) for i in range(2000)]
    got = {o: sum(p.outcome == o for p in plans) / len(plans) for o in ("fixed", "not_fixed", "late", "reject")}
    for outcome, share in shares.model_dump().items():
        assert abs(got[outcome] - share) < 0.04, got
    for p in plans:
        if p.outcome == "late":
            assert p.work_s > 4 * 3600
        elif p.outcome != "reject":
            assert p.accept_after_s <= p.work_s < 4 * 3600
    # a sensor case cannot be "not fixed" by a photo; a sent-back case is not returned
    assert all(plan_case(i, 1, 600, shares, 7, photo=False).outcome != "not_fixed" for i in range(300))
    assert all(plan_case(i, 2, 600, shares, 7, photo=True).outcome != "reject" for i in range(300))
    # a department that lists what it handles returns anything else
    p = plan_case(1, 1, 600, Shares(fixed=1, not_fixed=0, late=0, reject=0), 0, photo=True,
                  subcategory="garbage.overflow", handles=frozenset({"flood.fallen_tree"}))
    assert p.outcome == "reject" and "flood.fallen_tree" in p.reason


def test_after_photos_show_the_problem_or_not():
    for fixed in (True, False):
        data = after_photo("garbage.overflow", fixed, 3, size=(480, 270))
        assert data.startswith(b"\xff\xd8") and len(data) <= 256 * 1024
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (270, 480, 3)
    # the same seed re-takes the same scene: fixed and not fixed differ only by the problem
    pair_fixed = make_pair(3, True, size=(480, 270), kind="garbage")
    pair_not = make_pair(3, False, size=(480, 270), kind="garbage")
    assert not pair_fixed.after_boxes or all(b.label != "garbage" for b in pair_fixed.after_boxes)
    assert any(b.label == "garbage" for b in pair_not.after_boxes)
    # a camera's own scene, re-taken: the same view with its flame gone or still there
    clip = scripted_clip(1, [("flame", 1.0, 5.0)], duration_s=6, size=(480, 270))
    flame = clip.scene.objects[clip.events[0].index]
    for fixed in (True, False):
        after, _, boxes = retake(clip.scene, flame, fixed, np.random.default_rng(5), size=(480, 270))
        assert after.camera != clip.scene.camera  # re-taken, not copied
        assert any(b.label == "flame" for b in boxes) is not fixed
    data = after_photo("community_safety.fire", True, 5, known=KnownScene(clip.scene, flame), size=(480, 270))
    assert data.startswith(b"\xff\xd8")


async def test_departments_work_cases_through_the_handler_api(hub, tmp_path):
    ids = await report_cases(hub, 12)
    cases = {c.id: c for c in await hub.read(lambda r: r.list_cases(limit=100))}
    assert {cases[i].state for i in ids} == {"dispatched"}, {cases[i].state for i in ids}
    assert {cases[i].department for i in ids} == {"sanitation"}
    tok = await token(hub, "sanitation")
    run = build_run(hub.web_url, {"sanitation": (tok, None)}, clock=hub.clock,
                    shares=Shares(fixed=1, not_fixed=1, late=1, reject=1), seed=4, poll_s=0.1,
                    log_path=tmp_path / "handlers.jsonl")
    run.start()
    try:
        dep = run.departments[0]

        def settled() -> bool:
            return len(dep.work) == 12 and all(w.stage in ("resolved", "returned") for w in dep.work.values())
        await until(settled, timeout=60, what="every case resolved or returned")
        plans = {cid: w.plan.outcome for cid, w in dep.work.items()}
        assert set(plans.values()) == {"fixed", "not_fixed", "late", "reject"}, plans
        rows = {c.id: c for c in await hub.read(lambda r: r.list_cases(limit=100))}
        for cid, outcome in plans.items():
            row = rows[cid]
            if outcome == "reject":  # back in the operators' queue, with the department's reason
                # (an hour later, still unplaced, its deadline escalates it)
                assert row.state in ("accepted", "escalated"), (cid, row.state)
                audit = await hub.read(lambda r, c=cid: r.audit_for_case(c))
                assert any("not in our area" in (a.detail or "") for a in audit), audit
                continue
            assert row.state == "resolved" and row.after_sha256, (cid, row.state)
            assert hub.files.get(row.after_sha256).startswith(b"\xff\xd8")
            assert (row.resolved_at > row.deadline_at) == (outcome == "late"), (cid, outcome)
        # The (absent) verifier leaves photos to an operator, who sees a not-fixed photo
        # and sends the case back: the department works it again.
        not_fixed = next(cid for cid, o in plans.items() if o == "not_fixed")
        assert run.photo_shows_fixed(not_fixed) is False
        for _ in range(200):  # the verifier's pass: "uncertain", so it waits for a person
            row = await hub.read(lambda r: r.get_case(not_fixed))
            if row.review_reason:
                break
            await asyncio.sleep(0.05)
        assert row.review_reason and not row.verify_pending, row
        await hub.review(not_fixed, fixed=False, actor="operator")
        await until(lambda: dep.work[not_fixed].attempt == 2 and dep.work[not_fixed].stage == "resolved",
                    timeout=30, what="the sent-back case resolved again")
        summary = run.summary()
        assert summary["cases_seen"] == 12 and summary["sent_back"] == 1
        assert summary["returned"] == plans_count(plans, "reject")
        assert summary["resolved"] == 12 - summary["returned"] + 1
        assert summary["resolved_late"] >= plans_count(plans, "late")
        assert summary["errors"] == 0
    finally:
        await run.close()
    lines = [json.loads(x) for x in (tmp_path / "handlers.jsonl").read_text().splitlines()]
    assert {r["action"] for r in lines} >= {"start", "received", "accepted", "returned", "resolved"}
    assert all(r["department"] == "sanitation" for r in lines)


def plans_count(plans: dict[int, str], outcome: str) -> int:
    return sum(o == outcome for o in plans.values())


async def test_handlers_command_against_the_hub(hub, tmp_path):
    ids = await report_cases(hub, 4)
    (tmp_path / "sanitation.token").write_text(await token(hub, "sanitation") + "\n")
    deps = tmp_path / "departments.yaml"
    deps.write_text("departments:\n  sanitation:\n    token_file: sanitation.token\n")
    log = tmp_path / "h.jsonl"
    async with SimProcess("handlers", "--hub", hub.web_url, "--departments", str(deps), "--fixed", "1",
                          "--not-fixed", "0", "--late", "0", "--reject", "0", "--time-scale", str(SCALE),
                          "--poll", "0.2", "--duration", "12", "--json", "--quiet", "--log", str(log)) as sim:
        summary = await sim.line(timeout=60)
        await asyncio.wait_for(sim.proc.wait(), 30)
        code, err = await sim.stop()
    assert code == 0, err
    assert summary["cases_seen"] == 4 and summary["resolved"] == 4 and summary["photos_fixed"] == 4
    assert summary["departments"]["sanitation"]["resolved"] == 4
    rows = {c.id: c for c in await hub.read(lambda r: r.list_cases(limit=100))}
    assert all(rows[i].state == "resolved" and rows[i].after_sha256 for i in ids)
    assert sum(json.loads(x)["action"] == "resolved" for x in log.read_text().splitlines()) == 4


async def test_handlers_command_errors_are_one_line(hub, tmp_path):
    deps = tmp_path / "departments.yaml"
    deps.write_text("departments:\n  sanitation:\n    token: cot_not_a_real_token\n")
    async with SimProcess("handlers", "--hub", hub.web_url, "--departments", str(deps), "--quiet") as sim:
        await asyncio.wait_for(sim.proc.wait(), 30)
        code, err = await sim.stop()
    assert code != 0 and "401" in err and "Traceback" not in err, err
    deps.write_text("departments:\n  sanitation:\n    tokn: x\n")
    async with SimProcess("handlers", "--hub", hub.web_url, "--departments", str(deps), "--quiet") as sim:
        await asyncio.wait_for(sim.proc.wait(), 30)
        code, err = await sim.stop()
    assert code != 0 and f"{deps}:3:" in err and "tokn" in err and "Traceback" not in err, err
