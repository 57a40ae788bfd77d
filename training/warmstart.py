"""Start training from an earlier model: its Keras weights (``.weights.h5``) or, when
only the exported file survives, the weights inside a *float* ``.tflite``.

The float TFLite export folds each BatchNormalization into its convolution (kernel scaled,
a bias added). Loading it back sets every convolution's kernel to the folded kernel and
makes the BatchNormalization after it an identity plus that bias (gamma 1, mean 0,
variance 1 − ε, beta = the folded bias). Such BatchNormalization layers must stay frozen
(inference mode) while fine-tuning, or batch statistics would replace the identity;
:func:`init_from` says so in its return value.

Matching is by order and shape: the converter emits the convolutions in an order
consistent with the Keras layer order for this architecture, and a wrong match would fail
the shape check or the output check in the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import CityopsError

__all__ = ["WarmStartError", "init_from", "tflite_conv_weights"]


class WarmStartError(CityopsError):
    """A model to start from that does not fit the network being trained."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        super().__init__(f"--init-from {self.path}: {detail}")


def tflite_conv_weights(path: Path | str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(kind, kernel, bias)`` of each convolution of a float TFLite model, in execution
    order; kernels already in Keras layout (``conv``: kh, kw, in, out; ``depthwise``:
    kh, kw, in, 1)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    if it.get_input_details()[0]["dtype"] != np.float32:
        raise WarmStartError(path, "not a float model; start from cityops_detector_float.tflite (int8 weights lose precision)")
    out = []
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        kernel = it.get_tensor(int(op["inputs"][1]))
        bias = it.get_tensor(int(op["inputs"][2])) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else np.zeros(kernel.shape[0] if name == "CONV_2D" else kernel.shape[-1], np.float32)
        if name == "CONV_2D":  # (out, kh, kw, in) -> (kh, kw, in, out)
            out.append(("conv", np.transpose(kernel, (1, 2, 3, 0)), bias))
        else:  # (1, kh, kw, in) -> (kh, kw, in, 1)
            out.append(("depthwise", np.transpose(kernel, (1, 2, 3, 0)), bias))
    return out


def _load_tflite(model: Any, path: Path) -> None:
    from tensorflow.keras import layers

    convs = tflite_conv_weights(path)
    used = [False] * len(convs)
    by_name = {layer.name: layer for layer in model.layers}
    consumers: dict[str, list[Any]] = {}
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            for t in node.input_tensors:
                consumers.setdefault(t._keras_history.operation.name, []).append(layer)  # noqa: SLF001
    for layer in model.layers:
        if not isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D):
            continue
        kind = "depthwise" if isinstance(layer, layers.DepthwiseConv2D) else "conv"
        kernel_shape = tuple(layer.kernel.shape)
        j = next((i for i, (k, w, _) in enumerate(convs) if not used[i] and k == kind and w.shape == kernel_shape), None)
        if j is None:
            raise WarmStartError(path, f"no convolution of shape {kernel_shape} left for layer {layer.name}: a different architecture or width")
        used[j] = True
        _, kernel, bias = convs[j]
        nexts = consumers.get(layer.name, [])
        bn = nexts[0] if len(nexts) == 1 and isinstance(nexts[0], layers.BatchNormalization) else None
        if layer.use_bias:
            layer.set_weights([kernel, bias])
        elif bn is not None:
            layer.set_weights([kernel])
            eps = float(bn.epsilon)
            n = bias.shape[0]
            bn.set_weights([np.ones(n, np.float32), bias.astype(np.float32), np.zeros(n, np.float32), np.full(n, 1.0 - eps, np.float32)])
        else:
            raise WarmStartError(path, f"layer {layer.name} has neither a bias nor a BatchNormalization to take the folded bias")
    if not all(used):
        raise WarmStartError(path, f"{used.count(False)} convolution(s) of the file are left over: a different architecture or width")
    del by_name


def init_from(model: Any, path: Path | str) -> bool:
    """Load ``path`` into ``model``. Returns True when the BatchNormalization layers must be
    frozen while training (weights taken from a folded float TFLite)."""
    path = Path(path)
    if not path.is_file():
        raise WarmStartError(path, "file not found")
    if path.name.endswith(".weights.h5"):
        model.load_weights(str(path))
        return False
    if path.suffix == ".tflite":
        _load_tflite(model, path)
        return True
    raise WarmStartError(path, "expected a .weights.h5 written by train.py or a float .tflite")
