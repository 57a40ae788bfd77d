"""Fine-tuning starts from an earlier model: the weights read back from a float .tflite
give the same outputs, a model of another shape is refused, and the flip augmentation's
targets are those of the mirrored scene."""

from __future__ import annotations

import numpy as np
import pytest

from training.dataset import Sample
from training.train import build_model, encode_targets, mirror_targets
from training.warmstart import WarmStartError, init_from

tf = pytest.importorskip("tensorflow")


def _float_tflite(model, path):
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = weights[0].shape[0]  # gamma, beta, mean, variance: a real, non-identity BN
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2.0, n)])
        elif weights:
            layer.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in weights])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small model with non-trivial weights and BN statistics, and its float export."""
    source = build_model(6, 0.5)
    _randomise(source, 1)
    return source, _float_tflite(source, tmp_path_factory.mktemp("warm") / "m.tflite")


def test_weights_from_a_float_tflite_reproduce_its_outputs(exported):
    source, path = exported
    fresh = build_model(6, 0.5)
    assert init_from(fresh, path) is True  # folded BN: the caller must freeze it
    images = np.random.default_rng(2).uniform(0, 255, (2, 160, 256, 3)).astype(np.float32)
    want = source(images, training=False).numpy()
    got = fresh(images, training=False).numpy()
    assert np.abs(want - got).max() < 1e-4
    assert np.abs(want - build_model(6, 0.5)(images, training=False).numpy()).max() > 1e-3  # the check can fail


def test_weights_carry_over_to_a_larger_input(exported):
    """The network is fully convolutional: a 256×160 model's weights start a 320×192 one,
    which then sees the same picture the same way (same outputs on the shared region's
    content up to border effects; here simply: identical outputs on an image whose larger
    copy is a zero-padded version, away from the padding)."""
    source, path = exported
    big = build_model(6, 0.5, (320, 192))
    assert init_from(big, path) is True
    assert big.input_shape[1:3] == (192, 320) and big.output_shape[1:3] == (24, 40)
    images = np.random.default_rng(3).uniform(0, 255, (1, 160, 256, 3)).astype(np.float32)
    padded = np.zeros((1, 192, 320, 3), np.float32)
    padded[:, :160, :256] = images
    want = source(images, training=False).numpy()[0, :14, :26]  # away from the new border
    got = big(padded, training=False).numpy()[0, :14, :26]
    assert np.abs(want - got).max() < 1e-3


def test_a_model_of_another_width_or_kind_is_refused(exported, tmp_path):
    _, path = exported
    with pytest.raises(WarmStartError, match="different architecture or width"):
        init_from(build_model(6, 1.0), path)
    with pytest.raises(WarmStartError, match="file not found"):
        init_from(build_model(6, 0.5), tmp_path / "missing.tflite")
    (tmp_path / "labels.txt").write_text("water\n")
    with pytest.raises(WarmStartError, match="expected a .weights.h5"):
        init_from(build_model(6, 0.5), tmp_path / "labels.txt")


def test_mirrored_targets_are_the_targets_of_the_mirrored_scene():
    boxes = np.array([[0.1, 0.3, 0.35, 0.8], [0.52, 0.1, 0.9, 0.45]], np.float32)
    labels = np.array([0, 4])
    image = np.zeros((160, 256, 3), np.uint8)
    mirrored_boxes = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)
    want = encode_targets(Sample(image, labels, mirrored_boxes), 6)
    got = mirror_targets(tf.constant(encode_targets(Sample(image, labels, boxes), 6)), 6).numpy()
    assert np.allclose(got, want, atol=1e-5)
