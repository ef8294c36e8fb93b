"""Out-of-fold AUC of each lever on the public photos, on the folds of one ``skin-cnn cv`` run.

Every row predicts every photo once, by a model fitted on the other four folds only (the same
patient-grouped, disease-stratified folds as the reference run, read from its ``folds.csv``), so
rows are paired image by image. For each task it writes the pooled AUC, the AUC within each
source, and the paired cluster-bootstrap difference to the reference (the study's recipe run by
``skin-cnn cv``), pooled and within DermNet NZ.

Linear rows: skin-cnn's own fit (``skin_cnn.training.linear.fit_task``, what ``--head linear``
runs): standardised features → L2 logistic regression per task, its C chosen by a grouped
5-fold cross-validation inside the training folds, scored by AUC. Nothing here looks at a
held-out fold before predicting it.

    python docs/experiments/unseen/levers.py --views runs/unseen/views \
        --reference runs/unseen/cv-study -o runs/unseen/levers
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = {"DermNet NZ": "dermnet", "Fitzpatrick17k": "fitz17k", "SD-198": "sd198"}
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def short_source(text):
    return next((v for k, v in SOURCES.items() if str(text).startswith(k)), "other")


def load_views(folder):
    views = {}
    for path in sorted(Path(folder).glob("views_*.npz")):
        _, size, crop = path.stem.split("_")
        with np.load(path) as data:
            views[(int(size), crop == "crop")] = {k: data[k] for k in ("b5_gap", "b5_gmp", "b4_gap")}
    return views


def features(views, size=250, crop=True, parts=("b5_gap",), tta="none", sqrt=False):
    """(n, d) matrix of a row, or a list of per-view matrices with ``tta="views"``.

    ``tta``: "none" = the photo as is; "mean" = mean of the photo and its mirror image (train
    and predict on the mean); "views" = both views as separate training samples, their
    probabilities averaged when predicting.
    """
    crops = (True, False) if crop == "both" else (crop,)
    mats = [np.concatenate([views[(size, c)][p] for p in parts], axis=-1) for c in crops]
    x = np.concatenate(mats, axis=-1)  # (2, n, d)
    if sqrt:  # power normalisation of non-negative pooled activations
        x = np.sqrt(np.maximum(x, 0))
    if tta == "none":
        return x[0]
    if tta == "mean":
        return x.mean(axis=0)
    return [x[0], x[1]]


def inner_splits(y, groups, seed=0, k=3):
    from sklearn.model_selection import StratifiedGroupKFold

    return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))


def fit_linear(x, y, groups, weights=None, seed=0):
    """skin-cnn's own fit (``skin_cnn.training.linear.fit_task``): what ``--head linear`` runs."""
    from skin_cnn.training.linear import fit_task

    fit = fit_task(x, y, groups, seed=seed, sample_weight=weights)
    return lambda features: 1 / (1 + np.exp(-(np.asarray(features, np.float64) @ fit.kernel + fit.bias)))


def source_balanced_weights(sources, y):
    """Weights under which the label carries no information about the source.

    Inside every source both classes get equal total weight (the source's count); a source with
    one class only gets weight 0, since no weighting can make it uninformative.
    """
    w = np.zeros(len(y))
    for s in np.unique(sources):
        m = sources == s
        n1, n0 = int(y[m].sum()), int((1 - y[m]).sum())
        if n1 and n0:
            w[m & (y == 1)] = m.sum() / (2 * n1)
            w[m & (y == 0)] = m.sum() / (2 * n0)
    return w * len(y) / w.sum()


