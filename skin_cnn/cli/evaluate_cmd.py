"""``skin-cnn evaluate``: metrics with 95% CIs, figures and a STARD report.

For a run folder or a predictions CSV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import click

from skin_cnn.cli.options import gathered, interval_options, precision_option, quiet_option


@dataclass(frozen=True)
class Target:
    """What is evaluated (a run folder's split, or a predictions CSV) and where the results go."""

    run: str | None = None
    predictions_csv: str | None = None
    out: str | None = None
    split: str = "test"


@dataclass(frozen=True)
class Breakdowns:
    """The report's parts beyond the overall metrics: subgroups, fairness columns, the STARD flow."""

    by: tuple = ()
    fairness: tuple = ()
    flow_json: str | None = None


@dataclass(frozen=True)
class RunChecks:
    """What only a run folder (a model) can add: the shortcut and leakage audits, and how the
    model runs."""

    shortcut_audit: int = 0
    allow_changed_split: bool = False
    leakage_audit: bool = True
    leakage_threshold: float | None = None
    precision: str = "auto"


@click.command(name="evaluate")
@click.argument("run", required=False, type=click.Path(file_okay=False))
@click.option("--predictions", "predictions_csv", type=click.Path(dir_okay=False),
              help="Evaluate this predictions CSV instead of a run folder (no model needed).")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default for a run: RUN/eval_<split>; required with --predictions].")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val", "train"]),
              help="Split of the run to evaluate.")
@click.option("--threshold", default="stored", show_default=True,
              help="A probability (y_prob >= threshold is positive); 'youden' / 'study' / 'sens:0.90' / "
              "'spec:0.90' chosen on validation predictions; or 'stored': the run model's own thresholds "
              "(fitted at training with `train --threshold`, else 0.5; 0.5 with --predictions).")
@click.option("--val-predictions", type=click.Path(dir_okay=False), default=None,
              help="Validation predictions CSV to choose a fitted threshold on.")
@click.option("--by", multiple=True, metavar="COLUMN",
              help="Repeat the metrics per subgroup of COLUMN (e.g. source); may be repeated.")
@click.option("--fairness", multiple=True, metavar="COLUMN",
              help="Add a fairness section for COLUMN (e.g. fitzpatrick_scale): per group AUC, sensitivity "
              "and specificity with intervals, the largest gap with a bootstrap interval, a forest plot; "
              "may be repeated.")
@interval_options(
    n_bootstrap_help="Bootstrap resamples (0: none).",
    auc_ci_help="DeLong AUC interval: on the logit scale (inside (0, 1); Newcombe score interval where "
    "the logit does not exist), or on the AUC scale clipped to [0, 1] (as the study).",
    confidence_help="Confidence level of every interval.",
    bootstrap_method=True,
)
@click.option("--flow", "flow_json", type=click.Path(dir_okay=False), default=None,
              help="Flow JSON for the STARD diagram (e.g. the SPLIT.flow.json of `skin-cnn split`).")
@click.option("--shortcut-audit", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="Run folders: Grad-CAM of N seeded photos, and the share of its mass on the hue box, the "
              "border band and known watermarks (a report section and shortcut_audit.csv; 0: none).")
@click.option("--allow-changed-split", is_flag=True,
              help="Evaluate a run whose split.csv differs from the split its model was trained on "
              "(refused without it); the difference is written into the report.")
@click.option("--leakage-audit/--no-leakage-audit", default=True, show_default=True,
              help="Run folders: compare every evaluated image with every training image by the re-crop-aware "
              "similarity of the model's trunk features, check each one's best candidates pixel by pixel, "
              "and list the suspected duplicates (report, "
              "suspected_duplicates.csv, flow); never removes them.")
@click.option("--leakage-threshold", default=None, type=click.FloatRange(-1.0, 1.0),
              help="Score (the higher of feature similarity and pixel correlation) at or above which a pair "
              "is a suspected duplicate [default: 0.90, chosen "
              "on public photos: docs/experiments/leakage-threshold.md].")
