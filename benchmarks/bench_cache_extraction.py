"""Feature-cache extraction speed vs a bare VGG-16 forward pass at the same size.

The extraction is ``skin_cnn.training.feature_cache.build_chunk`` as training runs it: prepared
uint8 images read row by row, the K augmented views made by ``view_images``, the frozen trunk
applied in batches, features written to the cache. The reference is the same frozen trunk
(``split_at_frozen_boundary``) run on one in-memory float32 batch again and again. Both are
timed in the same process, alternately; the goal is ``extraction / bare >= 0.9`` images/s.
Prints one JSON line, with the CPU flags and the load average (other jobs slow both sides). The
figure in benchmarks/README.md::

    python benchmarks/bench_cache_extraction.py --size 250 --train-images 48 --views 2 \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from real_inputs import add_real_inputs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--train-images", type=int, default=48)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    add_real_inputs(parser)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    from bench_training_path import small_split
    from bench_variant_throughput import cpu_flags

    from skin_cnn.data.augment import AugmentConfig
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import prepare_images
    from skin_cnn.models import build_model, split_at_frozen_boundary
    from skin_cnn.data.split import load_split
    from skin_cnn.training.feature_cache import (ChunkImages, Extraction, FeatureSettings, build_chunk,
                                                 image_identities)

    model = build_model("P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=0)
    trunk, _ = split_at_frozen_boundary(model)
    augment = AugmentConfig()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        tmp = Path(tmp)
        frame = load_split(small_split(args.data, tmp / "split.csv", args.train_images, args.val_images))
        prepared, _ = prepare_images(frame, Preprocessing(image_size=(args.size, args.size)), tmp / "prep",
                                     progress=False)
        identities = image_identities(frame)
        n_images = len(prepared["val"].store) + (1 + args.views) * len(prepared["train"].store)
        forward = tf.function(lambda x: trunk(x, training=False))
        train_store = prepared["train"].store
        batch = tf.constant(np.asarray(train_store.read(np.arange(args.batch) % len(train_store)), dtype="float32"))
        forward(batch)  # tracing is not throughput
        extraction, bare = [], []
        for r in range(args.rounds):
            start = time.perf_counter()
            settings = FeatureSettings(trunk_digest="bench", preprocessing={}, augmentation=augment.to_dict(), seed=r)
            build_chunk(tmp / f"cache{r}", trunk, ChunkImages(prepared), identities, settings, views=args.views,
                        augment=augment, extraction=Extraction(batch_size=args.batch, progress=False))
            extraction.append(n_images / (time.perf_counter() - start))
            start = time.perf_counter()
            done = 0
            while done < n_images:
                np.asarray(forward(batch))
                done += args.batch
            bare.append(done / (time.perf_counter() - start))
    ext, ref = float(np.median(extraction)), float(np.median(bare))
    result = {
        "benchmark": "cache_extraction", "image_size": args.size, "images_extracted": n_images,
        "views": args.views, "extraction_images_per_s": round(ext, 2), "bare_forward_images_per_s": round(ref, 2),
        "ratio": round(ext / ref, 3), "goal_ratio": 0.9,
        "rounds_extraction": [round(v, 2) for v in extraction], "rounds_bare": [round(v, 2) for v in bare],
        "load_average": [round(v, 2) for v in os.getloadavg()], "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
