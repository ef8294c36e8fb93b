"""The evaluation report, ``report.md`` and ``report.html``, in the style of the study's tables.

The report is assembled once as a list of blocks (headings, paragraphs, tables, images, lists)
and rendered to Markdown and to self-contained HTML (figures embedded), so the two never
disagree. Percentages carry two decimals, as in the study: ``73.57% (69.76–77.13%)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from skin_cnn.core.io import write_text
from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import TASKS
from skin_cnn.stats.bootstrap import METRICS
from skin_cnn.reporting.cells import auc_method_text, fmt_pct
from skin_cnn.reporting.cells import metric_cell as _cell
from skin_cnn.evaluation.metrics import METRIC_LABELS, primary_interval
from skin_cnn.core.tasks import task_title
from skin_cnn.reporting.document import Report, slug  # noqa: F401 (public here too)
from skin_cnn.stats.precision import MIN_COUNT
from skin_cnn.evaluation.threshold import is_per_row, threshold_label

# STARD 2015 items (Cohen et al., BMJ Open 2016) that the generated report addresses.
STARD_COVERED = (
    (
        "12a",
        "Definition of and rationale for test positivity cut-offs of the index test, "
        "distinguishing pre-specified from exploratory",
    ),
    ("14", "Methods for estimating or comparing measures of diagnostic accuracy"),
    ("15", "How indeterminate index test results were handled"),
    ("19", "Flow of participants, using a diagram"),
    ("23", "Cross tabulation of the index test results by the results of the reference standard"),
    ("24", "Estimates of diagnostic accuracy and their precision (95% confidence intervals)"),
    ("26", "Study limitations, including statistical uncertainty (in part)"),
)
STARD_SUBGROUPS = ("17", "Analyses of variability in diagnostic accuracy (subgroups)")

#: Files an evaluation writes into its folder whatever the tasks and groups (the figures per
#: task and per group column come on top); commands check that none of them is an input.
EVALUATION_FILES = ("metrics.json", "metrics.csv", "report.md", "report.html", "flow.json",
                    "failures.csv", "calibration.png", "stard_flow.png", "failure_gallery.png",
                    "predictions_val.csv", "predictions_test.csv", "predictions_train.csv")


CAVEAT_TEXT = (
    "A note in brackets belongs to the number before it: **zero-width interval** — the method "
    "returned no spread (e.g. DeLong with perfectly separated classes), which is not certainty; "
    f"**only N … (minimum {MIN_COUNT})** — fewer than {MIN_COUNT} images in the denominator (for "
    "the AUC, in either class), too few for the value or its interval to be taken at face value; "
    "**no image predicted positive (negative)** — the threshold put every image on one side, so "
    "sensitivity (specificity) is 0% whatever the AUC, which measures ranking, not this threshold."
)


#: The banner of a report on synthetic images (the demo's), under every section heading.
SYNTHETIC_BANNER = ("SYNTHETIC DEMO DATA: images drawn by a program, not patients; "
                    "these numbers say nothing about real photos.")


def synthetic_images(predictions):
    """True when the predictions' ``synthetic`` column (the demo set's) marks any image synthetic."""
    if "synthetic" not in predictions.columns:
        return False
    return bool(predictions["synthetic"].astype(str).str.strip().str.lower().isin(("true", "1", "yes")).any())


def _threshold_text(metrics):
    method = metrics.get("threshold_method", "fixed")
    per_task = ", ".join(f"{t}: {threshold_label(e['threshold'])}" for t, e in metrics["tasks"].items())
    if method == "fixed":
        return (
            f"A prediction is positive when the predicted probability of the task's first "
            f"class is at least the threshold ({per_task}). The threshold was pre-specified, "
            "not chosen on these data."
        )
    return (
        f"A prediction is positive when the predicted probability of the task's first class "
        f"is at least the threshold ({per_task}). The thresholds were fitted before this "
        f"evaluation on predictions of other images, never on the evaluated images, and applied unchanged: {method}."
    )


def test_evaluations_text(record):
    """The test-evaluation count, so a reader can tell a pre-specified test from a tuned one."""
    if not record:
        return (
            "How many times the test split has been evaluated is not known: these predictions "
            "do not come from a run folder that keeps the count."
        )
    n = record["count"]
    where = "this evaluation included" if record.get("split") == "test" else "this one is not of the test split"
    verdict = (
        "a single look, as a pre-specified test should be."
        if n == 1
        else "not once: results after the first may have been tuned against the test split."
        if n > 1
        else "never so far."
    )
    return f"The test split of this run has been evaluated **{n}** time(s) ({where}): {verdict}"


def build_report(metrics, folder, figures, source="", by_tables=None, bootstrap_note=True, flow=None,
                 by_groups=None, fairness=None, run=None, failures=None, shortcut=None, leakage=None):
    """Assemble the report.

    Parameters
    ----------
    metrics : dict
        ``metrics.json`` content.
    folder : Path
        The output folder (links are relative to it).
    figures : dict
        ``{"roc": {task: path}, "confusion": {task: path}, "calibration": path,
        "stard_flow": path}``; missing entries are skipped.
    source : str
        What was evaluated (predictions file, run folder), stated at the top.
    by_tables : dict of str -> pandas.DataFrame, optional
        Subgroup tables from :func:`skin_cnn.evaluation.metrics.metrics_by`, keyed by column.
    flow : dict, optional
        The flow chain of the evaluated split (:func:`skin_cnn.evaluation.flow.chain`), shown as
        a table beside the diagram so every count can be read and checked.
    by_groups : dict, optional
        Per column the per-subgroup ``metrics.json`` content of ``metrics_by``, so subgroup
        cells carry the same caveats as the main tables.
    fairness : dict, optional
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

    The report ends with the reporting checklists (TRIPOD+AI, CLAIM, STARD-AI): each item this
    report answers links to its section; the rest are listed as the authors' to write.
    """
    from skin_cnn.reporting import report_intervals as intervals
    from skin_cnn.reporting import report_sections as more

    rep = Report("Diagnostic accuracy report", anchors=True,
                 banner=SYNTHETIC_BANNER if metrics.get("synthetic") else None)
    sections = {}
    tasks = metrics["tasks"]
    boots = {t: e["bootstrap"] for t, e in tasks.items() if e.get("bootstrap")}
    unit = next(iter(boots.values()))["unit"] if boots else None
    if source:
        rep.para(f"Evaluated: `{source}`.")
    rep.para(
        "skin-cnn is a research tool, not a medical device. All figures are fractions of "
        "images; 95% confidence intervals in parentheses."
    )
    sections["threshold"] = (rep.heading("Threshold"), more.threshold_summary(metrics))
    rep.para(_threshold_text(metrics))
    from skin_cnn.reporting.choice_section import add_choice_table, add_choice_text

    add_choice_text(rep, metrics)
    rep.heading("Looks at the test split")
    rep.para(test_evaluations_text(metrics.get("test_evaluations")))

    sections["metrics"] = (
        rep.heading("Sensitivity, specificity and predictive values"),
        "sensitivity, specificity, PPV, NPV, AUC and accuracy, each with its 95% interval",
    )
    rep.table(
        ["Task", "n images (pos/neg)", "Sensitivity", "Specificity", "PPV", "NPV"],
        [
            [
                task_title(t),
                f"{e['n_images']} ({e['n_positive']}/{e['n_negative']})",
                *(_cell(m, e) for m in ("sensitivity", "specificity", "ppv", "npv")),
            ]
            for t, e in tasks.items()
        ],
    )
    rep.para(CAVEAT_TEXT)
    rep.para(
        "Sensitivity and specificity are those of the task's first class (e.g. acne in acne vs "
        "rosacea). " + intervals.headline_text(metrics)
    )
    add_choice_table(rep, metrics)

    rep.heading("AUC and accuracy")
    rep.table(
        ["Task", "AUC", "Accuracy"],
        [[task_title(t), _cell("auc", e), _cell("accuracy", e)] for t, e in tasks.items()],
    )
    if not any(e.get("interval_unit", "image") != "image" for e in tasks.values()):
        rep.para(f"AUC interval: {auc_method_text(metrics)}; accuracy interval: exact Clopper–Pearson.")
    else:
        rep.para("Intervals as in the table above: cluster bootstrap first, image-level ones below.")
    notes = [
        f"{task_title(t)}, {METRIC_LABELS[m]}: {e[m]['note']}"
        for t, e in tasks.items()
        for m in METRICS
        if e[m].get("note")
    ]
    notes += [
        f"{task_title(t)}, {METRIC_LABELS[m]}: image-level interval by {(e[m].get('image_level') or e[m])['method']}"
        for t, e in tasks.items()
        for m in ("ppv", "npv")
        if (e[m].get("image_level") or e[m])["method"] not in ("logit",)
    ]
    if notes:
        rep.items(notes)

    intervals.add_secondary_intervals(rep, metrics)

    sections["two_by_two"] = (rep.heading("2×2 tables"), f"one per task ({len(tasks)})")
    for t, e in tasks.items():
        task = TASKS[t]
        rep.para(f"**{task_title(t)}** (threshold {threshold_label(e['threshold'])})")
        rep.table(
            ["", f"reference {task.positive}", f"reference {task.negative}", "total"],
            [
                [f"predicted {task.positive}", e["tp"], e["fp"], e["tp"] + e["fp"]],
                [f"predicted {task.negative}", e["fn"], e["tn"], e["fn"] + e["tn"]],
                ["total", e["n_positive"], e["n_negative"], e["n_images"]],
            ],
        )

    figures_anchor = rep.heading("Figures")
    for t in tasks:
        for kind in ("roc", "confusion"):
            path = figures.get(kind, {}).get(t)
            if path:
                rep.image(path, f"{'ROC curve' if kind == 'roc' else '2×2 table'}: {task_title(t)}")
    if figures.get("calibration") and not metrics.get("calibration"):  # else in its own section
        rep.image(figures["calibration"], "Calibration (reliability diagram)")
    if figures.get("stard_flow"):
        rep.image(figures["stard_flow"], "STARD flow diagram")
        sections["flow"] = (figures_anchor, "STARD flow diagram")
    if flow:
        from skin_cnn.evaluation.flow import flow_table

        split = flow.get("split")
        sections["flow"] = (
            rep.heading("Flow of images" + (f" ({split} split)" if split in ("train", "val", "test") else "")),
            more.flow_summary(flow),
        )
        rep.para(
            "Each step with the images it passed on and what left before it: exclusions with "
            "their reason, images assigned to the other splits (used for training or "
            "validation, not excluded), and any difference the records do not explain. The "
            "same chain is in `flow.json`."
        )
        rep.table(["Step", "Images", "Patients", "Left before this step"], flow_table(flow))
    if run:
        sections.update(more.add_run(rep, run))
    calibration = metrics.get("calibration")
    if calibration:
        sections["calibration"] = more.add_calibration(rep, calibration, figures.get("calibration"))

    if by_tables:
        for column, table in by_tables.items():
            anchor = rep.heading(f"Subgroups by {column}")
            sections.setdefault("subgroups", (anchor, f"by {', '.join(by_tables)}"))
            rep.para(
                "The same threshold as above; subgroups are exploratory, not pre-specified, and "
                "small subgroups give wide intervals."
            )
            wide = []
            groups = (by_groups or {}).get(column)
            for (group, task), part in table.groupby([column, "task"], sort=False):
                entry = groups[group]["tasks"][task] if groups and group in groups else None
                cells = []
                for m in ("sensitivity", "specificity", "ppv", "npv", "auc", "accuracy"):
                    if entry is not None:
                        cells.append(_cell(m, entry))
                        continue
                    r = part.set_index("metric").loc[m]
                    value = None if r["value"] is None or r["value"] != r["value"] else r["value"]
                    ci = (
                        None
                        if value is None or r["ci_low"] != r["ci_low"] or r["ci_low"] is None
                        else [r["ci_low"], r["ci_high"]]
                    )
                    cells.append(fmt_pct({"value": value, "ci": ci}, m))
                wide.append([str(group), task_title(task), int(part["n_images"].iloc[0])] + cells)
            rep.table(
                [
                    column,
                    "Task",
                    "n images",
                    "Sensitivity",
                    "Specificity",
                    "PPV",
                    "NPV",
                    "AUC",
                    "Accuracy",
                ],
                wide,
            )

    for column, result in (fairness or {}).items():
        anchor = more.add_fairness(rep, result, figures.get("forest", {}).get(column))
        sections.setdefault("fairness", (anchor, f"by {', '.join(fairness)}"))
    if failures is not None:
        sections.update(more.add_failures(rep, failures, figures.get("failures")))
    if shortcut is not None:
        from skin_cnn.evaluation.shortcut import add_section

        sections.update(add_section(rep, **shortcut))
    if leakage is not None:
        from skin_cnn.evaluation import duplicates

        sections["leakage"] = (duplicates.add_section(rep, leakage["audit"], leakage["pairs"], leakage.get("figure")),
                               duplicates.summary_sentence(leakage["audit"]))

    rep.heading("Statistical methods")
    rep.items(
        [
            "Sensitivity, specificity, accuracy: exact Clopper–Pearson intervals (beta quantiles).",
            "PPV, NPV: logit interval of Mercaldo, Lau & Zhou (Stat Med 2007) with the sample "
            "prevalence (as MedCalc); exact Clopper–Pearson on the predicted-positive (-negative) "
            "count where the logit interval does not exist (a value of 0% or 100%).",
            "AUC: DeLong variance (fast midrank algorithm of Sun & Xu 2014); "
            + auc_method_text(metrics)
            + ".",
            "Bootstrap: seeded; percentile or BCa intervals; clusters (split groups, patients, or "
            "images when neither is known) drawn with replacement within each class; "
            + (f"the unit here: {unit}." if unit else "not run."),
            "Main tables: cluster bootstrap intervals whenever the evaluated images come from fewer "
            "units (patients, split groups) than images, image-level intervals otherwise; "
            f"here: {primary_interval(metrics)}.",
            "Every image received a probability, so there are no indeterminate index test results; "
            "images that could not be read never reach the predictions table.",
        ]
    )
    rep.heading("STARD 2015 items covered by this report")
    covered = list(STARD_COVERED)
    if by_tables:
        covered.insert(3, STARD_SUBGROUPS)
    rep.items([f"**{num}**: {name}" for num, name in covered])
    rep.para(
        "The remaining items (title, background, eligibility, setting, recruitment, reference "
        "standard, blinding, sample size, participant characteristics, registration, protocol, "
        "funding) describe the study and must be written by its authors."
    )
    rep.heading("Limitations")
    lim = [
        intervals.independence_limitation(metrics),
        "PPV and NPV depend on the prevalence of the evaluated set, which is not the prevalence in "
        "any clinical population; they cannot be carried over to practice.",
        "The reference standard is the diagnosis recorded with each image; its own error is not "
        "modelled.",
        "Results hold for images like those evaluated (source, camera, skin types); see the "
        "subgroup analyses, if any, and validate externally before any use.",
    ]
    if metrics.get("threshold_method", "fixed") != "fixed":
        lim.append(
            "The threshold was fitted on predictions of other images (the method above says which); "
            "with few of them it is itself uncertain, which the intervals above do not include."
        )
    rep.items(lim)
    more.add_checklists(rep, sections)
    return rep


def write_report(metrics, folder, figures, source="", by_tables=None, flow=None, by_groups=None,
                 fairness=None, run=None, failures=None, shortcut=None, leakage=None):
    """Write ``report.md`` and ``report.html`` into ``folder``; returns their paths."""
    folder = Path(folder)
    rep = build_report(metrics, folder, figures, source=source, by_tables=by_tables, flow=flow,
                       by_groups=by_groups, fairness=fairness, run=run, failures=failures, shortcut=shortcut,
                       leakage=leakage)
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
    by, fairness, flow, source, run = inputs.by, inputs.fairness, inputs.flow, inputs.source, inputs.run
    cams, image_base, n_failures = inputs.cams, inputs.image_base, inputs.n_failures
    shortcut, threshold_fit, leakage = inputs.shortcut, inputs.threshold_fit, inputs.leakage
    test_evaluations = inputs.test_evaluations
    import json

    from skin_cnn.core.io import write_csv
    from skin_cnn.evaluation.flow import flow_from_predictions, normalise_flow
    from skin_cnn.reporting import plots
    from skin_cnn.evaluation.metrics import evaluate_predictions, metrics_by, metrics_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from skin_cnn.core.predictions import check_columns

    check_columns(predictions.columns, {"--by": by, "--fairness": fairness})
    metrics = evaluate_predictions(predictions, thresholds, threshold_method, settings=settings, progress=progress)
    metrics["test_evaluations"] = test_evaluations
    if threshold_fit is not None and settings.n_bootstrap:
        from skin_cnn.evaluation.threshold_choice import add_threshold_choice

        add_threshold_choice(metrics, predictions, threshold_fit, thresholds, settings=settings)
    if synthetic_images(predictions):
        metrics["synthetic"] = True
    if source:
        metrics["source"] = str(source)
    from skin_cnn.stats.calibration import calibration_summary

    metrics["calibration"] = {
        t: calibration_summary(*(predictions.loc[predictions["task"] == t, c].to_numpy()
                                 for c in ("y_true", "y_prob")))
        for t in metrics["tasks"]
    }
    threshold_map = thresholds if is_per_row(thresholds) else {t: e["threshold"] for t, e in metrics["tasks"].items()}
    fairness_results = {}
    if fairness:
        from skin_cnn.evaluation.fairness import fairness_analysis

        for column in fairness:
            fairness_results[column] = fairness_analysis(predictions, column, threshold_map, settings=settings)
        metrics["fairness"] = fairness_results
    shortcut_section = None
    if shortcut is not None:
        from skin_cnn.evaluation.shortcut import audit_metrics, report_entry

        shortcut_section = report_entry(shortcut)
        metrics["shortcut_audit"] = audit_metrics(shortcut_section["summary"])
        write_csv(out / "shortcut_audit.csv", shortcut)
    if leakage is not None:
        metrics["leakage_audit"] = leakage["audit"]
        write_csv(out / "suspected_duplicates.csv", leakage["pairs"])
    # JSON has no NaN: fail loudly here rather than write an unreadable file
    write_text(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_csv(out / "metrics.csv", metrics_table(metrics))

    figures = {"roc": {}, "confusion": {}}
    for task, entry in metrics["tasks"].items():
        part = predictions[predictions["task"] == task]
        figures["roc"][task] = plots.plot_roc(
            part["y_true"], part["y_prob"], entry, task, out / f"roc_{task}.png"
        )
        figures["confusion"][task] = plots.plot_confusion(
            entry, task, out / f"confusion_{task}.png"
        )
    figures["calibration"] = plots.plot_calibration(predictions, out / "calibration.png")
    flow = normalise_flow(flow) if flow else flow_from_predictions(predictions)
    if leakage is not None:
        from skin_cnn.evaluation import duplicates
        from skin_cnn.reporting.gallery import plot_pairs

        flow = duplicates.mark_flow(flow, leakage["audit"])
        leakage = dict(leakage, figure=plot_pairs(leakage["pairs"], out / "suspected_duplicates.png",
                                                  base=image_base))
    write_text(out / "flow.json", json.dumps(flow, indent=2) + "\n")
    figures["stard_flow"] = plots.plot_stard_flow(flow, metrics, out / "stard_flow.png")
    by_tables, by_groups = {}, {}
    for column in by:
        table, by_groups[column] = metrics_by(predictions, column, threshold_map, settings=settings)
        write_csv(out / f"metrics_by_{column}.csv", table)
        by_tables[column] = table
    from skin_cnn.evaluation import fairness as fair
    from skin_cnn.evaluation.failures import failure_cases
    from skin_cnn.reporting.gallery import plot_failure_gallery

    figures["forest"] = {}
    for column, result in fairness_results.items():
        write_csv(out / f"fairness_{column}.csv", fair.fairness_table(result))
        figures["forest"][column] = plots.plot_forest(result, metrics, out / f"forest_{column}.png")
    cases = failure_cases(predictions, threshold_map, n_failures)
    write_csv(out / "failures.csv", cases)
    figures["failures"], missing = plot_failure_gallery(cases, out / "failure_gallery.png",
                                                        base=image_base, cams=cams)
    failures = {"cases": cases, "missing": missing, "gradcam": bool(cams)}
    write_report(metrics, out, figures, source=source, by_tables=by_tables, flow=flow, by_groups=by_groups,
                 fairness=fairness_results, run=run, failures=failures, shortcut=shortcut_section,
                 leakage=leakage)
    return metrics
