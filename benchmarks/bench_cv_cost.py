"""Cost of ``skin-cnn cv`` (k folds) vs one ``skin-cnn train`` with the same settings and images.

With a frozen trunk (VGG-16P) cross-validation extracts the trunk features of every image and of
its K augmented views once and trains k sets of heads on them, so k folds should cost little
more than one run. Both are timed in this process, one after the other, on the same photos (a
split CSV; its split column gives the single run's partition, and ``cv`` ignores it). Goal:
``cv_s / train_s <= 1.5``. Prints one JSON line. The figure in benchmarks/README.md::

    python benchmarks/bench_cv_cost.py --split SPLIT.csv --weights vgg16_notop.h5 --size 128 --folds 5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="split CSV of the photos")
    parser.add_argument("--weights", required=True, help="VGG-16 notop ImageNet weights (.h5)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)

    from skin_cnn.app.train_run import train

    from skin_cnn.training import resolve_config
    from skin_cnn.app.cv_run import CVOptions, run_cv

    settings = {"variant": "P", "weights": args.weights, "image_size": args.size, "cache_views": args.views,
                "epochs": args.epochs, "batch_size": 32, "learning_rate": 1e-3, "tensorboard": False, "seed": 0}

    def quiet(message):
        print(message, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-cv-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        train(resolve_config(dict(settings, split=args.split, out=str(tmp / "single"))), progress=False, echo=quiet)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        result = run_cv(args.split, tmp / "cv", args.folds, settings, progress=False, echo=quiet,
                        options=CVOptions(n_bootstrap=200))
        cv_s = time.perf_counter() - start
        with open(result.oof_predictions, encoding="utf-8") as fh:
            oof_rows = sum(1 for _ in fh) - 1
    out = {
        "benchmark": "cv_cost", "variant": "P", "image_size": args.size, "folds": args.folds, "views": args.views,
        "epochs": args.epochs, "train_s": round(train_s, 1), "cv_s": round(cv_s, 1),
        "ratio": round(cv_s / train_s, 3), "goal_ratio": 1.5, "oof_rows": oof_rows, "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
