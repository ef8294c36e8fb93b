"""The evaluation report, ``report.md`` and ``report.html``, in the style of the study's tables.

The report is assembled once as a list of blocks (headings, paragraphs, tables, images, lists)
and rendered to Markdown and to self-contained HTML (figures embedded), so the two never
disagree. Percentages carry two decimals, as in the study: ``73.57% (69.76–77.13%)``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from skin_cnn.atomic import write_text
from skin_cnn.diseases import TASKS
from skin_cnn.evaluation.bootstrap import METRICS
from skin_cnn.evaluation.metrics import METRIC_LABELS
from skin_cnn.evaluation.plots import task_title

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


def fmt_pct(entry):
    """``73.57% (69.76–77.13%)``; ``n/a`` with the reason when undefined."""
    if entry is None or entry.get("value") is None:
        note = (entry or {}).get("note")
        return f"n/a ({note})" if note else "n/a"
    text = f"{100 * entry['value']:.2f}%"
    if entry.get("ci") is not None:
        lo, hi = entry["ci"]
        text += f" ({100 * lo:.2f}–{100 * hi:.2f}%)"
    return text


def fmt_interval(ci):
    if ci is None:
        return "n/a"
    return f"{100 * ci[0]:.2f}–{100 * ci[1]:.2f}%"


class Report:
    """An ordered list of blocks rendered to Markdown and HTML."""

    def __init__(self, title):
        self.title = title
        self.blocks = []

    def heading(self, text, level=2):
        self.blocks.append(("h", level, text))

    def para(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("table", list(header), [list(map(str, r)) for r in rows]))

    def items(self, items):
        self.blocks.append(("ul", list(items)))

    def image(self, path, alt):
        self.blocks.append(("img", Path(path), alt))

    def markdown(self, folder):
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + block[2], ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "table":
                header, rows = block[1], block[2]
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "img":
                out += [f"![{block[2]}]({_relative(block[1], folder)})", ""]
        return "\n".join(out)

    def html(self, folder):
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            f"<title>{esc(self.title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
            elif kind == "p":
                out.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "table":
                out.append(
                    "<table><thead><tr>"
                    + "".join(f"<th>{esc(h)}</th>" for h in block[1])
                    + "</tr></thead><tbody>"
                )
                out += [
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                    for r in block[2]
                ]
                out.append("</tbody></table>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "img":
                path = Path(block[1])
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f"<figure><img alt='{esc(block[2])}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(block[2])} ({esc(_relative(path, folder))})"
                    "</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}
th{background:#eef2f7}figure{display:inline-block;margin:0.5em}img{max-width:100%}
figcaption{font-size:0.85em;color:#555}code{background:#f3f3f3;padding:0 3px}"""


def _inline(text):
    """Escape text for HTML and turn Markdown ``code`` and **bold** spans into tags."""
    import re

    s = html.escape(str(text))
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)


def _relative(path, folder):
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _threshold_text(metrics):
    method = metrics.get("threshold_method", "fixed")
    per_task = ", ".join(f"{t}: {e['threshold']:.4g}" for t, e in metrics["tasks"].items())
    if method == "fixed":
        return (
            f"A prediction is positive when the predicted probability of the task's first "
            f"class is at least the threshold ({per_task}). The threshold was pre-specified, "
            "not chosen on these data."
        )
    return (
        f"A prediction is positive when the predicted probability of the task's first class "
        f"is at least the threshold ({per_task}). The thresholds were chosen on validation "
        f"predictions, never on the evaluated images, and applied unchanged: {method}."
    )


