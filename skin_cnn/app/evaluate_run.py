"""Evaluate a training run's split with the run's own model, and count looks at its test split.

:mod:`skin_cnn.evaluation` turns predictions into metrics and reports and never loads a model;
this module is the step before it for a run folder: it predicts a split of the run's
``split.csv`` with ``best.keras`` (through :mod:`skin_cnn.inference.predictor`), finds the validation
predictions a fitted threshold is chosen on, draws the run's STARD flow, and records in the run
folder how many times its test split has been evaluated (``test_evaluations.json``), a count
every report shows: a test split evaluated once is a pre-specified test, one evaluated many times
may have been tuned against.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from skin_cnn.core.run_paths import RunPaths
from skin_cnn.core.specs import EvalSettings


# ---------------------------------------------------------------------------------------------
# the test-evaluation counter


def test_evaluation_count(run_dir):
    """How many times the test split of ``run_dir`` has been evaluated (0 without a record)."""
    path = RunPaths(run_dir).test_evaluations
    if not path.is_file():
        return 0
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["count"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: unreadable test-evaluation record; it must hold a 'count'") from None


def record_test_evaluation(run_dir, out, how=""):
    """Add one evaluation of the test split to ``run_dir/test_evaluations.json``.

    Returns
    -------
    int
        The count including this evaluation.
    """
    from skin_cnn.core.io import write_json

    path = RunPaths(run_dir).test_evaluations
    record = {"count": 0, "evaluations": []}
    if path.is_file():
        record = json.loads(path.read_text(encoding="utf-8"))
        record["count"] = test_evaluation_count(run_dir)
    record["count"] += 1
    record.setdefault("evaluations", []).append(
        {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "out": str(out), "how": how}
    )
    write_json(path, record)
    return record["count"]


def run_folder_of(predictions_csv):
    """The run folder holding a predictions CSV (its folder or the one above, e.g.
    ``RUN/eval_test/predictions_test.csv``), or None."""
    for folder in list(Path(predictions_csv).resolve().parents)[:2]:
        if RunPaths(folder).is_run():
            return folder
    return None


def _learnt_from_synthetic(model_file):
    """The ``synthetic`` entry of a ``.keras`` file's :class:`~skin_cnn.models.ModelInfo`, read
    without loading its weights (as ``Predictor.synthetic`` reads it)."""
    from skin_cnn.models.info import read_file_info

    return bool((read_file_info(model_file) or {}).get("synthetic"))


def run_model_synthetic(run_dir):
    """Whether the model of ``run_dir`` (``best.keras``) says it learnt from synthetic images;
    None when the folder holds no model to ask. Evaluating a predictions CSV of a run folder
    loads no model, yet its report must carry the same warning as one that does."""
    path = RunPaths(run_dir).best_model
    return _learnt_from_synthetic(path) if path.is_file() else None


def cv_folder_of(predictions_csv):
    """The ``skin-cnn cv`` folder a predictions CSV sits in (``cv.json`` beside it, as beside
    ``oof_predictions.csv``), or None."""
    folder = Path(predictions_csv).resolve().parent
    return folder if (folder / "cv.json").is_file() else None


def cv_model_synthetic(cv_dir):
    """Whether any model of a ``skin-cnn cv`` folder (``ensemble.keras``, ``fold*/best.keras``)
    says it learnt from synthetic images; None when none is written yet. Out-of-fold predictions
    are the fold models' answers, so one synthetic-trained fold model is enough for the warning."""
    cv_dir = Path(cv_dir)
    models = [p for p in (cv_dir / "ensemble.keras", *sorted(cv_dir.glob("fold*/best.keras"))) if p.is_file()]
    return any(_learnt_from_synthetic(p) for p in models) if models else None


# ---------------------------------------------------------------------------------------------
# prediction and flow


def run_record(run_dir, split_frame):
    """The flow record of a run up to and including training.

    The run's own ``split.flow.json`` when training wrote one; else the record beside the split
    CSV the run was trained on (``config.json`` ``split``), provided it describes that very file
    (its SHA-256 is the ``split_sha256`` of the config); else a record started from the run's
    ``split.csv``. A ``training`` step is added from ``skipped_images.csv`` when the record has
    none, so every step of manifest → split → cleanse → crop → train is in the chain.
    """
    from skin_cnn.evaluation import flow as flows
    from skin_cnn.data.skipped import read_skipped

    paths = RunPaths(run_dir)
    config = _config(run_dir)
    record = None
    if paths.flow.is_file():
        record = flows.read_record(paths.split)
    if record is None and config.get("split"):
        original = Path(config["split"])
        candidate = flows.read_record(original) if original.is_file() else None
        described = (candidate or {}).get("describes", {}).get("sha256")
        expected = config.get("split_sha256")
        if candidate is not None and (not expected or not described or described == expected):
            record = candidate
    if record is None:
        record = flows.start_record(paths.split, split_frame)
    if not any(step.get("name") == "training" for step in record["steps"]):
        skipped = read_skipped(paths.skipped)
        record = dict(record, steps=[*record["steps"], flows.training_step(split_frame, skipped)])
    return record


