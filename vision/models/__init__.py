"""The bundled detector's files: ``cityops_detector_int8.tflite``, its float twin,
``labels.txt`` and ``training.json``. See docs/model_card.md."""

from pathlib import Path

__all__ = ["BUNDLED_LABELS", "BUNDLED_MODEL", "MODELS_DIR"]

MODELS_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL = MODELS_DIR / "cityops_detector_int8.tflite"
BUNDLED_LABELS = MODELS_DIR / "labels.txt"
