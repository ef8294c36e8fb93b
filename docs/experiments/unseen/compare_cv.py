"""Two ``skin-cnn cv`` runs on the same photos and folds, compared image by image.

For each task: pooled and within-source out-of-fold AUC of both runs, the paired cluster-bootstrap
difference (candidate − reference) pooled and within DermNet NZ, and sensitivity and specificity
pooled over the folds (and within DermNet NZ) at each fold model's own threshold (``cv_folds.csv``'s
``threshold``)::

    python docs/experiments/unseen/compare_cv.py --reference runs/unseen/cv-study \
        --candidate runs/unseen/cv-frozen-linear --manifest DATA/manifest.csv
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = {"DermNet NZ": "DermNet NZ", "Fitzpatrick17k": "Fitzpatrick17k", "SD-198": "SD-198"}


def oof_with_source(run, manifest):
    oof = pd.read_csv(Path(run) / "oof_predictions.csv")
    oof["key"] = [str(Path(p).resolve()) for p in oof["image_path"]]
    return oof.merge(manifest[["key", "source"]], on="key", validate="many_to_one")


def at_fold_thresholds(run, oof, task):
    """Sensitivity and specificity over all folds, each image judged at its fold model's threshold."""
    folds = pd.read_csv(Path(run) / "cv_folds.csv")
    cut = folds[folds["task"] == task].set_index("fold")["threshold"] if "threshold" in folds else None
    part = oof[oof["task"] == task]
    t = part["fold"].map(cut).to_numpy() if cut is not None else np.full(len(part), 0.5)
    pred = part["y_prob"].to_numpy() >= t
    y = part["y_true"].to_numpy() == 1
    derm = (part["source"] == "DermNet NZ").to_numpy()
    return {"sensitivity": float(pred[y].mean()), "specificity": float((~pred[~y]).mean()),
            "sensitivity_dermnet": float(pred[y & derm].mean()) if (y & derm).any() else None,
            "specificity_dermnet": float((~pred[~y & derm]).mean()) if (~y & derm).any() else None,
            "thresholds": sorted(set(np.round(t, 3)))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("-o", "--out", default=None, help="JSON file for the numbers")
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from skin_cnn.core.tasks import TASK_NAMES
    from skin_cnn.stats.bootstrap import paired_auc_difference

    manifest = pd.read_csv(args.manifest)
    root = Path(args.manifest).parent.resolve()
    manifest["key"] = [str((root / p).resolve()) for p in manifest["image_path"]]
    manifest["source"] = [next((v for k, v in SOURCES.items() if str(s).startswith(k)), "other")
                          for s in manifest["original_dataset"]]
    ref = oof_with_source(args.reference, manifest)
    cand = oof_with_source(args.candidate, manifest)
    groups = pd.read_csv(Path(args.reference) / "folds.csv")
    group_of = dict(zip((str(Path(p).resolve()) for p in groups["image_path"]), groups["group"]))
    report = {}
    print("| task | run | pooled AUC | DermNet NZ | Fitzpatrick17k | SD-198 | sensitivity | specificity |")
    print("|---|---|---|---|---|---|---|---|")
    for task in TASK_NAMES:
        a = ref[ref["task"] == task].set_index("key")
        b = cand[cand["task"] == task].set_index("key").reindex(a.index)
        assert b["y_true"].notna().all(), "the runs must predict the same images"
        entry = {}
        for name, run, frame, table in (("reference", args.reference, a, ref), ("candidate", args.candidate, b, cand)):
            aucs = {"pooled": float(roc_auc_score(frame["y_true"], frame["y_prob"]))}
            for src in SOURCES.values():
                part = frame[frame["source"] == src]
                both = part["y_true"].nunique() == 2
                aucs[src] = float(roc_auc_score(part["y_true"], part["y_prob"])) if both else None
            entry[name] = dict(aucs, **at_fold_thresholds(run, table, task))
            cells = [("–" if aucs[k] is None else f"{aucs[k]:.3f}") for k in ("pooled", *SOURCES.values())]
            print(f"| {task} | {Path(run).name} | " + " | ".join(cells)
                  + f" | {entry[name]['sensitivity']:.3f} | {entry[name]['specificity']:.3f} |")
        g = np.array([group_of[k] for k in a.index])
        derm = (a["source"] == "DermNet NZ").to_numpy()
        for label, mask in (("pooled", np.ones(len(a), bool)), ("DermNet NZ", derm)):
            r = paired_auc_difference(a["y_true"].to_numpy()[mask], b["y_prob"].to_numpy()[mask],
                                      a["y_prob"].to_numpy()[mask], groups=g[mask], n_resamples=2000, seed=0)
            entry[f"difference_{label}"] = {"difference": r["difference"], "ci": r["ci"]}
        report[task] = entry
    print()
    for task, entry in report.items():
        for label in ("pooled", "DermNet NZ"):
            d = entry[f"difference_{label}"]
            print(f"{task:<20} {label:<11} candidate − reference {d['difference']:+.3f} "
                  f"(95% CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
