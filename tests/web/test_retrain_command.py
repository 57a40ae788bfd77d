"""``cityops-hub dataset retrain``: the operators' verdicts on a running hub's store go to
the trainer, and only a candidate its gate passed may become a release. Here the reduced
retrain (the real trainer, in a child process) meets a base that raises no false alarm
on the held-out verdicts, so the gate refuses, says why, and no release is stored; and a
gate file that says "refused" is refused by ``release add`` too."""

from __future__ import annotations

import json

from hubtest import write_hub_yaml
from test_verdicts import camera_case, snapshot_id, verdict_form

from hub.cli import main
from vision.models import REAL_MODEL


async def test_retrain_runs_the_gate_and_stores_no_release_when_it_refuses(hub, client, agent, tmp_path,
                                                                          photo_folder, capsys):
    await client.login("op")
    for n in range(1, 9):  # eight cameras' "water" alarms, each judged false by the operator
        case_id, _ = await camera_case(hub, agent, n, where=(31.205 + 0.003 * n, 121.405))
        sid = snapshot_id((await client.get(f"/cases/{case_id}")).text)
        assert (await client.form(f"/cases/{case_id}/verdicts", verdict_form(sid, "false_alarm"))).status == 303
    config = write_hub_yaml(tmp_path)
    out = tmp_path / "retrain"
    capsys.readouterr()
    code = main(["dataset", "retrain", "--config", str(config), "--base", str(REAL_MODEL.parent), "--out", str(out),
                 "--real", str(photo_folder), "--quick", "--epochs", "1"])
    err = capsys.readouterr().err
    gate = json.loads((out / "candidate" / "gate.json").read_text())
    assert code == 3 and gate["passed"] is False
    assert "8 verdict image(s) exported" in err and "the gate refused the candidate; no release was stored" in err
    assert all(f"  - {reason}" in err for reason in gate["reasons"])
    assert gate["verdicts"]["total"] == 8 and gate["base"]["verdicts"]["negatives"] >= 1
    assert gate["verdicts"]["trained_on"] > 0 and gate["verdicts"]["held_out"] > 0
    for side in ("base", "candidate"):
        assert set(gate[side]) >= {"verdicts", "real", "rendered"} and gate[side]["rendered"]["images"] == 8
    candidate = out / "candidate"
    # the candidate ships its base's operating point, so the gate compares like with like
    assert (candidate / "thresholds.json").read_bytes() == (REAL_MODEL.parent / "thresholds.json").read_bytes()
    assert json.loads((candidate / "training.json").read_text())["extra_source"]["name"] == "operator verdicts"
    assert main(["release", "list", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["releases"] == []

    # the same refused gate handed to `release add` by hand: refused, with the reasons
    assert main(["release", "add", "--config", str(config), "--name", "detector", "--gate",
                 str(out / "candidate" / "gate.json"), str(out / "candidate")]) == 1
    assert "the gate refused this candidate" in capsys.readouterr().err


async def test_retrain_with_no_verdicts_says_what_to_do(hub, tmp_path, capsys):
    config = write_hub_yaml(tmp_path)
    assert main(["dataset", "retrain", "--config", str(config), "--base", str(REAL_MODEL.parent),
                 "--out", str(tmp_path / "r")]) == 1
    assert "no verdicts to train on (mark snapshots on the case pages first" in capsys.readouterr().err