def run_flow(run_dir, split, split_frame, predictions, skipped):
    """The flow chain of a run evaluation: the run's record (:func:`run_record`) for ``split``,
    then the images that received an index test result, those that could not be read being
    excluded with their reason."""
    from skin_cnn.evaluation import flow as flows
    from skin_cnn.data.skipped import read_skipped

    record = run_record(run_dir, split_frame)
    chain = flows.chain(record, split)
    earlier = [s["image_path"] for s in read_skipped(RunPaths(run_dir).skipped)
               if s.get("split") == split]
    return flows.append_step(chain, flows.evaluation_step(predictions, skipped, earlier))


def _flow_of(run_dir, split, frame, preds, skipped, given):
    """The chain drawn for an evaluation: the run's own, or ``given`` ending in the evaluated
    images."""
    from skin_cnn.evaluation import flow as flows

    if given is None:
        return run_flow(run_dir, split, frame, preds, skipped)
    return flows.append_step(flows.normalise_flow(given, split), flows.evaluation_step(preds, skipped))


def split_change(run_dir):
    """How the run's ``split.csv`` differs from the split the model was trained on, or None.

    Training records the SHA-256 of the split file it read (``split_sha256``) and of the copy it
    wrote into the run (``run_split_sha256``); an edited copy (train and test swapped, rows
    added) would otherwise have ``evaluate`` report training photos as "test". When the split
    file trained on still exists unchanged, the images whose split differs are listed too.

    Runs trained before ``run_split_sha256`` was recorded are compared image by image with the
    split file trained on, when that still exists unchanged.

    Returns
    -------
    dict or None
        None when the copy is unchanged (or nothing recorded allows a comparison); else
        ``recorded``, ``found`` (SHA-256s), ``moved`` (``"image: train → test"`` lines, images
        added or removed included; empty when the original is not available) and ``text``
        (one sentence).
    """
    from skin_cnn.core.io import sha256_file

    run_dir = Path(run_dir)
    config = _config(run_dir)
    copy = RunPaths(run_dir).split
    if not copy.is_file():
        return None
    recorded = config.get("run_split_sha256")
    found = sha256_file(copy)
    if found == recorded:
        return None
    moved = _moved_images(run_dir, config)
    if not recorded:
        if not moved:
            return None
        recorded = config.get("split_sha256") or ""
    text = (f"{copy} is not the split this model was trained on (SHA-256 {found[:12]}… where "
            f"config.json records {recorded[:12]}…)")
    if moved:
        text += f"; {len(moved)} image(s) differ, e.g. {moved[0]}"
    return {"recorded": recorded, "found": found, "moved": moved, "text": text}


def _moved_images(run_dir, config):
    """``"image: old → new"`` for every image whose split differs between the split file trained
    on (when it still exists with the recorded SHA-256) and the run's ``split.csv``."""
    from skin_cnn.core.io import sha256_file
    from skin_cnn.data.split import load_split

    original = Path(config.get("split") or "")
    if not original.is_file() or sha256_file(original) != config.get("split_sha256"):
        return []
    try:
        before = load_split(original).set_index("image_path")["split"].to_dict()
        after = load_split(RunPaths(run_dir).split).set_index("image_path")["split"].to_dict()
    except (OSError, ValueError):
        return []
    return [f"{Path(image).name}: {before.get(image, 'absent')} → {after.get(image, 'absent')}"
            for image in sorted(set(before) | set(after)) if before.get(image) != after.get(image)]


def check_split(run_dir, allow_changed=False):
    """Refuse to evaluate a run whose ``split.csv`` changed since training (:func:`split_change`).

    Returns the change (to be written into the report) when ``allow_changed``, else None.

    Raises
    ------
    ValueError
        One line naming the file, with what differs and how to go on.
    """
    change = split_change(run_dir)
    if change is not None and not allow_changed:
        raise ValueError(f"{change['text']}; restore it, or pass --allow-changed-split to evaluate "
                         "anyway with the difference written into the report")
    return change


def check_model_tasks(predictor, model_name):
    """Refuse a model whose outputs are not skin-cnn tasks, before anything is predicted.

    The predictions table and every metric are per task (:data:`skin_cnn.core.tasks.TASKS`); a
    model with other outputs would otherwise fail after the whole split was predicted.
    """
    from skin_cnn.core.tasks import TASKS

    unknown = [t for t in predictor.tasks if t not in TASKS]
    if unknown or not predictor.tasks:
        raise ValueError(
            f"{model_name}: the model's outputs ({', '.join(predictor.tasks) or 'none'}) are not "
            f"skin-cnn tasks ({', '.join(TASKS)}); evaluate needs a model from `skin-cnn train`"
        )