@precision_option()
@quiet_option()
@gathered("target", Target, ("run", "predictions_csv", "out", "split"))
@gathered("breakdowns", Breakdowns, ("by", "fairness", "flow_json"))
@gathered("checks", RunChecks, ("shortcut_audit", "allow_changed_split", "leakage_audit", "leakage_threshold",
                                "precision"))
def command(target, threshold, val_predictions, breakdowns, settings, checks, quiet):
    """Evaluate RUN (a `skin-cnn train` folder) or a --predictions CSV.

    Writes metrics.json (fractions with 95% CIs), metrics.csv, report.md/report.html,
    roc_<task>.png, confusion_<task>.png, calibration.png and stard_flow.png into the output
    folder. Sensitivity, specificity and accuracy: exact Clopper-Pearson; PPV/NPV: logit
    (Mercaldo 2007); AUC: DeLong; plus a bootstrap resampling split groups or patients
    within each class. Evaluating a run's test split adds one to its test_evaluations.json.
    """
    from skin_cnn.cli.options import refuse_overwriting
    from skin_cnn.core.run_paths import RunPaths
    from skin_cnn.reporting.report import EVALUATION_FILES
    from skin_cnn.evaluation.threshold import parse_threshold

    run, predictions_csv, out, split = target.run, target.predictions_csv, target.out, target.split
    if bool(run) == bool(predictions_csv):
        raise click.UsageError("give either a run folder or --predictions FILE (exactly one)")
    if checks.shortcut_audit and predictions_csv:
        raise click.UsageError("--shortcut-audit needs the model: give a run folder, not --predictions")
    rule = parse_threshold(threshold)
    destination = Path(out) if out else (RunPaths(run).eval_dir(split) if run else None)
    if destination is not None:
        refuse_overwriting([predictions_csv, val_predictions, breakdowns.flow_json],
                           [destination / name for name in EVALUATION_FILES])
    if predictions_csv and rule.method == "stored":  # a predictions file carries no model
        rule = parse_threshold("0.5")
    flow = None
    if breakdowns.flow_json:
        from skin_cnn.evaluation.flow import load_flow

        flow = load_flow(breakdowns.flow_json, split)
    if run:
        out = Path(out) if out else RunPaths(run).eval_dir(split)
        metrics = _evaluate_run(replace(target, out=out), (rule, val_predictions), breakdowns, flow, settings,
                                checks, quiet)
    else:
        if out is None:
            raise click.UsageError("-o/--out is required with --predictions")
        metrics = _evaluate_file(predictions_csv, out, (rule, val_predictions), breakdowns, flow, settings, quiet)
    _summary(metrics, out)


def _evaluate_run(target, choice, breakdowns, flow, settings, checks, quiet):
    """Evaluate a run folder's split with its model (see :func:`~skin_cnn.app.evaluate_run.evaluate_run`).

    ``target.out`` is the output folder; ``choice`` is ``(threshold rule, validation predictions
    CSV or None)``; ``flow`` the loaded ``--flow`` record (or None).
    """
    from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run
    from skin_cnn.training.feature_cache import run_frame_predictions

    rule, val_predictions = choice
    options = RunEvaluationOptions(
        val_predictions=val_predictions,
        by=breakdowns.by,
        fairness=breakdowns.fairness,
        flow=flow,
        shortcut_audit=checks.shortcut_audit,
        allow_changed_split=checks.allow_changed_split,
        frame_predictions=run_frame_predictions(target.run, echo=click.echo),
        leakage_audit=checks.leakage_audit,
        leakage_threshold=checks.leakage_threshold,
        precision=checks.precision,
    )
    return evaluate_run(target.run, split=target.split, out=target.out, threshold=rule, settings=settings,
                        options=options, progress=not quiet, echo=click.echo)


