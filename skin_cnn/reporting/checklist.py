"""What a run folder can tell a reporting checklist, and the checklist section of the report.

Reporting guidelines for prediction models and AI diagnostic-accuracy studies — TRIPOD+AI
(Collins et al., BMJ 2024), CLAIM (Checklist for Artificial Intelligence in Medical Imaging,
2024 update) and STARD-AI — ask for the same facts in different words: the flow of patients and
images, the characteristics of each partition, how partitions were kept apart, preprocessing,
the model with its versions and seeds, the training and its stopping rule, the threshold,
2×2 tables, metrics with intervals, calibration, subgroups and fairness, and an analysis of
failures. Most of these are in a run folder and its evaluation; this module collects them
(:func:`run_context`) and lists, per checklist item, where the report answers it
(:func:`checklist_rows`). Items only the authors can write (title, background, eligibility,
reference standard, ethics, funding, …) are listed as theirs to fill; nothing is claimed that
the run does not contain.

TRIPOD+AI items carry their published numbers. CLAIM 2024 and STARD-AI items are named by
their topic, since their numbering differs between versions of those checklists.

This module reads files only; it never loads a model (the evaluation layer may not import the
training, model or prediction layers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from skin_cnn.core.io import sha256_file

SPLIT_ORDER = ("train", "val", "test")
#: Columns of a split shown among the baseline characteristics when present (besides diagnosis).
CHARACTERISTICS = ("source", "fitzpatrick_scale", "fitzpatrick_type", "fitzpatrick", "sex", "age_group")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _missing(series):
    text = series.astype(str).str.strip()
    return series.isna() | text.isin(["", "nan", "None"])


def disjointness(split_frame, columns=("patient_id", "split_group")):
    """Check, from the data, that no patient or split group lies in more than one partition.

    Parameters
    ----------
    split_frame : pandas.DataFrame
        Rows with ``split`` and the ``columns`` to check (read as is, not through
        :func:`skin_cnn.data.split.load_split`, which would refuse an overlapping file instead of
        reporting it).

    Returns
    -------
    list of dict
        Per column present: ``column``, ``n_values`` (distinct non-empty values), ``n_missing``
        (rows without a value, each then its own unit), ``shared`` (value -> the partitions it
        appears in, for every value in more than one) and ``disjoint`` (bool).
    """
    out = []
    for column in columns:
        if column not in split_frame.columns:
            continue
        missing = _missing(split_frame[column])
        rows = split_frame[~missing]
        values = rows[column].astype(str).str.strip()
        spread = rows.groupby(values)["split"].agg(lambda s: sorted(set(s), key=_split_key))
        shared = {str(v): list(s) for v, s in spread.items() if len(s) > 1}
        out.append({
            "column": column,
            "n_values": int(values.nunique()),
            "n_missing": int(missing.sum()),
            "shared": shared,
            "disjoint": not shared,
        })
    return out


def _split_key(s):
    return SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER)


def baseline_table(split_frame):
    """Baseline characteristics per partition: images, patients, diagnoses and the
    :data:`CHARACTERISTICS` columns present, as ``(header, rows)`` with ``n (%)`` cells.

    Missing values of a characteristic are counted as ``unknown`` rather than left out, so each
    block adds up to the partition's images.
    """
    splits = sorted(set(split_frame["split"].astype(str)), key=_split_key)
    parts = {s: split_frame[split_frame["split"].astype(str) == s] for s in splits}
    header = ["Characteristic"] + [f"{s} (n = {len(parts[s])})" for s in splits]

    def pct(n, total):
        return f"{n} ({100 * n / total:.1f}%)" if total else "0"

    rows = [["Images"] + [str(len(parts[s])) for s in splits]]
    if "patient_id" in split_frame.columns:
        def patients(p):
            ids = p.loc[~_missing(p["patient_id"]), "patient_id"].astype(str)
            no_id = int(_missing(p["patient_id"]).sum())
            return f"{ids.nunique()}" + (f" (+{no_id} images without id)" if no_id else "")

        rows.append(["Patients"] + [patients(parts[s]) for s in splits])
    from skin_cnn.evaluation.groups import group_labels

    columns = [c for c in ("diagnosis", *CHARACTERISTICS) if c in split_frame.columns]
    for column in columns:
        labels = group_labels(split_frame[column], column)  # Fitzpatrick -1 is unknown, not a type
        for value in sorted(set(labels), key=lambda v: (v == "unknown", v)):
            rows.append([f"{column}: {value}"] + [
                pct(int((labels[parts[s].index] == value).sum()), len(parts[s])) for s in splits
            ])
    return header, rows


def _history(run_dir, train):
    """Epochs run, best epoch and the stopping rule, from ``history.csv`` and ``status.json``."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    status = _read_json(Path(run_dir) / "status.json") or {}
    out = {"epochs_run": int(len(frame)), "max_epochs": train.get("epochs"),
           "patience": train.get("patience"), "lr_patience": train.get("lr_patience"),
           "lr_factor": train.get("lr_factor"), "monitor": None, "best_epoch": status.get("best_epoch"),
           "best_value": None, "finished": status.get("finished")}
    if "val_mean_auc" in frame.columns and len(frame):
        out["monitor"] = "val_mean_auc"
        best = int(frame["val_mean_auc"].idxmax())
        epochs = frame["epoch"] if "epoch" in frame.columns else pd.Series(range(1, len(frame) + 1))
        if out["best_epoch"] is None:
            out["best_epoch"] = int(epochs.iloc[best])
        out["best_value"] = float(frame["val_mean_auc"].iloc[best])
    return out


