"""Patient-grouped k-fold cross-validation: every image gets exactly one out-of-fold prediction.

With a few hundred photos a single 80/10/10 split leaves test tasks of a few dozen images and
intervals 20–30 points wide. ``skin-cnn cv`` trains ``k`` models instead, each on the other folds,
and pools their predictions on the fold they never saw:

1. **Folds** — scikit-learn's ``StratifiedGroupKFold`` over patients joined with their
   near-duplicate photos (unless turned off, or the source is a split that already holds
   ``split_group``), stratified by disease (``folds.csv``: image → fold).
2. **Inside each fold's training part**, a grouped validation part (one of ``k - 1`` groups of
   the same kind) chooses the epoch and any fitted threshold; the held-out fold plays the test
   split and is never read by training.
3. **Features once** — with a frozen trunk (variant P) the trunk features of every image and of
   its K augmented views are extracted once into one shared cache and every fold trains its
   heads on its rows, so k folds cost little more than one ``skin-cnn train``.
4. **Out-of-fold predictions** (``oof_predictions.csv``: the predictions table plus ``fold``),
   per-fold metrics and their spread (``cv_folds.csv``, ``cv_summary.md``), and the pooled
   evaluation over all images (``eval_oof/``, patient-level bootstrap).
5. **One ensemble model** (``ensemble.keras``: the mean probability of the fold models, the
   frozen trunk shared) that ``predict``, ``serve`` and ``export`` take like any model.

Each fold is an ordinary run folder (``fold1/`` …); ``--resume`` finishes only what is missing.
This module holds the folds, the shared features, the out-of-fold predictions and the ensemble;
:func:`skin_cnn.app.cv_run.run_cv` composes them with the fold trainings and the evaluation.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from skin_cnn.core import io as atomic
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.models.precision_policy import apply_precision, resolve_precision
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.evaluation.threshold import parse_threshold
from skin_cnn.data.manifest import load_manifest
from skin_cnn.models import (build_model, model_info, read_file_info, split_at_frozen_boundary, store_thresholds,
                             with_model_info)
from skin_cnn.inference.predictor import predict_frame
from skin_cnn.core.predictions import predictions_frame
from skin_cnn.data.split import group_images, load_split
from skin_cnn.training.feature_cache import cached_features
from skin_cnn.training.callbacks import predict_batches
from skin_cnn.training.trainer import SharedFeatures, feature_settings, preparation_folder

FOLDS_FILE = "folds.csv"
#: Files ``run_cv`` writes at the top of its folder (commands check that none is an input).
CV_FILES = (FOLDS_FILE, "cv.json", "oof_predictions.csv", "cv_folds.csv", "cv_summary.csv", "cv_summary.md",
            "ensemble.keras", "config.json")


def group_labels(frame, progress=False, group_near_duplicates=True):
    """The unit every fold keeps whole: ``split_group`` when present, else patients joined with
    their near-duplicate photos (:func:`skin_cnn.data.split.group_images`; patients only when
    ``group_near_duplicates`` is False)."""
    if "split_group" in frame.columns and frame["split_group"].notna().all():
        return pd.factorize(frame["split_group"].astype(str))[0]
    labels, _ = group_images(frame, group_near_duplicates=bool(group_near_duplicates), progress=progress)
    return np.asarray(labels)


def assign_folds(diagnoses, groups, n_folds, seed=0, source=None):
    """Fold of every image: ``StratifiedGroupKFold`` (groups whole, diseases stratified).

    Refused, naming ``source``, when there are fewer patients (groups) than folds, or a diagnosis
    comes from fewer patients than folds: some fold would then hold none of it, and its model
    would be validated and tested without that disease.
    """
    where = f"{source}: " if source is not None else ""
    diagnoses = np.asarray(diagnoses)
    groups = np.asarray(groups)
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"{where}{n_folds} folds need at least {n_folds} patients (groups); "
                         f"got {len(np.unique(groups))}")
    counts = pd.DataFrame({"diagnosis": diagnoses, "group": groups}).groupby("diagnosis")["group"].nunique()
    short = counts[counts < n_folds]
    if len(short):
        listed = ", ".join(f"{name} {count}" for name, count in short.sort_index().items())
        raise ValueError(f"{where}{n_folds} folds need at least {n_folds} patients (groups) of each diagnosis so "
                         f"that every fold holds each disease; too few: {listed}. Use fewer --folds or add photos")
    folds = np.full(len(diagnoses), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=int(n_folds), shuffle=True, random_state=int(seed))
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(diagnoses)), diagnoses, groups)):
        folds[held] = k
    return folds


def fold_split(frame, groups, folds, k, n_folds, seed=0):
    """The split frame of fold ``k``: fold ``k`` is ``test``, a grouped part of the rest ``val``."""
    out = frame.copy()
    out["split"] = "train"
    out.loc[folds == k, "split"] = "test"
    rest = np.flatnonzero(folds != k)
    splitter = StratifiedGroupKFold(n_splits=max(2, int(n_folds) - 1), shuffle=True, random_state=int(seed) + k + 1)
    _, val = next(splitter.split(np.zeros(len(rest)), out["diagnosis"].to_numpy()[rest], np.asarray(groups)[rest]))
    out.iloc[rest[val], out.columns.get_loc("split")] = "val"
    return out


def read_source(path):
    """A manifest or split CSV as a frame (a split column is ignored: the folds replace it)."""
    header = pd.read_csv(path, nrows=0).columns
    frame = load_split(path) if "split" in header else load_manifest(path)
    return frame.drop(columns=["split"], errors="ignore").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
def shared_features(config, frame, out, *, progress, echo, precision=None):
    """Extract the trunk features of every image (and K views) once, for all folds.

    ``precision``: what the trunk computes in (default: ``config.precision`` resolved).
    """
    model = build_model(config.variant, input_shape=(config.image_size, config.image_size, 3),
                        weights=config.model_weights(), fine_tune_blocks=config.fine_tune_blocks, seed=config.seed,
                        head=config.head, pool_blocks=config.pooled_blocks(), mirror=config.mirror,
                        sqrt_features=config.sqrt_features,
                        second_scale=config.second_scale)
    apply_precision(model, resolve_precision(precision or config.precision))
    feature_model, _ = split_at_frozen_boundary(model)
    settings, views = feature_settings(config, feature_model)
    everything = frame.assign(split="train")
    echo(f"extracting features once for all folds: {len(frame)} images, 1 clean + {views} augmented views "
         "(photos already in the feature cache are reused)")
    with preparation_folder(out) as work:
        cache = cached_features(everything, {"train": 1 + views}, feature_model, settings, cache_dir=config.cache_dir,
                                work=work, progress=progress, echo=echo)
        if "train" in cache.files:  # the gathered array outlives the scratch folder
            cache.arrays["train"] = np.array(cache.arrays["train"])
    return SharedFeatures.from_cache(cache, everything)


def out_of_fold_predictions(fold_dirs, fold_frames, shared, config, precision=None):
    """Each fold model's predictions on its held-out fold, one table (``fold`` column added).

    ``precision``: what the trunk computes in when it runs (no shared features).
    """
    parts = []
    for k, (fold_dir, frame) in enumerate(zip(fold_dirs, fold_frames)):
        held = frame[frame["split"] == "test"]
        model = keras.models.load_model(RunPaths(fold_dir).best_model, compile=False)
        if shared is not None:
            labels, rows = shared.rows_of(held)
            held = held.loc[labels]
            _, head = split_at_frozen_boundary(model)
            probabilities = predict_batches(head, np.asarray(shared.features[0, rows]), batch_size=1024)
        else:
            result = predict_frame(model, held, config.preprocessing(), progress=False,
                                   precision=precision or config.precision)
            held, probabilities = result.kept(held)
        table = predictions_frame(held.reset_index(drop=True), probabilities)
        table["fold"] = k + 1
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def fold_thresholds(fold_dirs, default=0.5):
    """``{fold: {task: threshold}}``: what each fold model stores (fitted on its own training data), else
    ``default`` (the recipe's fixed threshold)."""
    out = {}
    for k, fold_dir in enumerate(fold_dirs):
        stored = (read_file_info(RunPaths(fold_dir).best_model) or {}).get("thresholds") or {}
        out[k + 1] = {task: float(stored[task]["value"]) if task in stored else float(default)
                      for task in TASK_NAMES}
    return out


def fixed_threshold(config):
    """The recipe's fixed threshold (0.5 unless ``--threshold`` gives a number)."""
    from skin_cnn.evaluation.threshold import DEFAULT_THRESHOLD

    rule = parse_threshold(str(config.threshold))
    return float(rule.value) if rule.method == "fixed" else DEFAULT_THRESHOLD


def store_ensemble_thresholds(config, oof, path, nested=None):
    """Fit the recipe's threshold rule for ``ensemble.keras`` and store it there.

    ``nested``: the nested out-of-fold ensemble scores
    (:func:`skin_cnn.training.ensemble_threshold.nested_ensemble_predictions`), averages of
    models like the ensemble's own; the threshold is fitted on them. Without them (heads trained
    by gradient descent) it is fitted on the pooled single-model out-of-fold predictions and
    stored marked as not validated for the ensemble. Either way each stored entry carries the
    sensitivity and specificity it gives on the scores it was fitted on.
    """
    from skin_cnn.training.ensemble_threshold import NESTED_FILE, ensemble_threshold_entries

    rule = parse_threshold(str(config.threshold))
    if not rule.needs_validation:
        return None
    if nested is not None:
        entries = ensemble_threshold_entries(rule, nested, f"nested out-of-fold ensemble scores ({NESTED_FILE})",
                                             validated=True)
    else:
        entries = ensemble_threshold_entries(rule, oof, "pooled single-model out-of-fold predictions "
                                             "(oof_predictions.csv)", validated=False)
    store_thresholds(path, entries)
    return {task: entry["value"] for task, entry in entries.items()}


def nested_scores(config, frame, folds, shared, fold_dirs, out, echo):
    """The nested out-of-fold ensemble scores (``oof_ensemble_predictions.csv``) of a linear-head
    recipe with a fitted threshold, else None (and why, echoed)."""
    from skin_cnn.training.ensemble_threshold import NESTED_FILE, nested_ensemble_predictions

    if not parse_threshold(str(config.threshold)).needs_validation:
        return None
    if config.head != "linear" or shared is None:
        echo("the ensemble's threshold is fitted on single-model out-of-fold predictions: nested ensemble scores "
             "need the linear head; it is stored as not validated for the ensemble")
        return None
    labels, rows = shared.rows_of(frame)  # in frame order, found by image identity
    readable = frame.index.isin(labels)
    features = np.asarray(shared.features[:, rows])
    try:
        table = nested_ensemble_predictions(frame[readable], folds[readable] + 1, features, fold_dirs, TASK_NAMES)
    except ValueError as exc:
        echo(f"no nested ensemble scores ({exc}); the ensemble's threshold is fitted on single-model out-of-fold "
             "predictions and stored as not validated for the ensemble")
        return None
    atomic.write_csv(Path(out) / NESTED_FILE, table)
    return table


def build_ensemble(fold_dirs):
    """One model whose outputs are the mean probabilities of the fold models.

    Fold models of variant P share their frozen trunk, which is then computed once; other
    variants are averaged as whole models.
    """
    models = [keras.models.load_model(RunPaths(d).best_model, compile=False) for d in fold_dirs]
    try:
        splits = [split_at_frozen_boundary(m) for m in models]
        trunk_weights = [np.concatenate([w.ravel() for w in f.get_weights()]) for f, _ in splits]
        shared = all(np.array_equal(trunk_weights[0], w) for w in trunk_weights[1:])
    except ValueError:
        shared = False
    def named(model, name, inputs):
        # a copy under a fold's own name (nested models need unique names); outputs by task
        outputs = keras.Model(model.inputs, model.outputs, name=name)(inputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return dict(zip(model.output_names, outputs))

    outputs = {}
    if shared:
        # the first fold model's own graph up to the features, so the trunk's layers stay top-level
        # layers of the ensemble (Grad-CAM finds block5_conv3); the heads are nested per fold
        image, features = models[0].inputs[0], splits[0][0].outputs[0]
        heads = [named(head, f"fold{k + 1}_head", features) for k, (_, head) in enumerate(splits)]
    else:
        image = keras.Input(shape=models[0].inputs[0].shape[1:], name="image")
        heads = [named(m, f"fold{k + 1}_model", image) for k, m in enumerate(models)]
    for task in TASK_NAMES:
        outputs[task] = keras.layers.Average(name=task)([h[task] for h in heads])
    ensemble = keras.Model(image, outputs, name=f"cv_ensemble_{len(models)}_folds")
    if any((model_info(m) or {}).get("synthetic") for m in models):  # nested fold models hide theirs
        ensemble = with_model_info(ensemble, synthetic=True)
    return ensemble
