"""Training and evaluation of the camera detector: rendered-scene datasets, the trainer
(``cityops-agent train-model``, TensorFlow from the ``train`` extra), the synthetic and
real-photo evaluations (``cityops-agent eval-model``) and the threshold tuner.

An offline tool, never imported by the running agent or hub: it is the one package next to
them that may import :mod:`simulators` (the scene renderer). ``tests/test_layering.py``
holds that; ``edge_agent/commands/model.py`` reaches it by name, at run time only.
"""
