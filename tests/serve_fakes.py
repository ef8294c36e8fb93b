"""A stand-in for :class:`skin_cnn.inference.predictor.Predictor` for tests of the web server itself.

It reads uploads with the real reader but needs no model, so a server process started by a test
imports neither TensorFlow nor Keras and starts in a second.
"""
import time

import numpy as np


class FakePredictor:
    """What ``create_app`` needs from a predictor; ``delay`` seconds are spent in ``read``.

    The delay runs inside the server's worker thread, so that requests queue behind it the way
    they queue behind a real model.
    """

    tasks = ("acne_vs_rosacea",)
    name = "fake"
    image_size = (4, 4)
    preprocessing = {"crop": False}

    def __init__(self, delay=0.0):
        self.delay = delay

    def read(self, data, name=None):
        from skin_cnn.data.reading import read_image

        time.sleep(self.delay)
        return read_image(data, name=name)

    def preprocess(self, image):
        return np.zeros((4, 4, 3), np.float32), (0, 0, image.shape[1], image.shape[0])

    def predict_tensors(self, batch):
        return {"acne_vs_rosacea": np.array([0.25], np.float32)}
