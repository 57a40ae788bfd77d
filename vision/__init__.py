"""The detector's inference runtime, shared by the edge agent (cameras) and the hub (photo
verification): the one TFLite loader (:mod:`vision.runtime`), labels files and the bundled
class mapping (:mod:`vision.labels`), pure output decoders (:mod:`vision.postprocess`) and
the bundled model (``vision/models/``).

It imports only numpy, OpenCV, the interpreter and :mod:`protocol`; never the agent, the
hub, the simulators or the training tools (``tests/test_layering.py`` holds that).
"""
