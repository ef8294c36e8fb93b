"""Bare VGG-16 trunk at 250²: bfloat16 vs float32 images/s, same weights, same photos, one run.

Keras ``VGG16(include_top=False)`` with the ImageNet weights and a global average pooling, on
real public photos resized to the model size (no crop), batch 16. One set of layers serves both
precisions: a ``tf.function`` is traced with the layers in ``float32``, another with them in
``mixed_bfloat16`` (the policy ``skin-cnn --precision bfloat16`` gives the trunk). The two are
called alternately, batch after batch, and their times summed, so load from other processes on
the machine hits both alike. Prints one JSON line: images/s of each, ``speedup = bf16 / f32``,
how close the pooled features are (relative L2 distance, mean cosine), and the CPU flags::

    python benchmarks/bench_precision_trunk.py [--photos 32] [--repeats 6] [--batch 16] [--size 250]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
from real_inputs import add_real_inputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=32, help="real photos, resized to --size")
    ap.add_argument("--repeats", type=int, default=6, help="passes over the photos, per precision")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=250)
    add_real_inputs(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import tensorflow as tf

    from skin_cnn.core.compute_precision import cpu_description
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input

    manifest = pd.read_csv(args.data / "manifest.csv")
    preprocessing = Preprocessing(image_size=(args.size, args.size), crop=False)
    photos = np.stack([load_model_input(args.data / p, preprocessing)[0]
                       for p in manifest["image_path"].iloc[: args.photos]]).astype("float32")
    images = keras.applications.vgg16.preprocess_input(photos.copy())

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(args.size, args.size, 3))
    base.load_weights(args.weights)
    pool = keras.layers.GlobalAveragePooling2D(dtype="float32")
    spec = tf.TensorSpec((None, args.size, args.size, 3), tf.float32)

    def traced(policy):
        for layer in base.layers[1:]:
            layer.dtype_policy = policy
        fn = tf.function(lambda x: pool(base(x, training=False)), input_signature=[spec])
        fn.get_concrete_function()  # trace now, with this policy
        return fn

    forward = {"float32": traced("float32"), "bfloat16": traced("mixed_bfloat16")}
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
    features = {name: np.concatenate([np.asarray(fn(b)) for b in batches]) for name, fn in forward.items()}  # warm-up
    seconds = {name: 0.0 for name in forward}
    for _ in range(args.repeats):
        for batch in batches:
            for name, fn in forward.items():  # alternate, so contention hits both alike
                start = time.perf_counter()
                np.asarray(fn(batch))
                seconds[name] += time.perf_counter() - start
    n = args.repeats * len(images)
    rate = {name: n / s for name, s in seconds.items()}
    a, b = features["float32"], features["bfloat16"]
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    result = {
        "measure": f"Keras VGG16 notop + global average pooling at {args.size}², batch {args.batch}, "
                   f"ImageNet weights, {len(images)} real photos × {args.repeats} repeats, precisions alternated",
        "images_per_s": {k: round(v, 2) for k, v in rate.items()},
        "speedup_bf16_over_f32": round(rate["bfloat16"] / rate["float32"], 2),
        "features_relative_l2": float(np.linalg.norm(a - b) / np.linalg.norm(a)),
        "features_mean_cosine": float(np.mean(cosine)),
        "tflops_per_s": {k: round(v * 38.4e9 / 1e12 * (args.size / 250) ** 2, 3) for k, v in rate.items()},
        "cpu": cpu_description(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
