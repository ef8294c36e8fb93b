"""Cost per photo of the mirror views (test-time augmentation) in ``predict``.

Two models with the same ImageNet trunk and the same linear heads at the same size: one plain,
one with ``mirror=True`` (:mod:`skin_cnn.models.views`: each photo and its mirror image through
the trunk, features averaged). For each real photo both are timed through
``Predictor.predict_images([photo])`` (decode already done; crop + resize + model, one photo at a
time, as ``skin-cnn predict`` and the web page do), alternating so that load from other
processes hits both alike, after warm-up calls. Prints one JSON line with the median seconds per
photo of each and ``ratio = mirror / plain``::

    python benchmarks/bench_mirror_tta.py [--n 12] [--size 250] [--crop] [--data DIR] [--weights H5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import pandas as pd
from real_inputs import add_real_inputs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="photos timed")
    ap.add_argument("--size", type=int, default=250)
    add_real_inputs(ap)
    ap.add_argument("--crop", default=False, action=argparse.BooleanOptionalAction,
                    help="hue crop before resizing (default off, as in --recipe frozen-linear)")
    args = ap.parse_args(argv)

    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.reading import read_image
    from skin_cnn.models import build_model
    from skin_cnn.inference.predictor import Predictor

    pre = Preprocessing(image_size=(args.size, args.size), crop=args.crop)
    shape = (args.size, args.size, 3)
    plain = build_model("P", input_shape=shape, weights=str(args.weights), head="linear", pool_blocks=(4, 5),
                        seed=0, preprocessing=pre)
    mirror = build_model("P", input_shape=shape, weights=str(args.weights), head="linear", pool_blocks=(4, 5),
                         mirror=True, seed=0, preprocessing=pre)
    mirror.set_weights(plain.get_weights())
    predictors = {"plain": Predictor(plain, pre), "mirror": Predictor(mirror, pre)}
    manifest = pd.read_csv(args.data / "manifest.csv")
    paths = [args.data / p for p in manifest["image_path"].sample(args.n, random_state=0)]
    photos = [read_image(p) for p in paths]
    for predictor in predictors.values():  # warm-up: trace the model once
        predictor.predict_images(photos[:1])
    times = {name: [] for name in predictors}
    for photo in photos:
        for name, predictor in predictors.items():
            started = time.perf_counter()
            predictor.predict_images([photo])
            times[name].append(time.perf_counter() - started)
    median = {name: float(np.median(v)) for name, v in times.items()}
    print(json.dumps({"photos": len(photos), "size": args.size, "crop": args.crop,
                      "plain_s_per_photo": round(median["plain"], 4),
                      "mirror_s_per_photo": round(median["mirror"], 4),
                      "ratio": round(median["mirror"] / median["plain"], 3), "cpus": os.cpu_count(),
                      "machine": platform.machine()}))


if __name__ == "__main__":
    main()