def build_report(metrics, folder, figures, source="", by_tables=None, bootstrap_note=True):
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
    """
    rep = Report("Diagnostic accuracy report")
    tasks = metrics["tasks"]
    if source:
        rep.para(f"Evaluated: `{source}`.")
    rep.para(
        "skin-cnn is a research tool, not a medical device. All figures are fractions of "
        "images; 95% confidence intervals in parentheses."
    )
    rep.heading("Threshold")
    rep.para(_threshold_text(metrics))

    rep.heading("Sensitivity, specificity and predictive values")
    rep.table(
        ["Task", "n images (pos/neg)", "Specificity", "Sensitivity", "PPV", "NPV"],
        [
            [
                task_title(t),
                f"{e['n_images']} ({e['n_positive']}/{e['n_negative']})",
                fmt_pct(e["specificity"]),
                fmt_pct(e["sensitivity"]),
                fmt_pct(e["ppv"]),
                fmt_pct(e["npv"]),
            ]
            for t, e in tasks.items()
        ],
    )
    rep.para(
        "Sensitivity and specificity are those of the task's first class (e.g. acne in acne vs "
        "rosacea). Intervals: exact Clopper–Pearson for sensitivity and specificity; logit "
        "interval of Mercaldo, Lau & Zhou (2007) at the sample prevalence for PPV and NPV."
    )

    rep.heading("AUC and accuracy")
    rep.table(
        ["Task", "AUC", "Accuracy"],
        [[task_title(t), fmt_pct(e["auc"]), fmt_pct(e["accuracy"])] for t, e in tasks.items()],
    )
    rep.para("AUC interval: DeLong; accuracy interval: exact Clopper–Pearson.")
    notes = [
        f"{task_title(t)}, {METRIC_LABELS[m]}: {e[m]['note']}"
        for t, e in tasks.items()
        for m in METRICS
        if e[m].get("note")
    ]
    notes += [
        f"{task_title(t)}, {METRIC_LABELS[m]}: interval by {e[m]['method']}"
        for t, e in tasks.items()
        for m in ("ppv", "npv")
        if e[m]["method"] not in ("logit",)
    ]
    if notes:
        rep.items(notes)

    boots = {t: e["bootstrap"] for t, e in tasks.items() if e.get("bootstrap")}
    if boots:
        rep.heading("Bootstrap intervals")
        first = next(iter(boots.values()))
        rep.para(
            f"{first['n_resamples']:,} {first['method']} bootstrap resamples (seed "
            f"{first['seed']}), resampling whole **{first['unit']}s** with replacement"
            + (
                " so that images of one patient stay together."
                if first["unit"] == "patient"
                else "; no patient ids were available, so images are treated as independent."
            )
        )
        rep.table(
            ["Task"] + [METRIC_LABELS[m] for m in METRICS],
            [[task_title(t)] + [fmt_interval(b.get(m)) for m in METRICS] for t, b in boots.items()],
        )

    rep.heading("2×2 tables")
    for t, e in tasks.items():
        task = TASKS[t]
        rep.para(f"**{task_title(t)}** (threshold {e['threshold']:.4g})")
        rep.table(
            ["", f"reference {task.positive}", f"reference {task.negative}", "total"],
            [
                [f"predicted {task.positive}", e["tp"], e["fp"], e["tp"] + e["fp"]],
                [f"predicted {task.negative}", e["fn"], e["tn"], e["fn"] + e["tn"]],
                ["total", e["n_positive"], e["n_negative"], e["n_images"]],
            ],
        )

    rep.heading("Figures")
    for t in tasks:
        for kind in ("roc", "confusion"):
            path = figures.get(kind, {}).get(t)
            if path:
                rep.image(path, f"{'ROC curve' if kind == 'roc' else '2×2 table'}: {task_title(t)}")
    if figures.get("calibration"):
        rep.image(figures["calibration"], "Calibration (reliability diagram)")
    if figures.get("stard_flow"):
        rep.image(figures["stard_flow"], "STARD flow diagram")

    if by_tables:
        for column, table in by_tables.items():
            rep.heading(f"Subgroups by {column}")
            rep.para(
                "The same threshold as above; subgroups are exploratory, not pre-specified, and "
                "small subgroups give wide intervals."
            )
            wide = []
            for (group, task), part in table.groupby([column, "task"], sort=False):
                row = part.set_index("metric")
                cells = []
                for m in ("sensitivity", "specificity", "ppv", "npv", "auc", "accuracy"):
                    r = row.loc[m]
                    value = None if r["value"] is None or r["value"] != r["value"] else r["value"]
                    ci = (
                        None
                        if value is None or r["ci_low"] != r["ci_low"] or r["ci_low"] is None
                        else [r["ci_low"], r["ci_high"]]
                    )
                    cells.append(fmt_pct({"value": value, "ci": ci}))
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

    rep.heading("Statistical methods")
    rep.items(
        [
            "Sensitivity, specificity, accuracy: exact Clopper–Pearson intervals (beta quantiles).",
            "PPV, NPV: logit interval of Mercaldo, Lau & Zhou (Stat Med 2007) with the sample "
            "prevalence (as MedCalc); exact Clopper–Pearson on the predicted-positive (-negative) "
            "count where the logit interval does not exist (a value of 0% or 100%).",
            "AUC: DeLong variance (fast midrank algorithm of Sun & Xu 2014), Wald interval on the "
            "AUC "
            "scale clipped to [0, 1].",
            "Bootstrap: seeded; percentile or BCa intervals; resampling patients where patient ids "
            "exist.",
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
    unit = next(iter(boots.values()))["unit"] if boots else None
    lim = [
        "Clopper–Pearson, logit and DeLong intervals treat images as independent; several images "
        "of one patient are correlated, so these intervals are too narrow when patients contribute "
        "many images"
        + (
            " (the patient-level bootstrap intervals above account for this)."
            if unit == "patient"
            else "."
        ),
        "PPV and NPV depend on the prevalence of the evaluated set, which is not the prevalence in "
        "any clinical population; they cannot be carried over to practice.",
        "The reference standard is the diagnosis recorded with each image; its own error is not "
        "modelled.",
        "Results hold for images like those evaluated (source, camera, skin types); see the "
        "subgroup analyses, if any, and validate externally before any use.",
    ]
    if metrics.get("threshold_method", "fixed") != "fixed":
        lim.append(
            "The threshold was fitted on validation predictions; with a small validation "
            "set it is itself uncertain, which the intervals above do not include."
        )
    rep.items(lim)
    return rep


def write_report(metrics, folder, figures, source="", by_tables=None):
    """Write ``report.md`` and ``report.html`` into ``folder``; returns their paths."""
    folder = Path(folder)
    rep = build_report(metrics, folder, figures, source=source, by_tables=by_tables)
    md, page = folder / "report.md", folder / "report.html"
    write_text(md, rep.markdown(folder))
    write_text(page, rep.html(folder))
    return md, page


def write_evaluation(
    predictions,
    out,
    thresholds=0.5,
    threshold_method="fixed",
    by=(),
    flow=None,
    n_bootstrap=2000,
    seed=0,
    confidence=0.95,
    bootstrap_method="percentile",
    source="",
    progress=False,
):
    """Evaluate a predictions frame and write every output into the folder ``out``.

    Writes ``metrics.json``, ``metrics.csv``, ``roc_<task>.png``, ``confusion_<task>.png``,
    ``calibration.png``, ``stard_flow.png``, ``metrics_by_<column>.csv`` for each ``by`` column,
    ``report.md`` and ``report.html``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Predictions table (``skin_cnn.predictions`` layout).
    thresholds : float or dict of str -> float
    threshold_method : str
    by : sequence of str
        Columns to repeat the metrics per subgroup for.
    flow : dict, optional
        Flow steps (see :func:`skin_cnn.evaluation.plots.load_flow`); default: what the
        predictions alone tell.

    Returns
    -------
    dict
        The ``metrics.json`` content.
    """
    import json

    from skin_cnn.atomic import write_csv
    from skin_cnn.evaluation import plots
    from skin_cnn.evaluation.metrics import evaluate_predictions, metrics_by, metrics_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for column in by:
        if column not in predictions.columns:
            raise ValueError(
                f"--by {column}: the predictions have no column {column!r} "
                f"(columns: {', '.join(map(str, predictions.columns))})"
            )
    metrics = evaluate_predictions(
        predictions,
        thresholds,
        threshold_method,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        bootstrap_method=bootstrap_method,
        progress=progress,
    )
    if source:
        metrics["source"] = str(source)
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
    figures["stard_flow"] = plots.plot_stard_flow(
        flow or plots.flow_from_predictions(predictions), metrics, out / "stard_flow.png"
    )
    by_tables = {}
    threshold_map = {t: e["threshold"] for t, e in metrics["tasks"].items()}
    for column in by:
        table, _ = metrics_by(
            predictions,
            column,
            threshold_map,
            n_bootstrap=n_bootstrap,
            seed=seed,
            confidence=confidence,
            bootstrap_method=bootstrap_method,
        )
        write_csv(out / f"metrics_by_{column}.csv", table)
        by_tables[column] = table
    write_report(metrics, out, figures, source=source, by_tables=by_tables)
    return metrics


VAL_PREDICTION_FILES = (
    "val_predictions.csv",
    "predictions_val.csv",
    "eval_val/predictions_val.csv",
)


def run_flow(run_dir, split, split_frame, predictions, skipped):
    """Flow steps of a run evaluation: the split's own flow file when it can be found (the
    ``SPLIT.flow.json`` that ``skin-cnn split`` writes beside the split, or one in the run folder),
    else what the run's ``split.csv`` tells, then the images actually evaluated."""
    import json

    from skin_cnn.evaluation import plots

    candidates = [Path(run_dir) / "split.flow.json", Path(run_dir) / "flow.json"]
    config = Path(run_dir) / "config.json"
    if config.is_file():
        try:
            original = json.loads(config.read_text(encoding="utf-8")).get("split")
        except (OSError, json.JSONDecodeError):
            original = None
        if original:
            candidates.insert(0, Path(original).with_suffix(".flow.json"))
    flow = None
    for path in candidates:
        if path.is_file():
            flow = plots.load_flow(path, split)
            break
    if flow is None:
        flow = plots.flow_from_split(split_frame, split)
    reasons = {"image could not be read": len(skipped)} if skipped else {}
    evaluated = plots.flow_from_predictions(predictions)["steps"][0]
    evaluated.update(name="Evaluated", excluded=reasons)
    flow["steps"].append(evaluated)
    return flow


