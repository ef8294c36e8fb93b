"""The model card and the one-screen summary of a finished training run.

Written by :func:`skin_cnn.train` (``skin_cnn.app.train_run``) into the run folder; built from
the run's resolved settings and what the run reports (:class:`RunOutcome`), so a card never
lists a setting that did not take effect.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from skin_cnn.core.run_paths import SPLITS, RunPaths
from skin_cnn.core.tasks import DISEASES, TASK_NAMES


class RunOutcome(Protocol):
    """What a finished training reports (:class:`skin_cnn.training.trainer.RunResult` is one)."""

    run_dir: Path
    best_epoch: int
    epochs_run: int
    val_aucs: dict
    wall_s: float
    skipped: list
    feature_cache: str | None
    eval_dir: Path | None
    test_metrics: dict | None
    converged: bool


def data_counts(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int | None]]:
    """Images per split and disease, and patients per split (a table for the model card)."""
    table = pd.crosstab(frame["diagnosis"], frame["split"]).reindex(
        index=list(DISEASES), columns=list(SPLITS), fill_value=0
    )
    patients = {}
    for split in SPLITS:
        part = frame[frame["split"] == split]
        ids = part["patient_id"].astype(str)
        patients[split] = int(ids[ids != ""].nunique()) if (ids != "").any() else None
    return table, patients


def _test_size(task_entry: dict) -> str:
    """`` (n=7: 3/4, fewer than 10 per class)``: how many test images stand behind a number."""
    n, pos, neg = (task_entry.get(k) for k in ("n_images", "n_positive", "n_negative"))
    if n is None:
        return ""
    small = pos is not None and neg is not None and min(pos, neg) < 10
    return f" (n={n}: {pos}/{neg}{', fewer than 10 per class: not conclusive' if small else ''})"


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def features_text(config: Any) -> str:
    """What the heads read and what they are, in words."""
    from skin_cnn.evaluation.method import pooled_blocks_text

    blocks = pooled_blocks_text(config.pool_blocks, config.second_scale, config.image_size)
    mirror = ", square-rooted" if config.sqrt_features else ""
    mirror += ", each photo averaged with its mirror image" if config.mirror else ""
    head = ("one logistic regression per task" if config.head == "linear"
            else "the study's heads (Dense 64, Dense 32 per task, sigmoid)")
    return f"global average of {blocks}{mirror}; {head}"


def training_text(config: Any, epochs_run: int, best_epoch: int) -> str:
    """The model card's training line."""
    if config.head == "linear":
        return ("- Training: L2 logistic regression on standardised features of the train and validation images "
                "together, its strength chosen by patient-grouped inner 5-fold cross-validation (AUC); "
                f"`linear_fit.json`; seed {config.seed}.")
    return (f"- Training: {config.optimizer}, learning rate {config.learning_rate:g}, batch {config.batch_size}, "
            f"{epochs_run} of at most {config.epochs} epochs, best epoch {best_epoch} by validation mean AUC; "
            f"seed {config.seed}.")


def method_of(config: Any) -> list:
    """:func:`skin_cnn.evaluation.method.method_rows` of a run's settings, with the C its linear
    heads chose (``linear_fit.json``) or the Platt maps of its study heads (``calibration.json``)."""
    from skin_cnn.evaluation.method import method_rows

    paths = RunPaths(config.out)
    chosen, maps = None, None
    if config.head == "linear" and paths.linear_fit.is_file():
        chosen = {t: e["C"] for t, e in json.loads(paths.linear_fit.read_text(encoding="utf-8"))["tasks"].items()}
    if config.head != "linear" and paths.calibration.is_file():
        maps = json.loads(paths.calibration.read_text(encoding="utf-8"))["tasks"]
    return method_rows(config.to_dict(), feature_cache=config.use_feature_cache(),
                       preprocessing=config.preprocessing().to_dict(), chosen_c=chosen, platt_maps=maps)


# ----------------------------------------------------------------------------------------------
# the model card, one section at a time

