"""The sections of the evaluation report that every evaluation has: the threshold, the main
tables, the 2×2 tables, the figures and flow, subgroups, methods, STARD items and limitations.

Each ``add_*`` function appends its blocks to a :class:`~skin_cnn.reporting.document.Report`
and, where a reporting checklist can point at it, returns or records ``(anchor, what it shows)``
in ``sections`` (:func:`skin_cnn.reporting.report_sections.add_checklists`).
"""

from __future__ import annotations

from skin_cnn.core.tasks import TASKS, task_title
from skin_cnn.evaluation.metrics import METRIC_LABELS, primary_interval
from skin_cnn.evaluation.threshold import threshold_label
from skin_cnn.reporting import report_intervals as intervals
from skin_cnn.reporting import report_sections as more
from skin_cnn.reporting.cells import auc_method_text, fmt_pct
from skin_cnn.reporting.cells import metric_cell as _cell
from skin_cnn.stats.bootstrap import METRICS
from skin_cnn.stats.precision import MIN_COUNT

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


CAVEAT_TEXT = (
    "A note in brackets belongs to the number before it: **zero-width interval** — the method "
    "returned no spread (e.g. DeLong with perfectly separated classes), which is not certainty; "
    f"**only N … (minimum {MIN_COUNT})** — fewer than {MIN_COUNT} images in the denominator (for "
    "the AUC, in either class), too few for the value or its interval to be taken at face value; "
    "**no image predicted positive (negative)** — the threshold put every image on one side, so "
    "sensitivity (specificity) is 0% whatever the AUC, which measures ranking, not this threshold."
)


def threshold_text(metrics):
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


def add_opening(rep, metrics, source, sections):
    """What was evaluated, the threshold (and its choice's uncertainty) and the test-split count."""
    from skin_cnn.reporting.choice_section import add_choice_text

    if source:
        rep.para(f"Evaluated: `{source}`.")
    rep.para(
        "skin-cnn is a research tool, not a medical device. All figures are fractions of "
        "images; 95% confidence intervals in parentheses."
    )
    sections["threshold"] = (rep.heading("Threshold"), more.threshold_summary(metrics))
    rep.para(threshold_text(metrics))
    add_choice_text(rep, metrics)
    rep.heading("Looks at the test split")
    rep.para(test_evaluations_text(metrics.get("test_evaluations")))


def add_main_tables(rep, metrics, sections):
    """The Table-2 style (sensitivity, specificity, PPV, NPV) and Table-3 style (AUC, accuracy)
    tables with their caveats and notes, then the secondary intervals."""
    from skin_cnn.reporting.choice_section import add_choice_table

    tasks = metrics["tasks"]
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


def add_two_by_two(rep, metrics, sections):
    """One 2×2 table (predicted × reference) per task."""
    tasks = metrics["tasks"]
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


def add_figures_and_flow(rep, metrics, figures, flow, sections):
    """ROC curves, 2×2 figures, the calibration figure when it has no section of its own, the
    STARD flow diagram and the flow table of the evaluated split."""
    tasks = metrics["tasks"]
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


def add_subgroups(rep, by_tables, by_groups, sections):
    """One table per ``--by`` column: every metric per subgroup and task, with the caveats of
    the main tables where the per-group metrics are given."""
    for column, table in by_tables.items():
        anchor = rep.heading(f"Subgroups by {column}")
        sections.setdefault("subgroups", (anchor, f"by {', '.join(by_tables)}"))
        rep.para(
            "The same threshold as above; subgroups are exploratory, not pre-specified, and "
            "small subgroups give wide intervals."
        )
        rep.table([column, "Task", "n images", "Sensitivity", "Specificity", "PPV", "NPV", "AUC", "Accuracy"],
                  _subgroup_rows(column, table, (by_groups or {}).get(column)))


def _subgroup_rows(column, table, groups):
    wide = []
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
    return wide


def add_methods(rep, metrics):
    """The statistical methods used, the bootstrap's resampling unit and the primary interval."""
    boots = {t: e["bootstrap"] for t, e in metrics["tasks"].items() if e.get("bootstrap")}
    unit = next(iter(boots.values()))["unit"] if boots else None
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


def add_stard(rep, subgroups):
    """The STARD 2015 items this report addresses (item 17 when it has subgroup tables)."""
    rep.heading("STARD 2015 items covered by this report")
    covered = list(STARD_COVERED)
    if subgroups:
        covered.insert(3, STARD_SUBGROUPS)
    rep.items([f"**{num}**: {name}" for num, name in covered])
    rep.para(
        "The remaining items (title, background, eligibility, setting, recruitment, reference "
        "standard, blinding, sample size, participant characteristics, registration, protocol, "
        "funding) describe the study and must be written by its authors."
    )


def add_limitations(rep, metrics):
    """What the numbers cannot say."""
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
