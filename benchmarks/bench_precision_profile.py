"""Where the time of a VGG-16 forward and of preparing a photo goes, in float32 and in bfloat16.

A profile by layer: Keras ``VGG16(include_top=False)`` with the ImageNet weights at 250², batch
16, on real photos. Every layer is timed on its own real input (a compiled call per layer and
precision; the bfloat16 layers cast their float32 kernels and, for the first convolution, their
input, as in the product), layers and precisions alternating so that load from other processes
hits all alike. The whole forward is timed too: what the per-layer sum does not explain is
framework overhead. Then the input path per photo on one core: JPEG decode
(:func:`~skin_cnn.data.reading.read_image`), the hue crop box, the antialiased resize.

Prints one JSON line: ms per batch by layer type (convolutions, max pooling, the rest), the share
of the forward outside the convolutions in each precision, the ten costliest layers, the
input-path ms per photo, and the CPU flags::

    python benchmarks/bench_precision_profile.py [--photos 16] [--repeats 5] [--size 250]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict

import numpy as np
import pandas as pd
from real_inputs import add_real_inputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=16, help="one batch of real photos")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=250)
    add_real_inputs(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import tensorflow as tf

    from skin_cnn.core.compute_precision import cpu_description
    from skin_cnn.data.crop import crop_image, hue_crop_box
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import resize_to_model
    from skin_cnn.data.reading import read_image

    manifest = pd.read_csv(args.data / "manifest.csv")
    paths = [args.data / p for p in manifest["image_path"].iloc[: args.photos]]
    preprocessing = Preprocessing(image_size=(args.size, args.size), crop=False)
    batch = np.stack([resize_to_model(read_image(p), preprocessing) for p in paths]).astype("float32")
    batch = keras.applications.vgg16.preprocess_input(batch)

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(args.size, args.size, 3))
    base.load_weights(args.weights)
    layers = base.layers[1:]
    probe = keras.Model(base.input, [layer.input for layer in layers])
    spec = tf.TensorSpec((None, args.size, args.size, 3), tf.float32)

    calls, inputs, whole = {}, {}, {}
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        for layer in layers:
            layer.dtype_policy = policy
        inputs[precision] = [tf.constant(x) for x in probe(batch)]
        for layer, x in zip(layers, inputs[precision]):
            fn = tf.function(lambda t, layer=layer: layer(t))
            fn(x)  # trace now, with this policy
            calls[(precision, layer.name)] = fn
        whole[precision] = tf.function(lambda x: base(x, training=False), input_signature=[spec])
        whole[precision](batch)

    per_layer = defaultdict(float)
    forward = defaultdict(float)
    for _ in range(args.repeats):
        for layer_index, layer in enumerate(layers):
            for precision in ("float32", "bfloat16"):
                x = inputs[precision][layer_index]
                start = time.perf_counter()
                np.asarray(calls[(precision, layer.name)](x)).ravel()[:1]
                per_layer[(precision, layer.name)] += time.perf_counter() - start
        for precision in ("float32", "bfloat16"):
            start = time.perf_counter()
            np.asarray(whole[precision](batch)).ravel()[:1]
            forward[precision] += time.perf_counter() - start

    def kind(layer):
        return "convolution" if isinstance(layer, keras.layers.Conv2D) else (
            "max_pooling" if isinstance(layer, keras.layers.MaxPooling2D) else "other")

    report = {}
    for precision in ("float32", "bfloat16"):
        ms = {name: 1000 * per_layer[(precision, name)] / args.repeats for name in (lay.name for lay in layers)}
        by_kind = defaultdict(float)
        for layer in layers:
            by_kind[kind(layer)] += ms[layer.name]
        total_ms = 1000 * forward[precision] / args.repeats
        report[precision] = {
            "forward_ms_per_batch": round(total_ms, 1),
            "images_per_s": round(args.photos / (total_ms / 1000), 2),
            "ms_by_kind": {k: round(v, 1) for k, v in by_kind.items()},
            "overhead_ms": round(total_ms - sum(by_kind.values()), 1),
            "share_outside_convolutions": round(1 - by_kind["convolution"] / total_ms, 3),
            "costliest_layers_ms": dict(sorted(((k, round(v, 1)) for k, v in ms.items()), key=lambda kv: -kv[1])[:10]),
        }

    steps = defaultdict(float)
    for path in paths:
        start = time.perf_counter()
        image = read_image(path)
        steps["decode"] += time.perf_counter() - start
        start = time.perf_counter()
        box = hue_crop_box(image)
        steps["hue_crop_box"] += time.perf_counter() - start
        start = time.perf_counter()
        resize_to_model(crop_image(image, box), preprocessing)
        steps["resize"] += time.perf_counter() - start
    print(json.dumps({
        "measure": f"Keras VGG16 notop at {args.size}², batch {args.photos} real photos, ImageNet weights, "
                   f"{args.repeats} repeats, layers and precisions alternated",
        "profile": report,
        "input_path_ms_per_photo_one_core": {k: round(1000 * v / len(paths), 2) for k, v in steps.items()},
        "cpu": cpu_description(),
    }))


if __name__ == "__main__":
    main()
