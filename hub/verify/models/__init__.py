"""The photo verifier's detector (data only): ``photo_detector_int8.tflite`` is the camera
detector v2 (256×160 input, docs/model_card.md), pinned here because the verifier's
thresholds (``hub/verify/decide.py``) were tuned and measured on its scores. A newer camera
model changes those scores; move the verifier to it only with thresholds re-tuned on the
tuning pairs and a fresh held-out run of ``benchmarks/photo_verify.py``."""