INTENDED_USE = [
    "## Intended use",
    "",
    "A research tool for studying multi-task CNNs on ordinary clinical photos of look-alike",
    "multiple-lesion skin diseases (psoriasis vs eczema, acne vs rosacea, CTCL vs eczema).",
    "**It is not a medical device** and must not be used to diagnose or treat anyone. Each output",
    "is the probability of one task's positive class and is meaningful only for images known to",
    "show one of that task's two diseases.",
    "",
]

LIMITATIONS = [
    "## Limitations",
    "",
    "- Small data: confidence intervals are wide; a few patients can move the AUC a lot.",
    "- Images come from the sources listed in the data's documentation; photos from other clinics,",
    "  cameras or populations may look different (distribution shift).",
    "- Only the five diseases are modelled: any other condition still receives an answer.",
    "- **Skin types.** Performance on darker skin (Fitzpatrick types IV–VI) is unknown unless the",
    "  data's Fitzpatrick column shows enough such images; public clinical atlases are dominated by",
    "  light skin. Report metrics by skin type (`skin-cnn evaluate --by <skin-type column>`) before",
    "  drawing conclusions.",
    "- Near-duplicate photos of one patient across splits inflate results; `skin-cnn split` keeps",
    "  near-identical photos (and the patients sharing them) in one split by default.",
    "",
]


def model_section(config: Any, outcome: RunOutcome, precision: Any = None) -> list[str]:
    """``## Model``: architecture, weights, features and heads, training, the method's settings."""
    name = f"VGG-16{config.variant}"
    lines = [
        "## Model",
        "",
        f"- Architecture: {name}, input {config.image_size}×{config.image_size} RGB, "
        f"{'hue crop' if config.crop else 'no crop'}, stretched to size.",
        f"- Trunk weights: {config.weights if config.pretrained else 'random initialisation'}; "
        f"fine-tuned blocks: {config.fine_tune_blocks}.",
        f"- Features and heads: {features_text(config)}.",
        training_text(config, outcome.epochs_run, outcome.best_epoch),
    ]
    lines += ["", "### Method: the settings that took effect", ""] + [
        f"- {label}: {value}" for _, label, value in method_of(config)]
    if precision is not None:
        lines.append(f"- Trunk precision: {precision.name} ({precision.reason}); weights, heads and "
                     "outputs float32. Any precision can predict with the model (`--precision`).")
    if not outcome.converged:
        lines += [
            f"- **Not converged:** the best epoch is the last of the {outcome.epochs_run} run; the validation AUC was",
            "  still improving when training stopped. Train for more epochs before trusting this model.",
        ]
    return lines + [""]


