"""Compare models evaluated on the same test images: one table, a paired cluster bootstrap of
the AUC differences and paired DeLong tests.

AUCs of two models measured on the same images are correlated, so their difference is tested
with a paired test rather than by looking at overlapping intervals. DeLong's paired test treats
images as independent; the paired bootstrap draws whole patients (or split groups) within each
class, the same resamples for both models. Whenever the images come from fewer such units than
images, the bootstrap is the **primary** test (Holm's adjustment applied to its p-values) and
DeLong's is kept as a secondary, labelled one; when every image is its own unit DeLong's test is
primary. The images must be identical: predictions
are matched by ``(image_path, task)`` and any difference is an error. A fitted threshold (for
accuracy) is chosen per model on that model's validation predictions, which may share no image,
patient or split group with its test predictions.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from skin_cnn.core.io import PathLike, write_csv, write_text
from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.evaluation import intervals
from skin_cnn.evaluation.bootstrap import bootstrap_intervals, paired_auc_difference
from skin_cnn.evaluation.cells import fmt_pct
from skin_cnn.evaluation.delong import delong_test
from skin_cnn.evaluation.metrics import auc_estimate, confusion_counts
from skin_cnn.evaluation.plots import task_title
from skin_cnn.evaluation.precision import caveats, flagged
from skin_cnn.evaluation.report import CAVEAT_TEXT, Report
from skin_cnn.core.predictions import read_predictions

KEY = ["image_path", "task"]
RUN_PREDICTION_FILES = ("eval_test/predictions_test.csv", "predictions_test.csv")
RUN_VALIDATION_FILES = ("val_predictions.csv", "eval_test/predictions_val.csv", "predictions_val.csv")
CLUSTER_COLUMNS = ("patient_id", "split_group")


def load_variant(source):
    """Predictions of one model: a predictions CSV, or a run folder evaluated before.

    Returns
    -------
    name : str
        The run folder's name or the CSV's file stem.
    frame : pandas.DataFrame
    """
    path = Path(source)
    if path.is_dir():
        for rel in RUN_PREDICTION_FILES:
            if (path / rel).is_file():
                return path.name, read_predictions(path / rel)
        raise FileNotFoundError(
            f"{path}: no test predictions ({' or '.join(RUN_PREDICTION_FILES)}); "
            f"run `skin-cnn evaluate {path}` first"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such predictions CSV or run folder")
    return path.stem, read_predictions(path)


def _unique_names(names):
    seen, out = {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def aligned(frames):
    """Check that all models predicted the same (image, task) pairs with the same labels and
    return one frame with ``image_path, task, y_true``, the first model's ``patient_id`` (and
    ``split_group``) and one probability column per model."""
    names = list(frames)
    if len(names) < 2:
        raise ValueError("comparing needs at least two models")
    base = None
    for name in names:
        df = frames[name]
        dup = df.duplicated(KEY)
        if dup.any():
            row = df.loc[dup.idxmax()]
            raise ValueError(
                f"{name}: image {row['image_path']} appears twice for task {row['task']}"
            )
        part = df[KEY + ["y_true", "y_prob"]].rename(
            columns={"y_prob": name, "y_true": f"y_true:{name}"}
        )
        if base is None:
            clusters = [c for c in CLUSTER_COLUMNS if c in df.columns]
            part = part.join(df[clusters])
            base, first = part, name
            continue
        merged = base.merge(part, on=KEY, how="outer", indicator=True)
        only_a = merged[merged["_merge"] == "left_only"]
        only_b = merged[merged["_merge"] == "right_only"]
        if len(only_a) or len(only_b):
            example = (only_a if len(only_a) else only_b).iloc[0]
            raise ValueError(
                f"{name} and {first} were not evaluated on the same images: {len(only_a)} "
                f"(image, task) pairs only in {first}, {len(only_b)} only in {name} (e.g. "
                f"{example['image_path']} / {example['task']}); a paired comparison needs "
                "identical "
                "test sets"
            )
        merged = merged.drop(columns="_merge")
        differ = merged[f"y_true:{first}"] != merged[f"y_true:{name}"]
        if differ.any():
            row = merged[differ].iloc[0]
            raise ValueError(
                f"{name} and {first} disagree on the label of {row['image_path']} "
                f"for task {row['task']}"
            )
        base = merged.drop(columns=f"y_true:{name}")
    return base.rename(columns={f"y_true:{first}": "y_true"})


def holm(p_values):
    """Holm's step-down adjustment of a list of p-values (``None`` entries left as ``None``)."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    adjusted = list(p_values)
    order = sorted(idx, key=lambda i: p_values[i])
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _threshold_of(threshold, name, task):
    """The accuracy threshold of one model and task: a number, or per model (and per task)."""
    value = threshold.get(name, 0.5) if isinstance(threshold, dict) else threshold
    return float(value.get(task, 0.5) if isinstance(value, dict) else value)


