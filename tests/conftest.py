"""Fixtures shared by the whole suite. Package-specific fixtures live in the conftest.py
of tests/<package>/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.broker import BrokerSettings, MosquittoBroker

# The real notification peers' fixtures (``smtp``, ``http``: tests/notify/sinkfixtures.py),
# for the notify, care and web tests alike.
sys.path.insert(0, str(Path(__file__).resolve().parent / "notify"))
pytest_plugins = ["sinkfixtures"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free loopback port, with generated config, password and
    ACL files, stopped after the test."""
    b = MosquittoBroker(BrokerSettings(data_dir=tmp_path / "broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """A folder in the manifest format of ../shared/realworld, with rendered photos."""
    import json

    import cv2

    from simulators.scenes import LABELS, SceneObject, SceneSpec, render
    from simulators.scenes.spec import CameraPose, near_z

    root = tmp_path_factory.mktemp("realworld")
    (root / "garbage").mkdir()
    images = []
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    # 12 licensed train photos, and 4 of an unlicensed source as the val split (the gate's figures)
    for i, (prefix, source, split) in enumerate([("atanu", "atanu", "train")] * 12 + [("val", "malta", "val")] * 4):
        kind = "garbage" if i % 2 == 0 else "flame"
        objects = (SceneObject(kind, x=0.0, z=near_z(cam) * 1.5, size=1.2, seed=i, angle=0.0),)
        img, truth = render(SceneSpec(seed=i, place="road", camera=cam, light="day", weather="clear",
                                      objects=objects), (480, 270))
        name = f"garbage/{prefix}_{i}.jpg"
        cv2.imwrite(str(root / name), img)
        boxes = [{"label": b.label, "box": list(b.box)} for b in truth if b.label == kind]
        images.append({"file": name, "source": source, "classes": [kind], "boxes": boxes, "annotated": [kind],
                       "split": split, "group": f"{split[0]}{i}"})
    images.append({"file": "garbage/atanu_0.jpg", "source": "malta", "classes": ["garbage"], "boxes": [],
                   "annotated": [], "split": "train", "group": "unlicensed"})  # must not be trained on
    (root / "manifest.json").write_text(json.dumps({"version": 2, "classes": list(LABELS), "images": images}))
    return root
