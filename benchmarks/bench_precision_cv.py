"""``skin-cnn cv --recipe frozen-linear`` on the public photos in float32 and in bfloat16.

Runs the command a user runs, once per precision, each with a fresh feature-cache folder (so
each extracts its own features), one after the other in the order given, and times each whole
run (wall clock: extraction of every photo and its mirror image, the five folds' logistic
regressions, the pooled evaluation, the ensemble). Then reads both ``oof_predictions.csv`` and
computes the out-of-fold AUC of each task with scikit-learn. Prints one JSON line: the wall
times, ``speedup = float32 / bfloat16``, the AUCs and their differences, and the CPU flags::

    python benchmarks/bench_precision_cv.py --out runs/bench-precision [--order bfloat16,float32]

A whole cv cannot alternate its halves the way the other precision benchmarks do: other
processes on the machine may load one run more than the other, so the command can be given the
order and the figures should be read with the load in mind (``nice`` both).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from real_inputs import DEFAULT_DATA, add_real_inputs


def oof_aucs(path):
    """Out-of-fold AUC per task of a cv folder's ``oof_predictions.csv``."""
    from sklearn.metrics import roc_auc_score

    oof = pd.read_csv(path)
    return {task: float(roc_auc_score(part["y_true"], part["y_prob"])) for task, part in oof.groupby("task")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the two cv runs (must not exist)")
    ap.add_argument("--order", default="float32,bfloat16", help="precisions, in the order they run")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_DATA / "manifest.csv")
    add_real_inputs(ap, data=False)
    ap.add_argument("--image-size", type=int, default=None, help="model input side (default: the recipe's, 250)")
    args = ap.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out}: already exists; give a new --out folder")

    from skin_cnn.core.compute_precision import cpu_description

    seconds, aucs, commands = {}, {}, {}
    for precision in args.order.split(","):
        run = args.out / precision
        command = [sys.executable, "-m", "skin_cnn", "cv", str(args.manifest), "-o", str(run), "--folds",
                   str(args.folds), "--recipe", "frozen-linear", "--weights", str(args.weights), "--precision",
                   precision, "--cache-dir", str(args.out / f"cache-{precision}"), "--quiet"]
        if args.image_size:
            command[-1:-1] = ["--image-size", str(args.image_size)]
        commands[precision] = " ".join(command[1:])
        start = time.perf_counter()
        subprocess.run(command, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        seconds[precision] = time.perf_counter() - start
        aucs[precision] = oof_aucs(run / "oof_predictions.csv")
    print(json.dumps({
        "measure": f"skin-cnn cv --recipe frozen-linear, {args.folds} folds, {args.manifest}, fresh feature cache "
                   f"each, run in the order {args.order}",
        "wall_s": {k: round(v, 1) for k, v in seconds.items()},
        "speedup_f32_over_bf16": round(seconds["float32"] / seconds["bfloat16"], 2),
        "oof_auc": aucs,
        "oof_auc_difference_bf16_minus_f32": {t: round(aucs["bfloat16"][t] - aucs["float32"][t], 4)
                                              for t in aucs["float32"]},
        "commands": commands,
        "cpu": cpu_description(),
    }))


if __name__ == "__main__":
    main()