def run_context(run_dir):
    """What a run folder records for the checklist and the report.

    Returns
    -------
    dict
        ``run_dir``; ``config`` (``config.json``); ``train``, ``preprocessing``, ``versions``
        and ``seed`` from it; ``files`` (name -> SHA-256 of the model file ``best.keras`` and of
        the weights file recorded in ``train.weights`` when it is a path that exists);
        ``history`` (:func:`_history`); ``training_curves`` (path or None); ``method``
        (:func:`skin_cnn.evaluation.method.method_rows`: the settings that took effect) and
        ``linear_fit`` (``linear_fit.json``) for the linear heads; ``baseline``
        (:func:`baseline_table`) and ``disjointness`` (:func:`disjointness`) from ``split.csv``.
        Entries the folder does not have are None.
    """
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json") or {}
    train = config.get("train") or {}
    files = {}
    if (run_dir / "best.keras").is_file():
        files["best.keras"] = sha256_file(run_dir / "best.keras")
    weights = train.get("weights")
    if weights and weights not in ("imagenet", "none") and Path(weights).is_file():
        files[str(weights)] = sha256_file(weights)
    split = None
    if (run_dir / "split.csv").is_file():
        split = pd.read_csv(run_dir / "split.csv", dtype=str, keep_default_na=False)
    curves = run_dir / "training_curves.png"
    linear_fit = _read_json(run_dir / "linear_fit.json") or {}
    chosen_c = {t: e["C"] for t, e in (linear_fit.get("tasks") or {}).items() if "C" in e} or None
    calibration = _read_json(run_dir / "calibration.json")
    platt_maps = calibration.get("tasks", {}) if calibration and train.get("head") != "linear" else None
    method = None
    if train:
        from skin_cnn.evaluation.method import method_rows

        method = method_rows(train, feature_cache=(config.get("resolved") or {}).get("feature_cache"),
                             preprocessing=config.get("preprocessing"), chosen_c=chosen_c,
                             platt_maps=platt_maps)
    return {
        "run_dir": str(run_dir),
        "config": config or None,
        "train": train or None,
        "preprocessing": config.get("preprocessing"),
        "versions": config.get("versions"),
        "seed": train.get("seed"),
        "split_sha256": config.get("split_sha256"),
        "files": files,
        "weights_setting": weights,
        "history": _history(run_dir, train),
        "training_curves": str(curves) if curves.is_file() else None,
        "method": method,
        "linear_fit": linear_fit or None,
        "baseline": baseline_table(split) if split is not None and "split" in split else None,
        "disjointness": disjointness(split) if split is not None and "split" in split else None,
    }


# ---------------------------------------------------------------------------------------------
# the checklist

