"""Development CV of the best-recipe candidates: column sets of one feature extraction, same folds.

Every candidate is a set of columns of ``extract.py``'s features (scale × pooled blocks), fitted
per outer fold exactly as ``--head linear`` fits a fold (:func:`skin_cnn.training.linear.fit_linear_heads`
on the four training folds, train and validation parts together; C by grouped inner 5-fold CV; a
Youden threshold on the inner out-of-fold probabilities). The outer folds are those of
``skin-cnn cv --folds 5`` with seed 0 (docs/experiments/unseen.md's development folds). For each
candidate the out-of-fold probabilities are also calibrated, nested: a Platt (sigmoid) or isotonic
map fitted on the inner out-of-fold probabilities of the fold's training part only, applied to the
held-out fold (what scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does inside one fold).

    python docs/experiments/best/candidates.py --features OUT_OF_extract.py [--seed 0] -o OUT
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

WIDTH = {3: 256, 4: 512, 5: 512}
SCALES = (320, 250)  # input scale first, then the second scale (the model's concatenation order)
#: name -> (scales, blocks)
CANDIDATES = {
    "b45-250": ((250,), (4, 5)),
    "b345-250": ((250,), (3, 4, 5)),
    "b45-320": ((320,), (4, 5)),
    "b45-320+250": ((320, 250), (4, 5)),
    "b345-320+250": ((320, 250), (3, 4, 5)),
}


def columns(scales, blocks):
    """Column indices of ``blocks`` at ``scales`` in the superset features (scale-major, block order)."""
    out, start = [], 0
    for scale in SCALES:
        for block in (3, 4, 5):
            if scale in scales and block in blocks:
                out.extend(range(start, start + WIDTH[block]))
            start += WIDTH[block]
    return np.asarray(out)


def platt(p_fit, y_fit):
    """A sigmoid map of the logit fitted on (p_fit, y_fit): ``sigmoid(a·logit(p) + b)``."""
    from sklearn.linear_model import LogisticRegression

    logit = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))  # noqa: E731
    model = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p_fit)[:, None], y_fit)
    return lambda p: model.predict_proba(logit(p)[:, None])[:, 1]


def isotonic(p_fit, y_fit):
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p_fit, y_fit).predict


def fold_fit(x, frame, groups, folds, k, seed, return_fits=False, c_grid=None):
    """One outer fold: the fitted heads' held-out probabilities, thresholds and calibrated probabilities
    (and the fitted heads, with their inner out-of-fold answers, when ``return_fits``)."""
    from skin_cnn.core.tasks import TASKS
    from skin_cnn.evaluation.threshold import choose_threshold
    from skin_cnn.training.linear import C_GRID, fit_linear_heads

    train, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    fits = fit_linear_heads(x[train], np.arange(len(train)), np.ones(len(train), bool),
                            frame["diagnosis"].to_numpy()[train], groups[train], seed=seed,
                            c_grid=C_GRID if c_grid is None else c_grid)
    rows = []
    for task, fit in fits.items():
        y_inner = np.array([TASKS[task].label(d) for d in frame["diagnosis"].to_numpy()[train][fit.rows]], int)
        labels = frame["diagnosis"].iloc[held].map(TASKS[task].label)
        mine = held[labels.notna().to_numpy()]
        p = 1 / (1 + np.exp(-(x[mine] @ fit.kernel + fit.bias)))
        cut = choose_threshold(y_inner, fit.oof_probability, "youden", 0.9)
        cal_p, cal_i = platt(fit.oof_probability, y_inner), isotonic(fit.oof_probability, y_inner)
        rows.append(pd.DataFrame({"row": mine, "task": task, "fold": k, "C": fit.C,
                                  "y_true": labels.loc[frame.index[mine]].astype(int).to_numpy(), "y_prob": p,
                                  "threshold": cut, "y_platt": cal_p(p),
                                  "threshold_platt": float(cal_p(np.array([cut]))[0]),
                                  "y_isotonic": cal_i(p)}))
    out = pd.concat(rows, ignore_index=True)
    return (out, fits) if return_fits else out


def summarise(oof, frame, reference=None):
    """Per task: AUC pooled and within DermNet NZ, ECE raw / Platt / isotonic, sens/spec at the folds' cuts."""
    from sklearn.metrics import roc_auc_score

    from skin_cnn.stats.bootstrap import paired_auc_difference
    from skin_cnn.stats.calibration import expected_calibration_error as ece

    out = {}
    dermnet = frame["original_dataset"].astype(str).str.startswith("DermNet").to_numpy()
    for task, part in oof.groupby("task"):
        y, p = part["y_true"].to_numpy(), part["y_prob"].to_numpy()
        called = p >= part["threshold"].to_numpy()
        d = dermnet[part["row"].to_numpy()]
        entry = {"n": int(len(y)), "auc": roc_auc_score(y, p), "auc_dermnet": roc_auc_score(y[d], p[d]),
                 "ece": ece(y, p), "ece_platt": ece(y, part["y_platt"].to_numpy()),
                 "ece_isotonic": ece(y, part["y_isotonic"].to_numpy()),
                 "sensitivity": float(called[y == 1].mean()), "specificity": float((~called[y == 0]).mean())}
        if reference is not None:
            ref = reference[reference["task"] == task].set_index("row").loc[part["row"], "y_prob"].to_numpy()
            groups = frame["split_group"].to_numpy()[part["row"].to_numpy()]
            for label, mask in (("pooled", np.ones(len(y), bool)), ("dermnet", d)):
                diff = paired_auc_difference(y[mask], p[mask], ref[mask], groups=groups[mask], n_resamples=2000)
                entry[f"delta_{label}"] = [diff["difference"], *diff["ci"]]
        out[task] = entry
    return out


def summarise_all(oofs, frame, out, json_name):
    """Write every candidate's out-of-fold table and summary (the first candidate is the reference
    of the paired differences); returns ``{name: summary}``, also written to ``out/json_name``."""
    results, reference = {}, None
    for name, oof in oofs.items():
        oof.to_csv(out / f"oof_{name.replace(', ', '_').replace(' ', '_')}.csv", index=False)
        results[name] = summarise(oof, frame, reference)
        reference = oof if reference is None else reference
        print(name, json.dumps(results[name], default=float), flush=True)
    (out / json_name).write_text(json.dumps(results, indent=1, default=float))
    return results


def main(argv=None) -> None:
    from skin_cnn.training.cv import assign_folds, group_labels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    folder, out = Path(args.features), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_all = np.load(folder / "features.npy").astype(np.float64)
    frame = pd.read_csv(folder / "frame.csv")
    groups = group_labels(frame, progress=False)
    frame = frame.assign(split_group=groups)
    folds = assign_folds(frame["diagnosis"], groups, 5, seed=args.seed)
    pd.DataFrame({"image_path": frame["image_path"], "fold": folds + 1}).to_csv(out / "folds.csv", index=False)
    oofs = {name: pd.concat([fold_fit(x_all[:, columns(*CANDIDATES[name])], frame, groups, folds, k, args.seed)
                             for k in range(5)], ignore_index=True) for name in args.only or CANDIDATES}
    summarise_all(oofs, frame, out, "candidates.json")


if __name__ == "__main__":
    main()
