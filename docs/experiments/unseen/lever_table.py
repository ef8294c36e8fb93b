"""Markdown tables of ``levers.py`` results: per task, pooled and DermNet NZ AUC with paired differences.

    python docs/experiments/unseen/lever_table.py runs/unseen/levers-*/levers.json
"""
import json
import sys

from skin_cnn.core.tasks import TASK_NAMES


def _diff(entry):
    if not entry:
        return "–"
    lo, hi = entry["ci"]
    return f"{entry['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"


def main(paths):
    records, seen = [], set()
    for path in paths:
        for rec in json.load(open(path)):
            key = (rec["row"], rec["task"])
            if key not in seen:
                seen.add(key)
                records.append(rec)
    for task in TASK_NAMES:
        rows = [r for r in records if r["task"] == task]
        n = rows[0]
        print(f"\n### {task} (n = {n['n']}; DermNet NZ n = {n['n_dermnet']})\n")
        print("| row | pooled AUC | Δ vs study (95% CI) | DermNet AUC | Δ vs study within DermNet (95% CI) "
              "| Fitzpatrick17k | SD-198 | fit, 5 folds |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            fmt = {k: ("–" if r[k] is None else f"{r[k]:.3f}")
                   for k in ("auc", "auc_dermnet", "auc_fitz17k", "auc_sd198")}
            seconds = "–" if r["fit_seconds_5_folds"] is None else f"{r['fit_seconds_5_folds']:.0f} s"
            print(f"| {r['row']} | {fmt['auc']} | {_diff(r.get('vs_study'))} | {fmt['auc_dermnet']} | "
                  f"{_diff(r.get('vs_study_dermnet'))} | {fmt['auc_fitz17k']} | {fmt['auc_sd198']} | {seconds} |")


if __name__ == "__main__":
    main(sys.argv[1:])