#: ``(what the run shows, key of the report section that holds it, [(checklist, item)])``.
#: ``key`` is looked up in the sections the report actually has; an entry whose section is
#: absent is not claimed.
FILLABLE = (
    ("Flow of patients and images, every exclusion with its reason", "flow",
     [("TRIPOD+AI", "20a Participants: flow"), ("CLAIM", "Flow of participants or cases (diagram)"),
      ("STARD-AI", "Flow of participants (diagram)")]),
    ("Baseline characteristics per partition", "baseline",
     [("TRIPOD+AI", "20b Participant characteristics"),
      ("CLAIM", "Demographic and clinical characteristics of cases in each partition"),
      ("STARD-AI", "Baseline characteristics of participants")]),
    ("Partitions disjoint by patient and split group (checked on the data)", "partitions",
     [("TRIPOD+AI", "12a How data were used and partitioned"),
      ("CLAIM", "Data partitions and the level at which they are disjoint"),
      ("STARD-AI", "Data partitioning (training, validation, test sets)")]),
    ("Preprocessing and augmentation settings", "preprocessing",
     [("TRIPOD+AI", "7 Data preparation"), ("CLAIM", "Data preprocessing steps"),
      ("STARD-AI", "Index test: data preprocessing")]),
    ("Model specification: file hashes, package versions, seeds", "model",
     [("TRIPOD+AI", "22 Model specification"),
      ("CLAIM", "Detailed description of model; software libraries and packages; "
                "initialisation of model parameters"),
      ("STARD-AI", "Index test: model and version")]),
    ("Training: epochs and stopping rule, or the closed-form fit and its chosen C", "training",
     [("TRIPOD+AI", "12c Type of model and model-building steps"),
      ("CLAIM", "Details of training approach; method of selecting the final model")]),
    ("Threshold and how it was fixed before the test", "threshold",
     [("TRIPOD+AI", "15 Model output and thresholds"),
      ("STARD-AI", "Test positivity cut-offs, pre-specified or exploratory")]),
    ("2×2 tables of index test against reference standard", "two_by_two",
     [("TRIPOD+AI", "23a Model performance"),
      ("STARD-AI", "Cross tabulation of index test and reference standard")]),
    ("Metrics with confidence intervals", "metrics",
     [("TRIPOD+AI", "12e Performance measures; 23a Model performance with confidence intervals"),
      ("CLAIM", "Metrics of model performance; statistical measures of uncertainty"),
      ("STARD-AI", "Estimates of diagnostic accuracy and their precision")]),
    ("Calibration: reliability curve, ECE, Brier score, slope and intercept", "calibration",
     [("TRIPOD+AI", "12e Performance measures (calibration); 23a Model performance"),
      ("CLAIM", "Metrics of model performance")]),
    ("Subgroup tables", "subgroups",
     [("TRIPOD+AI", "23a Performance in key subgroups"),
      ("CLAIM", "Robustness or sensitivity analysis"),
      ("STARD-AI", "Analyses of variability in diagnostic accuracy (subgroups)")]),
    ("Fairness: per-group metrics and largest gaps", "fairness",
     [("TRIPOD+AI", "14 Fairness; 23a Performance in key subgroups"),
      ("STARD-AI", "Performance across subgroups (fairness)")]),
    ("Failure gallery: most confident false positives and negatives", "failures",
     [("CLAIM", "Failure analysis of incorrectly classified cases"),
      ("STARD-AI", "Analysis of errors (failure cases)")]),
    ("Grad-CAM of the failures", "gradcam",
     [("CLAIM", "Methods for explainability or interpretability")]),
    ("Leakage audit: evaluated images compared with every training image (suspected duplicates)", "leakage",
     [("CLAIM", "Data partitions and the level at which they are disjoint"),
      ("STARD-AI", "Data partitioning (training, validation, test sets)")]),
)

#: Items only the authors can write, per checklist.
AUTHORS = {
    "TRIPOD+AI": (
        "1 Title", "2 Abstract", "3a–c Background, intended use, known inequalities",
        "4 Objectives", "5a–b Data sources and dates", "6a–c Setting, eligibility, treatments",
        "8a–c Outcome and its assessment", "9a–c Predictors", "10 Sample size",
        "11 Missing data", "13 Class imbalance (rationale)", "16 Development vs evaluation data",
        "17 Ethical approval", "18a–f Funding, conflicts, protocol, registration, data and code "
        "sharing", "19 Patient and public involvement", "24 Model updating",
        "25 Interpretation", "26 Limitations", "27a–c Usability and future research",
    ),
    "CLAIM": (
        "Title and abstract", "Background and objectives", "Study design", "Data sources",
        "Eligibility criteria", "De-identification", "Handling of missing data",
        "Image acquisition protocol", "Reference standard: definition, rationale, source, "
        "annotators and their variability", "Intended sample size", "External evaluation",
        "Limitations and implications for practice", "Registration, protocol, data and code "
        "availability, funding",
    ),
    "STARD-AI": (
        "Title and abstract", "Intended use and clinical role of the index test",
        "Eligibility, recruitment and data sources", "Reference standard and its rationale",
        "Blinding", "Sample size", "Limitations and implications", "Registration, protocol, "
        "funding",
    ),
}
CHECKLISTS = ("TRIPOD+AI", "CLAIM", "STARD-AI")


def checklist_rows(sections):
    """Per checklist, the items the report fills, with a link to where.

    Parameters
    ----------
    sections : dict of str -> (str, str)
        Section key -> ``(anchor, short filled text)`` for every section the report contains
        (see :data:`FILLABLE`).

    Returns
    -------
    dict of str -> list of [item, where]
        ``where`` is Markdown: the filled text and a link ``[section](#anchor)``.
    """
    out = {c: [] for c in CHECKLISTS}
    for what, key, items in FILLABLE:
        if key not in sections:
            continue
        anchor, text = sections[key]
        for checklist, item in items:
            out[checklist].append([item, f"{text} — [{what}](#{anchor})"])
    # TRIPOD+AI in the order of its item numbers ("7", "12a", "12c", "20a", ...)
    out["TRIPOD+AI"].sort(key=lambda row: (int(row[0].split()[0].rstrip("abcdefg")), row[0]))
    return out


def not_filled(sections):
    """What the checklist could link to but this evaluation lacks, with how to get it."""
    how = {
        "baseline": "evaluate the run folder", "partitions": "evaluate the run folder",
        "preprocessing": "evaluate the run folder", "model": "evaluate the run folder",
        "training": "evaluate the run folder", "subgroups": "--by COLUMN",
        "fairness": "--fairness COLUMN", "failures": "image paths that can be read",
        "gradcam": "evaluate the run folder", "calibration": "predictions", "flow": "a flow record",
        "leakage": "evaluate the run folder",
    }
    return [f"{what} ({how.get(key, 'not available')})" for what, key, _ in FILLABLE
            if key not in sections]