def _config(run_dir):
    path = RunPaths(run_dir).config
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def run_split(run_dir, split):
    """The run's ``split.csv`` as a frame, refused in one line when missing or without ``split`` rows.

    Cheap (no model), so every argument can be checked against it before a model is loaded.
    """
    from skin_cnn.data.split import load_split

    split_csv = RunPaths(run_dir).split
    if not split_csv.is_file():
        raise FileNotFoundError(f"{run_dir}: no split.csv in the run folder; is it a `skin-cnn train` run?")
    frame = load_split(split_csv)
    if not (frame["split"] == split).any():
        raise ValueError(f"{split_csv}: no images in the {split} split")
    return frame


def predict_run_split(run_dir, split, predictor=None, progress=True, frame_predictions=None, precision="auto",
                      echo=None):
    """Predict one split of a run with the run's model and preprocessing.

    Uses :func:`skin_cnn.inference.predictor.load_predictor` (the run's ``best.keras`` and its
    ``config.json`` preprocessing) and :func:`skin_cnn.inference.predictor.predict_frame` on the rows of the
    run's ``split.csv`` in ``split``; ``frame_predictions``, a function with the signature of
    ``predict_frame(predictor, frame, progress=...)``, replaces it (the feature cache's
    ``cached_frame_predictions`` for a frozen-trunk run).

    Returns
    -------
    predictions : pandas.DataFrame
        Predictions table; unreadable images left out.
    skipped : list of dict
        The images that could not be read.
    split_frame : pandas.DataFrame
        The whole split table.
    predictor : skin_cnn.inference.predictor.Predictor
        For reuse on another split.

    ``precision`` (:mod:`skin_cnn.models.precision_policy`) applies when the model is loaded here;
    ``echo`` then receives the line saying it, and the line saying which crop boxes of the split
    were made by another crop than the model's and are recomputed
    (:func:`~skin_cnn.data.crop.fitting_crop_boxes`).
    """
    from skin_cnn.inference.predictor import load_predictor, predict_frame
    from skin_cnn.core.predictions import predictions_frame

    from skin_cnn.data.crop import fitting_crop_boxes

    run_dir = Path(run_dir)
    frame = run_split(run_dir, split)
    if predictor is None:
        predictor = load_predictor(run_dir, precision=precision)
        if echo is not None:
            echo(predictor.precision.describe())
    check_model_tasks(predictor, RunPaths(run_dir).best_model)
    frame, note = fitting_crop_boxes(frame, predictor.preprocessing, str(RunPaths(run_dir).split))
    if note and echo is not None:
        echo(note)
    part = frame[frame["split"] == split].reset_index(drop=True)
    result = (frame_predictions or predict_frame)(predictor, part, progress=progress)
    kept, probs = result.kept(part)
    preds = predictions_frame(kept.reset_index(drop=True), probs, tasks=list(probs))
    return preds, result.skipped, frame, predictor


def _validation(run_dir, predictor, progress, out, frame_predictions=None):
    """Validation predictions for a fitted threshold when none were given: the run folder's,
    else a fresh prediction of the val split. Returns ``(frame, source)``."""
    from skin_cnn.core.io import write_csv
    from skin_cnn.core.predictions import read_predictions

    for path in RunPaths(run_dir).validation_candidates:
        if path.is_file():
            return read_predictions(path), str(path)
    validation, _, _, _ = predict_run_split(run_dir, "val", predictor, progress, frame_predictions)
    write_csv(RunPaths(run_dir).predictions("val", out), validation)
    return validation, f"{run_dir} val split"


# ---------------------------------------------------------------------------------------------
# the evaluation


