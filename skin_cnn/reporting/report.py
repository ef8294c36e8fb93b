"""The evaluation report, ``report.md`` and ``report.html``, in the style of the study's tables.

The report is assembled once as a list of blocks (headings, paragraphs, tables, images, lists)
and rendered to Markdown and to self-contained HTML (figures embedded), so the two never
disagree. Percentages carry two decimals, as in the study: ``73.57% (69.76–77.13%)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from skin_cnn.core.io import write_csv, write_text
from skin_cnn.core.predictions import marks_synthetic
from skin_cnn.core.specs import EvalSettings
from skin_cnn.evaluation.threshold import is_per_row
from skin_cnn.reporting.document import Report, slug  # noqa: F401 (public here too)
from skin_cnn.reporting.main_sections import (  # noqa: F401 (public here too)
    CAVEAT_TEXT,
    STARD_COVERED,
    STARD_SUBGROUPS,
    test_evaluations_text,
)

#: Files an evaluation writes into its folder whatever the tasks and groups (the figures per
#: task and per group column come on top); commands check that none of them is an input.
EVALUATION_FILES = ("metrics.json", "metrics.csv", "report.md", "report.html", "flow.json",
                    "failures.csv", "calibration.png", "stard_flow.png", "failure_gallery.png",
                    "predictions_val.csv", "predictions_test.csv", "predictions_train.csv")


#: The banner of a report on synthetic images (the demo's), under every section heading.
SYNTHETIC_BANNER = ("SYNTHETIC DEMO DATA: images drawn by a program, not patients; "
                    "these numbers say nothing about real photos.")
#: The banner of a report on a model trained on synthetic images (``metrics["synthetic_model"]``),
#: whatever images it was evaluated on.
SYNTHETIC_MODEL_BANNER = ("MODEL TRAINED ON SYNTHETIC IMAGES: the evaluated model learnt from images drawn by a "
                          "program (skin-cnn demo), not from photos of patients; these numbers say nothing "
                          "about what a model trained on real photos would do.")


def report_banner(metrics: dict) -> str | None:
    """The banner shown under every section heading, or None.

    Two warnings can apply, each on its own ground: the images are synthetic (the predictions'
    ``synthetic`` column) or the model learnt from synthetic images (its ``ModelInfo``, recorded
    as ``synthetic_model``). A model trained on the demo and evaluated on real photos gives
    numbers that look like a real result; the second banner says they are not.
    """
    texts = [text for key, text in (("synthetic", SYNTHETIC_BANNER), ("synthetic_model", SYNTHETIC_MODEL_BANNER))
             if metrics.get(key)]
    return " ".join(texts) or None


@dataclass(frozen=True)
class ReportContent:
    """Everything the report shows beside ``metrics.json``: the figures written, the subgroup,
    fairness, failure and audit results, the flow and the run folder.

    Attributes
    ----------
    folder : Path
        The output folder (links are relative to it).
    figures : dict
        ``{"roc": {task: path}, "confusion": {task: path}, "calibration": path, "stard_flow":
        path, "forest": {column: path}, "failures": path}``; missing entries are skipped.
    source : str
        What was evaluated (predictions file, run folder), stated at the top.
    by_tables : dict of str -> pandas.DataFrame
        Subgroup tables from :func:`skin_cnn.evaluation.metrics.metrics_by`, keyed by column.
    by_groups : dict
        Per column the per-subgroup ``metrics.json`` content of ``metrics_by``, so subgroup
        cells carry the same caveats as the main tables.
    flow : dict, optional
        The flow chain of the evaluated split (:func:`skin_cnn.evaluation.flow.chain`), shown as
        a table beside the diagram so every count can be read and checked.
    fairness : dict
        Per column the result of :func:`skin_cnn.evaluation.fairness.fairness_analysis`; its
        forest plots are ``figures["forest"][column]``.
    run : dict, optional
        :func:`skin_cnn.reporting.checklist.run_context` of the run folder evaluated: adds the
        partitions, preprocessing, model and training sections.
    failures : dict, optional
        ``{"cases": DataFrame, "missing": int, "gradcam": bool}`` of the failure gallery, whose
        figure is ``figures["failures"]``.
    shortcut : dict, optional
        ``{"summary": DataFrame, "n_requested", "unreadable"}`` of the shortcut audit
        (:mod:`skin_cnn.evaluation.shortcut`).
    leakage : dict, optional
        ``{"audit", "pairs", "figure"}`` of the leakage audit (:mod:`skin_cnn.evaluation.duplicates`).
    """

    folder: Path
    figures: dict = field(default_factory=dict)
    source: str = ""
    by_tables: dict = field(default_factory=dict)
    by_groups: dict = field(default_factory=dict)
    flow: dict | None = None
    fairness: dict = field(default_factory=dict)
    run: dict | None = None
    failures: dict | None = None
    shortcut: dict | None = None
    leakage: dict | None = None


def build_report(metrics: dict, content: ReportContent) -> Report:
    """Assemble the report from ``metrics.json`` content and the rest of ``content``.

    The report ends with the reporting checklists (TRIPOD+AI, CLAIM, STARD-AI): each item this
    report answers links to its section; the rest are listed as the authors' to write.
    """
    from skin_cnn.evaluation import duplicates
    from skin_cnn.evaluation.shortcut import add_section as add_shortcut
    from skin_cnn.reporting import main_sections as main
    from skin_cnn.reporting import report_sections as more

    c, figures = content, content.figures
    rep = Report("Diagnostic accuracy report", anchors=True, banner=report_banner(metrics))
    sections: dict = {}
    main.add_opening(rep, metrics, c.source, sections)
    main.add_main_tables(rep, metrics, sections)
    main.add_two_by_two(rep, metrics, sections)
    main.add_figures_and_flow(rep, metrics, figures, c.flow, sections)
    if c.run:
        sections.update(more.add_run(rep, c.run))
    if metrics.get("calibration"):
        sections["calibration"] = more.add_calibration(rep, metrics["calibration"], figures.get("calibration"))
    if c.by_tables:
        main.add_subgroups(rep, c.by_tables, c.by_groups, sections)
    for column, result in (c.fairness or {}).items():
        anchor = more.add_fairness(rep, result, figures.get("forest", {}).get(column))
        sections.setdefault("fairness", (anchor, f"by {', '.join(c.fairness)}"))
    if c.failures is not None:
        sections.update(more.add_failures(rep, c.failures, figures.get("failures")))
    if c.shortcut is not None:
        sections.update(add_shortcut(rep, **c.shortcut))
    if c.leakage is not None:
        audit = c.leakage["audit"]
        sections["leakage"] = (duplicates.add_section(rep, audit, c.leakage["pairs"], c.leakage.get("figure")),
                               duplicates.summary_sentence(audit))
    main.add_methods(rep, metrics)
    main.add_stard(rep, bool(c.by_tables))
    main.add_limitations(rep, metrics)
    more.add_checklists(rep, sections)
    return rep


def write_report(metrics: dict, content: ReportContent) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``content.folder``; returns their paths."""
    folder = Path(content.folder)
    rep = build_report(metrics, content)
    md, page = folder / "report.md", folder / "report.html"
    write_text(md, rep.markdown(folder))
    write_text(page, rep.html(folder))
    return md, page


