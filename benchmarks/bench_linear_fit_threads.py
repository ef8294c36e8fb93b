"""The linear heads' regressions with BLAS on its default threads vs on one thread.

``skin_cnn.training.linear.fit_task`` (C by grouped inner 5-fold CV over a grid of 9, then the
refit: about 50 L-BFGS fits) on features of the shape the two-scale recipe gives one task of a
fold (330 images × 2048 pooled features), run alternately as the package runs it (one BLAS thread,
``on_one_blas_thread``) and with BLAS left at its default thread count::

    python benchmarks/bench_linear_fit_threads.py --rounds 3

Prints one JSON line: seconds per fit for each, their ratio (default / one thread), the BLAS
library and its default thread count, the CPU flags and the load average (on a shared CPU the
default threads wait for each other; on an idle one the two are close).
"""
from __future__ import annotations

import argparse
import json
import os
import time


def cpu_flags():
    """The CPU's bfloat16-relevant flags (what ``--precision auto`` decides on), read as the package reads them."""
    from skin_cnn.core.compute_precision import cpu_flags as flags_in, read_cpuinfo

    return sorted(flags_in(read_cpuinfo()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=330)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    from threadpoolctl import threadpool_info

    from skin_cnn.training.linear import fit_task

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, args.images)
    x = rng.normal(size=(args.images, args.features)) + y[:, None] * rng.normal(scale=0.05, size=args.features)
    groups = np.arange(args.images)
    default_threads = fit_task.__wrapped__  # the same function without the one-thread limit
    times = {"one_thread": [], "default_threads": []}
    for _ in range(args.rounds):
        for name, function in (("one_thread", fit_task), ("default_threads", default_threads)):
            start = time.perf_counter()
            fitted = function(x, y, groups)
            times[name].append(time.perf_counter() - start)
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    one, default = float(np.median(times["one_thread"])), float(np.median(times["default_threads"]))
    print(json.dumps({"benchmark": "linear_fit_threads", "images": args.images, "features": args.features,
                      "C": fitted.C, "one_thread_s": round(one, 3), "default_threads_s": round(default, 3),
                      "ratio_default_over_one": round(default / one, 2), "blas": blas,
                      "load_average": [round(v, 2) for v in os.getloadavg()], "cpu_flags": cpu_flags(),
                      "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