@dataclass(frozen=True)
class RunEvaluationOptions:
    """What an evaluation of a run folder adds to its metrics, and how it gets its predictions.

    Attributes
    ----------
    val_predictions : str or Path, optional
        Validation predictions to fit a threshold rule on (``youden``, ``sens:0.90``); default:
        the run folder's (``val_predictions.csv``, written by training), else the validation
        split is predicted. They must share no image, patient or split group with the evaluated
        split.
    by : sequence of str
        Columns to repeat the metrics for, per subgroup (e.g. ``source``).
    fairness : sequence of str
        Columns to give a fairness section (e.g. ``fitzpatrick_scale``).
    flow : dict, optional
        A flow record or chain (:func:`skin_cnn.evaluation.flow.load_flow`) to draw instead of
        the run's own (:func:`run_flow`); the evaluated images are added as its last step.
    n_failures : int
        Most confident false positives and negatives per task in the failure gallery, each shown
        with its Grad-CAM (computed here: the evaluation layer never loads a model).
    shortcut_audit : int
        Grad-CAM of this many seeded photos of the split (seed: the settings' ``seed``), with the
        share of its mass on the hue box, the border band and known watermarks
        (:mod:`skin_cnn.evaluation.shortcut`); 0: none.
    allow_changed_split : bool
        Evaluate even when the run's ``split.csv`` is not the split trained on
        (:func:`check_split`); the difference is then written into the report. Without it such
        a run is refused before anything is predicted.
    leakage_audit : bool
        Compare every evaluated image with every training image of the run by the re-crop-aware
        similarity of the model's trunk features, the best candidates checked pixel by pixel
        (:func:`audit_leakage`), and list the suspected duplicates in the report,
        ``metrics.json`` (``leakage_audit``) and the flow.
        Not run for the train split itself.
    leakage_threshold : float, optional
        Similarity at or above which a pair is suspected
        (default :data:`skin_cnn.evaluation.duplicates.DEFAULT_THRESHOLD`).
    precision : str or Precision
        What the trunk computes in when the model is loaded here (:mod:`skin_cnn.models.precision_policy`).
    predictor : skin_cnn.inference.predictor.Predictor, optional
        An already loaded model (e.g. at the end of training).
    frame_predictions : callable, optional
        Predicts the split's photos instead of
        :func:`skin_cnn.inference.predictor.predict_frame` (same signature): ``skin-cnn
        evaluate`` and ``train --evaluate-test`` pass the feature cache's, so a frozen trunk's
        features of photos already seen are not computed again.
    """

    val_predictions: str | os.PathLike[str] | None = None
    by: Sequence[str] = ()
    fairness: Sequence[str] = ()
    flow: dict | None = None
    n_failures: int = 4
    shortcut_audit: int = 0
    allow_changed_split: bool = False
    leakage_audit: bool = True
    leakage_threshold: float | None = None
    precision: Any = "auto"
    predictor: Any = None
    frame_predictions: Callable[..., Any] | None = None


@dataclass
class EvaluatedSplit:
    """One split of a run once predicted: what the report is built from."""

    run_dir: Path
    split: str
    frame: Any
    predictions: Any
    skipped: list
    predictor: Any


