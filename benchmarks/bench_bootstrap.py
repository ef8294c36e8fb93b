"""Vectorised bootstrap vs a plain loop over ``sklearn.metrics.roc_auc_score``.

Both use exactly the same resamples (same seed, same drawn indices). ``speedup`` compares the
AUC alone both ways; ``vectorised_all_metrics_s`` is the time for all six metrics at once (what
``skin-cnn evaluate`` runs per task). Prints one JSON line::

    python benchmarks/bench_bootstrap.py [--n 10000] [--resamples 2000] [--seed 0] [--patients 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from skin_cnn.core.specs import EvalSettings
from skin_cnn.stats.bootstrap import (
    bootstrap_distribution,
    cluster_units,
    iter_resample_indices,
    unit_strata,
)


def synthetic(n, n_patients, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    p = np.round(
        1 / (1 + np.exp(-rng.normal(1.2 * y - 0.4, 1.0))), 3
    )  # 3 decimals: ties, as in CSVs
    ids = None if not n_patients else [f"p{i}" for i in rng.integers(0, n_patients, n)]
    return y, p, ids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="images")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", type=int, default=0, help="patients (0: image-level bootstrap)")
    args = ap.parse_args(argv)
    y, p, ids = synthetic(args.n, args.patients, args.seed)

    settings = EvalSettings(n_bootstrap=args.resamples, seed=args.seed)
    start = time.perf_counter()
    dist, unit, _ = bootstrap_distribution(
        y, p, patient_ids=ids, settings=settings, metrics=("auc",)
    )
    t_vec = time.perf_counter() - start
    start = time.perf_counter()
    bootstrap_distribution(y, p, patient_ids=ids, settings=settings)
    t_all = time.perf_counter() - start

    units, n_units, _ = cluster_units(ids, n=len(y))
    members = [np.flatnonzero(units == u) for u in range(n_units)]
    start = time.perf_counter()
    loop = []
    strata = unit_strata(y, units, n_units)  # the same stratified draws as the vectorised code
    for batch in iter_resample_indices(n_units, args.resamples, args.seed, strata):
        for drawn in batch:
            rows = drawn if ids is None else np.concatenate([members[u] for u in drawn])
            loop.append(roc_auc_score(y[rows], p[rows]))
    t_loop = time.perf_counter() - start

    print(
        json.dumps(
            {
                "benchmark": "bootstrap_auc",
                "n_images": args.n,
                "n_resamples": args.resamples,
                "unit": unit,
                "seed": args.seed,
                "vectorised_s": round(t_vec, 3),
                "loop_sklearn_s": round(t_loop, 3),
                "vectorised_all_metrics_s": round(t_all, 3),
                "speedup": round(t_loop / t_vec, 1),
                "max_abs_auc_difference": float(np.max(np.abs(np.asarray(loop) - dist["auc"]))),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
