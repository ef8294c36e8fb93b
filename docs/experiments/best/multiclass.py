"""Development CV of one five-disease head against the three two-disease heads, on the same features.

The product fits one logistic regression per task on the photos of its two diseases
(``--head linear``). Eczema is in two tasks and every photo shows one of five diseases, so a
single multinomial (softmax) regression over the five diseases, fitted on every training photo,
sees all 942 photos' worth of evidence about what the features mean; a task's score is then the
softmax restricted to its two diseases, ``sigmoid(z_positive − z_negative)``. This script asks
whether that beats the two-disease heads on the recipe's features (whole photo, blocks 4 and 5 at
320² and 250², ``extract.py``'s superset), by the development folds of ``candidates.py``:

* ``pairwise``: ``candidates.fold_fit`` (the product's heads) — the reference;
* ``multinomial``: per outer fold, standardised features, ``LogisticRegression`` over the five
  diseases; C from the same grid, chosen *per task* by the mean AUC of that task's score over
  grouped, disease-stratified inner 5-fold CV; Youden's threshold and a nested Platt map on the
  inner out-of-fold scores, as for the reference;
* ``mean``: the mean of the two probabilities (each with its own inner out-of-fold answers);
* ``pairwise, C to 30``: the reference with C's grid extended from 1 to 30 (acne vs rosacea
  chooses C = 1, the grid's top, in every fold: is a weaker regularisation being missed?).

    python docs/experiments/best/multiclass.py --features OUT_OF_extract.py [--seed 0] -o OUT
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from candidates import columns, fold_fit, isotonic, platt, summarise_all

COLUMNS = ((320, 250), (4, 5))
#: The product's C grid (``skin_cnn.evaluation.method.C_GRID``) extended upwards.
WIDE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _task_rows(diagnoses, task):
    """Positions of the task's photos and their 0/1 labels."""
    labels = np.array([task.label(d) for d in diagnoses], dtype=object)
    rows = np.flatnonzero(labels != None)  # noqa: E711 (element-wise)
    return rows, labels[rows].astype(int)


def _task_scores(z, classes, task):
    """``sigmoid(z_pos − z_neg)``: the softmax over the five diseases restricted to the task's two."""
    return _sigmoid(z[:, classes.index(task.positive)] - z[:, classes.index(task.negative)])


def inner_scores(x, y_class, groups, seed, grid):
    """Every C's inner out-of-fold logits (len(grid), n, classes) and the inner splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    splits = list(StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=int(seed))
                  .split(np.zeros(len(y_class)), y_class, groups))
    logits = np.zeros((len(grid), len(y_class), int(y_class.max()) + 1))
    for train, held in splits:
        scaler = StandardScaler().fit(x[train])
        z_train, z_held = scaler.transform(x[train]), scaler.transform(x[held])
        model = LogisticRegression(max_iter=5000, warm_start=True)
        for i, c in enumerate(grid):
            model.set_params(C=float(c)).fit(z_train, y_class[train])
            logits[i, held] = model.decision_function(z_held)
    return logits, splits


def multinomial_fold(x, frame, groups, folds, k, seed):
    """One outer fold of the five-disease head, in ``candidates.fold_fit``'s row format."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from skin_cnn.core.tasks import TASKS
    from skin_cnn.evaluation.method import C_GRID
    from skin_cnn.evaluation.threshold import choose_threshold

    diagnoses = frame["diagnosis"].to_numpy()
    classes = sorted(set(diagnoses))
    train, held = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    y_class = np.array([classes.index(d) for d in diagnoses[train]])
    with threadpool_limits(limits=1, user_api="blas"):
        logits, splits = inner_scores(x[train], y_class, groups[train], seed, C_GRID)
        finals = {}
        rows = []
        for name, task in TASKS.items():
            mine, y_inner = _task_rows(diagnoses[train], task)
            scores = np.array([[roc_auc_score(y_inner[np.isin(mine, part)],
                                              _task_scores(logits[i][mine[np.isin(mine, part)]], classes, task))
                                for _, part in splits] for i in range(len(C_GRID))])
            best = int(np.argmax(scores.mean(axis=1)))  # the strongest regularisation among equals
            c = float(C_GRID[best])
            if c not in finals:
                finals[c] = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(
                    x[train], y_class)
            oof = _task_scores(logits[best][mine], classes, task)
            held_rows, y_held = _task_rows(diagnoses[held], task)
            p = _task_scores(finals[c].decision_function(x[held][held_rows]), classes, task)
            cut = choose_threshold(y_inner, oof, "youden", 0.9)
            cal_p, cal_i = platt(oof, y_inner), isotonic(oof, y_inner)
            rows.append(pd.DataFrame({"row": held[held_rows], "task": name, "fold": k, "C": c, "y_true": y_held,
                                      "y_prob": p, "threshold": cut, "y_platt": cal_p(p),
                                      "threshold_platt": float(cal_p(np.array([cut]))[0]),
                                      "y_isotonic": cal_i(p), "_oof": [oof] * len(p), "_y_inner": [y_inner] * len(p)}))
    return pd.concat(rows, ignore_index=True)


