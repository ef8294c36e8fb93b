"""Feature-cache extraction end to end vs the bare bfloat16 forward: does the input path keep up?

The product path is :func:`skin_cnn.training.feature_cache.cached_features` into a fresh cache
folder, as ``train`` and ``cv`` call it: hashing each photo, decoding, cropping and resizing on
``tf.data`` threads while the trunk runs on the batch before (``CleanViews``), writing the
chunk. The reference is the same bfloat16 feature model (``--recipe frozen-linear``'s: blocks 4 + 5
pooled, square root, mirror views, 250²) called on the same photos already prepared in memory,
batch 32. Half the reference runs before the product run and half after, so load from other
processes hits both alike. Prints one JSON line: photos/s of each, ``keeps_up = product /
bare`` (goal ≥ 0.8), and the CPU flags::

    python benchmarks/bench_precision_extraction.py [--photos 64] [--precision bfloat16]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from real_inputs import add_real_inputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--precision", default="bfloat16")
    ap.add_argument("--size", type=int, default=250)
    add_real_inputs(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from skin_cnn.core.compute_precision import cpu_description
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input
    from skin_cnn.models import build_model, split_at_frozen_boundary
    from skin_cnn.models.precision_policy import apply_precision
    from skin_cnn.training.feature_cache import FeatureSettings, cached_features, weights_digest

    manifest = pd.read_csv(args.data / "manifest.csv").iloc[: args.photos]
    frame = manifest.assign(image_path=[str(args.data / p) for p in manifest["image_path"]], split="val")
    preprocessing = Preprocessing(image_size=(args.size, args.size), crop=False)
    model = build_model("P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=0,
                        head="linear", pool_blocks=(4, 5), mirror=True, sqrt_features=True)
    apply_precision(model, args.precision)
    trunk, _ = split_at_frozen_boundary(model)
    settings = FeatureSettings(trunk_digest=weights_digest(trunk), preprocessing=preprocessing.to_dict(),
                               precision=args.precision)
    pixels = np.stack([load_model_input(p, preprocessing)[0] for p in frame["image_path"]]).astype("float32")
    forward = tf.function(lambda x: trunk(x, training=False), reduce_retracing=True)
    batches = [pixels[i:i + 32] for i in range(0, len(pixels), 32)]
    np.asarray(forward(batches[0]))  # tracing

    def bare(part):
        start = time.perf_counter()
        for batch in part:
            np.asarray(forward(batch))
        return time.perf_counter() - start

    half = len(batches) // 2
    bare_s = bare(batches[:half])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        got = cached_features(frame, {"val": 1}, trunk, settings, cache_dir=Path(tmp) / "cache", work=tmp,
                              progress=False, echo=lambda m: None)
        product_s = time.perf_counter() - start
        features = np.asarray(got.arrays["val"])
    bare_s += bare(batches[half:])
    reference = np.concatenate([np.asarray(forward(b)) for b in batches])
    rate = {"product": len(frame) / product_s, "bare_forward": len(frame) / bare_s}
    print(json.dumps({
        "measure": f"cached_features into a fresh cache (hash, decode, resize on tf.data while the trunk runs, "
                   f"write) vs the bare {args.precision} feature model on prepared photos; frozen-linear "
                   f"features at {args.size}², {len(frame)} public photos",
        "photos_per_s": {k: round(v, 2) for k, v in rate.items()},
        "keeps_up_product_over_bare": round(rate["product"] / rate["bare_forward"], 3),
        "max_abs_feature_difference": float(np.max(np.abs(features - reference))),
        "cpu": cpu_description(),
    }))


if __name__ == "__main__":
    main()
