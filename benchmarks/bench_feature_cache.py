"""Feature cache vs end-to-end training of VGG-16P: time per epoch and validation AUC.

Trains the same VGG-16P (ImageNet trunk, frozen) twice on the same images with the same seed:
once through the frozen-trunk feature cache (heads on stored features, K augmented views), once
end to end (every batch through the whole network, fresh augmentation each epoch). Prints one JSON
line: median epoch times after the first epoch, their ratio, the one-off extraction time, and the
validation mean AUC of both runs.

Example (the scale used in docs/training.md)::

    python benchmarks/bench_feature_cache.py --split runs/public-derm-data/split.csv \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5 \\
        --image-size 64 --train-images 160 --val-images 60 --epochs 8 --views 2
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
    """A smaller split with the same diseases: ``n_train`` / ``n_val`` images drawn per split."""
    from skin_cnn.split import load_split, write_split

    frame = load_split(split_csv)
    parts = []
    for split, n in (("train", n_train), ("val", n_val)):
        part = frame[frame["split"] == split]
        if n < len(part):
            part = part.groupby("diagnosis").sample(frac=n / len(part), random_state=seed)
        parts.append(part)
    import pandas as pd

    return write_split(pd.concat(parts, ignore_index=True), out_csv)


def run(split, out, cache, args):
    from skin_cnn.training import resolve_config, train

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

    history = pd.read_csv(Path(out) / "history.csv")
    later = history["epoch_time_s"].iloc[1:] if len(history) > 1 else history["epoch_time_s"]
    return {"total_s": total, "epoch_s": float(later.median()),
            "fit_s": float(history["epoch_time_s"].sum()),
            "val_mean_auc_best": float(history["val_mean_auc"].max()),
            "val_mean_auc_last": float(history["val_mean_auc"].iloc[-1]),
            "best_epoch": result.best_epoch}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="split CSV (e.g. of ../shared/data/public-derm)")
    parser.add_argument("--weights", required=True, help="VGG-16 notop ImageNet weights (.h5)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--val-images", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        split = subsample(args.split, Path(tmp) / "split.csv", args.train_images, args.val_images, args.seed)
        cached = run(split, Path(tmp) / "cached", True, args)
        end_to_end = run(split, Path(tmp) / "e2e", False, args)
    extraction_s = cached["total_s"] - cached["fit_s"]
    print(json.dumps({
        "benchmark": "feature_cache", "variant": "P", "image_size": args.image_size,
        "train_images": args.train_images, "val_images": args.val_images, "epochs": args.epochs,
        "views": args.views, "cpu_count": os.cpu_count(),
        "epoch_s_cached": round(cached["epoch_s"], 4), "epoch_s_end_to_end": round(end_to_end["epoch_s"], 3),
        "speedup_per_epoch": round(end_to_end["epoch_s"] / cached["epoch_s"], 1),
        "cached_run_total_s": round(cached["total_s"], 1), "cache_extraction_and_setup_s": round(extraction_s, 1),
        "end_to_end_total_s": round(end_to_end["total_s"], 1),
        "val_mean_auc_cached": round(cached["val_mean_auc_best"], 4),
        "val_mean_auc_end_to_end": round(end_to_end["val_mean_auc_best"], 4),
        "val_mean_auc_difference": round(cached["val_mean_auc_best"] - end_to_end["val_mean_auc_best"], 4),
    }))


if __name__ == "__main__":
    main()
