"""The bottom layer: what every stage shares and nothing of TensorFlow, Keras or Pillow.

* :mod:`~skin_cnn.core.tasks` — the diseases and the three diagnostic tasks;
* :mod:`~skin_cnn.core.io` — atomic file writes and the one SHA-256 of a file;
* :mod:`~skin_cnn.core.predictions` — the predictions table passed from a model to the evaluation.
* :mod:`~skin_cnn.core.compute_precision` — the ``--precision`` setting and the choice ``auto``
  makes from the CPU flags and the GPU.
"""
