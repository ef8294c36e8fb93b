"""Compare models evaluated on the same test images: one table and paired DeLong tests.

AUCs of two models measured on the same images are correlated, so their difference is tested
with DeLong's paired test rather than by looking at overlapping intervals. The images must be
identical: predictions are matched by ``(image_path, task)`` and any difference is an error.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from skin_cnn.atomic import write_csv, write_text
from skin_cnn.diseases import TASK_NAMES
from skin_cnn.evaluation import intervals
from skin_cnn.evaluation.delong import delong_test
from skin_cnn.evaluation.metrics import auc_estimate, confusion_counts
from skin_cnn.evaluation.plots import task_title
from skin_cnn.evaluation.report import Report, fmt_pct
from skin_cnn.predictions import read_predictions

KEY = ["image_path", "task"]
RUN_PREDICTION_FILES = ("eval_test/predictions_test.csv", "predictions_test.csv")


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
    return one frame with ``image_path, task, y_true`` and one probability column per model."""
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


def compare_predictions(frames, threshold=0.5, confidence=0.95):
    """AUC and accuracy of every model per task, and paired DeLong tests of every pair.

    Parameters
    ----------
    frames : dict of str -> pandas.DataFrame
        Predictions tables keyed by model name, all on the same (image, task) pairs.
    threshold : float
        For accuracy: ``y_prob >= threshold`` is positive.

    Returns
    -------
    table : pandas.DataFrame
        ``task, model, n_images, auc, auc_ci_low, auc_ci_high, auc_method, accuracy,
        accuracy_ci_low, accuracy_ci_high``.
    tests : pandas.DataFrame
        ``task, model_a, model_b, auc_a, auc_b, difference, ci_low, ci_high, z, p_value, p_holm``
        (Holm-adjusted within each task over all pairs).
    """
    data = aligned(frames)
    names = list(frames)
    rows, tests = [], []
    for task in TASK_NAMES:
        part = data[data["task"] == task]
        if part.empty:
            continue
        y = part["y_true"].to_numpy().astype(int)
        for name in names:
            p = part[name].to_numpy(dtype=float)
            auc = auc_estimate(y, p, confidence)
            tp, fn, tn, fp = confusion_counts(y, p, threshold)
            acc = intervals.clopper_pearson(tp + tn, len(y), confidence)
            rows.append(
                {
                    "task": task,
                    "model": name,
                    "n_images": len(y),
                    "auc": auc["value"],
                    "auc_ci_low": (auc["ci"] or [None, None])[0],
                    "auc_ci_high": (auc["ci"] or [None, None])[1],
                    "auc_method": auc["method"],
                    "accuracy": acc.value,
                    "accuracy_ci_low": acc.ci[0],
                    "accuracy_ci_high": acc.ci[1],
                }
            )
        task_tests = []
        for a, b in combinations(names, 2):
            entry = {"task": task, "model_a": a, "model_b": b}
            try:
                r = delong_test(
                    y, part[a].to_numpy(dtype=float), part[b].to_numpy(dtype=float), confidence
                )
                entry.update(
                    auc_a=r["auc_a"],
                    auc_b=r["auc_b"],
                    difference=r["difference"],
                    ci_low=r["ci"][0],
                    ci_high=r["ci"][1],
                    z=r["z"],
                    p_value=r["p_value"],
                )
            except ValueError as exc:  # too few positives or negatives for DeLong
                entry.update(
                    auc_a=None,
                    auc_b=None,
                    difference=None,
                    ci_low=None,
                    ci_high=None,
                    z=None,
                    p_value=None,
                    note=str(exc),
                )
            task_tests.append(entry)
        for entry, adj in zip(task_tests, holm([t["p_value"] for t in task_tests])):
            entry["p_holm"] = adj
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


def comparison_report(table, tests, sources, threshold):
    """The Markdown report of a comparison (Table-3 style, then the paired tests)."""
    rep = Report("Model comparison")
    rep.items([f"**{name}**: `{src}`" for name, src in sources.items()])
    rep.heading("AUC and accuracy")
    rows = []
    for task, part in table.groupby("task", sort=False):
        for _, r in part.iterrows():
            rows.append(
                [
                    task_title(task),
                    r["model"],
                    r["n_images"],
                    fmt_pct(_entry(r["auc"], r["auc_ci_low"], r["auc_ci_high"])),
                    fmt_pct(_entry(r["accuracy"], r["accuracy_ci_low"], r["accuracy_ci_high"])),
                ]
            )
    rep.table(["Task", "Model", "n images", "AUC", "Accuracy"], rows)
    rep.para(
        f"AUC with DeLong 95% intervals; accuracy at threshold {threshold:g} with exact "
        "Clopper–Pearson intervals. Every model was evaluated on the same images."
    )
    rep.heading("Paired DeLong tests of AUC differences")
    rep.table(
        ["Task", "A", "B", "AUC A − AUC B", "95% CI", "p", "p (Holm)"],
        [
            [
                task_title(r["task"]),
                r["model_a"],
                r["model_b"],
                "n/a" if pd.isna(r["difference"]) else f"{100 * r['difference']:+.2f} pp",
                "n/a"
                if pd.isna(r["ci_low"])
                else f"{100 * r['ci_low']:+.2f} to {100 * r['ci_high']:+.2f} pp",
                _p(None if pd.isna(r["p_value"]) else r["p_value"]),
                _p(None if pd.isna(r["p_holm"]) else r["p_holm"]),
            ]
            for _, r in tests.iterrows()
        ],
    )
    rep.para(
        "Two-sided p-values of DeLong's test for correlated AUCs (same images); Holm's "
        "adjustment over the pairs within each task. The test treats images as independent."
    )
    return rep


def write_comparison(sources, out, threshold=0.5, confidence=0.95):
    """Load each source (run folder or predictions CSV), compare, write ``compare.csv``,
    ``compare_delong.csv`` and ``compare.md`` into ``out``; returns (table, tests)."""
    loaded = [load_variant(s) for s in sources]
    names = _unique_names([name for name, _ in loaded])
    frames = {name: frame for name, (_, frame) in zip(names, loaded)}
    table, tests = compare_predictions(frames, threshold, confidence)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", table)
    write_csv(out / "compare_delong.csv", tests)
    rep = comparison_report(table, tests, dict(zip(names, map(str, sources))), threshold)
    write_text(out / "compare.md", rep.markdown(out))
    return table, tests
