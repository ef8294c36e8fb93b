"""Out-of-fold operating points and calibration of a ``skin-cnn cv`` run, beside the study's.

For each task of the CV run: sensitivity and specificity pooled over the folds, every photo judged
at the threshold its fold model stores (``cv_folds.csv``; 0.5 for the study's recipe, Youden's
cut-off for ``frozen-linear``), with exact Clopper-Pearson intervals; the expected calibration
error (10 equal-width bins) of the out-of-fold probabilities; the same after calibrating them
on out-of-fold scores, cross-fitted so that no photo's own label enters its calibration (for
the photos of fold k the calibrator is fitted on the out-of-fold scores of the other folds:
isotonic regression, or Platt's sigmoid, a logistic regression on the score's logit, what
scikit-learn's ``CalibratedClassifierCV`` fits); and whether any threshold on the out-of-fold
ROC curve reaches the study's sensitivity and specificity together::

    python docs/experiments/crops/operating_points.py --cv runs/crops/study-crop \
        --manifest ../shared/data/public-derm/manifest.csv -o runs/crops/operating_points_study.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

from skin_cnn.stats.calibration import expected_calibration_error

#: The study's sensitivity and specificity (VGG-16P, its own test set).
STUDY = {"psoriasis_vs_eczema": (0.818, 0.736), "acne_vs_rosacea": (0.854, 0.895),
         "ctcl_vs_eczema": (0.743, 0.841)}
#: The sources of the public photos, by the start of ``original_dataset``.
SOURCES = ("DermNet NZ", "Fitzpatrick17k", "SD-198")


def ece(y, p, n_bins=10):
    """Expected calibration error over equal-width bins, weighted by the photos per bin (the
    product's, ``skin_cnn.stats.calibration.expected_calibration_error``)."""
    return expected_calibration_error(y, p, n_bins)


def exact(k, n):
    """``k / n`` with its exact 95% Clopper-Pearson interval."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(method="exact")
    return [k / n, float(ci.low), float(ci.high)]


def sens_spec(y, p, cut):
    """Sensitivity and specificity (with intervals) of ``p >= cut``."""
    pred = p >= cut
    positive = y == 1
    return {"sensitivity": exact(pred[positive].sum(), positive.sum()),
            "specificity": exact((~pred[~positive]).sum(), (~positive).sum())}


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))[:, None]


def cross_fitted(y, p, folds, method):
    """Calibrated probabilities: fold k's photos mapped by a calibrator fitted on the other folds."""
    out = np.empty_like(p)
    for fold in np.unique(folds):
        held, fit = folds == fold, folds != fold
        if method == "isotonic":
            model = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p[fit], y[fit])
            out[held] = model.predict(p[held])
        else:
            model = LogisticRegression(C=1e6).fit(_logit(p[fit]), y[fit])
            out[held] = model.predict_proba(_logit(p[held]))[:, 1]
    return out


def best_specificity_at(y, p, sensitivity):
    """The highest out-of-fold specificity of any threshold whose sensitivity is at least ``sensitivity``."""
    fpr, tpr, _ = roc_curve(y, p)
    ok = tpr >= sensitivity - 1e-12
    return float(1 - fpr[ok].min())


def task_entry(part):
    """Every figure of one task's out-of-fold rows (``y_true``, ``y_prob``, ``fold``, ``threshold``)."""
    y, p = part["y_true"].to_numpy().astype(int), part["y_prob"].to_numpy().astype(float)
    folds, cuts = part["fold"].to_numpy(), part["threshold"].to_numpy()
    study_sens, study_spec = STUDY[part["task"].iloc[0]]
    entry = {"n": int(len(y)), "positives": int(y.sum()), "thresholds": sorted(set(np.round(cuts, 3).tolist())),
             "at_stored": sens_spec(y, p, cuts), "ece": ece(y, p),
             "best_spec_at_study_sens": best_specificity_at(y, p, study_sens), "study": [study_sens, study_spec]}
    for method in ("isotonic", "sigmoid"):
        calibrated = cross_fitted(y, p, folds, method)
        entry[f"ece_{method}"] = ece(y, calibrated)
        entry[f"at_0.5_{method}"] = sens_spec(y, calibrated, 0.5)
    return entry


def oof_frame(cv, manifest):
    """Out-of-fold rows with each row's stored threshold and source."""
    oof = pd.read_csv(Path(cv) / "oof_predictions.csv")
    folds = pd.read_csv(Path(cv) / "cv_folds.csv")
    cut = folds.set_index(["fold", "task"])["threshold"] if "threshold" in folds else None
    oof["threshold"] = 0.5 if cut is None else [cut[(f, t)] for f, t in zip(oof["fold"], oof["task"])]
    sources = pd.read_csv(manifest)
    sources["key"] = [str((Path(manifest).parent / p).resolve()) for p in sources["image_path"]]
    sources["source"] = [next((name for name in SOURCES if str(s).startswith(name)), "other")
                         for s in sources["original_dataset"]]
    oof["key"] = [str(Path(p).resolve()) for p in oof["image_path"]]
    return oof.merge(sources[["key", "source"]], on="key", validate="many_to_one")


def pct(v):
    return f"{100 * v[0]:.1f} ({100 * v[1]:.1f}–{100 * v[2]:.1f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("-o", "--out", default=None)
    args = parser.parse_args(argv)
    oof = oof_frame(args.cv, args.manifest)
    result = {}
    for scope, frame in (("pooled", oof), ("DermNet NZ", oof[oof["source"] == "DermNet NZ"])):
        result[scope] = {task: task_entry(part) for task, part in frame.groupby("task")}
    print("| task | scope | threshold | sensitivity | specificity | study | best spec. at study sens. "
          "| ECE | ECE isotonic | ECE sigmoid |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scope, tasks in result.items():
        for task, e in tasks.items():
            cuts = ", ".join(f"{c:g}" for c in e["thresholds"])
            point = e["at_stored"]
            print(f"| {task} | {scope} | {cuts} | {pct(point['sensitivity'])} | {pct(point['specificity'])} "
                  f"| {100 * e['study'][0]:.1f} / {100 * e['study'][1]:.1f} | {100 * e['best_spec_at_study_sens']:.1f} "
                  f"| {e['ece']:.3f} | {e['ece_isotonic']:.3f} | {e['ece_sigmoid']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