def pairwise_fold(x, frame, groups, folds, k, seed):
    """The reference fold, with the inner out-of-fold answers kept for the mean of the two."""
    from skin_cnn.core.tasks import TASKS

    out, fits = fold_fit(x, frame, groups, folds, k, seed, return_fits=True)
    train = np.flatnonzero(folds != k)
    diagnoses = frame["diagnosis"].to_numpy()[train]
    inner = {name: (fit.oof_probability, np.array([TASKS[name].label(d) for d in diagnoses[fit.rows]], int),
                    fit.rows) for name, fit in fits.items()}
    return out, inner


def mean_fold(pairwise, inner_pairwise, multinomial):
    """The mean of the two heads' probabilities; threshold and calibration from their mean inner answers."""
    from skin_cnn.evaluation.threshold import choose_threshold

    rows = []
    for task, part in pairwise.groupby("task"):
        other = multinomial[multinomial["task"] == task].set_index("row").loc[part["row"]]
        oof_p, y_inner, _ = inner_pairwise[task]
        oof = (oof_p + other["_oof"].iloc[0]) / 2  # both in the order of the task's training photos
        if not np.array_equal(y_inner, other["_y_inner"].iloc[0]):
            raise SystemExit(f"{task}: the two heads' inner answers are not of the same photos")
        p = (part["y_prob"].to_numpy() + other["y_prob"].to_numpy()) / 2
        cut = choose_threshold(y_inner, oof, "youden", 0.9)
        cal_p, cal_i = platt(oof, y_inner), isotonic(oof, y_inner)
        rows.append(part[["row", "task", "fold", "y_true"]].assign(
            C=np.nan, y_prob=p, threshold=cut, y_platt=cal_p(p), threshold_platt=float(cal_p(np.array([cut]))[0]),
            y_isotonic=cal_i(p)))
    return pd.concat(rows, ignore_index=True)


def main(argv=None) -> None:
    from skin_cnn.training.cv import assign_folds, group_labels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(args.features / "frame.csv")
    x = np.load(args.features / "features.npy").astype(np.float64)[:, columns(*COLUMNS)]
    groups = group_labels(frame, progress=False)
    frame = frame.assign(split_group=groups)
    folds = assign_folds(frame["diagnosis"], groups, 5, seed=args.seed)
    oofs = {"pairwise": [], "multinomial": [], "mean": [], "pairwise, C to 30": []}
    for k in range(5):
        pairwise, inner = pairwise_fold(x, frame, groups, folds, k, args.seed)
        multinomial = multinomial_fold(x, frame, groups, folds, k, args.seed)
        oofs["pairwise"].append(pairwise)
        oofs["multinomial"].append(multinomial.drop(columns=["_oof", "_y_inner"]))
        oofs["mean"].append(mean_fold(pairwise, inner, multinomial))
        oofs["pairwise, C to 30"].append(fold_fit(x, frame, groups, folds, k, args.seed, c_grid=WIDE_GRID))
        print(f"fold {k + 1} done", flush=True)
    summarise_all({name: pd.concat(parts, ignore_index=True) for name, parts in oofs.items()}, frame, args.out,
                  "multiclass.json")


if __name__ == "__main__":
    main()
