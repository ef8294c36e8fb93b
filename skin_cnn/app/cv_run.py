"""``skin-cnn cv``: patient-grouped k-fold cross-validation of a training recipe, evaluated.

:func:`run_cv` reads as its steps: assign the folds (:mod:`skin_cnn.training.cv`), extract the
trunk features once for all folds (variant P), train one run per fold
(:func:`skin_cnn.app.train_run.train`), pool the fold models' predictions on the folds they
never saw, score each fold and the spread between them, evaluate the pooled out-of-fold
predictions with intervals (``eval_oof/``), and build the ensemble of the fold models.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from skin_cnn.app.train_run import train
from skin_cnn.core import io as atomic
from skin_cnn.core.compute_precision import Precision
from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.data.crop import check_not_cropped_twice, fitting_crop_boxes
from skin_cnn.data.split import write_split
from skin_cnn.evaluation import evaluate_predictions
from skin_cnn.reporting.report import ReportInputs, write_evaluation
from skin_cnn.evaluation.threshold import parse_threshold
from skin_cnn.models.precision_policy import resolve_precision
from skin_cnn.training import run_folder
from skin_cnn.training.callbacks import save_model_atomic
from skin_cnn.training.config import TrainConfig, resolve_config
from skin_cnn.training.cv import (CV_FILES, FOLDS_FILE, assign_folds, build_ensemble, fixed_threshold, fold_split,
                                  fold_thresholds, group_labels, nested_scores, out_of_fold_predictions, read_source,
                                  shared_features, store_ensemble_thresholds)
from skin_cnn.training.trainer import load_resume_config

__all__ = ["CV_FILES", "CVOptions", "CVResult", "run_cv"]


@dataclass
class CVResult:
    """What :func:`run_cv` returns."""

    out: Path
    n_folds: int
    fold_dirs: list
    oof_predictions: Path
    eval_dir: Path
    summary: pd.DataFrame
    ensemble: Path | None


@dataclass(frozen=True)
class CVOptions:
    """How a cross-validation groups its images and scores its pooled predictions.

    Attributes
    ----------
    n_bootstrap : int
        Bootstrap resamples of the pooled out-of-fold evaluation (``eval_oof/``), seeded by the
        recipe's seed; 0: none.
    group_near_duplicates : bool or None
        Keep near-identical photos (and the patients sharing them) in one fold; ignored when the
        source is a split with a ``split_group`` column, whose groups are kept instead. None: on
        for a new cross-validation, the recorded choice for a resumed one.
    """

    n_bootstrap: int = 2000
    group_near_duplicates: bool | None = None


@dataclass
class FoldPlan:
    """What every step of one cross-validation shares: its folder, recipe and folds."""

    out: Path
    source: str
    n_folds: int
    settings: dict
    base: TrainConfig
    precision: Precision
    frame: pd.DataFrame
    groups: np.ndarray
    folds: np.ndarray


def recipe_thresholds(config, oof, fold_dirs):
    """The thresholds of the pooled out-of-fold evaluation, as the recipe would answer.

    A fixed rule gives its number for every row. A fitted rule (``--threshold youden`` …) gives
    every out-of-fold prediction the threshold its own fold model stores, fitted on that fold's
    training data only; the predictions then carry a ``threshold`` column and are evaluated
    per row.

    Returns
    -------
    predictions : pandas.DataFrame
        ``oof`` (with a ``threshold`` column for a fitted rule).
    thresholds : float or ``"per row"``
    method : str
        The ``threshold_method`` of ``eval_oof/metrics.json``.
    """
    from skin_cnn.evaluation.threshold import PER_ROW

    rule = parse_threshold(str(config.threshold))
    if not rule.needs_validation:
        return oof, fixed_threshold(config), "fixed"
    cuts = fold_thresholds(fold_dirs)
    scored = oof.assign(threshold=[cuts[int(f)][t] for f, t in zip(oof["fold"], oof["task"])])
    method = (f"each out-of-fold prediction at the threshold its fold model stores: {rule.short()} fitted on "
              "that fold's training data, never on the held-out fold")
    return scored, PER_ROW, method


def fold_threshold_fitting(config, fold_dirs):
    """How the fold models' thresholds were fitted: the recipe's rule on each fold's own
    ``val_predictions.csv``, keyed by ``fold`` (None for a fixed threshold)."""
    from skin_cnn.evaluation.threshold_choice import ThresholdFitting
    from skin_cnn.core.predictions import read_predictions

    rule = parse_threshold(str(config.threshold))
    if not rule.needs_validation:
        return None
    validation = pd.concat([read_predictions(RunPaths(d).val_predictions).assign(fold=k + 1)
                            for k, d in enumerate(fold_dirs)], ignore_index=True)
    return ThresholdFitting({t: rule for t in TASK_NAMES}, validation, key="fold",
                            source="each fold's own val_predictions.csv")


def fold_metrics(oof, thresholds=None):
    """AUC, sensitivity and specificity per fold and task, at each fold model's own threshold.

    ``thresholds``: :func:`fold_thresholds`; 0.5 for every fold when None.
    """
    rows = []
    for fold, part in oof.groupby("fold"):
        cut = (thresholds or {}).get(int(fold)) or 0.5
        metrics = evaluate_predictions(part.drop(columns=["fold"]), thresholds=cut,
                                       settings=EvalSettings(n_bootstrap=0))
        for task, entry in metrics["tasks"].items():
            rows.append({"fold": int(fold), "task": task, "n_images": entry["n_images"],
                         "auc": entry["auc"]["value"], "threshold": entry["threshold"],
                         "sensitivity": entry["sensitivity"]["value"],
                         "specificity": entry["specificity"]["value"]})
    return pd.DataFrame(rows)


def spread(per_fold):
    """Fold-to-fold spread per task: mean, standard deviation, min and max of each metric."""
    out = []
    for task, part in per_fold.groupby("task", sort=False):
        row = {"task": task, "folds": int(part["auc"].notna().sum())}
        for metric in ("auc", "sensitivity", "specificity"):
            values = pd.to_numeric(part[metric], errors="coerce").dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row[f"{metric}_min"] = float(values.min()) if len(values) else math.nan
            row[f"{metric}_max"] = float(values.max()) if len(values) else math.nan
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------

def run_cv(source: str | os.PathLike[str], out: str | os.PathLike[str], n_folds: int | None = None,
           settings: dict[str, Any] | None = None, *, resume: bool = False, progress: bool = True,
           echo: Callable[[str], object] = print, options: CVOptions | None = None) -> CVResult:
    """Cross-validate the training recipe in ``settings`` on the images of ``source``.

    Parameters
    ----------
    source : path
        A manifest or split CSV (its split column, if any, is ignored).
    out : path
        The CV folder (``runs/NAME``).
    n_folds : int, optional
        Number of folds (None: 5, or the recorded number when resuming).
    settings : dict
        ``skin-cnn train`` settings (field names of :class:`~skin_cnn.training.config.TrainConfig`).
    resume : bool
        Keep the folds already finished and resume an interrupted one, with the recorded settings
        and folds: a setting, fold count or grouping given here that differs from the recorded
        one, or a ``source`` whose images, labels or folds differ from those recorded in
        ``folds.csv``, stops it with a ``ValueError`` naming the difference.
    progress : bool
        Progress bars.
    echo : callable
        Where the one-line messages go.
    options : CVOptions, optional
        The grouping of the folds and the bootstrap of the pooled evaluation.
    """
    options = options or CVOptions()
    with run_folder.run_lock(out):  # a second cv into the same -o stops here with one line
        return _run_cv(source, out, n_folds, settings, resume=resume, progress=progress, echo=echo, options=options)


def _run_cv(source, out, n_folds, settings, *, resume, progress, echo, options):
    """:func:`run_cv` once its folder is held: the steps of a cross-validation, in order."""
    plan = plan_folds(source, out, n_folds, settings, resume=resume, progress=progress, echo=echo,
                      group_near_duplicates=options.group_near_duplicates)
    shared = None
    if plan.base.use_feature_cache():
        shared = shared_features(plan.base, plan.frame, plan.out, progress=progress, echo=echo,
                                 precision=plan.precision)
    fold_dirs, fold_frames = train_folds(plan, shared, progress=progress, echo=echo)
    oof = out_of_fold_predictions(fold_dirs, fold_frames, shared, plan.base, plan.precision)
    atomic.write_csv(plan.out / "oof_predictions.csv", oof)
    per_fold = fold_metrics(oof, fold_thresholds(fold_dirs, fixed_threshold(plan.base)))
    summary = spread(per_fold)
    atomic.write_csv(plan.out / "cv_folds.csv", per_fold)
    atomic.write_csv(plan.out / "cv_summary.csv", summary)
    eval_dir = evaluate_out_of_fold(plan, oof, fold_dirs, options.n_bootstrap)
    ensemble = write_ensemble(plan, oof, fold_dirs, shared, echo)
    text = summary_text(plan.out, plan.n_folds, per_fold, summary, oof)
    atomic.write_text(plan.out / "cv_summary.md", text)
    echo(text)
    return CVResult(plan.out, plan.n_folds, fold_dirs, plan.out / "oof_predictions.csv", eval_dir, summary, ensemble)


def plan_folds(source, out, n_folds, settings, *, resume, progress, echo, group_near_duplicates):
    """Read the images, settle the recipe (a resumed cross-validation keeps its recorded one) and
    assign the folds; ``folds.csv`` and ``cv.json`` record them."""
    out = Path(out)
    if (out / FOLDS_FILE).is_file() and not resume:
        raise FileExistsError(f"{out}: already holds a cross-validation; continue it with --resume or choose "
                              "another -o folder")
    out.mkdir(parents=True, exist_ok=True)
    frame = read_source(source)
    settings = dict(settings or {})
    precision = None
    resumed = (out / "cv.json").is_file() and resume
    if resumed:
        saved = json.loads((out / "cv.json").read_text(encoding="utf-8"))
        check_resumed_settings(out / "cv.json", saved, settings, n_folds, group_near_duplicates)
        settings, n_folds = saved["settings"], int(saved["folds"])
        group_near_duplicates = saved.get("group_near_duplicates", True)
        precision = Precision.from_record(saved.get("precision"), source=f"{out / 'cv.json'}: precision")
    n_folds = 5 if n_folds is None else int(n_folds)
    group_near_duplicates = True if group_near_duplicates is None else bool(group_near_duplicates)
    base = resolve_config(dict(settings, split=str(source), out=str(out / "fold1")), source="skin-cnn cv")
    check_not_cropped_twice(frame, base.crop, source)
    frame, note = fitting_crop_boxes(frame, base.preprocessing(), str(source))  # the folds' splits keep these
    if note:
        echo(note)
    precision = precision or resolve_precision(base.precision)
    echo(precision.describe())
    groups = group_labels(frame, progress=progress, group_near_duplicates=group_near_duplicates)
    frame = frame.assign(split_group=groups)  # the bootstrap of the pooled evaluation resamples these
    folds = assign_folds(frame["diagnosis"], groups, n_folds, seed=base.seed, source=source)
    table = frame[["image_path", "patient_id", "diagnosis"]].assign(group=groups, fold=folds + 1)
    if resumed and (out / FOLDS_FILE).is_file():
        check_same_folds(source, out / FOLDS_FILE, table)
    atomic.write_csv(out / FOLDS_FILE, table)
    atomic.write_json(out / "cv.json", {"folds": int(n_folds), "settings": settings, "source": os.fspath(source),
                                        "group_near_duplicates": bool(group_near_duplicates),
                                        "precision": precision.to_dict()})
    return FoldPlan(out, os.fspath(source), int(n_folds), settings, base, precision, frame, groups, folds)


def check_resumed_settings(path, saved, settings, n_folds, group_near_duplicates):
    """Refuse to resume when what was asked for differs from what ``cv.json`` recorded.

    A resumed cross-validation continues with its recorded recipe, folds and grouping; a
    different value given now would otherwise be dropped without a word (or, were it used,
    mix two recipes in one pooled result). Settings not given are not compared.
    """
    recorded = resolve_config(saved["settings"], source=f"{path}: settings")
    asked = resolve_config(saved["settings"], settings, source="the settings given")
    differ = [f"{name} {getattr(asked, name)!r} (recorded {getattr(recorded, name)!r})" for name in settings
              if getattr(asked, name) != getattr(recorded, name)]
    if n_folds is not None and int(n_folds) != int(saved["folds"]):
        differ.append(f"folds {int(n_folds)} (recorded {int(saved['folds'])})")
    recorded_grouping = bool(saved.get("group_near_duplicates", True))
    if group_near_duplicates is not None and bool(group_near_duplicates) != recorded_grouping:
        differ.append(f"group_near_duplicates {bool(group_near_duplicates)} (recorded {recorded_grouping})")
    if differ:
        raise ValueError(f"{path}: --resume continues this cross-validation with its recorded settings, and "
                         f"these differ from them: {'; '.join(differ)}; drop them, or choose another -o folder "
                         "for a new cross-validation")


def moved_folder(removed, added):
    """``(old_root, new_root)`` when the photos ``removed`` are all of ``added`` under another folder
    (the same relative paths below each set's common folder), else None.

    >>> moved_folder(["/a/data/x/1.jpg", "/a/data/y/2.jpg"], ["/b/copy/x/1.jpg", "/b/copy/y/2.jpg"])
    ('/a/data', '/b/copy')
    """
    if not removed or len(removed) != len(added):
        return None
    roots = [os.path.commonpath([os.path.dirname(p) for p in paths]) for paths in (removed, added)]
    relative = [sorted(os.path.relpath(p, root) for p in paths) for paths, root in zip((removed, added), roots)]
    return tuple(roots) if relative[0] == relative[1] else None


def check_same_folds(source, path, table):
    """Refuse to resume on images, labels or folds other than those ``folds.csv`` recorded: the
    finished folds' models were trained on the recorded ones, so a photo moved between folds
    could be scored by a model that trained on it."""
    recorded = pd.read_csv(path, dtype={"image_path": str, "diagnosis": str}, keep_default_na=False)
    old = dict(zip(recorded["image_path"], zip(recorded["diagnosis"], recorded["fold"].astype(int))))
    new = dict(zip(table["image_path"].astype(str), zip(table["diagnosis"].astype(str), table["fold"].astype(int))))
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    moved_from = moved_folder(removed, added) if len(removed) == len(old) else None  # every photo elsewhere
    if moved_from:
        raise ValueError(f"{source}: its photos are under {moved_from[1]}, and the cross-validation in {path.parent} "
                         f"started with them under {moved_from[0]}; --resume needs them where they were (the fold "
                         "folders name them by path): move them back, or choose another -o folder for a new "
                         "cross-validation")
    common = set(new) & set(old)
    relabelled = sorted(p for p in common if new[p][0] != old[p][0])
    moved = sorted(p for p in common if new[p][0] == old[p][0] and new[p][1] != old[p][1])
    parts = [f"{len(names)} {what}, e.g. {names[0]}" for names, what in (
        (added, "image(s) added"), (removed, "image(s) missing"), (relabelled, "image(s) with another diagnosis"),
        (moved, "image(s) in another fold")) if names]
    if parts:
        raise ValueError(f"{source}: differs from the images the cross-validation in {path.parent} started with "
                         f"({'; '.join(parts)}); --resume needs the same images and labels, or choose another -o "
                         "folder for a new cross-validation")


def train_folds(plan, shared, *, progress, echo):
    """Train (or resume) the run folder of every fold; returns the fold folders and split frames."""
    fold_dirs, fold_frames = [], []
    for k in range(plan.n_folds):
        fold_dir = plan.out / f"fold{k + 1}"
        split_frame = fold_split(plan.frame, plan.groups, plan.folds, k, plan.n_folds, seed=plan.base.seed)
        split_path = write_split(split_frame, plan.out / f"fold{k + 1}_split.csv")
        fold_dirs.append(fold_dir)
        fold_frames.append(split_frame.assign(image_path=split_frame["image_path"].astype(str)))
        if run_folder.is_finished(fold_dir):
            echo(f"fold {k + 1}/{plan.n_folds}: finished earlier")
            continue
        counts = split_frame["split"].value_counts()
        echo(f"fold {k + 1}/{plan.n_folds}: training on {int(counts.get('train', 0))} images, "
             f"validating on {int(counts.get('val', 0))}, holding out {int(counts.get('test', 0))}")
        if RunPaths(fold_dir).config.is_file():
            config, again = load_resume_config(fold_dir), True
        else:
            config, again = resolve_config(dict(plan.settings, split=str(split_path), out=str(fold_dir)),
                                           source="skin-cnn cv"), False
        train(config, resume=again, progress=progress, echo=echo, shared_features=shared, precision=plan.precision)
    return fold_dirs, fold_frames


def evaluate_out_of_fold(plan, oof, fold_dirs, n_bootstrap):
    """The pooled evaluation of every out-of-fold prediction at its fold's threshold (``eval_oof/``)."""
    eval_dir = plan.out / "eval_oof"
    scored, thresholds, method = recipe_thresholds(plan.base, oof, fold_dirs)
    inputs = ReportInputs(source=f"out-of-fold predictions of {plan.n_folds}-fold cross-validation ({plan.out})",
                          threshold_fit=fold_threshold_fitting(plan.base, fold_dirs))
    write_evaluation(scored, eval_dir, thresholds=thresholds, threshold_method=method,
                     settings=EvalSettings(n_bootstrap=n_bootstrap, seed=plan.base.seed), inputs=inputs)
    return eval_dir


def write_ensemble(plan, oof, fold_dirs, shared, echo):
    """``ensemble.keras`` (the fold models' mean, its threshold fitted as the recipe says) and the
    ``config.json`` that lets ``predict``, ``serve`` and ``export`` take it like any model."""
    path = plan.out / "ensemble.keras"
    save_model_atomic(build_ensemble(fold_dirs), path)
    nested = nested_scores(plan.base, plan.frame, plan.folds, shared, fold_dirs, plan.out, echo)
    store_ensemble_thresholds(plan.base, oof, path, nested)
    document = json.loads(RunPaths(fold_dirs[0]).config.read_text(encoding="utf-8"))
    atomic.write_json(plan.out / "config.json", {"preprocessing": document["preprocessing"],
                                                 "ensemble_of": [d.name for d in fold_dirs],
                                                 "train": document["train"]})
    return path


def summary_text(out, n_folds, per_fold, summary, oof):
    """``cv_summary.md``: per-fold AUCs, their spread, and where the pooled evaluation is."""
    def fmt(v):
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    lines = [f"# {n_folds}-fold patient-grouped cross-validation ({Path(out).name})", "",
             f"{oof['image_path'].nunique()} images, each predicted once by the model that did not train on it.",
             "", "| task | " + " | ".join(f"fold {k}" for k in range(1, n_folds + 1)) + " | mean ± sd |",
             "|---|" + "---|" * (n_folds + 1)]
    for task in summary["task"]:
        part = per_fold[per_fold["task"] == task].set_index("fold")
        cells = [fmt(part["auc"].get(k)) + f" (n={int(part['n_images'].get(k, 0))})" for k in range(1, n_folds + 1)]
        row = summary[summary["task"] == task].iloc[0]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {fmt(row['auc_mean'])} ± {fmt(row['auc_sd'])} |")
    lines += ["", "Sensitivity and specificity in `cv_folds.csv` are at each fold model's own threshold "
              "(`threshold` column: the recipe's fixed threshold unless it fits one on the fold's training data); "
              "the pooled evaluation in `eval_oof/` scores every image at the same threshold as its fold.",
              "", "AUC per fold at threshold-free ranking; the pooled estimate with intervals over all images "
              "(patient-level bootstrap) is in `eval_oof/report.html`. The fold models' mean is "
              "`ensemble.keras`.", ""]
    return "\n".join(lines)
