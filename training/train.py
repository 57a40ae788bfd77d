"""Train the bundled detector from rendered scenes and export it as full-int8 TFLite.

    python -m training.train --out vision/models --seed 7
    cityops-agent train-model --out /tmp/model --quick      # the reduced mode the tests run

The architecture, a small CenterNet-style detector, is chosen for a CPU-only edge box:

* input 256×160 RGB (16:10; 16:9 and 4:3 frames resize with little distortion);
* a MobileNet-like backbone of depthwise-separable blocks (strides 2…32), a two-level
  top-down feature merge (strides 32 → 16 → 8), and one 1×1 head giving, for each of the
  32×20 cells, a per-class centre heatmap plus box width/height and sub-cell offset — all
  through a sigmoid, so every output shares the 0..1 range and quantizes to int8 cleanly;
* no anchors and no NMS op: decoding is a 3×3 peak search in numpy
  (``postprocess.decode_centernet``).

TensorFlow is needed only here (the ``train`` extra); the agent never imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import CityopsError
from vision.models import MODELS_DIR

from .dataset import INPUT_SIZE, Sample, render_samples, train_seeds

__all__ = ["TrainSettings", "build_model", "encode_targets", "main", "mirror_targets", "train"]

log = logging.getLogger(__name__)
STRIDE = 8


@dataclass(frozen=True)
class TrainSettings:
    out: Path
    seed: int = 7
    images: int = 24000
    epochs: int = 11
    batch: int = 32
    learning_rate: float = 3e-3
    width: float = 1.25  # channel multiplier
    workers: int = 2
    calibration_images: int = 256
    init_from: Path | None = None  # start from these weights (.weights.h5 or a float .tflite)
    flip: bool = True  # random horizontal flips (mirror-symmetric scenes)
    max_minutes: float | None = None  # stop after the epoch that crosses this (schedule unchanged)
    box_loss: str = "l1"  # "l1" on width/height (v1, v2) or "giou": 1 - generalised IoU of the box
    input_size: tuple[int, int] = INPUT_SIZE  # width, height; multiples of 32 (the backbone's stride)

    @classmethod
    def quick(cls, out: Path, seed: int = 7) -> TrainSettings:
        """A few steps on tiny data: proves the whole path still runs (tests use it)."""
        return cls(out=out, seed=seed, images=48, epochs=1, batch=16, workers=1,
                   calibration_images=8, width=0.5)


def encode_targets(sample: Sample, num_classes: int) -> np.ndarray:
    """CenterNet targets for one sample: (H/8, W/8, C + 5) = heatmap, w, h, dx, dy, mask."""
    gh, gw = sample.image.shape[0] // STRIDE, sample.image.shape[1] // STRIDE
    out = np.zeros((gh, gw, num_classes + 5), np.float32)
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    # Biggest first, so a small object's centre wins a shared cell.
    order = np.argsort([-(b[2] - b[0]) * (b[3] - b[1]) for b in sample.boxes])
    for i in order:
        x1, y1, x2, y2 = sample.boxes[i]
        c = int(sample.labels[i])
        cx, cy = (x1 + x2) / 2 * gw, (y1 + y2) / 2 * gh
        sx, sy = max(0.5, (x2 - x1) * gw / 6), max(0.5, (y2 - y1) * gh / 6)
        g = np.exp(-((xs + 0.5 - cx) ** 2 / (2 * sx**2) + (ys + 0.5 - cy) ** 2 / (2 * sy**2)))
        out[..., c] = np.maximum(out[..., c], g)
        ix, iy = min(gw - 1, int(cx)), min(gh - 1, int(cy))
        out[iy, ix, c] = 1.0
        out[iy, ix, num_classes:] = (x2 - x1, y2 - y1, cx - ix, cy - iy, 1.0)
    return out


def mirror_targets(targets, num_classes: int):
    """Targets ``(..., H, W, C + 5)`` of the left-right mirrored image (TensorFlow): the maps
    mirror, sizes stay, and the x offset within a centre cell becomes ``1 - dx``."""
    import tensorflow as tf

    m = tf.reverse(targets, [-2])
    dx = (1.0 - m[..., num_classes + 2 : num_classes + 3]) * m[..., num_classes + 4 :]
    return tf.concat([m[..., : num_classes + 2], dx, m[..., num_classes + 3 :]], axis=-1)


def build_model(num_classes: int, width: float = 1.0, input_size: tuple[int, int] = INPUT_SIZE):
    import tensorflow as tf
    from tensorflow import keras
    from tensorflow.keras import layers

    def ch(n: int) -> int:
        return max(8, int(n * width) // 8 * 8)

    def conv_bn(x, filters, kernel=1, stride=1):
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    def dw_block(x, filters, stride=1):
        x = layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        return conv_bn(x, filters)

    inputs = keras.Input((input_size[1], input_size[0], 3), name="image")  # RGB 0..255
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = conv_bn(x, ch(16), 3, 2)  # /2
    x = dw_block(x, ch(32), 2)  # /4
    x = dw_block(x, ch(32))
    c3 = dw_block(x, ch(48), 2)  # /8
    c3 = dw_block(c3, ch(48))
    c4 = dw_block(c3, ch(96), 2)  # /16
    c4 = dw_block(c4, ch(96))
    c4 = dw_block(c4, ch(96))
    c5 = dw_block(c4, ch(160), 2)  # /32
    c5 = dw_block(c5, ch(160))
    p5 = conv_bn(c5, ch(64))
    p4 = layers.Add()([conv_bn(c4, ch(64)), layers.UpSampling2D(2)(p5)])
    p4 = dw_block(p4, ch(64))
    p3 = layers.Add()([conv_bn(c3, ch(64)), layers.UpSampling2D(2)(p4)])
    p3 = dw_block(p3, ch(64))
    p3 = dw_block(p3, ch(64))
    out = layers.Conv2D(num_classes + 4, 1, activation="sigmoid",
                        bias_initializer=keras.initializers.Constant(-2.2), name="centernet")(p3)
    return tf.keras.Model(inputs, out, name="cityops_centernet")


def _giou_loss(y_true, y_pred, num_classes: int, mask):
    """Mean of 1 - generalised IoU over the centre cells: the box at each centre cell (sub-cell
    offset plus width and height) against its target. Unlike L1 on width and height it
    weighs a small box's error by how much of the box it spoils — what mAP@0.5 counts."""
    import tensorflow as tf

    gh, gw = y_true.shape[-3], y_true.shape[-2]  # the output grid: the input size / STRIDE
    scale = tf.constant([gw, gh], tf.float32)  # widths and heights in cells, like the offsets

    def corners(t):
        wh = t[..., num_classes : num_classes + 2] * scale
        c = t[..., num_classes + 2 : num_classes + 4]
        return c - wh / 2, c + wh / 2

    (p0, p1), (g0, g1) = corners(y_pred), corners(y_true)
    inter = tf.reduce_prod(tf.maximum(tf.minimum(p1, g1) - tf.maximum(p0, g0), 0.0), -1, keepdims=True)
    area_p = tf.reduce_prod(tf.maximum(p1 - p0, 0.0), -1, keepdims=True)
    area_g = tf.reduce_prod(g1 - g0, -1, keepdims=True)
    union = area_p + area_g - inter
    hull = tf.reduce_prod(tf.maximum(p1, g1) - tf.minimum(p0, g0), -1, keepdims=True)
    giou = inter / tf.maximum(union, 1e-6) - (hull - union) / tf.maximum(hull, 1e-6)
    n = tf.maximum(tf.reduce_sum(mask), 1.0)
    return tf.reduce_sum((1.0 - giou) * mask) / n