def predict_run_split(run_dir, split, predictor=None, progress=True):
    """Predict one split of a run with the run's model and preprocessing.

    Uses :func:`skin_cnn.predict.load_predictor` (the run's ``best.keras`` and its
    ``config.json`` preprocessing) and :func:`skin_cnn.predict.predict_frame` on the rows of the
    run's ``split.csv`` in ``split``.

    Returns
    -------
    predictions : pandas.DataFrame
        Predictions table; unreadable images left out.
    skipped : list of dict
        The images that could not be read.
    split_frame : pandas.DataFrame
        The whole split table.
    predictor : skin_cnn.predict.Predictor
        For reuse on another split.
    """
    from skin_cnn.predict import load_predictor, predict_frame
    from skin_cnn.predictions import predictions_frame
    from skin_cnn.split import load_split

    run_dir = Path(run_dir)
    split_csv = run_dir / "split.csv"
    if not split_csv.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no split.csv in the run folder; is it a `skin-cnn train` run?"
        )
    frame = load_split(split_csv)
    part = frame[frame["split"] == split].reset_index(drop=True)
    if part.empty:
        raise ValueError(f"{split_csv}: no images in the {split} split")
    if predictor is None:
        predictor = load_predictor(run_dir)
    result = predict_frame(predictor, part, progress=progress)
    kept, probs = result.kept(part)
    preds = predictions_frame(kept.reset_index(drop=True), probs, tasks=list(probs))
    return preds, result.skipped, frame, predictor


