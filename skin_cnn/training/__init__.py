"""Training: run folders, the frozen-trunk feature cache, resumable runs and tf.distribute.

The steps of one training live here (:mod:`skin_cnn.training.trainer`); the run they compose,
with its test evaluation, flow record and model card, is :func:`skin_cnn.app.train_run.train`
(also ``skin_cnn.train``)::

    from skin_cnn import train
    from skin_cnn.training import TrainConfig, load_resume_config, resolve_config

    config = resolve_config({"split": "data/split.csv", "out": "runs/p250"})
    result = train(config)            # a RunResult; prints a one-screen summary
    train(load_resume_config("runs/p250"), resume=True)   # continue a killed run

Importing this package does not import TensorFlow.
"""
from __future__ import annotations

import os

from skin_cnn.training.config import TrainConfig, load_config_file, resolve_config


def load_resume_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """Settings of an existing run folder, for ``train(..., resume=True)``."""
    from skin_cnn.training.trainer import load_resume_config as _load

    return _load(run_dir)


def __getattr__(name: str) -> object:
    if name == "train":  # the whole run composes layers above training
        raise ImportError("skin_cnn.training.train is skin_cnn.train (skin_cnn.app.train_run.train): "
                          "a run's test evaluation and model card are composed above training")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "load_config_file", "load_resume_config", "resolve_config"]
