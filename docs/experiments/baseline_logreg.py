"""Baseline of the real-image experiment: logistic regression on frozen VGG-16 pooled features.

No crop, no augmentation, no trained heads: ImageNet VGG-16 (the shared notop weights) → global
average pooling → one L2-regularised logistic regression per task, fitted on the training split
(only images of the task's two diseases), C chosen on the validation split. The same frozen
features also feed a second logistic regression that predicts the image *source*: if the source
is easy to tell from the features, a disease model can lean on it, which is why the experiment
reports AUC within each source.

    python docs/experiments/baseline_logreg.py --split runs/experiment/crop/split.csv \
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5 --image-size 160 \
        -o runs/experiment/baseline-logreg --by original_dataset

Writes ``features.npz`` (reused on a second call), ``val_predictions.csv``,
``eval_test/predictions_test.csv`` and the full ``skin-cnn evaluate`` output in ``eval_test``.
"""
import argparse
import json
from pathlib import Path

import numpy as np


def extract_features(frame, weights, image_size, batch_size=16):
    """Pooled 512-d features of every image, uncropped, stretched to ``image_size``."""
    from tqdm import tqdm

    from skin_cnn.models import build_model, split_at_frozen_boundary
    from skin_cnn.inference.predictor import Predictor

    model = build_model("P", input_shape=(image_size, image_size, 3), weights=weights)
    feature_model, _ = split_at_frozen_boundary(model)
    predictor = Predictor(model, {"image_size": [image_size, image_size], "crop": False})
    features = np.zeros((len(frame), int(feature_model.outputs[0].shape[-1])), np.float32)
    for start in tqdm(range(0, len(frame), batch_size), desc="VGG-16 features", unit="batch"):
        paths = frame["image_path"].iloc[start:start + batch_size]
        batch = np.stack([predictor.preprocess(predictor.read(p))[0] for p in paths])
        features[start:start + len(batch)] = feature_model.predict(batch, verbose=0)
    return features


def fit_task(x_train, y_train, x_val, y_val, seed):
    """Logistic regression with C picked by validation AUC (standardised features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in (0.001, 0.01, 0.1, 1.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))
        clf.fit(x_train, y_train)
        auc = roc_auc_score(y_val, clf.predict_proba(x_val)[:, 1]) if len(set(y_val)) == 2 else 0.5
        if best is None or auc > best[0]:
            best = (auc, c, clf)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="split CSV (skin-cnn split / crop output)")
    parser.add_argument("--weights", required=True, help="VGG-16 notop ImageNet weights (.h5)")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--by", action="append", default=[], help="subgroup column(s) for the report")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from skin_cnn.core.tasks import TASKS
    from skin_cnn.evaluation import EvalSettings
    from skin_cnn.reporting import ReportInputs, write_evaluation
    from skin_cnn.core.predictions import predictions_frame
    from skin_cnn.data.split import load_split

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = load_split(args.split)
    cache = out / "features.npz"
    if cache.is_file() and np.load(cache)["image_size"] == args.image_size:
        features = np.load(cache)["features"]
    else:
        features = extract_features(frame, args.weights, args.image_size)
        np.savez(cache, features=features, image_size=args.image_size)

    split = frame["split"].to_numpy()
    probs = {}
    chosen = {}
    for name, task in TASKS.items():
        y = frame["diagnosis"].map(task.label)
        member = y.notna().to_numpy()
        tr, va = member & (split == "train"), member & (split == "val")
        auc, c, clf = fit_task(features[tr], y[tr].astype(int), features[va], y[va].astype(int), args.seed)
        chosen[name] = {"C": c, "val_auc": round(float(auc), 4)}
        probs[name] = clf.predict_proba(features)[:, 1]

    # How recognisable is the image source from the same features?
    source = {}
    for column in args.by:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score

        labels = frame[column].astype(str).to_numpy()
        clf = LogisticRegression(C=0.1, max_iter=5000, random_state=args.seed)
        clf.fit(features[split == "train"], labels[split == "train"])
        pred = clf.predict(features[split == "test"])
        source[column] = {
            "test_accuracy": round(float(np.mean(pred == labels[split == "test"])), 4),
            "test_balanced_accuracy": round(float(balanced_accuracy_score(labels[split == "test"], pred)), 4),
            "classes": sorted(set(labels)),
        }

    for part in ("val", "test"):
        rows = frame[split == part].reset_index(drop=True)
        part_probs = {k: v[split == part] for k, v in probs.items()}
        table = predictions_frame(rows, part_probs)
        if part == "val":
            table.to_csv(out / "val_predictions.csv", index=False)
        else:
            (out / "eval_test").mkdir(exist_ok=True)
            table.to_csv(out / "eval_test" / "predictions_test.csv", index=False)
            write_evaluation(table, out / "eval_test", settings=EvalSettings(seed=args.seed),
                             inputs=ReportInputs(by=tuple(args.by)))
    summary = {"model": "logistic regression on frozen VGG-16 pooled features (no crop, no augmentation)",
               "image_size": args.image_size, "tasks": chosen, "source_from_features": source}
    (out / "baseline.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
