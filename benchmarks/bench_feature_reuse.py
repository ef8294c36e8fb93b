"""Features computed once across commands: the README path with one shared feature cache.

On ``--photos`` public photos (split by patient, 80/10/10) with the ``frozen-linear`` recipe and
the real ImageNet weights, runs in one process, each timed:

1. ``train`` (cache folder W, empty): the trunk runs over the train and val photos;
2. ``evaluate`` of the test split through the cache: the trunk runs over the test photos only;
3. ``cv`` on the same photos with cache W: every photo is found by content, the trunk never runs;
4. the same ``cv`` with an empty cache folder C: the trunk runs over every photo again.

Prints one JSON line: the photos whose features each step computed (from the cache's own
messages), the wall times and ``cv cold ÷ cv warm``, with the CPU flags. The figure in
docs/training.md::

    python benchmarks/bench_feature_reuse.py --photos 120 \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from real_inputs import add_real_inputs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def computed(messages):
    """Photos whose features the cache computed, summed over its messages."""
    return sum(int(m.group(1)) for line in messages
               for m in [re.search(r"feature cache \S+: computing (\d+) image", line)] if m)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    add_real_inputs(parser)
    args = parser.parse_args(argv)

    import tensorflow as tf
    from bench_slow_clients import _cpu_flags as cpu_flags

    from skin_cnn.core.specs import EvalSettings
    from skin_cnn.data.manifest import load_manifest
    from skin_cnn.data.split import patient_split, write_split
    from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run
    from skin_cnn.app.train_run import train
    from skin_cnn.training import resolve_config
    from skin_cnn.training.config import RECIPES
    from skin_cnn.app.cv_run import CVOptions, run_cv
    from skin_cnn.training.feature_cache import run_frame_predictions

    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        tmp = Path(tmp)
        frame = load_manifest(args.data / "manifest.csv")
        frame = frame.sample(n=min(len(frame), args.photos), random_state=args.seed).reset_index(drop=True)
        split = write_split(patient_split(frame, seed=args.seed), tmp / "split.csv")
        settings = dict(RECIPES["frozen-linear"], image_size=args.image_size, weights=str(args.weights), seed=args.seed,
                        tensorboard=False, cache_dir=str(tmp / "warm"))
        steps, times = {}, {}

        def timed(name, function):
            messages = []
            start = time.perf_counter()
            function(messages.append)
            times[name] = round(time.perf_counter() - start, 1)
            steps[name] = computed(messages)

        timed("train", lambda echo: train(resolve_config(dict(settings, split=str(split), out=str(tmp / "run"))),
                                          progress=False, echo=echo))
        timed("evaluate", lambda echo: evaluate_run(tmp / "run", out=tmp / "run" / "eval_test",
                                                    settings=EvalSettings(n_bootstrap=200),
                                                    progress=False,
                                                    options=RunEvaluationOptions(
                                                        frame_predictions=run_frame_predictions(tmp / "run",
                                                                                                echo=echo))))
        timed("cv_warm", lambda echo: run_cv(split, tmp / "cv-warm", args.folds, settings, progress=False,
                                             echo=echo, options=CVOptions(n_bootstrap=200)))
        timed("cv_cold", lambda echo: run_cv(split, tmp / "cv-cold", args.folds, dict(settings, cache_dir=str(
            tmp / "cold")), progress=False, echo=echo, options=CVOptions(n_bootstrap=200)))
    result = {
        "benchmark": "feature_reuse", "photos": len(frame), "image_size": args.image_size, "folds": args.folds,
        "photos_computed": steps, "wall_s": times,
        "trunk_passes_per_photo_train_evaluate_cv": round(
            (steps["train"] + steps["evaluate"] + steps["cv_warm"]) / len(frame), 3),
        "cv_cold_over_warm": round(times["cv_cold"] / times["cv_warm"], 2),
        "cpu_flags": cpu_flags(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