def _validation_predictions(rule, val_predictions, predictions_csv):
    """The validation predictions a fitted threshold is chosen on (None for a fixed threshold).

    A fitted threshold is never chosen on the predictions being evaluated.
    """
    from skin_cnn.core.predictions import read_predictions

    if not rule.needs_validation:
        return None
    if val_predictions is None:
        raise ValueError(
            f"--threshold {rule.method} is fitted to data: give the validation predictions "
            "with --val-predictions FILE; it is never chosen on the predictions being evaluated"
        )
    if Path(val_predictions).resolve() == Path(predictions_csv).resolve():
        raise ValueError(
            f"{val_predictions}: the threshold must be chosen on validation "
            "predictions, not on the predictions being evaluated"
        )
    return read_predictions(val_predictions)


def _evaluate_file(predictions_csv, out, choice, breakdowns, flow, settings, quiet):
    """Evaluate a predictions CSV; ``choice`` and ``breakdowns`` as for :func:`_evaluate_run`."""
    from skin_cnn.reporting.report import ReportInputs, write_evaluation
    from skin_cnn.evaluation.threshold import resolve_thresholds
    from skin_cnn.evaluation.threshold_choice import ThresholdFitting
    from skin_cnn.core.predictions import read_predictions

    rule, val_predictions = choice
    preds = read_predictions(predictions_csv)
    validation = _validation_predictions(rule, val_predictions, predictions_csv)
    thresholds, method = resolve_thresholds(
        rule,
        list(dict.fromkeys(preds["task"])),
        validation,
        str(val_predictions),
        evaluated=preds,
        evaluated_name=str(predictions_csv),
    )
    from skin_cnn.app.evaluate_run import (cv_folder_of, cv_model_synthetic, record_test_evaluation,
                                           run_model_synthetic)

    run_dir, record = _test_record(predictions_csv)
    flow = _predictions_flow(predictions_csv, preds, run_dir, flow)
    run = synthetic_model = None
    cv_dir = None if run_dir is not None else cv_folder_of(predictions_csv)
    if run_dir is not None:  # predictions of a run folder: its config, history, split and model
        from skin_cnn.reporting.checklist import run_context

        run, synthetic_model = run_context(run_dir), run_model_synthetic(run_dir)
    elif cv_dir is not None:  # out-of-fold predictions of a cv folder
        synthetic_model = cv_model_synthetic(cv_dir)
    inputs = ReportInputs(
        by=breakdowns.by,
        fairness=breakdowns.fairness,
        flow=flow,
        source=str(predictions_csv),
        test_evaluations=record,
        run=run,
        image_base=Path(predictions_csv).resolve().parent,
        threshold_fit=None if validation is None else ThresholdFitting(
            {t: rule for t in thresholds}, validation, source=str(val_predictions)),
        synthetic_model=synthetic_model,
    )
    metrics = write_evaluation(preds, out, thresholds, method, settings=settings, inputs=inputs, progress=not quiet)
    if record and record["split"] == "test":
        record_test_evaluation(run_dir, out, method)
    return metrics


def _predictions_flow(predictions_csv, preds, run_dir, given):
    """The flow chain of a predictions CSV: ``given`` (``--flow``) ending in the images with
    predictions; else, for ``RUN/.../predictions_<split>.csv``, the run's own flow, the split's
    images without a prediction excluded as such; else None (what the predictions alone tell)."""
    import re

    from skin_cnn.evaluation import flow as flows

    if given is not None:
        return flows.append_step(given, flows.evaluation_step(preds, []))
    match = re.fullmatch(r"predictions_(train|val|test)\.csv", Path(predictions_csv).name)
    if run_dir is None or match is None:
        return None
    from skin_cnn.app.evaluate_run import run_flow
    from skin_cnn.core.run_paths import RunPaths
    from skin_cnn.data.split import load_split

    split = match.group(1)
    frame = load_split(RunPaths(run_dir).split)
    base = Path(predictions_csv).resolve().parent

    def key(path):
        return os.path.normpath(base / path)  # an absolute path stays itself

    predicted = {key(p) for p in preds["image_path"].astype(str)}
    missing = [
        {"image_path": p, "reason": "no prediction in the predictions file"}
        for p in frame.loc[frame["split"] == split, "image_path"].astype(str)
        if key(p) not in predicted
    ]
    return run_flow(run_dir, split, frame, preds, missing)


