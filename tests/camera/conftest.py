"""Fixtures for the camera side: tiny TFLite models built here with TensorFlow (SSD and
YOLO layouts), rendered clips, and a running camera simulator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge_agent.camera.config import BUNDLED_LABELS, BUNDLED_MODEL

TINY_LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="session")
def bundled_model() -> tuple[Path, Path]:
    assert BUNDLED_MODEL.is_file(), "the bundled model is missing: run python -m training.train"
    return BUNDLED_MODEL, BUNDLED_LABELS


def _convert(module, fn, quantize: bool = False) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], module)
    if quantize:
        def representative():
            rng = np.random.default_rng(0)
            for level in (0.0, 255.0, 128.0):
                yield [np.full((1, 64, 64, 3), level, np.float32)]
            for _ in range(8):
                yield [rng.uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Small models whose outputs depend on the input in a known way:

    * ``ssd``: 4 post-processed outputs; one "dog" box at (0.1, 0.2)-(0.5, 0.6) whose score
      is the image's mean red level (0..1), one "bird" box always at score 0.9;
    * ``yolo``: raw (1, 4 + 3, 3) output in pixels, full int8; box 0 (centre 32,32, 20×20 px)
      is "cat" with the image's mean level as score; box 1 overlaps it (suppressed by
      NMS); box 2 is "bird" at score 0;
    * ``bad``: one (1, 7) output, which no layout decodes.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    out = tmp_path_factory.mktemp("tiny_models")
    spec = [tf.TensorSpec([1, 64, 64, 3], tf.float32)]

    class Ssd(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            red = tf.reduce_mean(x[..., 0]) / 255.0
            zero = red * 0.0
            boxes = tf.constant([[[0.2, 0.1, 0.6, 0.5], [0.0, 0.0, 0.3, 0.3]] + [[0.0, 0.0, 0.0, 0.0]] * 8]) + zero
            classes = tf.constant([[1.0, 2.0] + [0.0] * 8]) + zero
            scores = tf.concat([tf.reshape(red, [1, 1]), tf.constant([[0.9] + [0.0] * 8])], axis=1)
            count = tf.constant([2.0]) + zero
            return {"detection_boxes": boxes, "detection_classes": classes,
                    "detection_scores": scores, "num_detections": count}

    class Yolo(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            level = tf.reduce_mean(x) / 255.0
            z = level * 0.0
            xywh = tf.constant([[32.0, 32.0, 20.0, 20.0], [33.0, 33.0, 20.0, 20.0], [10.0, 10.0, 8.0, 8.0]]) + z
            cls = tf.stack([tf.stack([level, z, z]), tf.stack([level * 0.9, z, z]), tf.stack([z, z, z])])
            rows = tf.concat([xywh / 64.0, cls], axis=1)  # fractions keep int8 precision
            return tf.transpose(rows)[None]

    class Bad(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            return tf.reduce_mean(x, axis=[1, 2])[:, :1] * tf.ones([1, 7])

    for name, module, quant in (("ssd", Ssd(), False), ("yolo", Yolo(), True), ("bad", Bad(), False)):
        (out / f"{name}.tflite").write_bytes(_convert(module, module.__call__, quant))
    (out / "labels.txt").write_text("\n".join(TINY_LABELS) + "\n")
    return {"ssd": out / "ssd.tflite", "yolo": out / "yolo.tflite", "bad": out / "bad.tflite", "labels": out / "labels.txt"}