def evaluate_run(
    run_dir,
    split="test",
    out=None,
    threshold="0.5",
    val_predictions=None,
    by=(),
    flow=None,
    n_bootstrap=2000,
    seed=0,
    confidence=0.95,
    bootstrap_method="percentile",
    predictor=None,
    progress=True,
):
    """Predict a run's split with its best model, write ``predictions_<split>.csv`` and evaluate.

    Parameters
    ----------
    run_dir : str or Path
        A ``skin-cnn train`` run folder (``best.keras``, ``config.json``, ``split.csv``).
    split : {"test", "val", "train"}
    out : str or Path, optional
        Default ``<run_dir>/eval_<split>``.
    threshold : str or float
        Fixed, or chosen on validation predictions (``youden``, ``sens:0.90``): those are read
        from ``val_predictions``, else from the run folder (``val_predictions.csv``, written by
        training), else the
        validation split is predicted.
    flow : dict, optional
        Flow steps; default from the split's flow file or ``split.csv``.
    predictor : skin_cnn.predict.Predictor, optional
        An already loaded model (e.g. at the end of training).

    Returns
    -------
    dict
        ``metrics.json`` content.
    """
    from skin_cnn.atomic import write_csv
    from skin_cnn.evaluation.threshold import parse_threshold, resolve_thresholds
    from skin_cnn.predictions import read_predictions

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"eval_{split}"
    rule = parse_threshold(threshold)
    preds, skipped, frame, predictor = predict_run_split(run_dir, split, predictor, progress)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"predictions_{split}.csv", preds)
    tasks = list(dict.fromkeys(preds["task"]))
    validation, source = None, ""
    if rule.needs_validation:
        if split == "val":
            raise ValueError(
                "a fitted threshold cannot be chosen on the split it is evaluated on; "
                "evaluate the test split, or use a fixed --threshold"
            )
        if val_predictions is not None:
            validation, source = read_predictions(val_predictions), str(val_predictions)
        else:
            for rel in VAL_PREDICTION_FILES:
                if (run_dir / rel).is_file():
                    validation, source = read_predictions(run_dir / rel), str(run_dir / rel)
                    break
            else:
                validation, _, _, _ = predict_run_split(run_dir, "val", predictor, progress)
                write_csv(out / "predictions_val.csv", validation)
                source = f"{run_dir} val split"
    thresholds, method = resolve_thresholds(rule, tasks, validation, source)
    if flow is None:
        flow = run_flow(run_dir, split, frame, preds, skipped)
    return write_evaluation(
        preds,
        out,
        thresholds,
        method,
        by=by,
        flow=flow,
        n_bootstrap=n_bootstrap,
        seed=seed,
        confidence=confidence,
        bootstrap_method=bootstrap_method,
        source=f"{run_dir} ({split} split)",
        progress=progress,
    )
