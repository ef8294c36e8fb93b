"""Feature cache vs end-to-end training of VGG-16P: time per epoch and validation AUC.

Trains the same VGG-16P (ImageNet trunk, frozen) twice on the same images with the same seed:
once through the frozen-trunk feature cache (heads on stored features, K augmented views), once
end to end (every batch through the whole network, fresh augmentation each epoch). Prints one JSON
line: median epoch times after the first epoch (``epoch_time_s`` of history.csv: the whole cycle
of an epoch, validation and every callback included), their ratio, the one-off extraction time,
and the validation AUC per task and mean (best epoch) of both runs.

The figures in docs/training.md come from the defaults (250², every image of the split, K = 4,
8 epochs at learning rate 1e-3; about 65 min on 2 CPU cores)::

    python benchmarks/bench_feature_cache.py --split runs/experiment/crop/split.csv \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def subsample(split_csv, out_csv, n_train, n_val, seed):
    """A smaller split with the same diseases: ``n_train`` / ``n_val`` images drawn per split.

    With neither given, the split file itself is used, so the cached run's feature cache has the
    same key as a ``skin-cnn train`` of that split with the same settings (``--cache-dir``).
    """
    from skin_cnn.data.split import load_split, write_split

    if not n_train and not n_val:
        return Path(split_csv)

    frame = load_split(split_csv)
    parts = []
    for split, n in (("train", n_train), ("val", n_val)):
        part = frame[frame["split"] == split]
        if n and n < len(part):
            part = part.groupby("diagnosis").sample(frac=n / len(part), random_state=seed)
        parts.append(part)
    import pandas as pd

    return write_split(pd.concat(parts, ignore_index=True), out_csv)


def run(split, out, cache, args):
    from skin_cnn.app.train_run import train
    from skin_cnn.training import resolve_config

    config = resolve_config({
        "split": str(split), "out": str(out), "variant": "P", "weights": args.weights,
        "image_size": args.image_size, "epochs": args.epochs, "batch_size": args.batch_size,
        "feature_cache": "on" if cache else "off", "cache_views": args.views, "seed": args.seed,
        "patience": args.epochs, "lr_patience": args.epochs, "evaluate": False, "tensorboard": False,
        "learning_rate": args.learning_rate,
    })
    start = time.perf_counter()
    result = train(config, progress=False, echo=lambda m: print(m, file=sys.stderr))
    total = time.perf_counter() - start
    import pandas as pd

    from skin_cnn.core.tasks import TASK_NAMES

    history = pd.read_csv(Path(out) / "history.csv")
    later = history["epoch_time_s"].iloc[1:] if len(history) > 1 else history["epoch_time_s"]
    best = history.loc[history["val_mean_auc"].idxmax()]
    return {"total_s": total, "epoch_s": float(later.median()),
            "epoch_s_all": [round(float(v), 4) for v in history["epoch_time_s"]],
            "fit_s": float(history["epoch_time_s"].sum()),
            "val_mean_auc_best": float(best["val_mean_auc"]),
            "val_auc_best": {t: round(float(best[f"val_{t}_auc"]), 4) for t in TASK_NAMES},
            "val_mean_auc_last": float(history["val_mean_auc"].iloc[-1]),
            "best_epoch": result.best_epoch}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="split CSV (e.g. of ../shared/data/public-derm)")
    parser.add_argument("--weights", required=True, help="VGG-16 notop ImageNet weights (.h5)")
    parser.add_argument("--image-size", type=int, default=250)
    parser.add_argument("--train-images", type=int, default=0, help="subsample the training split (0: all)")
    parser.add_argument("--val-images", type=int, default=0, help="subsample the validation split (0: all)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--views", type=int, default=4, help="augmented views per training image in the cache")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep both run folders under this folder (default: a temporary one)")
    parser.add_argument("--json-out", help="also write the result to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        split = subsample(args.split, work / "split.csv", args.train_images, args.val_images, args.seed)
        from skin_cnn.data.split import load_split

        counts = load_split(split).groupby("split").size().to_dict()
        print("cached run (feature extraction, then training the heads) ...", file=sys.stderr)
        cached = run(split, work / "cached", True, args)
        print("end-to-end run ...", file=sys.stderr)
        end_to_end = run(split, work / "e2e", False, args)
    extraction_s = cached["total_s"] - cached["fit_s"]
    difference = cached["val_mean_auc_best"] - end_to_end["val_mean_auc_best"]
    result = {
        "benchmark": "feature_cache", "variant": "P", "image_size": args.image_size,
        "train_images": counts.get("train", 0), "val_images": counts.get("val", 0), "epochs": args.epochs,
        "views": args.views, "cpu_count": os.cpu_count(),
        "epoch_s_cached": round(cached["epoch_s"], 4), "epoch_s_end_to_end": round(end_to_end["epoch_s"], 3),
        "speedup_per_epoch": round(end_to_end["epoch_s"] / cached["epoch_s"], 1),
        "cached_run_total_s": round(cached["total_s"], 1), "cache_extraction_and_setup_s": round(extraction_s, 1),
        "end_to_end_total_s": round(end_to_end["total_s"], 1),
        "val_mean_auc_cached": round(cached["val_mean_auc_best"], 4),
        "val_mean_auc_end_to_end": round(end_to_end["val_mean_auc_best"], 4),
        "val_mean_auc_difference": round(difference, 4),
        "val_mean_auc_within_0.02": bool(abs(difference) <= 0.02),
        "val_auc_cached": cached["val_auc_best"], "val_auc_end_to_end": end_to_end["val_auc_best"],
        "best_epoch_cached": cached["best_epoch"], "best_epoch_end_to_end": end_to_end["best_epoch"],
        "epoch_s_all_cached": cached["epoch_s_all"], "epoch_s_all_end_to_end": end_to_end["epoch_s_all"],
    }
    print(json.dumps(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