def data_section(config: Any, frame: pd.DataFrame, skipped: list, synthetic: bool) -> list[str]:
    """``## Data``: images per disease and split, patients per split, images left out."""
    table, patients = data_counts(frame)
    lines = [
        "## Data",
        "",
        f"Split file: `{config.split}`. Images per disease and split{' (synthetic)' if synthetic else ''}:",
        "",
        "| disease | " + " | ".join(SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    for disease, row in table.iterrows():
        lines.append(f"| {disease} | " + " | ".join(str(int(row[s])) for s in SPLITS) + " |")
    lines.append("| **total** | " + " | ".join(str(int(table[s].sum())) for s in SPLITS) + " |")
    if any(v is not None for v in patients.values()):
        lines += ["", "Patients: " + ", ".join(
            f"{s} {patients[s] if patients[s] is not None else 'unknown'}" for s in SPLITS) + "."]
    return lines + ["", "Images that could not be read or used (e.g. too small for the model) and were left "
                    f"out: {len(skipped)} (see `skipped_images.csv`).", ""]


def metrics_section(config: Any, outcome: RunOutcome) -> list[str]:
    """``## Metrics``: validation (or out-of-fold) AUC per task, and the test AUC once evaluated."""
    test_metrics = outcome.test_metrics
    val_name = "out-of-fold AUC (train + val)" if config.head == "linear" else "validation AUC"
    lines = ["## Metrics", "", f"| task | {val_name} |" + (" test AUC |" if test_metrics else ""),
             "|---|---|" + ("---|" if test_metrics else "")]
    for task in TASK_NAMES:
        row = f"| {task} | {_fmt(outcome.val_aucs.get(task))} |"
        if test_metrics:
            task_entry = test_metrics.get("tasks", {}).get(task, {})
            entry = task_entry.get("auc", {})
            ci = entry.get("ci")
            row += (f" {_fmt(entry.get('value'))}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
                    + f"{_test_size(task_entry)} |")
        lines.append(row)
    chose = ("Out-of-fold AUCs chose the regularisation strength and are slightly optimistic; the test split "
             if config.head == "linear" else "Validation AUCs chose the epoch and are optimistic; the test split ")
    honest = ("(`eval_test/report.md`) gives the honest estimate." if test_metrics
              else "was not looked at by training; `skin-cnn evaluate RUN` gives the honest estimate.")
    return lines + ["", chose + honest, ""]


def model_card(config: Any, frame: pd.DataFrame, outcome: RunOutcome, *, synthetic: bool = False,
               precision: Any = None) -> str:
    """``model_card.md`` text, filled from the run's settings, data and results.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    frame : pandas.DataFrame
        The run's split (images per disease and split, patients).
    outcome : RunOutcome
        Its results: best epoch, epochs run, validation AUCs, unreadable images, test metrics
        (``--evaluate-test``) and whether it converged.
    synthetic : bool
        Trained on the synthetic demo data (said first, in bold).
    precision : Precision, optional
        The trunk's compute precision.
    """
    lines = [f"# Model card: VGG-16{config.variant} ({Path(config.out).name})", ""]
    if synthetic:
        lines += ["> **SYNTHETIC DEMO.** Trained on generated images that only imitate the look of the",
                  "> diseases. Its numbers say nothing about real photos.", ""]
    lines += INTENDED_USE + model_section(config, outcome, precision)
    lines += data_section(config, frame, outcome.skipped, synthetic) + metrics_section(config, outcome)
    return "\n".join(lines + LIMITATIONS)


def summary_text(config: Any, outcome: RunOutcome) -> str:
    """The one-screen summary printed at the end of training."""
    rule = "─" * 64
    linear = config.head == "linear"
    paths = RunPaths(outcome.run_dir)
    lines = [rule, f"VGG-16{config.variant}  →  {outcome.run_dir}", rule,
             ("heads           linear (logistic regression on train + val; linear_fit.json)" if linear
              else f"epochs run      {outcome.epochs_run} of {config.epochs} (best epoch {outcome.best_epoch})"),
             f"wall time       {outcome.wall_s / 60:.1f} min",
             f"images skipped  {len(outcome.skipped)}" + (" (see skipped_images.csv)" if outcome.skipped else "")]
    if outcome.feature_cache:
        lines.append(f"feature cache   {outcome.feature_cache}")
    lines.append("out-of-fold AUC (train + val):" if linear else "validation AUC (best epoch):")
    for task in TASK_NAMES:
        test = ""
        if outcome.test_metrics:
            task_entry = outcome.test_metrics.get("tasks", {}).get(task, {})
            test = f"   test {_fmt(task_entry.get('auc', {}).get('value'))}{_test_size(task_entry)}"
        lines.append(f"  {task:<22}{_fmt(outcome.val_aucs.get(task))}{test}")
    mean = [v for v in outcome.val_aucs.values() if v is not None and not math.isnan(v)]
    lines.append(f"  {'mean':<22}{_fmt(sum(mean) / len(mean) if mean else None)}")
    lines.append(f"best model      {paths.best_model}")
    if not linear:
        lines.append(f"curves          {paths.curves}")
    if outcome.eval_dir:
        lines.append(f"test report     {Path(outcome.eval_dir) / 'report.md'}")
    lines.append(rule)
    return "\n".join(lines)
