"""The one place that loads and runs a TFLite model.

``ai_edge_litert.interpreter.Interpreter`` (LiteRT) is preferred; ``tflite_runtime`` is
the fallback where LiteRT has no wheel. :class:`Detector` owns one interpreter: it resizes
a BGR frame to the model input, quantizes it (int8/uint8) or scales it (float), invokes,
dequantizes the outputs and decodes them with the layout's decoder. :class:`DetectorService`
shares one Detector between all cameras through a queue served by one thread.

Every way a model can be wrong at start-up raises :class:`ModelError` naming the file and
the fix: missing, not a TFLite flatbuffer, an output layout we cannot decode, or a class
count that disagrees with the labels file.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from protocol.errors import CityopsError

from .postprocess import Detection, decode_centernet, decode_ssd, decode_yolo, yolo_rows

__all__ = [
    "Detector",
    "DetectorService",
    "Layout",
    "ModelError",
    "ModelInfo",
    "inspect_model",
    "load_interpreter",
]

log = logging.getLogger(__name__)

Layout = Literal["auto", "centernet", "ssd", "yolo"]
InputRange = Literal["0_255", "0_1", "-1_1"]


class ModelError(CityopsError):
    """A detector model that cannot be used; says which file and what to do."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"detector model {self.path}: {detail}")


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        raise CityopsError(
            "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime)"
        ) from None