def evaluate_run(run_dir: str | os.PathLike[str], split: str = "test", out: str | os.PathLike[str] | None = None,
                 threshold: Any = "stored", *, settings: EvalSettings = EvalSettings(),
                 options: RunEvaluationOptions | None = None, progress: bool = True,
                 echo: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Predict a run's split with its best model, write ``predictions_<split>.csv`` and evaluate.

    Evaluating the test split adds one to the run's ``test_evaluations.json``; the count is in
    ``metrics.json`` (``test_evaluations``) and in the report, whatever the split.

    Parameters
    ----------
    run_dir : str or Path
        A ``skin-cnn train`` run folder (``best.keras``, ``config.json``, ``split.csv``).
    split : {"test", "val", "train"}
    out : str or Path, optional
        Default ``<run_dir>/eval_<split>``.
    threshold : str or float
        ``"stored"`` (default): the thresholds the run's model carries (:func:`stored_thresholds`:
        fitted at training with ``train --threshold``, else 0.5). A number: fixed. Or chosen on
        validation predictions now (``youden``, ``sens:0.90``; see
        :attr:`RunEvaluationOptions.val_predictions`). Fitted thresholds are also stored in the
        run's model file (:func:`skin_cnn.inference.predictor.store_chosen_thresholds`) for
        ``predict`` and ``serve``.
    settings : EvalSettings
        The intervals and the bootstrap; its ``seed`` also picks the shortcut audit's photos.
    options : RunEvaluationOptions, optional
        Subgroups, fairness, audits, the flow and how the split is predicted.
    progress : bool
        Progress bars.
    echo : callable, optional
        Receives the one line saying the precision of a model loaded here.

    Returns
    -------
    dict
        ``metrics.json`` content.
    """
    from skin_cnn.core.io import write_csv
    from skin_cnn.reporting.report import write_evaluation
    from skin_cnn.evaluation.threshold import parse_threshold

    paths = RunPaths(run_dir)
    options = options or RunEvaluationOptions()
    out = Path(out) if out is not None else paths.eval_dir(split)
    rule = parse_threshold(threshold)
    change = check_arguments(paths.root, split, rule, options)
    given = _given_validation(rule, options)
    preds, skipped, frame, predictor = predict_run_split(paths.root, split, options.predictor, progress,
                                                         options.frame_predictions, options.precision, echo)
    evaluated = EvaluatedSplit(paths.root, split, frame, preds, skipped, predictor)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(paths.predictions(split, out), preds)
    validation, source = given if given is not None else (None, "")
    if given is None and rule.needs_validation:
        validation, source = _validation(paths.root, predictor, progress, out, options.frame_predictions)
    thresholds, method = chosen_thresholds(evaluated, rule, validation, source)
    fit = threshold_fitting(rule, validation, source, predictor, list(thresholds), split, paths.root)
    inputs = report_inputs(evaluated, thresholds, options, settings, change, fit, progress)
    metrics = write_evaluation(preds, out, thresholds, method, settings=settings, inputs=inputs, progress=progress)
    if split == "test":
        record_test_evaluation(paths.root, out, method)
    if rule.needs_validation:  # predict and serve then answer at the thresholds reported here
        from skin_cnn.inference.predictor import store_chosen_thresholds

        store_chosen_thresholds(paths.root, thresholds, rule, method)
    return metrics


def check_arguments(run_dir, split, rule, options):
    """Refuse, before the model runs, what cannot be evaluated: a threshold fitted on the split it
    scores, a changed split (unless allowed; the change is returned for the report), a misspelt
    ``--by`` or ``--fairness`` column."""
    from skin_cnn.core.predictions import check_columns, predicted_columns

    if rule.needs_validation and split == "val":
        raise ValueError(
            "a fitted threshold cannot be chosen on the split it is evaluated on; "
            "evaluate the test split, or use a fixed --threshold"
        )
    change = check_split(run_dir, options.allow_changed_split)
    check_columns(predicted_columns(run_split(run_dir, split).columns),
                  {"--by": options.by, "--fairness": options.fairness},
                  f"the predictions of {RunPaths(run_dir).split}")
    return change


def _given_validation(rule, options):
    """``(validation predictions, their source)`` handed over for a fitted rule, else None."""
    from skin_cnn.core.predictions import read_predictions

    if not rule.needs_validation or options.val_predictions is None:
        return None
    return read_predictions(options.val_predictions), str(options.val_predictions)


def chosen_thresholds(evaluated, rule, validation, source):
    """``(thresholds, method)`` of the evaluation: the model's stored ones, a fixed number, or the
    rule fitted on the validation predictions (never on the evaluated split)."""
    from skin_cnn.evaluation.threshold import STORED, resolve_thresholds

    tasks = list(dict.fromkeys(evaluated.predictions["task"]))
    if rule.method == STORED:
        return stored_thresholds(evaluated.predictor, tasks, evaluated.split)
    return resolve_thresholds(rule, tasks, validation, source, evaluated=evaluated.predictions,
                              evaluated_name=f"the {evaluated.split} split of {evaluated.run_dir}")


def report_inputs(evaluated, thresholds, options, settings, change, threshold_fit, progress):
    """What the report shows besides the metrics: the flow, the run's context, the failure
    gallery's Grad-CAMs, the audits, how many times the test split was looked at, and whether
    the model learnt from synthetic images (``Predictor.synthetic``, read from the model file when
    it was loaded)."""
    from skin_cnn.reporting.checklist import run_context
    from skin_cnn.evaluation.failures import failure_cases
    from skin_cnn.reporting.report import ReportInputs

    run_dir, split, frame, preds = evaluated.run_dir, evaluated.split, evaluated.frame, evaluated.predictions
    # shown in the report as including this evaluation; recorded once the report exists
    count = test_evaluation_count(run_dir) + (split == "test")
    cams = failure_gradcams(evaluated.predictor, failure_cases(preds, thresholds, options.n_failures), frame)
    shortcut = None
    if options.shortcut_audit:
        from skin_cnn.evaluation.shortcut import audit_predictor

        shortcut = audit_predictor(evaluated.predictor, preds, frame, n_images=int(options.shortcut_audit),
                                   seed=settings.seed)
    leakage = None
    if options.leakage_audit and split != "train":
        leakage = audit_leakage(evaluated.predictor, frame, preds, split, options.leakage_threshold,
                                progress=progress)
    return ReportInputs(
        by=options.by,
        fairness=options.fairness,
        flow=_flow_of(run_dir, split, frame, preds, evaluated.skipped, options.flow),
        source=f"{run_dir} ({split} split)",
        test_evaluations={"count": count, "split": split},
        run=dict(run_context(run_dir), split_change=change),
        cams=cams,
        image_base=run_dir,
        n_failures=options.n_failures,
        shortcut=shortcut,
        threshold_fit=threshold_fit,
        leakage=leakage,
        synthetic_model=bool(getattr(evaluated.predictor, "synthetic", False)),
    )


def threshold_fitting(rule, validation, source, predictor, tasks, split, run_dir):
    """How the evaluated thresholds were fitted, so the bootstrap can redo the choice
    (:class:`skin_cnn.evaluation.threshold_choice.ThresholdFitting`), or None for fixed ones.

    A rule fitted now uses the validation predictions it was fitted on; thresholds the model
    stores (``--threshold stored`` on the test split) use their stored rule and the run's
    validation predictions file (``val_predictions.csv``: what training fitted them on).
    """
    from skin_cnn.evaluation.threshold import STORED
    from skin_cnn.evaluation.threshold_choice import ThresholdFitting, rule_of_label
    from skin_cnn.core.predictions import read_predictions

    if rule.needs_validation and validation is not None:
        return ThresholdFitting({t: rule for t in tasks}, validation, source=source)
    if rule.method != STORED or split != "test":
        return None
    carried = getattr(predictor, "thresholds", None) or {}
    rules = {t: rule_of_label(carried[t].rule) for t in tasks if t in carried and carried[t].chosen}
    rules = {t: r for t, r in rules.items() if r is not None}
    files = [path for path in RunPaths(run_dir).validation_candidates if path.is_file()]
    if not rules or not files:
        return None
    return ThresholdFitting(rules, read_predictions(files[0]), source=str(files[0]))


def stored_thresholds(predictor, tasks, split):
    """``--threshold stored``: the thresholds the run's model carries, as ``(thresholds, method)``.

    Thresholds fitted at training were fitted on the run's validation (or out-of-fold train + val)
    predictions, so they apply to the test split only; the train and val splits are then
    evaluated at 0.5, and the method says why.
    """
    carried = getattr(predictor, "thresholds", None) or {}
    chosen = {t: carried[t] for t in tasks if t in carried and carried[t].chosen}
    if not chosen:
        return {t: carried[t].value if t in carried else 0.5 for t in tasks}, "fixed"
    if split != "test":
        return ({t: 0.5 for t in tasks},
                f"fixed (the model's stored thresholds were fitted on predictions of this run's train and "
                f"validation images, so the {split} split is evaluated at 0.5)")
    methods = sorted({entry.method for entry in chosen.values()})
    return ({t: carried[t].value if t in carried else 0.5 for t in tasks},
            "stored in the model: " + "; ".join(methods))


def failure_gradcams(predictor, cases, split_frame=None):
    """Grad-CAM overlays of the failure cases, ``{(image_path, task): uint8 RGB}``.

    Each map explains the class the model reported, on the model's input (the crop box recorded
    in the split, else the one the predictor computes). An image that cannot be read, or a model
    Grad-CAM cannot explain, is left out: the gallery then shows the photo alone.
    """
    import numpy as np

    from skin_cnn.inference.gradcam import overlay

    from skin_cnn.data.preprocessing import box_from_row

    cams = {}
    boxes = {}
    for row in (split_frame.to_dict("records") if split_frame is not None else []):
        try:
            boxes[str(row["image_path"])] = box_from_row(row, predictor.preprocessing)
        except ValueError:
            continue
    for task, part in cases.groupby("task", sort=False):
        tensors, paths = [], []
        for path in dict.fromkeys(part["image_path"]):
            try:
                tensor, _ = predictor.preprocess(predictor.read(path), boxes.get(path))
            except Exception:  # noqa: BLE001 - a missing picture must not stop the evaluation
                continue
            tensors.append(tensor)
            paths.append(path)
        if not tensors:
            continue
        try:  # one forward and backward pass per task
            heatmaps, _ = predictor.explain(np.stack(tensors), (task,))
        except Exception:  # noqa: BLE001 - e.g. a model without a convolutional layer
            continue
        for path, tensor, heat in zip(paths, tensors, heatmaps[task]):
            cams[(path, task)] = np.asarray(overlay(tensor.astype(np.uint8), heat), dtype=np.uint8)
    return cams


# ---------------------------------------------------------------------------------------------
# the leakage audit's features


def pooled_trunk_model(model, layer_name=None, pooling="avg"):
    """A model from the image to the global pooling of a convolution's output.

    By default the last ``Conv2D`` layer (:func:`skin_cnn.inference.gradcam.last_conv_layer`:
    ``block5_conv3`` for the VGG-16 trunk), so the features are what the evaluated model itself
    sees of an image, whatever head sits on top; the leakage audit compares images by them.
    ``pooling``: ``avg`` (global average), ``max`` (global maximum) or ``gem`` (generalised
    mean with p = 3, between the two).
    """
    import keras

    from skin_cnn.inference.gradcam import last_conv_layer

    conv = model.get_layer(layer_name or last_conv_layer(model))
    maps = conv.output
    if pooling == "avg":
        pooled = keras.layers.GlobalAveragePooling2D(name=f"leakage_audit_{pooling}")(maps)
    elif pooling == "max":
        pooled = keras.layers.GlobalMaxPooling2D(name=f"leakage_audit_{pooling}")(maps)
    elif pooling == "gem":
        cubed = keras.layers.Lambda(lambda x: keras.ops.power(keras.ops.maximum(x, 0.0), 3.0))(maps)
        mean = keras.layers.GlobalAveragePooling2D()(cubed)
        pooled = keras.layers.Lambda(lambda x: keras.ops.power(x + 1e-12, 1.0 / 3.0), name="leakage_audit_gem")(mean)
    else:
        raise ValueError(f"pooling must be avg, max or gem, got {pooling!r}")
    return keras.Model(model.inputs[0], pooled, name=f"{model.name}_pooled_trunk")


def pooled_features(predictor, frame, feature_model=None, batch_size=32, progress=False):
    """Pooled trunk features of every readable image of ``frame``, read and cropped as the model reads them.

    Parameters
    ----------
    predictor : skin_cnn.inference.predictor.Predictor
        The evaluated model with its preprocessing; a frame's ``crop_*`` columns are used as the
        crop boxes when cropping is on.
    frame : pandas.DataFrame
        ``image_path`` (and optional crop columns).
    feature_model : keras.Model, optional
        Default :func:`pooled_trunk_model` of ``predictor.model``.

    Returns
    -------
    features : numpy.ndarray of shape (n_ok, d), float32
    ok : numpy.ndarray of bool, shape (len(frame),)
        Which rows were read (``features`` holds them in frame order).
    """
    import numpy as np

    model = feature_model if feature_model is not None else pooled_trunk_model(predictor.model)
    ok = np.zeros(len(frame), dtype=bool)
    parts = []
    for batch in _readable_batches(predictor, frame, ok, batch_size, progress):
        out = np.asarray(model(batch, training=False), dtype=np.float32)
        # a model with views in front of its trunk (MirrorViews) stacks them view-major along
        # the batch axis: one row per photo is the mean over its views
        parts.append(out.reshape(len(out) // len(batch), len(batch), -1).mean(axis=0))
    width = int(model.outputs[0].shape[-1])
    return (np.concatenate(parts) if parts else np.zeros((0, width), np.float32)), ok


def _readable_batches(predictor, frame, ok, batch_size, progress):
    """Batches (stacked arrays) of the rows of ``frame`` read and cropped as ``predictor`` reads
    them, in frame order; ``ok[k]`` is set for each row read. An unreadable photo is skipped, not
    fatal: the evaluation lists it among the unreadable files."""
    import numpy as np

    from skin_cnn.core.progress import progress_bar
    from skin_cnn.data.preprocessing import box_from_row

    rows = frame.to_dict("records")
    batch = []
    for k, row in enumerate(progress_bar(rows, desc="audit features", unit="img", disable=not progress, leave=False)):
        try:
            tensor, _ = predictor.preprocess(predictor.read(str(row["image_path"])),
                                             box_from_row(row, predictor.preprocessing))
        except (OSError, ValueError):  # ImageReadError is a ValueError
            continue
        batch.append(tensor)
        ok[k] = True
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def scalable_trunk_model(model, layer_name=None):
    """A model from an image of any size to a convolution's feature map, sharing ``model``'s layers.

    By default the last ``Conv2D`` layer (``block5_conv3`` for the VGG-16 trunk). The leakage
    audit runs it on each photo at the model's input size and shrunk
    (:func:`audit_descriptors`); a model whose layers fix the size (a spatial transformer's
    output, a reshape) cannot be cloned so, and then ``None`` is returned: the audit compares the
    photos at the input size only.
    """
    import keras

    from skin_cnn.inference.gradcam import last_conv_layer

    conv = model.get_layer(layer_name or last_conv_layer(model))
    fixed = keras.Model(model.inputs[0], conv.output)
    try:
        flexible = keras.models.clone_model(
            fixed, input_tensors=keras.Input((None, None, model.inputs[0].shape[-1])),
            clone_function=lambda layer: layer)  # the same layer objects: the same weights
    except (ValueError, TypeError, NotImplementedError):
        return None
    return flexible


def photo_views(maps, n_photos):
    """Each photo's own map from a trunk that may stack views along the batch axis
    (:class:`MirrorViews`: the photos, then their mirror images).

    The mirror image's map is left out rather than flipped back and averaged in: the audit's
    threshold was chosen on maps of the photo alone (docs/experiments/leakage-threshold.md), and
    the average of two maps is smoother, which raised unrelated photos' similarity: on the
    README split a frozen-linear run flagged 12 of 94 test images with the average, 4 (as that
    page counts) with the photo's own map.
    """
    views = len(maps) // n_photos
    if views not in (1, 2):
        raise ValueError(f"the trunk returned {views} views of each photo; the audit knows the photo and its mirror")
    return maps[:n_photos]


def _batch_descriptors(trunk, fixed_trunk, batch):
    """:class:`~skin_cnn.evaluation.recrop_match.Descriptors` of one batch of model inputs."""
    import keras
    import numpy as np

    from skin_cnn.evaluation import pixel_match, recrop_match

    images = np.asarray(batch)
    maps = {1.0: fixed_trunk(images, training=False)}
    if trunk is not None:
        height, width = images.shape[1:3]
        for fraction in recrop_match.CROP_FRACTIONS:
            size = (max(round(fraction * height), 32), max(round(fraction * width), 32))
            maps[fraction] = trunk(keras.ops.image.resize(images, size, antialias=True), training=False)
    described = recrop_match.describe({s: photo_views(np.asarray(m, np.float32), len(batch))
                                       for s, m in maps.items()})
    described.thumbs = pixel_match.thumbnails(images)
    return described


def audit_descriptors(predictor, frame, batch_size=16, progress=False):
    """Re-crop-aware descriptors of every readable image of ``frame``, read and cropped as the model reads them.

    Each photo goes through the evaluated model's trunk once at its input size and once shrunk to
    each of :data:`skin_cnn.evaluation.recrop_match.CROP_FRACTIONS` of it; the maps become
    whole-photo and window descriptors (:func:`skin_cnn.evaluation.recrop_match.describe`), and
    the input itself a grayscale thumbnail for the pixel check
    (:func:`skin_cnn.evaluation.pixel_match.thumbnails`, in ``thumbs``).

    Returns
    -------
    descriptors : skin_cnn.evaluation.recrop_match.Descriptors
        The readable rows, in frame order.
    ok : numpy.ndarray of bool, shape (len(frame),)
        Which rows were read.
    """
    import keras
    import numpy as np

    from skin_cnn.evaluation.recrop_match import Descriptors
    from skin_cnn.inference.gradcam import last_conv_layer

    conv = predictor.model.get_layer(last_conv_layer(predictor.model))
    fixed_trunk = keras.Model(predictor.model.inputs[0], conv.output)
    trunk = scalable_trunk_model(predictor.model)
    ok = np.zeros(len(frame), dtype=bool)
    parts = [_batch_descriptors(trunk, fixed_trunk, batch)
             for batch in _readable_batches(predictor, frame, ok, batch_size, progress)]
    return Descriptors.concatenate(parts, int(conv.output.shape[-1])), ok


def _thumbs(descriptors):
    """The descriptors' thumbnails; an empty stack when no image was read."""
    import numpy as np

    from skin_cnn.evaluation.pixel_match import THUMB_SIDE

    if descriptors.thumbs is None:
        return np.zeros((len(descriptors), THUMB_SIDE, THUMB_SIDE), np.float32)
    return descriptors.thumbs