@dataclass(frozen=True)
class ReportInputs:
    """What an evaluation adds to its metrics beside the predictions: subgroup and fairness
    columns, provenance, the run folder and the audits its caller computed.

    Attributes
    ----------
    by : sequence of str
        Columns to repeat the metrics per subgroup for.
    fairness : sequence of str
        Columns to give a fairness section (:mod:`skin_cnn.evaluation.fairness`), e.g.
        ``fitzpatrick_scale``.
    flow : dict, optional
        A flow record or the chain of the evaluated split (see
        :func:`skin_cnn.evaluation.flow.load_flow`); default: what the predictions alone tell.
    source : str
        Where the predictions came from (recorded in ``metrics.json`` and shown in the report).
    test_evaluations : dict, optional
        ``{"count": n, "split": split}``: how many times the run's test split has been evaluated
        (this evaluation included when ``split`` is test), stored in ``metrics.json`` and shown
        in the report; None when not known (a predictions file outside a run folder).
    run : dict, optional
        :func:`skin_cnn.reporting.checklist.run_context` of the run folder, for the partitions,
        model, training and checklist sections.
    cams : dict of (image_path, task) -> numpy.ndarray, optional
        Grad-CAM overlays of the failure cases (computed by the caller, which has the model).
    image_base : str or Path, optional
        Folder that relative image paths of the predictions are resolved against.
    n_failures : int
        Most confident false positives and false negatives per task in the gallery.
    shortcut : pandas.DataFrame, optional
        Per image and task Grad-CAM mass shares (:func:`skin_cnn.evaluation.shortcut.audit_predictor`):
        written to ``shortcut_audit.csv``, summarised in ``metrics.json`` (``shortcut_audit``)
        and in the report.
    threshold_fit : ThresholdFitting, optional
        How fitted thresholds were chosen
        (:class:`skin_cnn.evaluation.threshold_choice.ThresholdFitting`): each task then also gets
        ``threshold_choice``, sensitivity and specificity intervals that redo the choice in every
        bootstrap resample, beside the same resamples at the threshold held fixed.
    leakage : dict, optional
        ``{"audit", "pairs"}`` of :func:`skin_cnn.app.evaluate_run.audit_leakage`: the pairs go to
        ``suspected_duplicates.csv`` and ``suspected_duplicates.png``, the counts to
        ``metrics.json`` (``leakage_audit``), the flow and the report.
    synthetic_model : bool, optional
        Whether the model that made the predictions was trained on synthetic images (its
        ``ModelInfo``): recorded in ``metrics.json`` as ``synthetic_model``, and when true the
        report carries :data:`SYNTHETIC_MODEL_BANNER`. None when the model is not known (a
        predictions file): nothing is recorded.
    """

    by: Sequence[str] = ()
    fairness: Sequence[str] = ()
    flow: dict | None = None
    source: str = ""
    test_evaluations: dict | None = None
    run: dict | None = None
    cams: dict | None = None
    image_base: str | Path | None = None
    n_failures: int = 4
    shortcut: Any = None
    threshold_fit: Any = None
    leakage: dict | None = None
    synthetic_model: bool | None = None


