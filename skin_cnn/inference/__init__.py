"""A trained model applied to photos: the predictor, Grad-CAM, export and a run's split evaluated.

Submodules are imported on their own (``from skin_cnn.inference.predictor import load_predictor``);
importing this package loads nothing heavy.
"""