def _model_row(task, name, y, p, threshold, confidence, auc_ci):
    auc = auc_estimate(y, p, confidence, auc_ci)
    tp, fn, tn, fp = confusion_counts(y, p, threshold)
    acc = intervals.clopper_pearson(tp + tn, len(y), confidence)
    counts = {"n_images": len(y), "n_positive": tp + fn, "n_negative": tn + fp}
    notes = caveats("auc", auc, counts) + [f"accuracy: {c}" for c in caveats("accuracy", acc.as_dict(), counts)]
    return {
        "task": task,
        "model": name,
        "n_images": len(y),
        "n_positive": tp + fn,
        "n_negative": tn + fp,
        "note": "; ".join(([auc["note"]] if auc.get("note") else []) + notes) or None,
        "auc": auc["value"],
        "auc_ci_low": (auc["ci"] or [None, None])[0],
        "auc_ci_high": (auc["ci"] or [None, None])[1],
        "auc_method": auc["method"],
        "threshold": threshold,
        "accuracy": acc.value,
        "accuracy_ci_low": acc.ci[0],
        "accuracy_ci_high": acc.ci[1],
    }


def _cluster_auc(part, name, settings):
    """One model's cluster bootstrap AUC interval (whole patients or split groups within each
    class, the resamples of the paired tests): ``auc_boot_ci_low/high, auc_boot_unit,
    auc_boot_n_units``; empty without a bootstrap (``settings.n_bootstrap`` 0)."""
    if not settings.n_bootstrap:
        return {}
    boot = bootstrap_intervals(
        part["y_true"].to_numpy().astype(int), part[name].to_numpy(dtype=float),
        patient_ids=part["patient_id"].tolist() if "patient_id" in part else None,
        groups=part["split_group"].tolist() if "split_group" in part else None,
        settings=settings.replace(bootstrap_method="percentile"))
    low, high = boot["auc"] or (None, None)
    return {"auc_boot_ci_low": low, "auc_boot_ci_high": high, "auc_boot_unit": boot["unit"],
            "auc_boot_n_units": boot["n_units"]}


def clustered_rows(table):
    """Rows of the model table whose images come from fewer bootstrap units (patients, split
    groups) than images: there the cluster bootstrap AUC interval is the one to quote first."""
    if "auc_boot_unit" not in table.columns:
        return pd.Series(False, index=table.index)
    return (table["auc_boot_unit"].isin(["patient", "split group"]) & table["auc_boot_ci_low"].notna()
            & (table["auc_boot_n_units"] < table["n_images"]))


def _pair_test(part, a, b, confidence, n_bootstrap, seed):
    """DeLong's paired test and the paired cluster bootstrap of ``AUC_a − AUC_b``."""
    y = part["y_true"].to_numpy().astype(int)
    sa, sb = part[a].to_numpy(dtype=float), part[b].to_numpy(dtype=float)
    entry = {"model_a": a, "model_b": b}
    try:
        r = delong_test(y, sa, sb, confidence)
    except ValueError as exc:  # too few positives or negatives for DeLong
        return {**entry, "auc_a": None, "auc_b": None, "difference": None, "ci_low": None,
                "ci_high": None, "z": None, "p_value": None, "note": str(exc), "primary": "delong"}
    entry.update(auc_a=r["auc_a"], auc_b=r["auc_b"], difference=r["difference"],
                 ci_low=r["ci"][0], ci_high=r["ci"][1], z=r["z"], p_value=r["p_value"])
    if n_bootstrap:
        boot = paired_auc_difference(
            y, sa, sb,
            patient_ids=part["patient_id"].tolist() if "patient_id" in part else None,
            groups=part["split_group"].tolist() if "split_group" in part else None,
            n_resamples=n_bootstrap, seed=seed, confidence=confidence,
        )
        entry.update(boot_ci_low=boot["ci"][0], boot_ci_high=boot["ci"][1],
                     boot_p_value=boot["p_value"], boot_unit=boot["unit"], boot_n_units=boot["n_units"])
    entry["primary"] = primary_test(entry, len(y))
    return entry


def primary_test(entry, n_images):
    """``"cluster bootstrap"`` when the paired bootstrap ran over fewer units (patients, split
    groups) than images, whose correlation DeLong's test ignores; else ``"delong"``."""
    clustered = entry.get("boot_unit") in ("patient", "split group") and entry.get("boot_n_units", n_images) < n_images
    return "cluster bootstrap" if clustered and entry.get("boot_p_value") is not None else "delong"


