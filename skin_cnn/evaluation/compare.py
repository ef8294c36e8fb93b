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

import pandas as pd

from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.stats import intervals
from skin_cnn.stats.bootstrap import bootstrap_intervals, paired_auc_difference
from skin_cnn.stats.delong import delong_test
from skin_cnn.evaluation.metrics import auc_estimate, confusion_counts
from skin_cnn.stats.precision import caveats
from skin_cnn.core.predictions import blank, read_predictions

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


def unique_names(names):
    seen, out = {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def aligned(frames):
    """Check that all models predicted the same (image, task) pairs with the same labels and
    patients, and return one frame with ``image_path, task, y_true``, ``patient_id`` (and
    ``split_group``) and one probability column per model.

    The paired bootstrap resamples these clusters, so two models that name an image's patient (or
    split group) differently were not scored on the same data: that is refused. A cluster column
    empty in one file is taken from another that fills it."""
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
        clusters = [c for c in CLUSTER_COLUMNS if c in df.columns]
        part = df[KEY + ["y_true", "y_prob"] + clusters].rename(
            columns={"y_prob": name, "y_true": f"y_true:{name}", **{c: f"{c}:{name}" for c in clusters}}
        )
        if base is None:
            base, first = part.rename(columns={f"{c}:{name}": c for c in clusters}), name
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
        for column in clusters:
            merged = _merged_cluster(merged, column, name, first)
        base = merged.drop(columns=f"y_true:{name}")
    return base.rename(columns={f"y_true:{first}": "y_true"})


def _merged_cluster(merged, column, name, first):
    """``merged`` with ``column:name`` folded into ``column``; an image whose two non-empty values
    differ is an error naming both."""
    theirs = merged.pop(f"{column}:{name}")
    if column not in merged.columns:
        merged[column] = theirs
        return merged

    ours = merged[column]
    both = ~blank(ours) & ~blank(theirs)
    differ = both & (ours.astype(str) != theirs.astype(str))
    if differ.any():
        k = differ.to_numpy().nonzero()[0][0]
        row = merged.iloc[k]
        raise ValueError(
            f"{name} and {first} disagree on the {column} of {row['image_path']} ({theirs.iloc[k]!s} against "
            f"{ours.iloc[k]!s}); the paired bootstrap resamples by {column}, so both must come from one manifest"
        )
    merged[column] = ours.where(~blank(ours), theirs)
    return merged


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
            "auc_boot_n_units": boot["n_units"], "auc_boot_note": boot.get("too_few_units", "")}


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
        ci = boot["ci"] or (None, None)
        entry.update(boot_ci_low=ci[0], boot_ci_high=ci[1],
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
        the models' patients, joined with their ``split_group`` when present, drawn within
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
