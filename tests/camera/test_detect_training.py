"""Training runs end to end in its reduced mode (so it cannot rot), the evaluation CLI
reports what it promises, and held-out seeds never meet training seeds."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from training import cli as detect_cli
from training.dataset import HELD_OUT_SEED_BASE, Sample, train_seeds
from training.evaluate import (
    CLIP_SEED_BASE,
    VALIDATION_CLIP_SEED_BASE,
    VALIDATION_SEED_BASE,
    average_precision,
    play_clips,
    score_clips,
)
from training.train import TrainSettings, encode_targets, train
from vision.labels import read_labels
from vision.runtime import Detector


def test_reduced_training_produces_a_working_int8_model(tmp_path):
    summary = train(TrainSettings.quick(tmp_path, seed=3))
    assert summary["int8_bytes"] > 10_000 and summary["params"] > 1000
    labels = read_labels(tmp_path / "labels.txt")
    det = Detector(tmp_path / "cityops_detector_int8.tflite", labels, score_threshold=0.01)
    assert det.info.layout == "centernet" and det.info.input_dtype == "int8" and det.info.input_size == (256, 160)
    assert isinstance(det.detect(np.zeros((360, 640, 3), np.uint8)), list)
    float_det = Detector(tmp_path / "cityops_detector_float.tflite", labels)
    assert float_det.info.input_dtype == "float32"
    assert json.loads((tmp_path / "training.json").read_text())["labels"] == labels


def test_the_giou_box_loss_is_zero_for_the_right_box_and_grows_with_the_error():
    import tensorflow as tf

    from training.train import _giou_loss, _loss_fn

    sample = Sample(np.zeros((160, 256, 3), np.uint8), np.array([2]), np.array([[0.25, 0.5, 0.5, 1.0]], np.float32))
    truth = tf.constant(encode_targets(sample, 6)[None])
    mask = truth[..., 10:11]

    def with_box(w, h, dx=0.0):
        pred = encode_targets(sample, 6)[None].copy()
        pred[0, 15, 12, 6:9] = (w, h, dx)
        return tf.constant(pred)

    losses = [float(_giou_loss(truth, with_box(*b), 6, mask)) for b in
              [(0.25, 0.5), (0.2, 0.45), (0.125, 0.25), (0.25, 0.5, 0.9), (0.01, 0.01)]]
    assert losses[0] < 1e-6 and 0 < losses[1] < losses[2] < losses[4] and losses[3] > 0
    # a small box half its size spoils more than a big box 0.05 too narrow: L1 says the opposite
    small = Sample(sample.image, np.array([2]), np.array([[0.4, 0.4, 0.44, 0.46]], np.float32))
    st = tf.constant(encode_targets(small, 6)[None])
    sp = encode_targets(small, 6)[None].copy()
    y, x = np.argwhere(sp[0, ..., 10] == 1)[0]
    sp[0, y, x, 6:8] = (0.02, 0.03)
    assert float(_giou_loss(st, tf.constant(sp), 6, st[..., 10:11])) > losses[1]
    assert float(_loss_fn(6, "giou")(truth, with_box(0.25, 0.5))) < float(_loss_fn(6, "giou")(truth, with_box(0.2, 0.45)))


def test_reduced_training_with_the_giou_loss_and_a_larger_input_runs(tmp_path):
    from dataclasses import replace

    summary = train(replace(TrainSettings.quick(tmp_path, seed=4), box_loss="giou", input_size=(320, 192)))
    assert summary["settings"]["box_loss"] == "giou" and summary["int8_bytes"] > 10_000
    assert summary["input_size"] == [320, 192]
    det = Detector(tmp_path / "cityops_detector_int8.tflite", read_labels(tmp_path / "labels.txt"))
    assert det.info.input_size == (320, 192)
    assert isinstance(det.detect(np.zeros((720, 1280, 3), np.uint8)), list)


def test_an_input_size_off_the_backbone_stride_is_refused():
    from training.train import _size, check_input_size

    assert _size("320x192") == (320, 192)
    for bad in ("300x192", "320", "axb", "0x0"):
        with pytest.raises(argparse.ArgumentTypeError):
            _size(bad)
    with pytest.raises(ValueError, match="multiples of 32"):  # what train() checks for callers in code
        check_input_size(320, 200)


def test_targets_put_a_peak_and_the_box_at_the_centre_cell():
    sample = Sample(np.zeros((160, 256, 3), np.uint8), np.array([2]), np.array([[0.25, 0.5, 0.5, 1.0]], np.float32))
    t = encode_targets(sample, 6)
    assert t.shape == (20, 32, 11)
    y, x = np.unravel_index(np.argmax(t[..., 2]), t.shape[:2])
    assert (y, x) == (15, 12) and t[y, x, 2] == 1.0
    assert np.allclose(t[y, x, 6:], [0.25, 0.5, 0.0, 0.0, 1.0])
    assert t[..., 10].sum() == 1


def test_training_and_held_out_seeds_never_overlap():
    for seed in (0, 7, 999):
        assert max(train_seeds(10_000, seed)) < HELD_OUT_SEED_BASE
    # Held-out scenes, validation scenes, held-out clips, validation clips: apart.
    assert HELD_OUT_SEED_BASE + 100_000 < VALIDATION_SEED_BASE < CLIP_SEED_BASE < VALIDATION_CLIP_SEED_BASE


def test_average_precision_of_perfect_and_half_right_rankings():
    assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert average_precision(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == 0.5


def test_eval_model_reports_map_and_per_class_precision_recall(bundled_model, tmp_path, capsys):
    model, labels = bundled_model
    out = tmp_path / "eval.json"
    args = ["--model", str(model), "--labels", str(labels), "--images", "12", "--clips", "1", "--clip-seconds", "8"]
    assert detect_cli.main(["eval-model", *args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    boxes = report["boxes"]
    assert 0.0 <= boxes["map50"] <= 1.0 and set(boxes["per_class"]) == set(read_labels(labels))
    assert {"ap50", "precision", "recall", "objects"} <= set(boxes["per_class"]["flame"])
    assert {"recall", "false_per_camera_hour", "found", "events"} <= set(report["events"])


def test_eval_model_can_run_on_the_validation_split(bundled_model, capsys):
    model, labels = bundled_model
    args = ["--model", str(model), "--labels", str(labels), "--images", "6", "--clips", "0", "--validation"]
    assert detect_cli.main(["eval-model", *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "validation" and report["boxes"]["seed_base"] == VALIDATION_SEED_BASE


def test_clips_played_once_score_any_thresholds_and_the_tuner_picks_the_one_that_finds(bundled_model):
    from edge_agent.camera.config import ClassSettings
    from training.tune import choose_thresholds
    from vision.runtime import Detector

    model, labels_path = bundled_model
    labels = read_labels(labels_path)
    played = play_clips(Detector(model, labels, score_threshold=0.3), 2, seed_base=VALIDATION_CLIP_SEED_BASE,
                        duration_s=12)
    assert [len(p.frames) for p in played] == [24, 24]
    live = score_clips(played)
    assert live["events"] == 2 and live["found"] == 2  # a flame and a puddle, both reported
    nothing = score_clips(played, class_settings=lambda label: ClassSettings(enabled=False))
    assert nothing["found"] == 0 and nothing["false_events"] == 0
    # 0.999 is out of an int8 sigmoid's reach (at most 255/256): only 0.3 finds anything.
    report = choose_thresholds(played, labels, grid=(0.3, 0.999))
    assert report["chosen"] == {"flame": 0.3, "water": 0.3}
    assert report["table"]["flame"] == {0.3: [1, 1, 0], 0.999: [0, 1, 0]}
    assert report["result"]["found"] == 2


def test_commands_register_on_a_cli():
    parser = argparse.ArgumentParser()
    detect_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-model", "--quick", "--out", "/tmp/x"])
    assert args.quick and callable(args.func)
    args = parser.parse_args(["eval-model", "--json"])
    assert args.json == "-" and args.func is detect_cli.run_eval


def test_train_and_eval_are_agent_commands(bundled_model, tmp_path, capsys):
    from edge_agent.cli import build_parser, main

    model, labels = bundled_model
    args = ["--model", str(model), "--labels", str(labels), "--images", "8", "--clips", "0"]
    assert main(["eval-model", *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(model) and 0.0 <= report["boxes"]["map50"] <= 1.0
    assert set(report["boxes"]["per_class"]) == set(read_labels(labels))
    parsed = build_parser().parse_args(["train-model", "--quick", "--out", str(tmp_path), "--seed", "3"])
    assert parsed.quick and parsed.out == tmp_path and parsed.seed == 3
    missing = tmp_path / "nope.tflite"
    assert main(["eval-model", "--model", str(missing), "--labels", str(labels), "--images", "2", "--clips", "0"]) == 1
    err = capsys.readouterr().err
    assert "nope.tflite: file not found" in err and "Traceback" not in err
