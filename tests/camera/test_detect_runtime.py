"""The real TFLite interpreter on the bundled model and on tiny SSD and YOLO models built
here; every way a model can be wrong fails at start with a clear message."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.scenes import SceneObject, SceneSpec, render
from simulators.scenes.spec import CameraPose, near_z
from vision.labels import LabelsError, read_labels
from vision.runtime import Detector, DetectorService, ModelError, inspect_model

TINY_LABELS = ["cat", "dog", "bird"]  # as in conftest.tiny_models


def _scene(kind: str, **kw) -> SceneSpec:
    cam = CameraPose(height_m=4.0, horizon=0.35, focal=0.9)
    obj = SceneObject(kind, x=0.0, z=near_z(cam) * 1.4, size=1.2, seed=5, angle=0.0)
    return SceneSpec(seed=3, place="road", camera=cam, light="day", weather="clear", objects=(obj,), **kw)


@pytest.mark.parametrize("kind,label", [("flame", "flame"), ("vehicle", "vehicle"), ("garbage", "garbage"), ("fallen_tree", "fallen_tree")])
def test_bundled_model_finds_a_rendered_problem_where_it_is(bundled_model, kind, label):
    model, labels = bundled_model
    det = Detector(model, read_labels(labels), score_threshold=0.3)
    assert det.info.layout == "centernet" and det.info.input_dtype == "int8"
    image, truth = render(_scene(kind), (1280, 720))
    found = det.detect(image)
    assert truth, "the scene should show the problem"
    best = max((d for d in found if d.label == label), key=lambda d: d.score, default=None)
    assert best is not None, f"no {label} in {found}"
    from vision.postprocess import iou

    assert iou(best.box, truth[0].box) > 0.4


def test_bundled_model_is_quiet_on_an_empty_street(bundled_model):
    model, labels = bundled_model
    det = Detector(model, read_labels(labels), score_threshold=0.5)
    image, truth = render(_scene("bench"), (640, 360))
    assert truth == []
    assert det.detect(image) == []


def test_a_720p_frame_reaches_the_model_as_one_area_resize_would_give_it(bundled_model):
    import cv2

    model, labels = bundled_model
    det = Detector(model, read_labels(labels))
    frame, _ = render(_scene("bench"), (1280, 720))
    w, h = det.info.input_size
    want = cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB).astype(int) - 128
    got = det._prepare(frame)[0].astype(int)  # int8: the pixel minus 128
    assert got.shape == (h, w, 3)
    diff = np.abs(got - want)  # halves first, then the rest: the same averaging, but for thin sharp edges
    assert diff.mean() < 0.2 and (diff > 2).mean() < 0.03
    exact = cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    assert np.array_equal(det._prepare(exact[..., ::-1].copy())[0].astype(int), exact.astype(int) - 128)


def test_odd_frames_are_handled(bundled_model):
    model, labels = bundled_model
    det = Detector(model, read_labels(labels))
    for frame in (np.zeros((90, 160), np.uint8), np.zeros((200, 300, 4), np.uint8), np.zeros((40, 40, 1), np.uint8)):
        assert det.detect(frame) == []
    with pytest.raises(ValueError, match="unsupported frame shape"):
        det.detect(np.zeros((10, 10, 2), np.uint8))


def test_ssd_layout_decodes_the_four_outputs(tiny_models):
    det = Detector(tiny_models["ssd"], TINY_LABELS, score_threshold=0.5)
    assert det.info.layout == "ssd"
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 2] = 255  # BGR: red is the last channel; the model reads RGB
    found = det.detect(red)
    labels = sorted(d.label for d in found)
    assert labels == ["bird", "dog"]
    dog = next(d for d in found if d.label == "dog")
    assert dog.box == pytest.approx((0.1, 0.2, 0.5, 0.6), abs=1e-5)  # ymin,xmin,... reordered to x1,y1,...
    assert dog.score == pytest.approx(1.0, abs=0.01)
    assert [d.label for d in det.detect(np.zeros((64, 64, 3), np.uint8))] == ["bird"]


def test_yolo_layout_with_int8_quantization_and_nms(tiny_models):
    det = Detector(tiny_models["yolo"], TINY_LABELS, score_threshold=0.5, iou_threshold=0.5)
    assert det.info.layout == "yolo" and det.info.input_dtype == "int8"
    found = det.detect(np.full((120, 120, 3), 255, np.uint8))
    assert len(found) == 1, found  # the overlapping box is suppressed, the zero-score one dropped
    cat = found[0]
    assert cat.label == "cat" and cat.score > 0.8
    assert cat.box == pytest.approx((22 / 64, 22 / 64, 42 / 64, 42 / 64), abs=0.03)
    assert det.detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(ModelError, match="nope.tflite: file not found"):
        inspect_model(tmp_path / "nope.tflite", TINY_LABELS)


def test_corrupt_model_is_refused(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite model"):
        inspect_model(path, TINY_LABELS)
    trunc = tmp_path / "truncated.tflite"
    trunc.write_bytes(b"\x18\x00\x00\x00TFL3" + b"\x01" * 100)
    with pytest.raises(ModelError, match="cannot load it"):
        inspect_model(trunc, TINY_LABELS)


def test_wrong_layout_is_refused(tiny_models):
    with pytest.raises(ModelError, match="match no known layout"):
        inspect_model(tiny_models["bad"], TINY_LABELS)


def test_labels_that_do_not_match_the_model_are_refused(bundled_model, tiny_models):
    model, _ = bundled_model
    with pytest.raises(ModelError, match=r"match no known layout for 3 labels"):
        inspect_model(model, TINY_LABELS)
    with pytest.raises(ModelError, match="predicts 6 classes but the labels file has 3"):
        inspect_model(model, TINY_LABELS, layout="centernet")
    with pytest.raises(ModelError, match="classes \\+ 4 or \\+ 5"):
        inspect_model(tiny_models["yolo"], ["one"], layout="yolo")


def test_labels_file_formats(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("# comment\n0 water\n1 flame\n\n2 ???\n")
    assert read_labels(p) == ["water", "flame", "???"]
    p.write_text("water\nwater\n")
    with pytest.raises(LabelsError, match="appears twice"):
        read_labels(p)
    p.write_text("0 a\n2 b\n")
    with pytest.raises(LabelsError, match="out of order"):
        read_labels(p)
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path / "none.txt")


async def test_one_shared_interpreter_serves_many_cameras(bundled_model):
    import asyncio

    model, labels = bundled_model
    service = DetectorService(Detector(model, read_labels(labels), threads=1))
    image, _ = render(_scene("flame"), (640, 360))
    try:
        results = await asyncio.gather(*(service.detect(image) for _ in range(12)))
    finally:
        service.stop()
    assert service.runs == 12
    assert all(r == results[0] for r in results)  # same frame, same answer, whatever the order
    assert service.inference_ms > 0
