"""One recipe on several draws of the cross-validation folds: how often its stored thresholds meet
the study's operating points, and its calibration against what a calibrated model would show.

    python docs/experiments/best/fold_draws.py --manifest ../shared/data/public-derm/manifest.csv \
        runs/seeds/ts-s0 runs/seeds/ts-s1 runs/seeds/ts-s2 runs/seeds/ts-s3 runs/seeds/ts-s4 \
        -o runs/seeds/fold_draws.json

Each argument is a ``skin-cnn cv`` folder of the same recipe with another ``--seed`` (other
folds). Per run and task: pooled out-of-fold AUC; sensitivity and specificity with every photo
judged at the threshold its fold model stores (``cv_folds.csv``), as counts, against the study's
Table 2 (``skin_cnn.core.tasks.STUDY_OPERATING_POINTS``); ECE (10 bins) beside the ECE a perfectly
calibrated model with the same probabilities would show on as many photos
(``skin_cnn.stats.calibration.ece_if_calibrated``, 2,000 draws, seed 0). The last row counts the
draws meeting each criterion. Then, per task over every fold of every run, how far the
held-out fold's sensitivity and specificity at the fold's stored threshold fell from what the
threshold rule saw on the training folds' inner out-of-fold predictions (``val_predictions.csv``):
a systematic shift would be something a threshold rule could correct; spread around zero is
sampling. Last, the fold ensemble's AUC (``ensemble.keras``, the mean of the fold models): its
nested out-of-fold scores (``oof_ensemble_predictions.csv``: each photo scored by the mean of the
k − 1 regressions fitted without its fold) beside the single fold models' on the same photos.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crops"))
from operating_points import oof_frame  # noqa: E402

from skin_cnn.core.tasks import STUDY_OPERATING_POINTS, TASK_NAMES  # noqa: E402
from skin_cnn.stats.calibration import ece_if_calibrated, expected_calibration_error  # noqa: E402


def task_draw(part):
    """Every figure of one task in one run: AUC, counts at the stored thresholds, ECE and its reference."""
    y, p = part["y_true"].to_numpy().astype(int), part["y_prob"].to_numpy().astype(float)
    called = p >= part["threshold"].to_numpy()
    tp, positives = int(called[y == 1].sum()), int((y == 1).sum())
    tn, negatives = int((~called[y == 0]).sum()), int((y == 0).sum())
    study_sens, study_spec = STUDY_OPERATING_POINTS[part["task"].iloc[0]]
    ece = expected_calibration_error(y, p)
    return {"auc": float(roc_auc_score(y, p)), "tp": tp, "positives": positives, "tn": tn, "negatives": negatives,
            "point_met": bool(tp / positives >= study_sens and tn / negatives >= study_spec),
            "ece": ece, "ece_at_most_0.05": bool(ece <= 0.05),
            "ece_if_calibrated": ece_if_calibrated(p, ece, n_resamples=2000, seed=0),
            "calibrated_above_0.05": ece_if_calibrated(p, 0.05, n_resamples=2000, seed=0)["p_value"]}


def held_out_shift(run):
    """Per fold and task: held-out minus inner out-of-fold sensitivity and specificity at the stored threshold."""
    folds, oof = pd.read_csv(Path(run) / "cv_folds.csv"), pd.read_csv(Path(run) / "oof_predictions.csv")
    rows = []
    for fold, task, cut in zip(folds["fold"], folds["task"], folds["threshold"]):
        inner = pd.read_csv(Path(run) / f"fold{int(fold)}" / "val_predictions.csv")
        seen = inner[inner["task"] == task]
        held = oof[(oof["fold"] == fold) & (oof["task"] == task)]
        figures = [((part["y_prob"] >= cut)[part["y_true"] == 1].mean(),
                    (part["y_prob"] < cut)[part["y_true"] == 0].mean()) for part in (seen, held)]
        rows.append({"task": task, "sensitivity": figures[1][0] - figures[0][0],
                     "specificity": figures[1][1] - figures[0][1]})
    return rows


def cell(d):
    ref = d["ece_if_calibrated"]
    return (f"{d['auc']:.3f}; {100 * d['tp'] / d['positives']:.1f} ({d['tp']}/{d['positives']}) / "
            f"{100 * d['tn'] / d['negatives']:.1f} ({d['tn']}/{d['negatives']}) {'✓' if d['point_met'] else '✗'}; "
            f"ECE {d['ece']:.3f} (calibrated: ≤ {ref['p95']:.3f}, p = {ref['p_value']:.2f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("-o", "--out", default=None)
    args = parser.parse_args(argv)
    result = {}
    for run in args.runs:
        oof = oof_frame(run, args.manifest)
        result[run] = {task: task_draw(part) for task, part in oof.groupby("task")}
    print("| folds | " + " | ".join(TASK_NAMES) + " | all three met, ECE ≤ 0.05 |")
    print("|---|" + "---|" * (len(TASK_NAMES) + 1))
    for run, tasks in result.items():
        everything = all(tasks[t]["point_met"] and tasks[t]["ece_at_most_0.05"] for t in TASK_NAMES)
        print(f"| {Path(run).name} | " + " | ".join(cell(tasks[t]) for t in TASK_NAMES)
              + f" | {'yes' if everything else 'no'} |")
    n, draws = len(result), list(result.values())
    counts = {t: (sum(r[t]["point_met"] for r in draws), sum(r[t]["ece_at_most_0.05"] for r in draws),
                  float(np.mean([r[t]["auc"] for r in draws]))) for t in TASK_NAMES}
    every = sum(all(r[t]["point_met"] and r[t]["ece_at_most_0.05"] for t in TASK_NAMES) for r in draws)
    print("| draws meeting it | " + " | ".join(f"point {m} of {n}; ECE ≤ 0.05 {e} of {n}; mean AUC {a:.3f}"
                                            for m, e, a in counts.values()) + f" | {every} of {n} |")
    print("\nshare of draws in which a calibrated model with these probabilities has ECE >= 0.05:")
    for task in TASK_NAMES:
        shares = [r[task]["calibrated_above_0.05"] for r in draws]
        print(f"  {task:<22} {min(shares):.2f}–{max(shares):.2f}")
    shifts = [row for run in args.runs for row in held_out_shift(run)]
    print("\nheld-out minus inner out-of-fold, at the stored threshold (points; mean ± SD over folds):")
    for task in TASK_NAMES:
        mine = [r for r in shifts if r["task"] == task]
        sens, spec = (100 * np.array([r[k] for r in mine]) for k in ("sensitivity", "specificity"))
        print(f"  {task:<22} sensitivity {sens.mean():+.1f} ± {sens.std(ddof=1):.1f}, specificity "
              f"{spec.mean():+.1f} ± {spec.std(ddof=1):.1f} ({len(mine)} folds)")
    print("\nfold ensemble, nested out-of-fold AUC against the single fold models' (pooled):")
    ensemble = {}
    for run in args.runs:
        single, nested = (pd.read_csv(Path(run) / name) for name in ("oof_predictions.csv",
                                                                       "oof_ensemble_predictions.csv"))
        ensemble[run] = {t: [float(roc_auc_score(f[f["task"] == t]["y_true"], f[f["task"] == t]["y_prob"]))
                             for f in (single, nested)] for t in TASK_NAMES}
        print(f"  {Path(run).name}: " + "; ".join(f"{t} {a:.3f} -> {b:.3f}" for t, (a, b) in ensemble[run].items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": result, "held_out_shift": shifts, "ensemble_auc": ensemble},
                                             indent=1))


if __name__ == "__main__":
    main()
