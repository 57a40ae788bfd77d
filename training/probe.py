"""Linear probes on frozen EfficientNet-Lite0 features: a quick read of how far pretrained
features carry each class on real photos, before any detector is trained (exploration for
v4; not part of the agent, not tested as a product).

    python -m training.probe features --real ../shared/realworld --out /tmp/lite0-feats.npz
    python -m training.probe evaluate /tmp/lite0-feats.npz --pool grid2x2 --renders-plain --augment

``features`` runs the ImageNet backbone (224x224, RGB) over every image of the manifest,
read in place, plus (for the ``train`` split of the sources whose licence permits
training) ``--augment`` photometric/crop copies each, and rendered scenes: water
(puddles, floods) as water positives and ordinary scenes (distractors, vehicles) as
negatives. It stores three poolings of the 7x7x1280 map: global average, global max and
a 2x2 grid of overlapping 4x4 averages. Only features are written; no image is copied.

``evaluate`` fits one class-balanced logistic regression per class (water, flame, smoke,
garbage) on the licensed train photos (plus what the flags add), picks each threshold on
train data only (by default the 99th percentile of out-of-fold scores of licensed train photos
without that class, folds by near-duplicate group), and reports on ``val``: image-level
recall per class, the share of val negatives on which any class fires (per source), the
ROC AUC of each class against the val negatives, and, as a diagnostic only, the recall
where 5% of val negatives would fire. "Negatives" here are the val photos without any of
the four classes, so the crowd photos (``person`` only) count; ``no_class_negatives_firing``
is over the photos without any class, as ``eval-model --real`` counts them; and the ImageNet head's zero-shot water score
(:data:`IMAGENET_WATER`) beside the water probe.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CLASSES = ("water", "flame", "smoke", "garbage")
TRAINABLE_SOURCES = ("abonia", "atanu")  # SOURCES.md: CC BY 4.0; every other source is val only
POOLS = ("gap", "gmp", "gap+gmp", "grid2x2")
# ImageNet classes that show open water, chosen before looking at any photo: lakeside,
# seashore, breakwater, dam, amphibious vehicle, gondola, canoe, paddle, yawl, catamaran,
# fireboat. Their summed probability is a zero-shot water score needing no water photos.
IMAGENET_WATER = (975, 978, 460, 525, 408, 576, 472, 693, 914, 484, 554)
_SIZE = 224


def _augment(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera-like variant: crop to 75-100% per side, flip, hue/saturation, contrast,
    brightness, gamma, sometimes blur, sensor noise, JPEG quality 25-90."""
    import cv2

    h, w = bgr.shape[:2]
    cw, ch = int(w * rng.uniform(0.75, 1.0)), int(h * rng.uniform(0.75, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = np.ascontiguousarray(bgr[y0 : y0 + ch, x0 : x0 + cw])
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
    hsv[..., 1] *= rng.uniform(0.5, 1.4)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    out = (out - 128) * rng.uniform(0.6, 1.3) + 128 + rng.uniform(-40, 40)
    out = 255 * (np.clip(out, 0, 255) / 255) ** rng.uniform(0.7, 1.5)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    out = np.clip(out + rng.normal(0, rng.uniform(0, 8), out.shape), 0, 255).astype(np.uint8)
    _ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)


def compute_features(real: Path, out: Path, augment: int = 2, renders_water: int = 300,
                     renders_plain: int = 700, seed: int = 7) -> dict:
    import cv2
    import tensorflow as tf

    from simulators.scenes import random_scene, render

    from .pretrained import efficientnet_lite0

    backbone = efficientnet_lite0((_SIZE, _SIZE, 3))
    fmap = backbone.output
    L = tf.keras.layers
    pooled = L.Concatenate()([L.GlobalAveragePooling2D()(fmap), L.GlobalMaxPooling2D()(fmap),
                              L.Flatten()(L.AveragePooling2D(4, 3)(fmap))])
    model = tf.keras.Model(backbone.input, pooled)
    rng = np.random.default_rng(seed)
    manifest = json.loads((real / "manifest.json").read_text())
    images: list[np.ndarray] = []
    meta: list[dict] = []

    def add(bgr: np.ndarray, **info: object) -> None:
        images.append(cv2.cvtColor(cv2.resize(bgr, (_SIZE, _SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        meta.append(info)

    for e in manifest["images"]:
        img = cv2.imread(str(real / e["file"]))
        if img is None:
            raise SystemExit(f"{real / e['file']}: unreadable")
        base = {"source": e["source"], "classes": e["classes"], "split": e["split"], "group": e.get("group") or e["file"]}
        add(img, kind="real", **base)
        if e["split"] == "train" and e["source"] in TRAINABLE_SOURCES:
            for _ in range(augment):
                add(_augment(img, rng), kind="aug", **base)
    for i in range(renders_water + renders_plain):
        if i < renders_water:
            spec, source = random_scene(5_000_000 + i, problems=1, kinds=("puddle", "flood")), "render_water"
        elif i < renders_water + renders_plain * 4 // 7:
            spec, source = random_scene(5_100_000 + i, problems=0, distractors=int(rng.integers(1, 6))), "render_plain"
        else:  # streets with traffic: vehicles are not a hazard class here
            spec, source = random_scene(5_200_000 + i, problems=int(rng.integers(1, 4)), kinds=("vehicle",)), "render_plain"
        img, boxes = render(spec, (448, 256), t=float(rng.uniform(0, 30)))
        add(img, kind="render", source=source, split="train", group=f"render{i}",
            classes=sorted({b.label for b in boxes} & set(CLASSES)))
    feats = np.concatenate([model.predict(np.array(images[i : i + 256], np.float32), batch_size=32, verbose=0)
                            for i in range(0, len(images), 256)])
    np.savez_compressed(out, features=feats.astype(np.float16), meta=json.dumps(meta))
    return {"images": len(images), "dims": int(feats.shape[1]), "out": str(out)}


def _fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 300, lr: float = 0.05) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Adam (numpy; no scikit-learn needed)."""
    w, b = np.zeros(x.shape[1], np.float32), 0.0
    pos = max(float(y.mean()), 1e-3)
    weight = np.where(y > 0, 0.5 / pos, 0.5 / max(1 - pos, 1e-3)).astype(np.float32)
    mw, vw, mb, vb = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, steps + 1):
        g = (1 / (1 + np.exp(-np.clip(x @ w + b, -30, 30))) - y) * weight
        gw, gb = x.T @ g / len(y) + l2 * w, float(g.mean())
        mw, vw = 0.9 * mw + 0.1 * gw, 0.999 * vw + 0.001 * gw * gw
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        w -= lr * (mw / (1 - 0.9**t)) / (np.sqrt(vw / (1 - 0.999**t)) + 1e-8)
        b -= lr * (mb / (1 - 0.9**t)) / (np.sqrt(vb / (1 - 0.999**t)) + 1e-8)
    return w, b


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC: the chance a positive scores above a negative (ties count as below)."""
    ranks = np.concatenate([pos, neg]).argsort(kind="stable").argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _imagenet_water(gap: np.ndarray) -> np.ndarray:
    from .pretrained import read_state_dict, weights_path

    state = read_state_dict(weights_path())
    logits = gap @ state["_fc.weight"].T + state["_fc.bias"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p[:, IMAGENET_WATER].sum(1) / p.sum(1)).astype(np.float32)


def evaluate(path: Path, pool: str = "gap", renders_plain: bool = False, augment: bool = False,
             renders_water: bool = True, quantile: float = 0.99, also: tuple[float, ...] = ()) -> dict:
    data = np.load(path)
    feats, meta = data["features"].astype(np.float32), json.loads(str(data["meta"]))
    x = {"gap": feats[:, :1280], "gmp": feats[:, 1280:2560], "gap+gmp": feats[:, :2560], "grid2x2": feats[:, 2560:]}[pool]
    y = np.array([[c in m["classes"] for c in CLASSES] for m in meta], np.float32)
    kind = np.array([m["kind"] for m in meta])
    source = np.array([m["source"] for m in meta])
    split = np.array([m["split"] for m in meta])
    groups = np.array([str(m["group"]) for m in meta])
    real_train = (kind == "real") & (split == "train") & np.isin(source, TRAINABLE_SOURCES)
    train = real_train | (renders_water & (source == "render_water")) | (renders_plain & (source == "render_plain"))
    fit_rows = train | (augment & (kind == "aug"))
    val = (kind == "real") & (split == "val")
    x = (x - x[fit_rows].mean(0)) / (x[fit_rows].std(0) + 1e-6)
    unique = np.unique(groups[fit_rows])
    fold_of = dict(zip(unique, np.random.default_rng(0).integers(0, 5, len(unique)), strict=True))
    fold = np.array([fold_of.get(g, -1) for g in groups])
    scores, oof = np.zeros(y.shape, np.float32), np.zeros(y.shape, np.float32)
    for j in range(len(CLASSES)):
        w, b = _fit(x[fit_rows], y[fit_rows, j])
        scores[:, j] = x @ w + b
        for k in range(5):  # out-of-fold scores: an honest threshold from train data alone
            w, b = _fit(x[fit_rows & (fold != k)], y[fit_rows & (fold != k), j], steps=200)
            held = real_train & (fold == k)
            oof[held, j] = x[held] @ w + b
    thresholds = [float(np.quantile(oof[real_train & (y[:, j] == 0), j], quantile)) for j in range(len(CLASSES))]
    negatives = val & (y.sum(1) == 0)
    fires = scores >= np.array(thresholds)
    report: dict = {"pool": pool, "renders_plain": renders_plain, "augment": augment, "renders_water": renders_water,
                    "train_images": int(fit_rows.sum()), "classes": {}}
    for j, c in enumerate(CLASSES):
        pos = val & (y[:, j] > 0)
        report["classes"][c] = {
            "val_images": int(pos.sum()), "recall": round(float(fires[pos, j].mean()), 3),
            "auc_vs_val_negatives": round(auc(scores[pos, j], scores[negatives, j]), 3),
            "recall_at_5pct_val_negatives": round(float((scores[pos, j] >= np.quantile(scores[negatives, j], 0.95)).mean()), 3),
            "val_negatives_firing": round(float(fires[negatives, j].mean()), 3)}
    water = val & (y[:, 0] > 0)
    zero_shot = _imagenet_water(feats[:, :1280])
    report["water_imagenet_zero_shot"] = {
        "auc_vs_val_negatives": round(auc(zero_shot[water], zero_shot[negatives]), 3),
        "recall_at_5pct_val_negatives": round(float((zero_shot[water] >= np.quantile(zero_shot[negatives], 0.95)).mean()), 3)}
    report["quantile"] = quantile
    report["val_negatives"] = int(negatives.sum())
    report["negatives_firing"] = round(float(fires[negatives].any(1).mean()), 3)
    no_class = val & np.array([not m["classes"] for m in meta])  # eval-model --real's negatives (no crowds)
    report["no_class_negatives"] = int(no_class.sum())
    report["no_class_negatives_firing"] = round(float(fires[no_class].any(1).mean()), 3)
    report["negatives_firing_by_source"] = {s: round(float(fires[negatives & (source == s)].any(1).mean()), 3)
                                            for s in sorted(set(source[negatives]))}
    report["other_quantiles"] = {}
    for q in also:  # the same fits, other train-chosen thresholds
        th = np.array([np.quantile(oof[real_train & (y[:, j] == 0), j], q) for j in range(len(CLASSES))])
        f = scores >= th
        report["other_quantiles"][str(q)] = {
            **{c: round(float(f[val & (y[:, j] > 0), j].mean()), 3) for j, c in enumerate(CLASSES)},
            "negatives_firing": round(float(f[negatives].any(1).mean()), 3)}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features", help="compute and store pooled Lite0 features")
    f.add_argument("--real", type=Path, default=Path("../shared/realworld"))
    f.add_argument("--out", type=Path, required=True, help=".npz to write")
    f.add_argument("--augment", type=int, default=2, help="augmented copies per licensed train photo")
    f.add_argument("--renders-water", type=int, default=300)
    f.add_argument("--renders-plain", type=int, default=700)
    e = sub.add_parser("evaluate", help="fit per-class probes and report on val")
    e.add_argument("features", type=Path)
    e.add_argument("--pool", choices=POOLS, default="gap")
    e.add_argument("--renders-plain", action="store_true", help="rendered ordinary scenes as extra negatives")
    e.add_argument("--augment", action="store_true", help="fit on the augmented copies too")
    e.add_argument("--no-renders-water", action="store_true", help="leave the water renders out")
    e.add_argument("--quantile", type=float, nargs="+", default=[0.99],
                   help="threshold: this quantile of out-of-fold train scores without the class (default 0.99); "
                        "more values report recall and negatives firing at those too")
    args = p.parse_args(argv)
    if args.command == "features":
        print(json.dumps(compute_features(args.real, args.out, args.augment, args.renders_water, args.renders_plain)))
    else:
        print(json.dumps(evaluate(args.features, args.pool, args.renders_plain, args.augment,
                                  not args.no_renders_water, args.quantile[0], tuple(args.quantile[1:]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
