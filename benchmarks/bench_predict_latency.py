"""Single-photo prediction latency vs the bare model forward pass, at the study's size.

What ``skin-cnn predict`` and ``skin-cnn serve`` add around the network — decoding the photo
(:func:`read_image`), the hue crop, the pipeline's resize and the batching — should be small next
to VGG-16 itself. For each real photo of the shared public set this times

* ``predict``: ``Predictor.predict_images([Predictor.read(path)])`` — decode + crop + resize +
  model, one photo at a time, as the web page does;
* ``forward``: the same Keras model on an already preprocessed ``(1, 250, 250, 3)`` tensor,
  called through a compiled ``tf.function`` (the fastest plain way to call it);

alternating the two so that load from other processes hits both alike, after warm-up calls.
Prints one JSON line with medians and ``ratio = predict / forward`` (goal ≤ 1.3)::

    python benchmarks/bench_predict_latency.py [--n 12] [--size 250] [--data DIR] [--weights H5]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="photos timed")
    ap.add_argument("--size", type=int, default=250, help="model input side (the study: 250)")
    add_real_inputs(ap)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from skin_cnn.data.crop import crop_image, hue_crop_box
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import resize_to_model
    from skin_cnn.models import build_model
    from skin_cnn.inference.predictor import Predictor

    manifest = pd.read_csv(args.data / "manifest.csv")
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(manifest), size=min(args.n + 2, len(manifest)), replace=False)
    paths = [args.data / manifest["image_path"].iloc[i] for i in rows]

    model = build_model(
        "P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=args.seed
    )
    preprocessing = Preprocessing(image_size=(args.size, args.size))
    predictor = Predictor(model, preprocessing)
    spec = tf.TensorSpec((None, args.size, args.size, 3), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def bare(tensor):
        start = time.perf_counter()
        out = forward(tf.constant(tensor[None]))
        np.asarray(out[model.output_names[0]])
        return time.perf_counter() - start

    def full(path):
        start = time.perf_counter()
        predictor.predict_images([predictor.read(path)])
        return time.perf_counter() - start

    tensors = [predictor.preprocess(predictor.read(p))[0] for p in paths]
    for path, tensor in zip(paths[:2], tensors[:2]):  # warm-up: tracing, caches
        bare(tensor)
        full(path)

    t_forward, t_predict, t_decode, t_crop, t_resize, megapixels = [], [], [], [], [], []
    for i, (path, tensor) in enumerate(zip(paths[2:], tensors[2:])):
        if i % 2:
            t_predict.append(full(path))
            t_forward.append(bare(tensor))
        else:
            t_forward.append(bare(tensor))
            t_predict.append(full(path))
        start = time.perf_counter()
        image = predictor.read(path)
        t_decode.append(time.perf_counter() - start)
        megapixels.append(image.shape[0] * image.shape[1] / 1e6)
        start = time.perf_counter()
        box = hue_crop_box(image)
        t_crop.append(time.perf_counter() - start)
        start = time.perf_counter()
        resize_to_model(crop_image(image, box), preprocessing)
        t_resize.append(time.perf_counter() - start)

    def ms(values):
        return round(1000 * float(np.median(values)), 1)

    result = {
        "benchmark": "predict_latency",
        "model": f"VGG-16P {args.size}x{args.size} (ImageNet trunk from {args.weights.name})",
        "photos": len(t_predict),
        "photo_megapixels_median": round(float(np.median(megapixels)), 3),
        "predict_ms": ms(t_predict),
        "forward_ms": ms(t_forward),
        "ratio": round(float(np.median(t_predict) / np.median(t_forward)), 3),
        "goal_ratio": 1.3,
        "stages_ms": {"decode": ms(t_decode), "hue_crop": ms(t_crop), "resize": ms(t_resize)},
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