def linear_oof(task_rows, x, folds, groups, y, sources, *, weighting=None, fraction=1.0, seed=0):
    """Out-of-fold probabilities of one linear row for one task's images."""
    prob = np.zeros(len(task_rows))
    for k in np.unique(folds):
        test = folds == k
        train = ~test
        if fraction < 1.0:  # leave a grouped part out, as a validation split would
            idx = np.flatnonzero(train)
            keep, _ = inner_splits(y[idx], groups[idx], seed, k=int(round(1 / (1 - fraction))))[0]
            train = np.zeros_like(train)
            train[idx[keep]] = True
        w = source_balanced_weights(sources[train], y[train]) if weighting == "source" else None
        if isinstance(x, list):
            xs = np.concatenate([v[train] for v in x])
            model = fit_linear(xs, np.tile(y[train], len(x)), np.tile(groups[train], len(x)),
                               None if w is None else np.tile(w, len(x)), seed)
            prob[test] = np.mean([model(v[test]) for v in x], axis=0)
        else:
            model = fit_linear(x[train], y[train], groups[train], w, seed)
            prob[test] = model(x[test])
    return prob


ROWS = {
    # name: (description, feature kwargs, linear kwargs)
    "lr-b5-224-nocrop": ("linear, block-5 avg, 224², no crop (the issue's anchor)",
                         dict(size=224, crop=False), {}),
    "lr-b5-250-nocrop": ("linear, block-5 avg, 250², no crop", dict(size=250, crop=False), {}),
    "lr-b5-250-crop": ("linear, block-5 avg, 250², crop (the study's features)", dict(size=250, crop=True), {}),
    "lr-b5-224-crop": ("linear, block-5 avg, 224², crop", dict(size=224, crop=True), {}),
    "lr-b5-250-crop-75": ("as lr-b5-250-crop, trained on 3/4 of the training folds (a validation part left out)",
                          dict(size=250, crop=True), dict(fraction=0.75)),
    "lr-b45-250-crop": ("linear, block-4 + block-5 avg, 250², crop",
                        dict(size=250, crop=True, parts=("b4_gap", "b5_gap")), {}),
    "lr-b45-250-nocrop": ("linear, block-4 + block-5 avg, 250², no crop",
                          dict(size=250, crop=False, parts=("b4_gap", "b5_gap")), {}),
    "lr-b5max-250-crop": ("linear, block-5 avg + max, 250², crop",
                          dict(size=250, crop=True, parts=("b5_gap", "b5_gmp")), {}),
    "lr-b45-250-crop-ttamean": ("linear, block-4 + 5, 250², crop, mean of photo and mirror features",
                                dict(size=250, crop=True, parts=("b4_gap", "b5_gap"), tta="mean"), {}),
    "lr-b45-250-crop-ttaviews": ("linear, block-4 + 5, 250², crop, mirror as a training sample, mean probability",
                                 dict(size=250, crop=True, parts=("b4_gap", "b5_gap"), tta="views"), {}),
    "lr-b45-250-both-ttamean": ("linear, block-4 + 5, 250², crop and no-crop features side by side, mirror mean",
                                dict(size=250, crop="both", parts=("b4_gap", "b5_gap"), tta="mean"), {}),
    "lr-b45-250-crop-sqrt-ttamean": ("linear, block-4 + 5, 250², crop, square-rooted features, mirror mean",
                                     dict(size=250, crop=True, parts=("b4_gap", "b5_gap"), tta="mean", sqrt=True), {}),
    "lr-b45-250-nocrop-ttamean": ("linear, block-4 + 5, 250², no crop, mirror mean",
                                  dict(size=250, crop=False, parts=("b4_gap", "b5_gap"), tta="mean"), {}),
    "lr-b45-250-nocrop-sqrt-ttamean": ("linear, block-4 + 5, 250², no crop, square-rooted features, mirror mean",
                                       dict(size=250, crop=False, parts=("b4_gap", "b5_gap"), tta="mean", sqrt=True),
                                       {}),
    "lr-b45-224-nocrop-ttamean": ("linear, block-4 + 5, 224², no crop, mirror mean",
                                  dict(size=224, crop=False, parts=("b4_gap", "b5_gap"), tta="mean"), {}),
    "lr-b45-224-crop-ttamean": ("linear, block-4 + 5, 224², crop, mirror mean",
                                dict(size=224, crop=True, parts=("b4_gap", "b5_gap"), tta="mean"), {}),
    "lr-b45-250-crop-ttamean-srcbal": ("as lr-b45-250-crop-ttamean, source-balanced sample weights",
                                       dict(size=250, crop=True, parts=("b4_gap", "b5_gap"), tta="mean"),
                                       dict(weighting="source")),
}


