"""Peak memory while streaming 1k vs 8k images through the input pipeline: it must stay flat.

Writes a few synthetic 640×480 JPEG photos into a temporary folder, builds frames of ``--small``
and ``--large`` rows that cycle through them, and streams one training epoch of each
(decode, hue crop, resize, augmentation, batching) in a fresh process, recording the peak
resident set size (``ru_maxrss``) and the resident size once TensorFlow is imported. Memory
that grew with the number of images (a cache, a leak, a shuffle buffer of pixels) would show
as a ratio well above 1. Prints one JSON line.

    python benchmarks/bench_memory_streaming.py [--small 1000] [--large 8000] [--size 250]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stream(folder, n, size, batch, augment):
    """Child process: stream one epoch of ``n`` rows and report memory figures."""
    import resource

    import pandas as pd
    import tensorflow as tf  # noqa: F401  (imported before the baseline is taken)

    from skin_cnn.data.augment import AugmentConfig
    from skin_cnn.data.pipeline import PipelineConfig, make_dataset

    files = sorted(str(p) for p in Path(folder).glob("*.jpg"))
    diseases = ["acne", "rosacea", "psoriasis", "eczema", "ctcl"]
    frame = pd.DataFrame({"image_path": [files[i % len(files)] for i in range(n)],
                          "diagnosis": [diseases[i % 5] for i in range(n)]})
    aug = AugmentConfig() if augment else AugmentConfig(0, 0, 0, False, False)
    config = PipelineConfig(image_size=(size, size), batch_size=batch, crop="hue", augment=aug, check="header")
    dataset = make_dataset(frame, config, training=True, progress=False)
    baseline = _rss_mb()
    start = time.perf_counter()
    seen, samples = 0, []
    for images, _, _ in dataset:
        seen += int(images.shape[0])
        if seen % (batch * 20) < batch:
            samples.append(round(_rss_mb(), 1))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": seen, "seconds": round(seconds, 1), "images_per_s": round(seen / seconds, 1),
            "rss_before_stream_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1),
            "rss_samples_mb": samples[:: max(1, len(samples) // 8)]}


def _write_photos(folder, count=48, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    x = np.arange(640)[None, :]
    for i in range(count):
        image = np.empty((480, 640, 3), dtype=np.float64)
        image[:] = (40, 70, 170)  # photographer's blue background
        left, top = rng.integers(20, 160), rng.integers(20, 120)
        right, bottom = rng.integers(480, 620), rng.integers(360, 460)
        image[top:bottom, left:right] = (224, 172, 140)
        image += 25 * np.sin(x / rng.uniform(5, 40))[..., None] + rng.normal(0, 8, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(Path(folder) / f"photo{i:03d}.jpg", quality=90)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=8000)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(_stream(args.child[0], int(args.child[1]), args.size, args.batch, not args.no_augment)))
        return None

    with tempfile.TemporaryDirectory(prefix="skin-cnn-bench-") as folder:
        _write_photos(folder)
        runs = {}
        for n in (args.small, args.large):
            command = [sys.executable, __file__, "--child", folder, str(n), "--size", str(args.size),
                       "--batch", str(args.batch)] + (["--no-augment"] if args.no_augment else [])
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[n] = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = runs[args.small], runs[args.large]
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    growth = (large["peak_rss_mb"] - large["rss_before_stream_mb"]) / max(
        1e-9, small["peak_rss_mb"] - small["rss_before_stream_mb"])
    result = {
        "benchmark": "memory_streaming", "image_size": args.size, "batch": args.batch,
        "augment": not args.no_augment, "crop": "hue",
        "small": small, "large": large,
        "peak_rss_ratio_large_over_small": round(ratio, 3),
        "stream_growth_ratio": round(growth, 3),
        "goals": {"peak_ratio_le_1.2": bool(ratio <= 1.2)},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