def _loss_fn(num_classes: int, box_loss: str = "l1"):
    import tensorflow as tf

    if box_loss not in ("l1", "giou"):
        raise ValueError(f"box loss must be l1 or giou, not {box_loss!r}")

    def loss(y_true, y_pred):
        p = tf.clip_by_value(y_pred[..., :num_classes], 1e-4, 1 - 1e-4)
        gt = y_true[..., :num_classes]
        pos = tf.cast(gt >= 0.999, tf.float32)
        pos_loss = tf.math.log(p) * tf.square(1 - p) * pos
        neg_loss = tf.math.log(1 - p) * tf.square(p) * tf.pow(1 - gt, 4) * (1 - pos)
        mask = y_true[..., num_classes + 4 : num_classes + 5]
        n = tf.maximum(tf.reduce_sum(mask), 1.0)
        hm = -(tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n
        wh = tf.reduce_sum(tf.abs(y_pred[..., num_classes : num_classes + 2] - y_true[..., num_classes : num_classes + 2]) * mask) / n
        off = tf.reduce_sum(tf.abs(y_pred[..., num_classes + 2 : num_classes + 4] - y_true[..., num_classes + 2 : num_classes + 4]) * mask) / n
        if box_loss == "giou":  # keep a little L1 so a box far off still has a gradient to follow
            return hm + 2.0 * _giou_loss(y_true, y_pred, num_classes, mask) + 2.0 * wh + off
        return hm + 8.0 * wh + off

    return loss


def _arrays(samples: list[Sample], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    images = np.stack([cv2.cvtColor(s.image, cv2.COLOR_BGR2RGB) for s in samples])
    targets = np.stack([encode_targets(s, num_classes) for s in samples])
    return images, targets


def _export(model, calibration: np.ndarray, out: Path) -> dict[str, int]:
    import tensorflow as tf

    sizes = {}
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    float_model = conv.convert()
    (out / "cityops_detector_float.tflite").write_bytes(float_model)
    sizes["float_bytes"] = len(float_model)

    def representative():
        for img in calibration:
            yield [img[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8_model = conv.convert()
    (out / "cityops_detector_int8.tflite").write_bytes(int8_model)
    sizes["int8_bytes"] = len(int8_model)
    return sizes


def tensorflow() -> Any:
    """The ``tensorflow`` module; a :class:`CityopsError` naming the fix when the ``train``
    extra is not installed (the agent and the hub never need it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ModuleNotFoundError as exc:
        raise CityopsError(
            f"training the detector needs TensorFlow, which is not installed ({exc}); "
            "install the train extra: pip install 'cityops[train]' (in a checkout: ./dev setup)"
        ) from None
    return tf


def train(settings: TrainSettings) -> dict:
    """Render, train, export. Writes into ``settings.out``: the int8 and float ``.tflite``,
    ``labels.txt`` and ``training.json`` (settings, losses, time). Returns that summary."""
    tf = tensorflow()

    from simulators.scenes import LABELS

    started = time.monotonic()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    num_classes = len(LABELS)
    seeds = train_seeds(settings.images, settings.seed)
    log.info("rendering %d training scenes", len(seeds))
    w, h = check_input_size(*settings.input_size)
    samples = render_samples(seeds, workers=settings.workers, size=(w, h))
    images, targets = _arrays(samples, num_classes)
    render_s = time.monotonic() - started
    model = build_model(num_classes, settings.width, (w, h))
    if settings.init_from is not None:
        from tensorflow.keras import layers

        from .warmstart import init_from

        if init_from(model, settings.init_from):
            for layer in model.layers:  # folded weights: BN must stay the identity it was set to
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = False
    steps = max(1, len(images) // settings.batch) * settings.epochs
    schedule = tf.keras.optimizers.schedules.CosineDecay(settings.learning_rate, steps, alpha=0.02)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=_loss_fn(num_classes, settings.box_loss))

    def augment(img, tgt):
        img = tf.cast(img, tf.float32)
        img = img * tf.random.uniform([], 0.75, 1.25) + tf.random.uniform([], -25.0, 25.0)
        if settings.flip:  # mirror half the batch: heatmaps and boxes mirror, x offset becomes 1 - dx
            flip = tf.random.uniform([tf.shape(img)[0], 1, 1, 1]) < 0.5
            img = tf.where(flip, tf.reverse(img, [2]), img)
            tgt = tf.where(flip, mirror_targets(tgt, num_classes), tgt)
        return tf.clip_by_value(img, 0.0, 255.0), tgt

    data = (tf.data.Dataset.from_tensor_slices((images, targets))
            .shuffle(min(len(images), 4096), seed=settings.seed, reshuffle_each_iteration=True)
            .batch(settings.batch, drop_remainder=len(images) >= settings.batch)
            .map(augment, num_parallel_calls=1)
            .prefetch(2))
    callbacks = []
    if settings.max_minutes is not None:
        deadline = started + settings.max_minutes * 60

        class _Budget(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if time.monotonic() >= deadline:
                    log.warning("time budget spent after epoch %d of %d", epoch + 1, settings.epochs)
                    self.model.stop_training = True

        callbacks.append(_Budget())
    history = model.fit(data, epochs=settings.epochs, verbose=2 if settings.epochs > 1 else 0, callbacks=callbacks)
    model.save_weights(str(out / "cityops_detector.weights.h5"))  # to resume or fine-tune
    calib = images[: settings.calibration_images].astype(np.float32)
    sizes = _export(model, calib, out)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in LABELS), encoding="utf-8")
    summary = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "input_size": [w, h],
        "labels": list(LABELS),
        "losses": [round(float(v), 4) for v in history.history["loss"]],
        "epochs_run": len(history.history["loss"]),
        "render_seconds": round(render_s, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "params": int(model.count_params()),
        **sizes,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output folder (default: the bundled model's)")
    parser.add_argument("--seed", type=int, default=TrainSettings.seed, help="training seed (scenes and weights)")
    parser.add_argument("--images", type=int, default=TrainSettings.images, help="rendered training scenes")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--learning-rate", type=float, default=TrainSettings.learning_rate, help="peak of the cosine schedule")
    parser.add_argument("--init-from", type=Path, default=None, metavar="PATH",
                        help="fine-tune from a .weights.h5 (written by an earlier run) or a float .tflite")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that crosses this budget")
    parser.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation (the v1 model had none)")
    parser.add_argument("--box-loss", choices=("l1", "giou"), default=TrainSettings.box_loss,
                        help="box size loss: L1 on width/height, or generalised IoU of the box")
    parser.add_argument("--input-size", type=_size, default=TrainSettings.input_size, metavar="WxH",
                        help="model input in pixels, multiples of 32 (default %(default)s); "
                             "--init-from works across sizes (the network is fully convolutional)")
    parser.add_argument("--quick", action="store_true", help="reduced mode: tiny data, one epoch (for tests)")


def check_input_size(w: int, h: int) -> tuple[int, int]:
    """``(w, h)`` when the backbone (stride 32) can take it; else ValueError saying why."""
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise ValueError(f"input size {w}x{h}: width and height must be positive multiples of 32")
    return w, h


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 320x192") from None
    try:
        return check_input_size(w, h)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.quick:
        settings = TrainSettings.quick(args.out, args.seed)
    else:
        settings = TrainSettings(out=args.out, seed=args.seed, images=args.images, epochs=args.epochs,
                                 learning_rate=args.learning_rate, init_from=args.init_from, flip=not args.no_flip,
                                 max_minutes=args.max_minutes, box_loss=args.box_loss,
                                 input_size=args.input_size)
    summary = train(settings)
    print(json.dumps({k: summary[k] for k in ("int8_bytes", "float_bytes", "params", "total_seconds")}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from protocol.cliutil import run_main

    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_main(lambda: run(args), "train-model")


if __name__ == "__main__":
    raise SystemExit(main())
