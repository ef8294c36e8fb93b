"""Lever 1: train block 5 on cached block-4 outputs, started from the linear heads (LP-FT).

The block-4 outputs (``block4_pool``, 15×15×512 at 250², hue crop) of every photo and its mirror
image come from ``extract_views.py``; block 5 (three 3×3 convolutions and a pooling, ImageNet
weights) and the linear heads on [global average of block 4, global average of block 5] are then
trained on the training folds, every view a training sample. The heads start from skin-cnn's own
logistic regressions fitted on the frozen features of the same training rows ("linear probing,
then fine-tuning": Kumar et al., ICLR 2022, who show that fine-tuning from a fitted head distorts
pretrained features less than from a random one), and the whole of block 5 + heads trains at a
small learning rate with Adam, the masked per-task binary cross-entropy skin-cnn trains with.
Predictions: mean probability of the photo and its mirror image.

It prints seconds per epoch (the cost of the lever here) and, per fold, the out-of-fold AUC of
the fine-tuned model and of the frozen linear model on the same held-out images::

    python docs/experiments/unseen/finetune_block5.py --views runs/unseen/views \
        --reference runs/unseen/cv-study --manifest DATA/manifest.csv \
        --weights vgg16_notop.h5 -o runs/unseen/finetune --folds 1 2 3 4 5 --epochs 4
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def block5_model(weights, size=250):
    """block4_pool maps → [GAP(block 4), GAP(block 5)] → 3 sigmoid outputs (ImageNet block 5)."""
    import keras

    from skin_cnn.core.tasks import TASK_NAMES
    from skin_cnn.models import build_model

    full = build_model("P", input_shape=(size, size, 3), weights=weights, head="linear", pool_blocks=(4, 5),
                       fine_tune_blocks=1, seed=0)
    maps = keras.Input(shape=full.get_layer("block4_pool").output.shape[1:], name="block4_maps")
    x = maps
    for name in ("block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"):
        x = full.get_layer(name)(x)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(maps),
                                         keras.layers.GlobalAveragePooling2D()(x)])
    outputs = {t: full.get_layer(t)(pooled) for t in TASK_NAMES}
    features = keras.Model(maps, pooled)
    return keras.Model(maps, outputs), features


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--summarise", action="store_true",
                        help="only pool the per-fold CSVs already written into one comparison")
    args = parser.parse_args(argv)
    if args.summarise:
        return summarise(args)

    import keras
    from sklearn.metrics import roc_auc_score

    from skin_cnn.data.pipeline import targets
    from skin_cnn.core.tasks import TASK_NAMES, TASKS
    from skin_cnn.models import compile_model
    from skin_cnn.training.linear import fit_linear_heads, set_linear_heads

    keras.utils.set_random_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(args.manifest)
    root = Path(args.manifest).parent.resolve()
    keys = [str((root / p).resolve()) for p in manifest["image_path"]]
    folds = pd.read_csv(Path(args.reference) / "folds.csv")
    fold_of = dict(zip((str(Path(p).resolve()) for p in folds["image_path"]), folds["fold"]))
    group_of = dict(zip((str(Path(p).resolve()) for p in folds["image_path"]), folds["group"]))
    fold = np.array([fold_of[k] for k in keys])
    groups = np.array([group_of[k] for k in keys])
    diagnoses = manifest["diagnosis"].to_numpy()
    maps = np.load(Path(args.views) / "block4_maps_250_crop.npy", mmap_mode="r")  # (2, n, 15, 15, 512)
    y_all, m_all = targets(diagnoses)
    results = []
    for k in args.folds:
        train = np.flatnonzero(fold != k)
        held = np.flatnonzero(fold == k)
        model, features = block5_model(args.weights)
        # 1. linear probe: skin-cnn's fit on the frozen features of both views of the training rows
        frozen = np.concatenate([features.predict(np.asarray(maps[v, train], np.float32), batch_size=64, verbose=0)
                                 for v in (0, 1)])
        rows = np.concatenate([train, train])
        fits = fit_linear_heads(frozen, np.concatenate([np.arange(len(train))] * 2),
                                np.arange(2 * len(train)) < len(train), diagnoses[train], groups[train], seed=0)
        set_linear_heads(model, fits)

        def predict(m):
            return {t: np.mean([m.predict(np.asarray(maps[v, held], np.float32), batch_size=64, verbose=0)[t][:, 0]
                                for v in (0, 1)], axis=0) for t in TASK_NAMES}

        before = predict(model)
        # 2. fine-tune block 5 + heads on both views
        compile_model(model, optimizer="adam", learning_rate=args.learning_rate)
        x = np.concatenate([np.asarray(maps[0, train], np.float32), np.asarray(maps[1, train], np.float32)])
        y = {t: np.concatenate([y_all[t][train]] * 2) for t in TASK_NAMES}
        w = {t: np.concatenate([m_all[t][train]] * 2) for t in TASK_NAMES}
        started = time.perf_counter()
        model.fit(x, y, sample_weight=w, epochs=args.epochs, batch_size=args.batch_size, shuffle=True, verbose=0)
        seconds = time.perf_counter() - started
        after = predict(model)
        for t in TASK_NAMES:
            task = TASKS[t]
            lab = np.array([task.label(d) for d in diagnoses[held]], dtype=object)
            sel = lab != None  # noqa: E711
            yy = lab[sel].astype(int)
            results.append({"fold": k, "task": t, "n": int(sel.sum()),
                            "auc_linear": float(roc_auc_score(yy, before[t][sel])),
                            "auc_finetuned": float(roc_auc_score(yy, after[t][sel])),
                            "epochs": args.epochs, "training_rows": int(len(rows)),
                            "seconds_per_epoch": seconds / args.epochs})
            print(json.dumps(results[-1]), flush=True)
        pd.DataFrame({"image_path": manifest["image_path"].to_numpy()[held], "fold": k,
                      **{f"linear_{t}": before[t] for t in TASK_NAMES},
                      **{f"finetuned_{t}": after[t] for t in TASK_NAMES}}).to_csv(out / f"fold{k}.csv", index=False)
    pd.DataFrame(results).to_csv(out / "finetune.csv", index=False)


def summarise(args):
    """Pooled out-of-fold AUC of the linear and fine-tuned models, and their paired difference."""
    from sklearn.metrics import roc_auc_score

    from skin_cnn.core.tasks import TASKS
    from skin_cnn.stats.bootstrap import paired_auc_difference

    out = Path(args.out)
    frame = pd.concat([pd.read_csv(f) for f in sorted(out.glob("fold*.csv"))], ignore_index=True)
    manifest = pd.read_csv(args.manifest)
    frame = frame.merge(manifest[["image_path", "diagnosis", "original_dataset"]], on="image_path")
    folds = pd.read_csv(Path(args.reference) / "folds.csv")
    root = Path(args.manifest).parent.resolve()
    group_of = dict(zip((str(Path(p).resolve()) for p in folds["image_path"]), folds["group"]))
    frame["group"] = [group_of[str((root / p).resolve())] for p in frame["image_path"]]
    cost = pd.read_csv(out / "finetune.csv") if (out / "finetune.csv").is_file() else None
    print(f"folds {sorted(int(k) for k in frame['fold'].unique())}, {len(frame)} held-out photos")
    if cost is not None:
        print(f"seconds per epoch: median {cost['seconds_per_epoch'].median():.0f} "
              f"({int(cost['training_rows'].median())} training rows: photos and their mirror images)")
    for name, task in TASKS.items():
        lab = frame["diagnosis"].map(task.label)
        part = frame[lab.notna()].assign(y=lab[lab.notna()].astype(int))
        for label, sub in (("pooled", part), ("DermNet NZ", part[part["original_dataset"].str.startswith("DermNet")])):
            y = sub["y"].to_numpy()
            a, b = sub[f"finetuned_{name}"].to_numpy(), sub[f"linear_{name}"].to_numpy()
            r = paired_auc_difference(y, a, b, groups=sub["group"].to_numpy(), n_resamples=2000, seed=0)
            print(f"{name:<20} {label:<11} n={len(y):>3}  linear {roc_auc_score(y, b):.3f}  fine-tuned "
                  f"{roc_auc_score(y, a):.3f}  difference {r['difference']:+.3f} "
                  f"(95% CI {r['ci'][0]:+.3f} to {r['ci'][1]:+.3f})")


if __name__ == "__main__":
    main()
