"""The bundled detector's files (data only): ``cityops_detector_int8.tflite``, its float
twin, ``labels.txt`` and ``training.json``. See docs/model_card.md."""
