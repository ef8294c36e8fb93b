"""The files of a run folder ``runs/NAME`` by name: one place spells each file name.

Training writes them, evaluation reads and adds to them, ``predict``, ``serve`` and ``export``
read the model, and each command checks that none of its inputs is a file it is about to
write. :class:`RunPaths` names every one of them, so a file renamed here is renamed for all of
them, and no module joins ``"best.keras"`` to a folder on its own.

::

    runs/NAME/
      config.json            every resolved setting, versions, split SHA-256, preprocessing
      split.csv              the split used
      split.flow.json        its STARD flow record, training's unreadable images included
      best.keras             full image-in model, best validation mean AUC (no optimizer state)
      last.keras             full model after the last epoch (only with ``--save-last``)
      history.csv            one row per epoch (loss, per-task AUC, learning rate)
      training_curves.png    loss and per-task AUC, training vs validation
      val_predictions.csv    predictions table of the best model on the validation split
      linear_fit.json        the linear heads' regularisation, chosen by inner cross-validation
      calibration.json       the study heads' Platt maps (``--calibration sigmoid``)
      skipped_images.csv     images that could not be read, with the reason
      model_card.md          intended use, data, metrics, limitations
      tensorboard/           TensorBoard logs
      backup/state.npz       what ``--resume`` continues from (removed when the run finishes)
      status.json            written when training ends: finished, best epoch, epochs run
      eval_<split>/          ``skin-cnn evaluate`` of the best model on a split
      test_evaluations.json  how many times the test split has been evaluated
      .lock                  held while a training writes the folder (the holder's pid)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RunPaths:
    """The paths of the files of one run folder.

    Parameters
    ----------
    root : str or os.PathLike
        The run folder (``-o`` of ``skin-cnn train``).

    Examples
    --------
    >>> paths = RunPaths("runs/p")
    >>> paths.best_model.as_posix(), paths.predictions("test").as_posix()
    ('runs/p/best.keras', 'runs/p/eval_test/predictions_test.csv')
    """

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # what training writes --------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def split(self) -> Path:
        return self.root / "split.csv"

    @property
    def flow(self) -> Path:
        return self.root / "split.flow.json"

    @property
    def best_model(self) -> Path:
        return self.root / "best.keras"

    @property
    def last_model(self) -> Path:
        return self.root / "last.keras"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def curves(self) -> Path:
        return self.root / "training_curves.png"

    @property
    def val_predictions(self) -> Path:
        return self.root / "val_predictions.csv"

    @property
    def linear_fit(self) -> Path:
        return self.root / "linear_fit.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped_images.csv"

    @property
    def model_card(self) -> Path:
        return self.root / "model_card.md"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def state(self) -> Path:
        return self.backup / "state.npz"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # what evaluation writes ------------------------------------------------------------------
    @property
    def test_evaluations(self) -> Path:
        return self.root / "test_evaluations.json"

    def eval_dir(self, split: str = "test") -> Path:
        """``eval_<split>/``: where ``skin-cnn evaluate RUN --split SPLIT`` writes by default."""
        return self.root / f"eval_{split}"

    def predictions(self, split: str, out: str | os.PathLike[str] | None = None) -> Path:
        """``predictions_<split>.csv`` in ``out`` (default :meth:`eval_dir` of ``split``)."""
        return Path(out if out is not None else self.eval_dir(split)) / f"predictions_{split}.csv"

    @property
    def validation_candidates(self) -> tuple[Path, ...]:
        """Validation predictions of the run, in the order a fitted threshold looks for them:
        training's own, then those of an earlier ``evaluate --split val``."""
        return (self.val_predictions, self.root / "predictions_val.csv", self.predictions("val"))

    @property
    def training_files(self) -> tuple[Path, ...]:
        """The files a training writes at the top of its folder (commands check that none is an input)."""
        return (self.split, self.flow, self.config, self.history, self.best_model, self.val_predictions,
                self.skipped, self.linear_fit, self.calibration, self.status)

    def is_run(self) -> bool:
        """Whether the folder holds a training run (its ``config.json`` and ``split.csv``)."""
        return self.config.is_file() and self.split.is_file()
