"""``cityops-agent eval-model --real DIR``: recall at the operating point, negatives firing,
AP@0.5 where boxes exist and a per-source breakdown, on a folder in the manifest format of
``../shared/realworld``. The arithmetic on hand-made detections, the whole command on a tiny
manifest of rendered photos in tmp, and (only where the shared folder exists) a smoke run
on a few of its real photos."""

from __future__ import annotations

import json

import cv2
import pytest

from edge_agent.cli import main
from simulators.scenes import SceneObject, SceneSpec, render
from simulators.scenes.spec import CameraPose, near_z
from training.real import DEFAULT_REAL_DIR, RealImage, read_manifest, score_real, select
from vision.postprocess import Detection

LABELS = ["water", "flame", "smoke", "fallen_tree", "garbage", "vehicle"]


def _image(file, source, classes=(), boxes=(), annotated=(), split="val"):
    return RealImage(file, source, tuple(classes), tuple(boxes), tuple(annotated), split, file)


def _det(label, score, box=(0.1, 0.1, 0.3, 0.3)):
    return Detection(LABELS.index(label), score, box, label)


def test_the_report_arithmetic_on_known_detections():
    fire_box = (0.1, 0.1, 0.3, 0.3)
    results = [
        # found: flame at 0.8 over its box (flame's shipped threshold is 0.50)
        (_image("a", "s1", ["flame"], [("flame", fire_box)], ["flame"]), [_det("flame", 0.8), _det("flame", 0.1, (0.6, 0.6, 0.9, 0.9))]),
        # missed: flame only at 0.45, and garbage fires instead
        (_image("b", "s1", ["flame"], [("flame", fire_box)], ["flame"]), [_det("flame", 0.45), _det("garbage", 0.9)]),
        # image-level only: no boxes, not in AP
        (_image("c", "s2", ["flame"]), [_det("flame", 0.6)]),
        (_image("d", "s2", ["water"]), [_det("water", 0.36)]),  # water's threshold is 0.35
        (_image("n1", "s1"), [_det("vehicle", 0.99)]),  # a car reports nothing by itself: quiet
        (_image("n2", "s2"), [_det("smoke", 0.7), _det("water", 0.5)]),
        (_image("n3", "s2"), [_det("smoke", 0.29)]),  # under the detector's live threshold
        (_image("p", "s2", ["person"]), []),
    ]
    r = score_real(results, LABELS)
    flame = r["per_class"]["flame"]
    assert (flame["images"], flame["detected"], flame["recall"]) == (3, 2, 0.6667)
    assert (flame["other_fired"], flame["other_fired_rate"]) == (1, 0.3333)
    # AP over a and b: detections 0.8 hit, 0.45 hit, 0.1 miss; two boxes -> precision 1 up to recall 1
    assert (flame["ap50"], flame["boxes"], flame["box_images"]) == (1.0, 2, 2)
    assert r["per_class"]["water"] == {"images": 1, "detected": 1, "other_fired": 0, "recall": 1.0, "other_fired_rate": 0.0}
    assert r["negatives"] == {"images": 3, "fired": 1, "rate": 0.3333, "by_class": {"smoke": 1, "water": 1}}
    assert r["map50"] == 1.0 and r["images"] == 8 and r["not_in_model"] == {"person": 1}
    s1, s2 = r["per_source"]["s1"], r["per_source"]["s2"]
    assert s1["images"] == 3 and s1["per_class"]["flame"]["recall"] == 0.5 and s1["negatives"]["rate"] == 0.0
    assert s2["per_class"]["flame"]["recall"] == 1.0 and s2["negatives"] == {"images": 2, "fired": 1, "rate": 0.5,
                                                                               "by_class": {"smoke": 1, "water": 1}}
    # a false box ranked above the true one halves flame's AP
    worse = [(results[0][0], [_det("flame", 0.9, (0.6, 0.6, 0.9, 0.9)), _det("flame", 0.8)])]
    assert score_real(worse, LABELS)["per_class"]["flame"]["ap50"] == 0.5


CAMERA = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)


