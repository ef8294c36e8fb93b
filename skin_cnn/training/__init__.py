"""Training: run folders, the frozen-trunk feature cache, resumable runs and tf.distribute.

Public API::

    from skin_cnn.training import TrainConfig, resolve_config, train

    config = resolve_config({"split": "data/split.csv", "out": "runs/p250"})
    result = train(config)            # a RunResult; prints a one-screen summary
    train(load_resume_config("runs/p250"), resume=True)   # continue a killed run

Importing this package does not import TensorFlow; :func:`train` does.
"""
from __future__ import annotations

import os
from typing import Any

from skin_cnn.training.config import TrainConfig, load_config_file, resolve_config


def train(config: TrainConfig, **kwargs: Any) -> Any:
    """Train into ``config.out``; see :func:`skin_cnn.training.trainer.train`."""
    from skin_cnn.training.trainer import train as _train

    return _train(config, **kwargs)


def load_resume_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """Settings of an existing run folder, for ``train(..., resume=True)``."""
    from skin_cnn.training.trainer import load_resume_config as _load

    return _load(run_dir)


__all__ = ["TrainConfig", "load_config_file", "load_resume_config", "resolve_config", "train"]
