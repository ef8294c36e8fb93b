"""Hue crop speed: vectorised ``hue_crop_box`` vs the published procedure vs decoding the JPEG.

Runs on the shared public photos (``../shared/data/public-derm``). For each image: decode with
``read_image`` (Pillow, EXIF applied), the vectorised crop, and the published procedure
(scikit-learn ``MiniBatchKMeans`` on the hue and a Python loop over lines, from
``benchmarks/published_crop.py``, single-threaded). Prints one JSON line.

    python benchmarks/bench_crop.py [--n 100] [--data DIR]

Goals: vectorised ≥ 20× faster than the published procedure; cropping cheaper than decoding.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from published_crop import box_iou, published_crop_box  # noqa: E402

from skin_cnn.data.crop import hue_crop_box  # noqa: E402
from skin_cnn.data.reading import read_image  # noqa: E402
from real_inputs import DEFAULT_DATA  # noqa: E402


def _timed(fn, *args, repeat=1, **kwargs):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return out, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images (spread evenly over the manifest)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3, help="best of R timings for decode and fast crop")
    args = parser.parse_args(argv)

    manifest = pd.read_csv(args.data / "manifest.csv")
    step = max(1, len(manifest) // args.n)
    paths = [args.data / p for p in manifest["image_path"].iloc[::step].head(args.n)]

    decode, fast, published, ious, pixels = [], [], [], [], []
    for path in paths:
        image, t_decode = _timed(read_image, path, repeat=args.repeat)
        box, t_fast = _timed(hue_crop_box, image, repeat=args.repeat)
        ref, t_ref = _timed(published_crop_box, image, estimator="minibatch")
        decode.append(t_decode)
        fast.append(t_fast)
        published.append(t_ref)
        ious.append(box_iou(box, ref))
        pixels.append(image.shape[0] * image.shape[1])
    decode, fast, published, ious = (np.array(v) for v in (decode, fast, published, ious))
    result = {
        "benchmark": "crop",
        "n_images": len(paths),
        "median_megapixels": round(float(np.median(pixels)) / 1e6, 3),
        "fast_ms_per_image": round(1e3 * fast.mean(), 3),
        "published_ms_per_image": round(1e3 * published.mean(), 2),
        "decode_ms_per_image": round(1e3 * decode.mean(), 3),
        "speedup_vs_published": round(published.sum() / fast.sum(), 1),
        "crop_over_decode": round(fast.sum() / decode.sum(), 3),
        "share_crop_cheaper_than_decode": round(float(np.mean(fast < decode)), 3),
        "iou_vs_published_minibatch": {"share_ge_0.95": round(float(np.mean(ious >= 0.95)), 3),
                                       "mean": round(float(ious.mean()), 4)},
        "goals": {"speedup_ge_20": bool(published.sum() / fast.sum() >= 20),
                  "crop_cheaper_than_decode": bool(fast.sum() < decode.sum())},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