def paired(y, a, b, groups, mask=None):
    from skin_cnn.stats.bootstrap import paired_auc_difference

    m = np.ones(len(y), bool) if mask is None else mask
    if len(np.unique(y[m])) < 2:
        return None
    r = paired_auc_difference(y[m], a[m], b[m], groups=groups[m], n_resamples=2000, seed=0)
    return {"difference": r["difference"], "ci": r["ci"], "p_value": r["p_value"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", required=True)
    parser.add_argument("--reference", required=True, help="a skin-cnn cv run folder (folds and OOF)")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--rows", nargs="*", default=None)
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from skin_cnn.core.tasks import TASKS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(args.manifest)
    root = Path(args.manifest).parent.resolve()
    manifest["key"] = [str((root / p).resolve()) for p in manifest["image_path"]]
    folds = pd.read_csv(Path(args.reference) / "folds.csv")
    folds["key"] = [str(Path(p).resolve()) for p in folds["image_path"]]
    frame = manifest.merge(folds[["key", "fold", "group"]], on="key", how="left", validate="one_to_one")
    assert frame["fold"].notna().all(), "every photo needs a fold"
    frame["source"] = [short_source(s) for s in frame["original_dataset"]]
    oof_path = Path(args.reference) / "oof_predictions.csv"
    oof = pd.read_csv(oof_path) if oof_path.is_file() else None  # a first look before it exists
    if oof is not None:
        oof["key"] = [str(Path(p).resolve()) for p in oof["image_path"]]
    views = load_views(args.views)

    records, preds = [], []
    rows = args.rows or list(ROWS)
    for task_name, task in TASKS.items():
        labels = frame["diagnosis"].map(task.label)
        sel = labels.notna().to_numpy()
        sub = frame[sel].reset_index(drop=True)
        y = labels[sel].astype(int).to_numpy()
        if oof is not None:
            ref = oof[oof["task"] == task_name].set_index("key")["y_prob"].reindex(sub["key"]).to_numpy()
            scores, seconds = {"study": ref}, {"study": None}
        else:
            ref, scores, seconds = None, {}, {}
        for name in rows:
            _, fkw, lkw = ROWS[name]
            x = features(views, **fkw)
            x = [v[sel] for v in x] if isinstance(x, list) else x[sel]
            started = time.perf_counter()
            scores[name] = linear_oof(sub, x, sub["fold"].to_numpy(), sub["group"].to_numpy(), y,
                                      sub["source"].to_numpy(), **lkw)
            seconds[name] = time.perf_counter() - started
        groups = sub["group"].to_numpy()
        derm = (sub["source"] == "dermnet").to_numpy()
        for name, s in scores.items():
            rec = {"row": name, "task": task_name, "n": int(len(y)), "auc": float(roc_auc_score(y, s)),
                   "fit_seconds_5_folds": seconds[name]}
            for src in ("dermnet", "fitz17k", "sd198"):
                m = (sub["source"] == src).to_numpy()
                rec[f"auc_{src}"] = float(roc_auc_score(y[m], s[m])) if len(np.unique(y[m])) == 2 else None
                rec[f"n_{src}"] = int(m.sum())
            if name != "study" and ref is not None:
                rec["vs_study"] = paired(y, s, ref, groups)
                rec["vs_study_dermnet"] = paired(y, s, ref, groups, derm)
            records.append(rec)
            preds.append(pd.DataFrame({"row": name, "task": task_name, "image_path": sub["image_path"],
                                       "source": sub["source"], "fold": sub["fold"], "y_true": y, "y_prob": s}))
        for r in records:
            if r["task"] == task_name:
                print(f"{task_name:<20} {r['row']:<34} pooled {r['auc']:.3f}  DermNet "
                      f"{r['auc_dermnet'] if r['auc_dermnet'] is None else round(r['auc_dermnet'], 3)}", flush=True)
    (out / "levers.json").write_text(json.dumps(records, indent=1))
    pd.concat(preds).to_csv(out / "oof_levers.csv", index=False)


if __name__ == "__main__":
    main()