def audit_leakage(predictor, split_frame, predictions, split="test", threshold=None, progress=False):
    """The leakage audit of an evaluated split against the run's training split.

    Every evaluated image (those with predictions) and every training image is described by the
    model's trunk at its input size and shrunk and by a grayscale thumbnail (:func:`audit_descriptors`).
    Every pair gets the re-crop-aware feature similarity
    (:func:`skin_cnn.evaluation.recrop_match.match_scores`); each evaluated image's best
    training candidates by it are checked pixel by pixel, a pair scoring the higher of the two
    (:func:`skin_cnn.evaluation.duplicates.verified_scores`: a crop, zoom or re-saved copy of a
    photo scores near 1 wherever it was cut); pairs at or above ``threshold`` are suspected
    duplicates (:func:`skin_cnn.evaluation.duplicates.pairs_at_threshold`).

    Returns
    -------
    dict or None
        ``{"audit": metrics.json entry, "pairs": DataFrame}``; None when the split frame has no
        training images to compare with.
    """
    from skin_cnn.evaluation import duplicates
    from skin_cnn.evaluation.recrop_match import match_scores

    threshold = duplicates.DEFAULT_THRESHOLD if threshold is None else float(threshold)
    predicted = set(predictions["image_path"].astype(str))
    evaluated = split_frame[(split_frame["split"] == split)
                            & split_frame["image_path"].astype(str).isin(predicted)].reset_index(drop=True)
    training = split_frame[split_frame["split"] == "train"].reset_index(drop=True)
    if training.empty or evaluated.empty:
        return None
    eval_desc, eval_ok = audit_descriptors(predictor, evaluated, progress=progress)
    train_desc, train_ok = audit_descriptors(predictor, training, progress=progress)
    features = match_scores(eval_desc, train_desc)
    scores, pixel = duplicates.verified_scores(features, _thumbs(eval_desc), _thumbs(train_desc))
    pairs = duplicates.pairs_at_threshold(evaluated[eval_ok], training[train_ok], scores, threshold,
                                          parts={"feature_similarity": features, "pixel_correlation": pixel})
    audit = duplicates.audit_summary(pairs, int(eval_ok.sum()), int(train_ok.sum()), threshold, split,
                                     skipped=int((~eval_ok).sum() + (~train_ok).sum()),
                                     pooling=duplicates.DEFAULT_POOLING)
    return {"audit": audit, "pairs": pairs}
