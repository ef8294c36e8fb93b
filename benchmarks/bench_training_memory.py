"""Peak memory of ``skin-cnn train`` on 1,000 vs 8,000 photos: preparing must not hold the set.

Writes two sets of generated photos (random skin-toned JPEGs, diagnoses cycling, split
80/10/10), then runs the real command, ``python -m skin_cnn train SPLIT -o RUN --variant P --weights none
--image-size 64 --cache-views 0 --epochs 2`` (prepare, extract trunk features, train the heads),
once per set in a fresh process, and reads the child's peak resident memory (``ru_maxrss`` from
``os.wait4``). Training images are prepared once as uint8 rows read back with ``os.pread``, so
the page cache, not the process, holds them. Goal: peak RSS ratio large / small <= 1.2; the
JSON line also gives the growth in MB beside the size of the prepared images, which it should
stay well below. The figure in benchmarks/README.md::

    python benchmarks/bench_training_memory.py --small 1000 --large 8000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 64


def write_photos(folder, n, seed=0):
    """``n`` JPEG photos (96×72) and their split CSV; returns the CSV path."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from skin_cnn.core.tasks import DISEASES

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.integers(120, 220, size=3)
        pixels = np.clip(base + rng.normal(0, 25, size=(72, 96, 3)), 0, 255).astype(np.uint8)
        path = folder / "images" / f"p{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        split = "train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test")
        # the disease changes every ten photos, so val and test hold every disease (i % 5 would give
        # val only one, and train refuses a split where no task has both diseases in val)
        rows.append({"image_path": str(path), "patient_id": f"p{i}",
                     "diagnosis": DISEASES[(i // 10) % len(DISEASES)], "split": split})
    csv = folder / "split.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def peak_rss_mb(split, out, batch):
    """Run ``skin-cnn train`` in a child process; its peak RSS in MB and wall time."""
    command = [sys.executable, "-m", "skin_cnn", "train", str(split), "-o", str(out), "--variant", "P",
               "--weights", "none", "--image-size", str(SIZE), "--cache-views", "0", "--epochs", "2",
               "--batch-size", str(batch), "--no-tensorboard", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"skin-cnn train failed:\n{stderr[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp = Path(tmp)
        figures = {}
        for name, n in (("small", args.small), ("large", args.large)):
            split = write_photos(tmp / name, n)
            figures[name] = peak_rss_mb(split, tmp / name / "run", args.batch) + (n,)
    (small_mb, small_s, n_small), (large_mb, large_s, n_large) = figures["small"], figures["large"]
    result = {
        "benchmark": "training_memory",
        "command": f"skin-cnn train --variant P --weights none --image-size {SIZE} --cache-views 0 --epochs 2",
        "small_images": n_small, "large_images": n_large,
        "peak_rss_mb_small": round(small_mb, 1), "peak_rss_mb_large": round(large_mb, 1),
        "ratio": round(large_mb / small_mb, 3), "goal_ratio": 1.2,
        "growth_mb": round(large_mb - small_mb, 1),
        "prepared_uint8_mb_large": round(0.9 * n_large * SIZE * SIZE * 3 / 2**20, 1),
        "same_as_float32_mb": round(0.9 * n_large * SIZE * SIZE * 3 * 4 / 2**20, 1),
        "wall_s_small": round(small_s, 1), "wall_s_large": round(large_s, 1), "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
