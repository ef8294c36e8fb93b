"""``skin-cnn train``: one training run from a split to a run folder with its model card.

:func:`train` reads as its steps: hold the run folder, read the split, build the model, record
the run's settings, prepare the training data, record the STARD flow of the images training
could not read, fit (:mod:`skin_cnn.training.trainer`), store the thresholds fitted on the
validation predictions, evaluate the test split when asked (``--evaluate-test``:
:func:`skin_cnn.app.evaluate_run.evaluate_run`), and write the model card and the one-screen
summary (:mod:`skin_cnn.training.run_folder`).

Training never reads the test split; ``skin-cnn evaluate RUN`` (or ``train --evaluate-test``)
looks at it, deliberately.

Determinism and resume rest on one rule: everything random during training is a function of
(seed, epoch) (:mod:`skin_cnn.data.pipeline`), so a run resumed at epoch ``k`` (weights,
optimizer and callback counters restored from ``backup/state.npz``) replays exactly what an
uninterrupted run would have done.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from skin_cnn.core import io as atomic
from skin_cnn.core.compute_precision import Precision
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.core.predictions import marks_synthetic
from skin_cnn.evaluation.flow import record_training
from skin_cnn.training import run_folder
from skin_cnn.reporting.model_card import model_card, summary_text
from skin_cnn.training.config import TrainConfig
from skin_cnn.training.distribute import make_strategy
from skin_cnn.training.feature_cache import run_frame_predictions
from skin_cnn.training.trainer import (RunContext, RunResult, SharedFeatures, announced_precision, build,
                                       check_disk_space, checked_config, finish_fit, finished_result, fit_model,
                                       has_converged, open_run_folder, preparation_folder, prepare_training_data,
                                       read_split, record_run, run_precision, deterministic, training_lock)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True,
          echo: Callable[[str], object] = print, synthetic: bool = False,
          shared_features: SharedFeatures | None = None, precision: Precision | None = None) -> RunResult:
    """Train one model into a run folder and return a :class:`~skin_cnn.training.trainer.RunResult`.

    Parameters
    ----------
    config : TrainConfig
        Resolved settings (:func:`skin_cnn.training.config.resolve_config`).
    resume : bool
        Continue the interrupted run in ``config.out`` from its last completed epoch; a finished
        run is left as it is and its summary printed again.
    progress : bool
        A progress bar per epoch in a terminal (one line per epoch otherwise) and progress of the
        preparation steps (:func:`skin_cnn.core.progress.progress_bar`).
    echo : callable
        Where one-line messages go (``click.echo`` from the CLI).
    synthetic : bool
        Label the model card as trained on synthetic demo data.
    shared_features : SharedFeatures, optional
        Trunk features already extracted for these images (variant P; ``skin-cnn cv``).
    precision : Precision, optional
        Resolved already (``skin-cnn cv`` resolves it once for every fold); else
        ``config.precision`` is resolved here (a resumed run keeps its recorded one) and said in
        one line.
    """
    config = checked_config(config)
    started = time.time()
    info = make_strategy(config.strategy)  # before any other TensorFlow work (multi-worker)
    with training_lock(config, info):
        run = RunContext(config, info, open_run_folder(config, info, resume), resume=resume, progress=progress,
                         echo=echo, synthetic=synthetic)
        if resume and run_folder.is_finished(run.run_dir):
            return summarise_finished_run(run)
        with deterministic(config.seed):  # deterministic kernels for this run only
            return _train(run, shared_features, precision, started)


def _train(run: RunContext, shared_features: SharedFeatures | None, precision: Precision | None,
           started: float) -> RunResult:
    """:func:`train` once the run folder is held: the steps of a run, in order."""
    config = run.config
    frame = read_run_split(run, run.echo)
    check_disk_space(run.run_dir, frame, config.image_size)
    precision = precision or announced_precision(run)
    model = build(config, run.info, precision, synthetic=run.synthetic)
    record_run(config, run.run_dir, frame, model, run.info, run.resume, precision)
    with preparation_folder(run.run_dir) as work:
        data = prepare_training_data(run, frame, model, work, shared_features)
        if run.info.is_chief:  # the run carries its STARD flow record: the split's, plus training
            record_training(config.split, run.run_dir, frame, data.skipped)
        result = fit_model(run, data, frame, model)
    if not run.info.is_chief:
        result.wall_s = time.time() - started
        return result
    finish_fit(run, result)
    if config.evaluate and (frame["split"] == "test").any():
        result.eval_dir, result.test_metrics = evaluate_test(run.run_dir, run.progress, run.echo, precision)
    result.wall_s = time.time() - started
    write_card_and_summary(run, result, frame, precision)
    return result


def evaluate_test(run_dir: str | Path, progress: bool, echo: Callable[[str], object],
                  precision: Precision | str = "auto") -> tuple[Path, dict[str, Any]]:
    """Evaluate the best model on the test split into ``run_dir/eval_test`` (``--evaluate-test``)."""
    from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run

    paths = RunPaths(run_dir)
    out = paths.eval_dir("test")
    echo("evaluating the best model on the test split (--evaluate-test)")
    options = RunEvaluationOptions(val_predictions=paths.val_predictions, precision=precision,
                                   frame_predictions=run_frame_predictions(paths.root, echo=echo))
    metrics = evaluate_run(paths.root, split="test", out=out, options=options, progress=progress)
    return out, metrics


def read_run_split(run: RunContext, echo: Callable[[str], object] | None = None) -> Any:
    """The run's split; the run counts as synthetic when the split's ``synthetic`` column marks its
    images so (the demo's, however they came here), for its model card, curves and model file."""
    frame = read_split(run.config, echo)
    run.synthetic = run.synthetic or marks_synthetic(frame)
    return frame


def write_card_and_summary(run: RunContext, result: RunResult, frame: Any, precision: Precision | None) -> None:
    """Write ``model_card.md`` and say the one-screen summary (kept in ``result.summary``)."""
    config = run.config
    result.converged = has_converged(result.best_epoch, result.epochs_run, config.epochs)
    if not result.converged:
        run.echo(f"warning: the best epoch is the last one run ({result.best_epoch}); validation AUC was still "
                 "improving, so training may not have converged (try more --epochs)")
    atomic.write_text(run.paths.model_card,
                      model_card(config, frame, result, synthetic=run.synthetic, precision=precision))
    result.summary = summary_text(config, result)
    run.echo(result.summary)


def summarise_finished_run(run: RunContext) -> RunResult:
    """``--resume`` of a finished run: nothing to train; the card and summary stay correct."""
    frame = read_run_split(run)
    result = finished_result(run)
    metrics_path = run.paths.eval_dir("test") / "metrics.json"
    if metrics_path.is_file():
        result.eval_dir, result.test_metrics = metrics_path.parent, json.loads(metrics_path.read_text())
    run.echo(f"{run.run_dir}: this run already finished ({result.epochs_run} epochs); nothing to resume")
    write_card_and_summary(run, result, frame, run_precision(run.config, resume=True))
    return result