def _test_record(predictions_csv):
    """``(run folder, test_evaluations entry)`` for a predictions CSV inside a run folder, else
    ``(None, None)``. The run's test predictions (``predictions_test.csv``) evaluated again are
    one more look at its test split, counted in the entry."""
    from skin_cnn.app.evaluate_run import run_folder_of, test_evaluation_count

    run_dir = run_folder_of(predictions_csv)
    if run_dir is None:
        return None, None
    is_test = Path(predictions_csv).name == "predictions_test.csv"
    return run_dir, {"count": test_evaluation_count(run_dir) + is_test, "split": "test" if is_test else None}


def _summary(metrics, out):
    def pct(e):
        return "   n/a" if e["value"] is None else f"{100 * e['value']:6.2f}"

    def proportion(e):
        return "   n/a" if e["value"] is None else f"{e['value']:6.3f}"

    click.echo(
        f"{'task':22s} {'n':>6s} {'sens%':>6s} {'spec%':>6s} {'ppv%':>6s} {'npv%':>6s} "
        f"{'acc%':>6s} {'auc':>6s}"
    )
    for task, e in metrics["tasks"].items():
        click.echo(
            f"{task:22s} {e['n_images']:6d} "
            + " ".join(pct(e[m]) for m in ("sensitivity", "specificity", "ppv", "npv", "accuracy"))
            + " " + proportion(e["auc"])
        )
    from skin_cnn.stats.precision import MIN_COUNT, caveats
    from skin_cnn.evaluation.threshold import threshold_label

    for task, e in metrics["tasks"].items():  # one line per task: the report's cells say more
        found = {m: caveats(m, e[m], e) for m in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc")}
        parts = [f"{m} {c}" for m, cs in found.items() for c in cs if not c.startswith("only ")]
        small = [m for m, cs in found.items() if any(c.startswith("only ") for c in cs)]
        if small:
            parts.append(f"fewer than {MIN_COUNT} images behind {', '.join(small)}")
        if parts:
            click.echo(f"  caution, {task}: {'; '.join(parts)}")
    th = metrics["threshold"]
    if isinstance(th, dict):
        th = ", ".join(f"{task} {threshold_label(value)}" for task, value in th.items())
    click.echo(f"threshold: {th} ({metrics['threshold_method']})")
    from skin_cnn.reporting.cells import fmt_gap

    for column, result in (metrics.get("fairness") or {}).items():
        gaps = [f"{task} {m} {fmt_gap(g['value'], m)} ({g['high']} vs {g['low']})"
                for task, t in result["tasks"].items() for m, g in t["gaps"].items()
                if g["value"] is not None]
        click.echo(f"fairness by {column}: largest gaps: {'; '.join(gaps) or 'none estimable'} "
                   "(intervals and too-small groups in the report)")
    audit = metrics.get("leakage_audit")
    if audit:
        from skin_cnn.evaluation.duplicates import summary_sentence

        click.echo(summary_sentence(audit) + " — listed in the report and suspected_duplicates.csv")
    record = metrics.get("test_evaluations")
    if record:
        click.echo(f"test split evaluated {record['count']} time(s) in this run folder")
    if metrics.get("synthetic_model"):
        from skin_cnn.reporting.report import SYNTHETIC_MODEL_BANNER

        click.echo(f"warning: {SYNTHETIC_MODEL_BANNER}")
    click.echo(f"wrote {Path(out) / 'metrics.json'} and {Path(out) / 'report.html'}")
