"""Gather the experiment's evaluations into one Markdown table, beside the study's Table 3.

    python docs/experiments/summarise.py runs/experiment -o runs/experiment/summary.md

Reads ``<run>/eval_test/metrics.json`` (pooled) and ``<run>/eval_test/metrics_by_<column>.csv``
(per image source) of every run folder under the experiment folder. The study's figures are the
published ones (Table 3 of the paper in ``../shared/seed/``), on its own private test set: they are
context, not a like-for-like comparison.
"""
import argparse
import json
from pathlib import Path

import pandas as pd

from skin_cnn.core.tasks import TASK_NAMES

# The study's Table 3 (VGG-16P/N/PS/NS; cropped test images): AUC and accuracy, % (95% CI).
STUDY_TABLE3 = {
    "psoriasis_vs_eczema": {"P": ("86.07 (83.96–88.18)", "77.82 (75.35–80.15)"),
                            "N": ("81.74 (79.34–84.14)", "73.70 (71.10–76.18)"),
                            "PS": ("83.47 (81.18–85.76)", "74.87 (72.31–77.32)"),
                            "NS": ("81.88 (79.49–84.27)", "73.11 (70.49–75.61)")},
    "acne_vs_rosacea": {"P": ("89.89 (81.98–94.80)", "88.64 (83.68–92.51)"),
                        "N": ("88.70 (82.36–95.04)", "86.82 (81.62–90.99)"),
                        "PS": ("92.74 (87.54–97.94)", "88.18 (83.16–92.13)"),
                        "NS": ("92.03 (86.60–97.46)", "87.73 (82.65–91.75)")},
    "ctcl_vs_eczema": {"P": ("88.39 (85.30–91.48)", "81.46 (78.55–84.12)"),
                       "N": ("85.55 (82.16–88.94)", "78.90 (75.87–81.71)"),
                       "PS": ("86.64 (83.36–89.92)", "78.77 (75.74–81.59)"),
                       "NS": ("85.42 (82.02–88.82)", "77.37 (74.27–80.25)")},
}


def markdown_table(frame):
    """A pandas DataFrame as a GitHub Markdown table (no extra dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |")
    return "\n".join(lines)


def pct(metric):
    """``value (lo–hi)`` in percent, or ``–`` when undefined."""
    if not metric or metric.get("value") is None:
        return "–"
    lo, hi = metric.get("ci") or (None, None)
    ci = f" ({100 * lo:.1f}–{100 * hi:.1f})" if lo is not None and hi is not None else ""
    return f"{100 * metric['value']:.1f}{ci}"


def run_rows(folder):
    rows = []
    for metrics_path in sorted(Path(folder).glob("*/eval_test/metrics.json")):
        name = metrics_path.parent.parent.name
        metrics = json.loads(metrics_path.read_text())
        for task in TASK_NAMES:
            m = metrics["tasks"].get(task)
            if not m:
                continue
            rows.append({"model": name, "task": task, "n": m.get("n_images"),
                         "AUC": pct(m.get("auc")), "accuracy": pct(m.get("accuracy")),
                         "sensitivity": pct(m.get("sensitivity")), "specificity": pct(m.get("specificity")),
                         "PPV": pct(m.get("ppv")), "NPV": pct(m.get("npv"))})
    return pd.DataFrame(rows)


def source_rows(folder, column):
    frames = []
    for path in sorted(Path(folder).glob(f"*/eval_test/metrics_by_{column}.csv")):
        df = pd.read_csv(path)
        df = df[df["metric"] == "auc"].copy()
        df["model"] = path.parent.parent.name
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df["AUC"] = [
        "–" if pd.isna(v) else f"{100 * v:.1f}" + ("" if pd.isna(lo) else f" ({100 * lo:.1f}–{100 * hi:.1f})")
        for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])
    ]
    df["AUC"] = df["AUC"] + " n=" + df["n_images"].astype(str)
    # Short source names: the text before the first " (" or ",".
    df[column] = df[column].astype(str).str.split(r" \(|,", regex=True).str[0]
    return df.pivot_table(index=["task", "model"], columns=column, values="AUC", aggfunc="first").reset_index()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--by", default="original_dataset")
    args = parser.parse_args(argv)
    pooled = run_rows(args.folder)
    lines = ["# Experiment summary (test split, threshold 0.5; % with 95% CI)", ""]
    for task in TASK_NAMES:
        lines += [f"## {task}", ""]
        part = pooled[pooled["task"] == task].drop(columns="task")
        lines += [markdown_table(part), ""]
        study = STUDY_TABLE3[task]
        lines += ["Study (Table 3, its own test set): " + "; ".join(
            f"VGG-16{v} AUC {a}, accuracy {b}" for v, (a, b) in study.items()), ""]
    by_source = source_rows(args.folder, args.by)
    if len(by_source):
        lines += [f"## AUC within each image source ({args.by})", "", markdown_table(by_source), ""]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
