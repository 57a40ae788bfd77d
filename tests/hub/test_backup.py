"""``cityops-hub backup``: an online copy of the store and the snapshot files that a person
can restore: consistent while the hub runs, checked, incremental for snapshots."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from hubtest import T0, TestAgent, await_for, event, jpeg, write_hub_yaml

from hub.app import Hub
from hub.backup import BackupError, backup_hub
from hub.cli import main
from hub.config import load_setup
from protocol.clock import FakeClock


async def test_backup_while_the_hub_runs_is_complete_and_incremental(tmp_path, capsys):
    path = write_hub_yaml(tmp_path)
    hub = Hub(load_setup(path), clock=FakeClock(T0), run_scheduler=False)
    await hub.start()
    agent = await asyncio.to_thread(TestAgent, hub.broker)
    try:
        for i in range(1, 4):
            agent.send_snapshot(f"ev-{i}", 2 * i - 1, jpeg(i))
            agent.send(event(seq=2 * i, event_id=f"ev-{i}", snapshot=jpeg(i), where=(31.205 + i * 0.004, 121.405)))
        await await_for(lambda: agent.acked(6), what="three events and their photos stored")
        target = tmp_path / "backups"
        assert main(["backup", "--config", str(path), "--to", str(target), "--json"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["integrity"] == "ok" and first["counts"]["snapshots"] == 3
        assert first["counts"]["cases"] >= 1 and first["snapshots_copied"] == 3
        # The copy opens on its own and holds what the running hub holds.
        con = sqlite3.connect(first["database"])
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        con.close()
        manifest = json.loads((tmp_path / "backups" / first["folder"].rsplit("/", 1)[1] / "manifest.json").read_text())
        assert manifest["counts"] == first["counts"]
        # A later backup copies only the new snapshot.
        agent.send_snapshot("ev-4", 7, jpeg(4))
        agent.send(event(seq=8, event_id="ev-4", snapshot=jpeg(4)))
        await await_for(lambda: agent.acked(8), what="fourth event")
        later = backup_hub(hub.config.database, hub.config.snapshots_dir, target, FakeClock(T0).now().replace(second=1))
        assert (later.snapshots_copied, later.snapshots_skipped) == (1, 3)
        assert len(list((target / "snapshots").rglob("*.jpg"))) == 4
    finally:
        agent.close()
        await hub.stop()


def test_backup_errors_name_the_cause(tmp_path):
    try:
        backup_hub(tmp_path / "missing.sqlite", tmp_path / "snaps", tmp_path / "out", T0)
    except BackupError as exc:
        assert "no hub database" in str(exc) and "database:" in str(exc)
    else:
        raise AssertionError("a missing database must be an error")


def test_backup_takes_clips_release_packages_and_dataset_images_too(tmp_path, capsys):
    """Everything the database names is in the backup: a restore that lost the clips, the
    release packages (an agent mid-download asks for chunks of them) or the labelled
    images would lose what operators and rollouts rely on."""
    from hub.dataset.config import dataset_dir
    from vision.models import REAL_MODEL

    path = write_hub_yaml(tmp_path)
    config = load_setup(path).config
    assert main(["release", "add", "--config", str(path), "--name", "detector", str(REAL_MODEL.parent)]) == 0
    clips = config.clips_dir or config.snapshots_dir.with_name("clips")
    (clips / "ab").mkdir(parents=True)
    (clips / "ab" / "abcd.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 a clip")
    (clips / "ab" / "half.mp4.part").write_bytes(b"being written")
    images = dataset_dir(config.dataset.dir, config.snapshots_dir)
    images.mkdir(parents=True, exist_ok=True)
    (images / "example-1.jpg").write_bytes(jpeg(1))
    capsys.readouterr()
    target = tmp_path / "backups"
    assert main(["backup", "--config", str(path), "--to", str(target), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: v["copied"] for k, v in report["files"].items()} == {
        "snapshots": 0, "clips": 1, "releases": len(list(config.releases.dir.rglob("*.*"))), "dataset": 1}
    assert (target / "clips" / "ab" / "abcd.mp4").read_bytes() == (clips / "ab" / "abcd.mp4").read_bytes()
    assert not (target / "clips" / "ab" / "half.mp4.part").exists()
    for package in config.releases.dir.rglob("*.*"):
        assert (target / "releases" / package.relative_to(config.releases.dir)).read_bytes() == package.read_bytes()
    assert (target / "dataset" / "example-1.jpg").read_bytes() == jpeg(1)
    # the next backup copies nothing again
    later = backup_hub(config.database, config.snapshots_dir, target, T0.replace(second=7),
                       {"clips": clips, "releases": config.releases.dir, "dataset": images})
    assert all(row["copied"] == 0 for row in later.files.values())