def write_evaluation(
    predictions,
    out,
    thresholds=0.5,
    threshold_method="fixed",
    settings: EvalSettings = EvalSettings(),
    inputs: ReportInputs = ReportInputs(),
    progress=False,
):
    """Evaluate a predictions frame and write every output into the folder ``out``.

    Writes ``metrics.json``, ``metrics.csv``, ``roc_<task>.png``, ``confusion_<task>.png``,
    ``calibration.png``, ``stard_flow.png`` with its chain ``flow.json``,
    ``metrics_by_<column>.csv`` for each ``by`` column, ``fairness_<column>.csv`` and
    ``forest_<column>.png`` for each ``fairness`` column, ``failures.csv`` and
    ``failure_gallery.png``, ``report.md`` and ``report.html``. ``metrics.json`` also holds
    ``calibration`` (per task ECE, Brier score, slope, intercept) and ``fairness``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Predictions table (``skin_cnn.core.predictions`` layout).
    thresholds : float or dict of str -> float
    threshold_method : str
    settings : EvalSettings
        The intervals and the bootstrap of every table.
    inputs : ReportInputs
        Subgroup and fairness columns, provenance and the audits to report.
    progress : bool
        Show a progress bar for the bootstrap.

    Returns
    -------
    dict
        The ``metrics.json`` content.
    """
    from skin_cnn.core.predictions import check_columns
    from skin_cnn.evaluation.metrics import metrics_by, metrics_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_columns(predictions.columns, {"--by": inputs.by, "--fairness": inputs.fairness})
    metrics = _metrics(predictions, thresholds, threshold_method, settings, inputs, progress)
    threshold_map = thresholds if is_per_row(thresholds) else {t: e["threshold"] for t, e in metrics["tasks"].items()}
    fairness = _fairness(predictions, threshold_map, settings, inputs.fairness)
    if fairness:
        metrics["fairness"] = fairness
    shortcut = _record_audits(metrics, inputs, out)
    # JSON has no NaN: fail loudly here rather than write an unreadable file
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_csv(out / "metrics.csv", metrics_table(metrics))
    figures = _task_figures(predictions, metrics, out)
    flow, leakage = _flow(predictions, metrics, inputs, out, figures)
    content = ReportContent(out, figures, source=inputs.source, flow=flow, fairness=fairness, run=inputs.run,
                            shortcut=shortcut, leakage=leakage)
    for column in inputs.by:
        table, content.by_groups[column] = metrics_by(predictions, column, threshold_map, settings=settings)
        write_csv(out / f"metrics_by_{column}.csv", table)
        content.by_tables[column] = table
    _fairness_files(fairness, metrics, out, figures)
    content = _with_failures(content, predictions, threshold_map, inputs)
    write_report(metrics, content)
    return metrics