def load_interpreter(path: Path | str, threads: int = 1) -> Any:
    """An allocated interpreter for ``path``; :class:`ModelError` when it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(path, "file not found; check detector.model (the bundled model is vision/models/cityops_detector_int8.tflite)")
    data = path.read_bytes()
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(path, "is not a TFLite model (no TFL3 identifier); export the model with the TFLite converter")
    try:
        interp = _interpreter_class()(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(path, f"the interpreter cannot load it ({str(exc).splitlines()[0]})") from None
    return interp


@dataclass(frozen=True)
class ModelInfo:
    path: str
    layout: Literal["centernet", "ssd", "yolo"]
    input_size: tuple[int, int]  # width, height
    channels_first: bool
    input_dtype: str
    num_classes: int | None  # None when the layout does not reveal it (ssd)
    yolo_objectness: bool = False


def _guess_layout(outputs: list[dict], num_labels: int) -> Literal["centernet", "ssd", "yolo"] | None:
    if len(outputs) == 4:
        return "ssd"
    if len(outputs) == 1:
        shape = outputs[0]["shape"]
        if len(shape) == 4 and shape[-1] == num_labels + 4:
            return "centernet"
        if len(shape) == 3 and (num_labels + 4 in shape[1:] or num_labels + 5 in shape[1:]):
            return "yolo"
    return None


def _describe(outputs: list[dict]) -> str:
    return ", ".join(f"{o['name']}{list(o['shape'])}" for o in outputs)


def inspect_interpreter(interp: Any, path: Path | str, labels: Sequence[str], layout: Layout = "auto") -> ModelInfo:
    inputs = interp.get_input_details()
    outputs = interp.get_output_details()
    if len(inputs) != 1:
        raise ModelError(path, f"has {len(inputs)} inputs; a detector takes one image")
    shape = list(inputs[0]["shape"])
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ModelError(path, f"input shape {shape} is not an image batch (1, H, W, 3) or (1, 3, H, W)")
    channels_first = shape[1] == 3 and shape[3] != 3
    h, w = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    n = len(labels)
    found = _guess_layout(outputs, n)
    chosen = found if layout == "auto" else layout
    if chosen is None:
        raise ModelError(
            path,
            f"outputs {_describe(outputs)} match no known layout for {n} labels "
            "(centernet (1,H,W,C+4), ssd 4 outputs, yolo (1,N,C+4|C+5)); "
            "check that detector.labels belongs to this model, or set detector.layout",
        )
    classes: int | None = None
    objectness = False
    if chosen == "centernet":
        if len(outputs) != 1 or len(outputs[0]["shape"]) != 4:
            raise ModelError(path, f"outputs {_describe(outputs)} are not a CenterNet map (1, H, W, C+4)")
        classes = int(outputs[0]["shape"][-1]) - 4
    elif chosen == "yolo":
        if len(outputs) != 1:
            raise ModelError(path, f"outputs {_describe(outputs)} are not one raw YOLO tensor")
        try:
            rows, objectness = yolo_rows(np.zeros(outputs[0]["shape"], np.float32), n)
        except ValueError as exc:
            raise ModelError(path, f"{exc}; the labels file has {n} labels") from None
        classes = rows.shape[1] - (5 if objectness else 4)
    elif len(outputs) != 4:
        raise ModelError(path, f"outputs {_describe(outputs)} are not the 4 SSD post-processed outputs")
    if classes is not None and classes != n:
        raise ModelError(path, f"predicts {classes} classes but the labels file has {n}; use the labels file that came with the model")
    return ModelInfo(str(path), chosen, (int(w), int(h)), channels_first, np.dtype(inputs[0]["dtype"]).name, classes, objectness)


def inspect_model(path: Path | str, labels: Sequence[str], layout: Layout = "auto") -> ModelInfo:
    """Load the model just to check it against ``labels`` (config checks use this)."""
    return inspect_interpreter(load_interpreter(path, 1), path, labels, layout)


def _ssd_outputs(outputs: list[dict]) -> tuple[int, int, int, int]:
    """Indices of boxes, classes, scores, count among the 4 SSD outputs."""
    boxes = next((i for i, o in enumerate(outputs) if len(o["shape"]) == 3 and o["shape"][-1] == 4), None)
    count = next((i for i, o in enumerate(outputs) if int(np.prod(o["shape"])) == 1), None)
    rest = [i for i in range(4) if i not in (boxes, count)]
    if boxes is None or count is None or len(rest) != 2:
        raise ValueError("cannot tell SSD outputs apart")
    names = [outputs[i]["name"].lower() for i in rest]
    if "score" in names[0] or "class" in names[1]:
        rest = rest[::-1]
    return boxes, rest[0], rest[1], count


class Detector:
    """One interpreter and its decoding. Not thread-safe: use it from one thread (the
    :class:`DetectorService` does)."""

    def __init__(
        self,
        model: Path | str,
        labels: Sequence[str],
        *,
        layout: Layout = "auto",
        threads: int = 1,
        input_order: Literal["rgb", "bgr"] = "rgb",
        input_range: InputRange = "0_255",
        score_threshold: float = 0.3,
        iou_threshold: float = 0.45,
        max_detections: int = 50,
    ) -> None:
        self.labels = list(labels)
        self.interp = load_interpreter(model, threads)
        self.info = inspect_interpreter(self.interp, model, self.labels, layout)
        self.input_order = input_order
        self.input_range = input_range
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._input = self.interp.get_input_details()[0]
        self._outputs = self.interp.get_output_details()
        self._ssd = _ssd_outputs(self._outputs) if self.info.layout == "ssd" else None
        self.last_ms = 0.0

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        img = _as_bgr(frame)
        w, h = self.info.input_size
        # Area averaging by exact halves first (OpenCV's fast path for an integer factor), then
        # the rest: the same averaging as one INTER_AREA step within a grey level, at a
        # quarter of its cost on a 720p frame.
        while img.shape[1] >= 2 * w and img.shape[0] >= 2 * h:
            img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if img.shape[1] != w or img.shape[0] != h:
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if self.input_order == "rgb":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        dtype = np.dtype(self._input["dtype"])
        scale, zero = self._input["quantization"]
        if dtype in (np.int8, np.uint8):
            if dtype == np.int8 and scale == 1.0 and zero == -128 and self.input_range == "0_255":
                x = (img ^ 0x80).view(np.int8)  # the pixel minus 128, exactly (our bundled models)
            elif scale and scale > 0:
                real = img.astype(np.float32)
                if self.input_range == "0_1":
                    real /= 255.0
                elif self.input_range == "-1_1":
                    real = real / 127.5 - 1.0
                info = np.iinfo(dtype)
                x = np.clip(np.round(real / scale + zero), info.min, info.max).astype(dtype)
            else:
                x = img.astype(dtype) if dtype == np.uint8 else (img.astype(np.int16) - 128).astype(np.int8)
        else:
            x = img.astype(np.float32)
            if self.input_range == "0_1":
                x /= 255.0
            elif self.input_range == "-1_1":
                x = x / 127.5 - 1.0
        if self.info.channels_first:
            x = np.transpose(x, (2, 0, 1))
        return x[None]

    def _output(self, i: int) -> np.ndarray:
        d = self._outputs[i]
        raw = self.interp.get_tensor(d["index"])
        scale, zero = d["quantization"]
        if raw.dtype in (np.int8, np.uint8, np.int16) and scale:
            return (raw.astype(np.float32) - zero) * scale
        return raw.astype(np.float32)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Detections in ``frame`` (any size, BGR, gray or BGRA), boxes as frame fractions."""
        x = self._prepare(frame)
        started = time.perf_counter()
        self.interp.set_tensor(self._input["index"], x)
        self.interp.invoke()
        self.last_ms = (time.perf_counter() - started) * 1000
        n = len(self.labels)
        if self.info.layout == "centernet":
            found = decode_centernet(self._output(0), n, self.score_threshold, self.max_detections)
        elif self.info.layout == "yolo":
            found = decode_yolo(self._output(0), n, self.info.input_size, self.score_threshold,
                                self.iou_threshold, self.max_detections)
        else:
            b, c, s, k = self._ssd or (0, 1, 2, 3)
            classes, scores = self._output(c), self._output(s)
            if not _integral(classes) and _integral(scores):  # unnamed outputs in another order
                classes, scores = scores, classes
            found = decode_ssd(self._output(b), classes, scores, self._output(k), self.score_threshold, n)
        return [Detection(d.class_id, d.score, d.box, self.labels[d.class_id]) for d in found]


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(np.abs(values - np.round(values)) < 1e-4))


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """Any 8-bit frame as 3-channel BGR: gray (H, W) or (H, W, 1), BGRA (H, W, 4)."""
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"unsupported frame shape {frame.shape}")


class DetectorService:
    """One shared :class:`Detector` for all cameras: requests queue up and one thread
    runs them in order. ``await detect(frame)`` from any camera task."""

    def __init__(self, detector: Detector, max_queue: int = 64) -> None:
        self.detector = detector
        self._queue: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self.inference_ms = 0.0  # moving average
        self.runs = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="detector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            frame, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = self.detector.detect(frame)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who reports it
                fut.set_exception(exc)
                continue
            self.runs += 1
            self.inference_ms += (self.detector.last_ms - self.inference_ms) * (0.1 if self.runs > 1 else 1.0)
            fut.set_result(result)

    async def detect(self, frame: np.ndarray) -> list[Detection]:
        self.start()
        fut: Future = Future()
        await asyncio.to_thread(self._queue.put, (frame, fut))
        return await asyncio.wrap_future(fut)
