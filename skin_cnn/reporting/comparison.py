"""The comparison report: ``compare.md``, ``compare.csv`` and ``compare_delong.csv`` of ``skin-cnn compare``.

The numbers come from :func:`skin_cnn.evaluation.compare.compare_predictions`; this module lays
them out in the study's Table-3 style, then the paired tests, the primary test first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from skin_cnn.core.io import PathLike, write_csv, write_text
from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import task_title
from skin_cnn.evaluation.compare import (
    clustered_rows,
    compare_predictions,
    load_variant,
    resolve_model_thresholds,
    unique_names,
)
from skin_cnn.reporting.cells import fmt_pct
from skin_cnn.reporting.report import CAVEAT_TEXT, Report
from skin_cnn.stats.precision import flagged


def _p(p):
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _entry(value, low, high):
    ok = value is not None and not pd.isna(value)
    ci = [low, high] if ok and low is not None and not pd.isna(low) else None
    return {"value": value if ok else None, "ci": ci}


def _counts(row):
    """The class counts of a compare.csv row (absent in tables written before they were kept)."""
    return {k: int(row[k]) for k in ("n_images", "n_positive", "n_negative") if k in row and not pd.isna(row[k])}


def _flag(metric, entry, row):
    """A compare table cell with its caveats (zero-width interval, too few images) in it."""
    return flagged(fmt_pct(entry, metric), metric, entry, _counts(row))


def _difference(value):
    """An AUC difference as a signed proportion with three decimals (``+0.024``)."""
    return "n/a" if value is None or pd.isna(value) else f"{value:+.3f}"


def _primary_first(tests):
    """Whether the comparison's primary test is the paired cluster bootstrap (any pair's)."""
    return "primary" in tests.columns and (tests["primary"] == "cluster bootstrap").any()


def _tests_rows(tests, table=None):
    """Rows of the paired-tests table: the primary test's columns first
    (:func:`skin_cnn.evaluation.compare.primary_test`)."""
    boot = "boot_ci_low" in tests.columns
    boot_first = _primary_first(tests)
    firsts = {} if table is None or not len(table) else {t: part.iloc[0] for t, part in table.groupby("task")}

    def value(r, key):
        v = r.get(key)
        return None if v is None or pd.isna(v) else v

    rows = []
    for _, r in tests.iterrows():
        ci = "n/a" if pd.isna(r["ci_low"]) else f"{_difference(r['ci_low'])} to {_difference(r['ci_high'])}"
        if ci != "n/a":
            counts = _counts(firsts[r["task"]]) if r["task"] in firsts else {}
            ci = flagged(ci, "auc", {"ci": [r["ci_low"], r["ci_high"]]}, counts)
        delong = [ci, _p(value(r, "p_value")), _p(value(r, "p_holm"))]
        head = [task_title(r["task"]), r["model_a"], r["model_b"],
                "n/a" if pd.isna(r["difference"]) else _difference(r["difference"])]
        if not boot:
            rows.append(head + delong)
            continue
        ok = value(r, "boot_ci_low") is not None
        bootstrap = [f"{_difference(r['boot_ci_low'])} to {_difference(r['boot_ci_high'])}" if ok else "n/a",
                     _p(value(r, "boot_p_value")) if ok else "n/a"]
        if boot_first:
            rows.append(head + bootstrap + [_p(value(r, "boot_p_holm"))] + delong)
        else:
            rows.append(head + delong + bootstrap)
    return rows


def _threshold_words(threshold):
    if isinstance(threshold, dict):
        return "thresholds chosen per model on its validation predictions (see compare.csv)"
    return f"threshold {threshold:g}"


def _model_table(table):
    """Header and rows of the per-model table: the cluster bootstrap AUC interval first where the
    images come from fewer units than images, the image-level one beside it as secondary."""
    clustered = clustered_rows(table)
    header = ["Task", "Model", "n images", "AUC", "Accuracy"]
    if clustered.any():
        header = ["Task", "Model", "n images", "AUC (cluster bootstrap 95% CI)",
                  "AUC (image-level 95% CI, secondary)", "Accuracy"]
    rows = []
    for k, r in table.iterrows():
        image_level = _flag("auc", _entry(r["auc"], r["auc_ci_low"], r["auc_ci_high"]), r)
        auc = [image_level]
        if clustered.any():
            boot = _entry(r["auc"], r["auc_boot_ci_low"], r["auc_boot_ci_high"]) if clustered[k] else None
            missing = f"— ({r.get('auc_boot_note') or 'every image its own unit'})"
            auc = [_flag("auc", boot, r) if boot else missing, image_level]
        accuracy = _flag("accuracy", _entry(r["accuracy"], r["accuracy_ci_low"], r["accuracy_ci_high"]), r)
        rows.append([task_title(r["task"]), r["model"], r["n_images"], *auc, accuracy])
    return header, rows


def _model_table_text(table, threshold):
    """The sentence under the per-model table: which AUC interval is primary and why."""
    methods = ", ".join(sorted(set(table["auc_method"]))) if len(table) else "delong"
    clustered = clustered_rows(table)
    if clustered.any():
        first = table[clustered].iloc[0]
        auc = (
            f"AUC with 95% **cluster bootstrap** intervals (percentile; whole units drawn within each "
            f"class; resampling unit: **{first['auc_boot_unit']}**, {int(first['auc_boot_n_units'])} units for "
            f"{int(first['n_images'])} images), because images of one unit are not independent; the "
            f"image-level intervals ({methods}), which treat every image as independent, are secondary"
        )
    else:
        auc = f"AUC with 95% intervals ({methods})"
    notes = sorted(set(table.get("auc_boot_note", pd.Series(dtype=str)).fillna("")) - {""})
    if notes:
        auc += f" (no cluster bootstrap interval where there are {'; '.join(notes)})"
    return (f"{auc}; accuracy at {_threshold_words(threshold)} with exact Clopper–Pearson intervals. "
            "Every model was evaluated on the same images. " + CAVEAT_TEXT)


def comparison_report(table, tests, sources, threshold, test_counts=None):
    """The Markdown report of a comparison (Table-3 style, then the paired tests).

    ``test_counts`` maps a model to how many times its run's test split has been evaluated
    (None where the source is not a run folder keeping that count).
    """
    rep = Report("Model comparison")
    counts = test_counts or {}

    def looks(name):
        n = counts.get(name)
        return "test-split evaluations not known" if n is None else f"test split evaluated {n} time(s)"

    rep.items([f"**{name}**: `{src}` ({looks(name)})" for name, src in sources.items()])
    rep.heading("AUC and accuracy")
    rep.table(*_model_table(table))
    rep.para(_model_table_text(table, threshold))
    rep.heading("Paired tests of AUC differences")
    head = ["Task", "A", "B", "AUC A − AUC B"]
    delong = ["DeLong 95% CI", "DeLong p", "DeLong p (Holm)"]
    boot = "boot_ci_low" in tests.columns and tests["boot_ci_low"].notna().any()
    boot_first = boot and _primary_first(tests)
    if boot_first:
        header = head + ["Cluster bootstrap 95% CI", "Cluster bootstrap p", "p (Holm)"] + [
            f"{h} (secondary)" for h in delong]
    else:
        header = head + delong + (["Bootstrap 95% CI", "Bootstrap p"] if boot else [])
    rep.table(header, _tests_rows(tests, table))
    delong_text = (
        "DeLong's test for correlated AUCs (same images) treats images as independent; Holm's "
        "adjustment over the pairs within each task."
    )
    if boot:
        unit = tests["boot_unit"].dropna().iloc[0]
        n_units = int(tests["boot_n_units"].dropna().iloc[0])
        boot_text = (
            f"The paired bootstrap draws whole units (resampling unit: **{unit}**, {n_units} units) "
            "within each class, the same resamples for both models; percentile interval, p-value "
            "twice the smaller share of resampled differences on either side of zero."
        )
    if boot_first:
        text = (
            f"**Primary test: the paired cluster bootstrap**, because the images come from fewer "
            f"{unit}s than images and images of one {unit} are not independent; p (Holm) is Holm's "
            "adjustment of its p-values over the pairs within each task. " + boot_text
            + " Secondary: " + delong_text
        )
    else:
        text = "Primary test: DeLong's. " + delong_text
        if boot:
            text += " " + boot_text + " Here every image is its own unit, so DeLong's test is primary."
    rep.para(text)
    return rep


def write_comparison(
    sources: Sequence[PathLike], out: PathLike, threshold: float | str = 0.5,
    val_predictions: Sequence[PathLike] | None = None, settings: EvalSettings = EvalSettings(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load each source (run folder or predictions CSV), compare, write ``compare.csv``,
    ``compare_delong.csv`` and ``compare.md`` into ``out``; returns (table, tests).

    ``threshold`` is a number or a fitted rule (``youden``, ``sens:0.90``, ``spec:0.90``), chosen
    per model on ``val_predictions`` (one file per source) or a run folder's own validation
    predictions. ``settings``: the intervals and the paired bootstrap, as in
    :func:`compare_predictions`.
    """
    loaded = [load_variant(s) for s in sources]
    names = unique_names([name for name, _ in loaded])
    frames = {name: frame for name, (_, frame) in zip(names, loaded)}
    thresholds, _ = resolve_model_thresholds(threshold, list(sources), frames, val_predictions)
    table, tests = compare_predictions(frames, thresholds, settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", table)
    write_csv(out / "compare_delong.csv", tests)
    counts = {name: _test_count(src) for name, src in zip(names, sources)}
    rep = comparison_report(table, tests, dict(zip(names, map(str, sources))), thresholds, counts)
    write_text(out / "compare.md", rep.markdown(out))
    return table, tests


def _test_count(source):
    """How many times the run folder behind ``source`` has had its test split evaluated."""
    import json

    path = Path(source)
    for folder in [path] if path.is_dir() else list(path.resolve().parents)[:2]:
        record = folder / "test_evaluations.json"
        if record.is_file():
            try:
                return int(json.loads(record.read_text(encoding="utf-8"))["count"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None