def _metrics(predictions, thresholds, threshold_method, settings, inputs, progress):
    """``metrics.json`` content: the metrics, the threshold choice's intervals, the test-split
    count, the synthetic flags (images, model), the source and the calibration of every task."""
    from skin_cnn.evaluation.metrics import evaluate_predictions
    from skin_cnn.stats.calibration import calibration_summary

    metrics = evaluate_predictions(predictions, thresholds, threshold_method, settings=settings, progress=progress)
    metrics["test_evaluations"] = inputs.test_evaluations
    if inputs.threshold_fit is not None and settings.n_bootstrap:
        from skin_cnn.evaluation.threshold_choice import add_threshold_choice

        add_threshold_choice(metrics, predictions, inputs.threshold_fit, thresholds, settings=settings)
    if marks_synthetic(predictions):
        metrics["synthetic"] = True
    if inputs.synthetic_model is not None:
        metrics["synthetic_model"] = bool(inputs.synthetic_model)
    if inputs.source:
        metrics["source"] = str(inputs.source)
    metrics["calibration"] = {
        t: calibration_summary(*(predictions.loc[predictions["task"] == t, c].to_numpy()
                                 for c in ("y_true", "y_prob")),
                               n_resamples=settings.n_bootstrap, seed=settings.seed)
        for t in metrics["tasks"]
    }
    return metrics


def _fairness(predictions, threshold_map, settings, columns):
    """Column -> :func:`skin_cnn.evaluation.fairness.fairness_analysis` for each ``--fairness`` column."""
    from skin_cnn.evaluation.fairness import fairness_analysis

    return {column: fairness_analysis(predictions, column, threshold_map, settings=settings) for column in columns}


def _record_audits(metrics, inputs, out):
    """Put the shortcut and leakage audits into ``metrics`` and their tables into ``out``;
    returns the shortcut audit's report entry (None without one)."""
    entry = None
    if inputs.shortcut is not None:
        from skin_cnn.evaluation.shortcut import audit_metrics, report_entry

        entry = report_entry(inputs.shortcut)
        metrics["shortcut_audit"] = audit_metrics(entry["summary"])
        write_csv(out / "shortcut_audit.csv", inputs.shortcut)
    if inputs.leakage is not None:
        metrics["leakage_audit"] = inputs.leakage["audit"]
        write_csv(out / "suspected_duplicates.csv", inputs.leakage["pairs"])
    return entry


def _task_figures(predictions, metrics, out):
    """ROC curve and 2×2 figure of every task, and the calibration figure."""
    from skin_cnn.reporting import plots

    figures: dict = {"roc": {}, "confusion": {}}
    for task, entry in metrics["tasks"].items():
        part = predictions[predictions["task"] == task]
        figures["roc"][task] = plots.plot_roc(part["y_true"], part["y_prob"], entry, task, out / f"roc_{task}.png")
        figures["confusion"][task] = plots.plot_confusion(entry, task, out / f"confusion_{task}.png")
    figures["calibration"] = plots.plot_calibration(predictions, out / "calibration.png")
    return figures


def _flow(predictions, metrics, inputs, out, figures):
    """The evaluated split's flow (marked with the leakage audit) into ``flow.json`` and the STARD
    diagram; returns the flow and the leakage entry with its figure."""
    from skin_cnn.evaluation.flow import flow_from_predictions, normalise_flow
    from skin_cnn.reporting import plots

    flow = normalise_flow(inputs.flow) if inputs.flow else flow_from_predictions(predictions)
    leakage = inputs.leakage
    if leakage is not None:
        from skin_cnn.evaluation import duplicates
        from skin_cnn.reporting.gallery import plot_pairs

        flow = duplicates.mark_flow(flow, leakage["audit"])
        leakage = dict(leakage, figure=plot_pairs(leakage["pairs"], out / "suspected_duplicates.png",
                                                  base=inputs.image_base))
    write_text(out / "flow.json", json.dumps(flow, indent=2) + "\n")
    figures["stard_flow"] = plots.plot_stard_flow(flow, metrics, out / "stard_flow.png")
    return flow, leakage


def _fairness_files(fairness, metrics, out, figures):
    """``fairness_<column>.csv`` and the forest plot of every fairness column."""
    from skin_cnn.evaluation.fairness import fairness_table
    from skin_cnn.reporting import plots

    figures["forest"] = {}
    for column, result in fairness.items():
        write_csv(out / f"fairness_{column}.csv", fairness_table(result))
        figures["forest"][column] = plots.plot_forest(result, metrics, out / f"forest_{column}.png")


def _with_failures(content, predictions, threshold_map, inputs):
    """``failures.csv`` and the failure gallery; ``content`` with them."""
    from dataclasses import replace

    from skin_cnn.evaluation.failures import failure_cases
    from skin_cnn.reporting.gallery import plot_failure_gallery

    out = content.folder
    cases = failure_cases(predictions, threshold_map, inputs.n_failures)
    write_csv(out / "failures.csv", cases)
    content.figures["failures"], missing = plot_failure_gallery(cases, out / "failure_gallery.png",
                                                                base=inputs.image_base, cams=inputs.cams)
    return replace(content, failures={"cases": cases, "missing": missing, "gradcam": bool(inputs.cams)})
