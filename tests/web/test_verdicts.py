"""Verdicts become labels (issue 22 part 1): an operator's verdict on a camera snapshot of a
case is stored as a labelled example with a copy of the image; a false-alarm closure adds
negatives once; the dataset has its own retention; the export is a manifest the trainer's
reader takes. Real hub, broker, SQLite and files."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

from hubtest import G05, await_for, event, write_hub_yaml
from webtest import Client, real_jpeg

from hub.cli import main

BOX = (0.1, 0.2, 0.5, 0.6)


async def camera_case(hub, agent, n: int = 1, *, label: str | None = "water", model: str | None = "rel-7",
                      where: tuple[float, float] | None = None) -> tuple[int, bytes]:
    """A camera reports a detection with a snapshot; returns (case id, snapshot bytes) once
    the case and its snapshot are stored."""
    seq, eid, snap = n * 10, f"ev-{n}", real_jpeg(n)
    attrs = {k: v for k, v in (("label", label), ("model", model)) if v is not None}
    agent.send_snapshot(eid, seq, snap)
    extra = {"where": where} if where else {}
    agent.send(event(seq=seq + 1, event_id=eid, snapshot=snap, source=f"cam-{n}", bbox=BOX,
                     at=hub.clock.now(), **extra, **attrs))
    await await_for(lambda: agent.acked(seq + 1), what="the hub's ack")

    def find(repo):
        row = repo.get_lifecycle(agent.agent_id, eid)
        return row.case_id if row and row.case_id and repo.snapshots_for_case(row.case_id) else None

    return await await_for(lambda: hub.read(find), what="the case and its snapshot"), snap


def snapshot_id(page_text: str) -> str:
    return re.search(r'name="snapshot" value="(\d+)"', page_text).group(1)


def verdict_form(sid: str, verdict: str, label: str = "", box: tuple = ("", "", "", "")) -> dict:
    return {"snapshot": sid, "verdict": verdict, "label": label,
            **dict(zip(("x1", "y1", "x2", "y2"), (str(v) for v in box), strict=True))}


async def examples(hub, case_id: int):
    return await hub.read(lambda repo: repo.examples_for_case(case_id))


async def test_marking_a_snapshot_false_stores_a_copied_image_and_shows_it(hub, client, agent):
    case_id, snap = await camera_case(hub, agent)
    await client.login("op")
    page = await client.get(f"/cases/{case_id}")
    assert page.status == 200
    assert f'action="/cases/{case_id}/verdicts' in page.text and 'value="false_alarm"' in page.text
    assert "No verdict on this snapshot yet." in page.text
    sid = snapshot_id(page.text)

    reply = await client.form(f"/cases/{case_id}/verdicts", verdict_form(sid, "false_alarm"))
    assert reply.status == 303 and reply.headers["Location"] == f"/cases/{case_id}?done=verdict#labels"

    [ex] = await examples(hub, case_id)
    assert (ex.verdict, ex.label, ex.source, ex.by) == ("false_alarm", None, "operator", "op")
    assert (ex.agent_id, ex.event_id, ex.camera, ex.model, ex.detected) == (agent.agent_id, "ev-1", "cam-1",
                                                                            "rel-7", "water")
    assert ex.bbox == BOX  # the event's own box, where the detector fired
    sha = hashlib.sha256(snap).hexdigest()
    copy = hub.dataset.images.path_for(ex.image_sha256)
    assert ex.image_sha256 == sha and copy.read_bytes() == snap
    assert copy != hub.files.path_for(sha)
    hub.files.delete(sha)  # the snapshots' retention takes the original: the example keeps its copy
    assert copy.is_file()

    page = await client.get(f"/cases/{case_id}?done=verdict")
    assert "Verdict recorded" in page.text
    assert re.search(r'<li class="v-false_alarm"><b>false alarm</b>.*op', page.text)
    zh = Client(hub, lang="zh-CN")
    try:
        await zh.login("op")
        page = await zh.get(f"/cases/{case_id}")
        assert "误报" in page.text and "标注快照" in page.text
    finally:
        await zh.close()


async def test_wrong_class_with_a_drawn_box_stores_the_class_and_the_box(hub, client, agent):
    case_id, _ = await camera_case(hub, agent)
    await client.login("op")
    sid = snapshot_id((await client.get(f"/cases/{case_id}")).text)
    drawn = (0.2, 0.25, 0.6, 0.9)
    reply = await client.form(f"/cases/{case_id}/verdicts", verdict_form(sid, "wrong_class", "flame", drawn))
    assert reply.status == 303
    [ex] = await examples(hub, case_id)
    assert (ex.verdict, ex.label, ex.bbox, ex.detected) == ("wrong_class", "flame", drawn, "water")
    page = await client.get(f"/cases/{case_id}")
    assert "wrong class" in page.text and "flame" in page.text and "[0.2, 0.25, 0.6, 0.9]" in page.text

    # the JSON API: a true alarm keeps the detector's class and box
    reply = await client.api("POST", f"/api/v1/cases/{case_id}/verdicts",
                             {"snapshot_id": int(sid), "verdict": "true_alarm"})
    assert reply.status == 201, reply.text
    assert reply.json()["example"]["label"] == "water" and reply.json()["example"]["bbox"] == list(BOX)
    case = (await client.get(f"/api/v1/cases/{case_id}")).json()
    [shot] = case["labels"]["snapshots"]
    assert [v["verdict"] for v in shot["verdicts"]] == ["wrong_class", "true_alarm"]


async def test_verdicts_follow_their_snapshot_into_a_merged_case(hub, client, agent):
    first, _ = await camera_case(hub, agent)
    second, _ = await camera_case(hub, agent, 2, where=G05)
    await client.login("op")
    sid = snapshot_id((await client.get(f"/cases/{first}")).text)
    assert (await client.form(f"/cases/{first}/verdicts", verdict_form(sid, "false_alarm"))).status == 303
    await hub.merge(first, second, actor="op")
    case = (await client.get(f"/api/v1/cases/{second}")).json()
    shots = {s["snapshot_id"]: s for s in case["labels"]["snapshots"]}
    assert [v["verdict"] for v in shots[int(sid)]["verdicts"]] == ["false_alarm"]


async def test_bad_verdict_forms_answer_400_naming_the_field_and_the_fix(hub, client, agent):
    case_id, _ = await camera_case(hub, agent)
    await client.login("op")
    sid = snapshot_id((await client.get(f"/cases/{case_id}")).text)
    url = f"/cases/{case_id}/verdicts"
    cases = [
        (verdict_form(sid, "wrong_class", "unicorn"), "unknown class &#39;unicorn&#39;; choose one of water, flame"),
        (verdict_form(sid, "true_alarm", "", (0.5, 0.1, 0.4, 0.3)), "x2 must be greater than x1"),
        (verdict_form(sid, "true_alarm", "", (0.1, 0.1, 1.5, 0.3)), "each from 0 to 1"),
        (verdict_form(sid, "true_alarm", "", (0.1, 0.1, "", "")), "give all four of x1, y1, x2, y2"),
        (verdict_form(sid, "wrong_class"), "this verdict needs a class"),
        (verdict_form(sid, "wrong_class", "water"), "that is the class the detector reported"),
        (verdict_form(sid, "maybe"), "one of true_alarm, false_alarm, wrong_class"),
        (verdict_form("999999", "false_alarm"), "not a camera snapshot of this case"),
    ]
    for form, message in cases:
        reply = await client.form(url, form)
        assert reply.status == 400, (form, reply.status)
        assert message in reply.text, (form, reply.text[reply.text.find("verdict-error"):][:600])
        assert 'id="verdict-error"' in reply.text
    field = await client.form(url, verdict_form(sid, "true_alarm", "", (0.5, 0.1, 0.4, 0.3)))
    assert "<b>bbox</b>" in field.text
    api = await client.api("POST", f"/api/v1/cases/{case_id}/verdicts",
                           {"snapshot_id": int(sid), "verdict": "true_alarm", "bbox": [0.1, 0.1, 0.05, 0.3]})
    assert api.status == 400 and "bbox" in api.json()["errors"]
    api = await client.api("POST", f"/api/v1/cases/{case_id}/verdicts",
                           {"snapshot_id": int(sid), "verdict": "true_alarm", "bbox": [True, 0, 0.5, 0.5]})
    assert api.status == 400 and "give all four" in api.json()["errors"]["bbox"]
    assert await examples(hub, case_id) == []  # nothing bad was stored

    handler = Client(hub)
    try:  # a handler may see the case but not label it; no CSRF token: refused too
        await handler.login("drain")
        assert (await handler.form(url, verdict_form(sid, "false_alarm"))).status == 403
        assert (await client.form(url, verdict_form(sid, "false_alarm"), csrf=False)).status == 403
    finally:
        await handler.close()
    assert await examples(hub, case_id) == []


async def test_a_false_alarm_closure_adds_negatives_once(hub, client, agent):
    case_id, _ = await camera_case(hub, agent)
    other, _ = await camera_case(hub, agent, 2, where=G05)
    assert other != case_id
    await client.login("op")
    close = {"resolution": "false_alarm", "note": "a blue tarp"}
    assert (await client.form(f"/cases/{case_id}/close", close)).status == 303
    [neg] = await examples(hub, case_id)
    assert (neg.verdict, neg.source, neg.label, neg.by, neg.camera) == ("false_alarm", "closure", None, "op", "cam-1")
    assert hub.dataset.images.path_for(neg.image_sha256).is_file()

    assert (await client.form(f"/cases/{case_id}/reopen", {"reason": "it came back"})).status == 303
    assert (await client.form(f"/cases/{case_id}/close", close)).status == 303
    assert [e.source for e in await examples(hub, case_id)] == ["closure"]  # once

    assert (await client.form(f"/cases/{other}/close", {"resolution": "fixed"})).status == 303
    assert await examples(hub, other) == []  # only false alarms are negatives


async def test_retention_prunes_old_examples_and_their_images(hub, client, agent, clock):
    old_case, _ = await camera_case(hub, agent)
    await client.login("op")
    sid = snapshot_id((await client.get(f"/cases/{old_case}")).text)
    assert (await client.form(f"/cases/{old_case}/verdicts", verdict_form(sid, "false_alarm"))).status == 303
    clock.advance(days=200)
    new_case, _ = await camera_case(hub, agent, 2, where=G05)
    await client.login("op")  # the session of 200 days ago has expired
    sid2 = snapshot_id((await client.get(f"/cases/{new_case}")).text)
    assert (await client.form(f"/cases/{new_case}/verdicts", verdict_form(sid2, "true_alarm"))).status == 303
    [old], [new] = await examples(hub, old_case), await examples(hub, new_case)
    old_file, new_file = (hub.dataset.images.path_for(e.image_sha256) for e in (old, new))

    clock.advance(days=100)  # 300 days: within dataset.retention_days (365)
    assert (await hub.sweep())["dataset_examples"] == 0
    clock.advance(days=70)  # 370 days after the first verdict, 170 after the second
    assert (await hub.sweep())["dataset_examples"] == 1
    assert await examples(hub, old_case) == [] and not old_file.exists()
    assert await examples(hub, new_case) == [new] and new_file.is_file()


async def test_export_writes_a_manifest_the_trainers_reader_takes(hub, client, agent, tmp_path, capsys):
    from training.real import read_manifest

    water, _ = await camera_case(hub, agent)
    tarp, _ = await camera_case(hub, agent, 2, where=G05)
    await client.login("op")
    sid = snapshot_id((await client.get(f"/cases/{water}")).text)
    assert (await client.form(f"/cases/{water}/verdicts", verdict_form(sid, "false_alarm"))).status == 303
    drawn = (0.3, 0.3, 0.7, 0.8)  # a later verdict on the same snapshot wins
    assert (await client.form(f"/cases/{water}/verdicts",
                              verdict_form(sid, "wrong_class", "garbage", drawn))).status == 303
    assert (await client.form(f"/cases/{tarp}/close", {"resolution": "false_alarm"})).status == 303

    config = write_hub_yaml(tmp_path)  # the same database and dataset folder as the running hub
    out = tmp_path / "export"
    assert main(["dataset", "export", str(out), "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["images"], report["positives"], report["negatives"], report["missing"]) == (2, 1, 1, [])

    entries = {e.group.split(":")[0]: e for e in read_manifest(out)}
    cam1, cam2 = entries[f"{agent.agent_id}/cam-1"], entries[f"{agent.agent_id}/cam-2"]
    assert cam1.source == "hub-verdicts" and cam1.split in ("train", "val")
    assert cam1.classes == ("garbage",) and cam1.boxes == (("garbage", drawn),)
    assert set(cam1.annotated) == {"garbage", "water"}  # water: checked, and not there
    assert cam2.classes == () and cam2.boxes == ()  # the negative
    for e in (cam1, cam2):
        assert (out / e.file).read_bytes() == hub.dataset.images.path_for(
            (out / e.file).stem).read_bytes()
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["version"] == 2 and raw["classes"][:6] == ["water", "flame", "smoke", "fallen_tree",
                                                          "garbage", "vehicle"]
    assert {i["model"] for i in raw["images"]} == {"rel-7"}

    only = tmp_path / "only-cam-2"
    assert main(["dataset", "export", str(only), "--config", str(config), "--camera", "cam-2"]) == 0
    assert [e.group.split(":")[0] for e in read_manifest(only)] == [f"{agent.agent_id}/cam-2"]
    capsys.readouterr()
    later = (hub.clock.now() + timedelta(days=2)).date().isoformat()
    assert main(["dataset", "export", str(tmp_path / "none"), "--config", str(config), "--since", later]) == 0
    assert read_manifest(tmp_path / "none") == []
    assert main(["dataset", "export", str(tmp_path / "x"), "--config", str(config), "--since", "yesterday"]) == 1
    assert "--since 'yesterday'" in capsys.readouterr().err

    assert main(["dataset", "stats", "--config", str(config), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["total"] == 3 and figures["by_verdict"] == {"false_alarm": 2, "wrong_class": 1}
    assert figures["by_camera"][f"{agent.agent_id}/cam-1"] == {"false_alarm": 1, "wrong_class": 1}
    assert figures["by_model"] == {"rel-7": {"false_alarm": 2, "wrong_class": 1}}