def compare_predictions(frames, threshold=0.5, settings: EvalSettings = EvalSettings()):
    """AUC and accuracy of every model per task, paired DeLong tests and a paired cluster
    bootstrap of every pair.

    Parameters
    ----------
    frames : dict of str -> pandas.DataFrame
        Predictions tables keyed by model name, all on the same (image, task) pairs.
    threshold : float or dict
        For accuracy: ``y_prob >= threshold`` is positive. One number, or per model a number or
        a task -> number mapping (fitted thresholds).
    settings : EvalSettings
        ``n_bootstrap`` resamples of the paired bootstrap (0: none) and its ``seed`` (units are
        the first model's patients, joined with its ``split_group`` when present, drawn within
        each class); ``confidence`` of every interval; ``auc_ci``, the scale of the DeLong AUC
        intervals. The paired bootstrap's interval is always a percentile one.

    Returns
    -------
    table : pandas.DataFrame
        ``task, model, n_images, auc, auc_ci_low, auc_ci_high, auc_method, threshold, accuracy,
        accuracy_ci_low, accuracy_ci_high``; with the bootstrap ``auc_boot_ci_low,
        auc_boot_ci_high, auc_boot_unit, auc_boot_n_units`` (the model's own cluster bootstrap,
        the primary AUC interval where :func:`clustered_rows`).
    tests : pandas.DataFrame
        ``task, model_a, model_b, auc_a, auc_b, difference``; DeLong's ``ci_low, ci_high, z,
        p_value, p_holm`` (Holm-adjusted within each task over all pairs); with the bootstrap
        ``boot_ci_low, boot_ci_high, boot_p_value, boot_p_holm`` (Holm over the bootstrap
        p-values), ``boot_unit, boot_n_units``; ``primary`` (:func:`primary_test`) names the
        test to quote first, and ``primary_p_holm`` is its Holm-adjusted p-value.
    """
    data = aligned(frames)
    names = list(frames)
    confidence, n_bootstrap, seed = settings.confidence, settings.n_bootstrap, settings.seed
    rows, tests = [], []
    for task in TASK_NAMES:
        part = data[data["task"] == task]
        if part.empty:
            continue
        y = part["y_true"].to_numpy().astype(int)
        for name in names:
            p = part[name].to_numpy(dtype=float)
            row = _model_row(task, name, y, p, _threshold_of(threshold, name, task), confidence, settings.auc_ci)
            rows.append({**row, **_cluster_auc(part, name, settings)})
        task_tests = [
            {"task": task, **_pair_test(part, a, b, confidence, n_bootstrap, seed)}
            for a, b in combinations(names, 2)
        ]
        for entry, adj in zip(task_tests, holm([t["p_value"] for t in task_tests])):
            entry["p_holm"] = adj
        if n_bootstrap:
            for entry, adj in zip(task_tests, holm([t.get("boot_p_value") for t in task_tests])):
                entry["boot_p_holm"] = adj
        for entry in task_tests:
            entry["primary_p_holm"] = entry.get("boot_p_holm" if entry["primary"] == "cluster bootstrap" else "p_holm")
        tests += task_tests
    return pd.DataFrame(rows), pd.DataFrame(tests)


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
    """Rows of the paired-tests table: the primary test's columns first (see :func:`primary_test`)."""
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
            auc = [_flag("auc", boot, r) if boot else "— (every image its own unit)", image_level]
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


def _validation_for(source, given):
    """Validation predictions of one model: the given file, or the run folder's own."""
    if given is not None:
        return read_predictions(given), str(given)
    path = Path(source)
    if path.is_dir():
        for rel in RUN_VALIDATION_FILES:
            if (path / rel).is_file():
                return read_predictions(path / rel), str(path / rel)
    raise ValueError(
        f"{source}: a fitted threshold needs this model's validation predictions; give "
        "--val-predictions FILE once per source, in the same order"
    )


def resolve_model_thresholds(rule, sources, frames, val_predictions=None):
    """Accuracy thresholds per model: the fixed value, or fitted per model and task on its
    validation predictions (which may not overlap its test predictions)."""
    from skin_cnn.evaluation.threshold import parse_threshold, resolve_thresholds

    rule = parse_threshold(rule)
    if not rule.needs_validation:
        return float(rule.value), "fixed"
    given = list(val_predictions or [])
    if given and len(given) != len(sources):
        raise ValueError(f"--val-predictions given {len(given)} times for {len(sources)} sources; give one per source")
    out = {}
    for k, (name, frame) in enumerate(frames.items()):
        validation, where = _validation_for(sources[k], given[k] if given else None)
        out[name], method = resolve_thresholds(
            rule, list(dict.fromkeys(frame["task"])), validation, where,
            evaluated=frame, evaluated_name=str(sources[k]),
        )
    return out, rule.describe()


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
    names = _unique_names([name for name, _ in loaded])
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