def _photo(folder, name, kind, seed):
    objects = () if kind is None else (SceneObject(kind, x=0.0, z=near_z(CAMERA) * 1.4, size=1.2, seed=5, angle=0.0),)
    image, truth = render(SceneSpec(seed=seed, place="road", camera=CAMERA, light="day", weather="clear",
                                    objects=objects), (960, 540))
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return [{"label": t.label, "box": [float(v) for v in t.box]} for t in truth]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A tiny real-photo folder made of rendered scenes, labelled so the outcome is known."""
    root = tmp_path_factory.mktemp("realworld")

    def entry(name, kind, seed, source, classes, annotated=(), split="val", boxes=True):
        drawn = _photo(root, name, kind, seed)
        return {"file": name, "source": source, "classes": classes, "boxes": drawn if boxes else [],
                "annotated": list(annotated), "split": split, "group": f"{source}:{name}"}

    images = [
        entry("flame/a.jpg", "flame", 3, "render-a", ["flame"], ["flame", "smoke"]),
        entry("flame/b.jpg", "garbage", 4, "render-b", ["flame"], boxes=False),  # "a flame" the model calls garbage
        entry("garbage/c.jpg", "garbage", 3, "render-b", ["garbage"], ["garbage"]),
        entry("water/d.jpg", "puddle", 4, "render-a", ["water"], boxes=False),
        entry("negative/e.jpg", "bench", 3, "render-a", []),
        entry("negative/f.jpg", None, 4, "render-b", []),
        entry("negative/g.jpg", "flame", 4, "render-b", [], boxes=False),  # a "negative" the flame fires on
        entry("flame/t.jpg", "flame", 4, "render-a", ["flame"], ["flame"], split="train"),
        entry("person/p.jpg", None, 5, "render-a", ["person"]),
    ]
    (root / "manifest.json").write_text(json.dumps({"version": 2, "classes": LABELS + ["person"], "images": images}))
    return root


def test_eval_model_real_reports_recall_negatives_ap_and_sources(photos, tmp_path, capsys):
    out = tmp_path / "real.json"
    assert main(["eval-model", "--real", str(photos), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["split"] == "val" and r["images"] == 8 and r["unreadable"] == []
    flame, garbage, water = (r["per_class"][k] for k in ("flame", "garbage", "water"))
    assert (flame["images"], flame["detected"], flame["other_fired"]) == (2, 1, 1)
    assert (flame["ap50"], flame["boxes"], flame["box_images"]) == (1.0, 1, 1)
    assert (garbage["recall"], garbage["ap50"]) == (1.0, 1.0) and water["recall"] == 1.0 and "ap50" not in water
    assert "smoke" not in r["per_class"]  # annotated on a, but no smoke anywhere: no AP to give
    assert r["negatives"] == {"images": 3, "fired": 1, "rate": 0.3333, "by_class": {"flame": 1}}
    assert r["per_source"]["render-a"]["negatives"]["rate"] == 0.0
    assert r["per_source"]["render-b"]["negatives"]["rate"] == 0.5
    assert r["per_source"]["render-b"]["per_class"]["flame"]["recall"] == 0.0
    assert r["not_in_model"] == {"person": 1} and r["operating_point"]["min_score"]["flame"] == 0.5
    assert main(["eval-model", "--real", str(photos), "--split", "all", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 9 and r["per_class"]["flame"]["images"] == 3
    assert main(["eval-model", "--real", str(photos)]) == 0
    table = capsys.readouterr().out
    assert "flame" in table and "negatives" in table and "render-b" in table and "33%" in table


def test_unreadable_photos_are_listed_and_fail_the_run(photos, tmp_path, capsys):
    root = tmp_path / "copy"
    manifest = json.loads((photos / "manifest.json").read_text())
    for im in manifest["images"]:
        im["file"] = str(photos / im["file"])  # absolute: read in place
    manifest["images"].append({"file": "flame/gone.jpg", "source": "x", "classes": ["flame"], "boxes": [],
                               "annotated": [], "split": "val", "group": "x"})
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["eval-model", "--real", str(root), "--json"]) == 1
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert r["unreadable"] == [{"file": "flame/gone.jpg", "error": "not found"}] and r["images"] == 8
    assert "1 image(s)" in captured.err and "flame/gone.jpg" in captured.err


def test_a_folder_without_a_manifest_says_what_it_needs(tmp_path, capsys):
    assert main(["eval-model", "--real", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "manifest.json: not found" in err and "Traceback" not in err
    (tmp_path / "manifest.json").write_text(json.dumps({"images": [{"file": "a.jpg"}]}))
    assert main(["eval-model", "--real", str(tmp_path)]) == 1
    assert "images[0] has no 'source'" in capsys.readouterr().err


def test_a_limit_spreads_over_the_split():
    images = [_image(f"{i}", "s", split="val" if i % 2 else "train") for i in range(20)]
    assert [im.file for im in select(images, "val", 3)] == ["1", "7", "13"]
    assert len(select(images, "all")) == 20 and len(select(images, "train", 50)) == 10


@pytest.mark.skipif(not (DEFAULT_REAL_DIR / "manifest.json").is_file(), reason="no ../shared/realworld here")
def test_smoke_on_a_few_shared_real_photos(tmp_path):
    out = tmp_path / "real.json"
    assert main(["eval-model", "--real", "--limit", "10", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 10 and r["split"] == "val" and r["unreadable"] == []
    assert all(read.split == "val" for read in select(read_manifest(DEFAULT_REAL_DIR), "val", 10))
    for row in r["per_class"].values():
        assert row["recall"] is None or 0.0 <= row["recall"] <= 1.0
    assert sum(p["images"] for p in r["per_source"].values()) == 10
