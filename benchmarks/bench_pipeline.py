"""Input pipeline throughput vs the model's own training throughput.

Three figures, images per second, on the shared public photos:

* ``pipeline``: ``make_dataset`` alone (read from disk, decode, crop, resize, augment, batch);
* ``in_memory``: a frozen-trunk VGG-16P training step (``skin_cnn.models.build_model`` with the
  shared ImageNet weights) fed the same batch from memory again and again;
* ``end_to_end``: the same training step fed by the pipeline (``model.fit`` on the dataset).

The goal is ``end_to_end / in_memory >= 0.9``: the pipeline keeps the model busy. Prints one
JSON line.

    python benchmarks/bench_pipeline.py [--batch 16] [--steps 4] [--size 250] [--parallel autotune|2]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "public-derm"
DEFAULT_WEIGHTS = SHARED / "weights" / "vgg16_imagenet_notop_caffe_input.h5"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per measurement")
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--parallel", default="autotune", help="num_parallel_calls: autotune or an integer")
    parser.add_argument("--crop", default="hue", choices=["hue", "none"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from skin_cnn.data.pipeline import PipelineConfig, make_dataset
    from skin_cnn.models import build_model, compile_model

    frame = pd.read_csv(args.data / "manifest.csv")
    frame["image_path"] = [str(args.data / p) for p in frame["image_path"]]
    parallel = args.parallel if args.parallel == "autotune" else int(args.parallel)
    config = PipelineConfig(image_size=(args.size, args.size), batch_size=args.batch, crop=args.crop,
                            num_parallel_calls=parallel, prefetch=parallel, seed=0)
    dataset = make_dataset(frame, config, training=True, progress=False)

    # 1. the pipeline alone
    n_pipeline = args.batch * args.steps * 4
    iterator = iter(dataset.repeat())
    next(iterator)  # start-up (graph tracing, first file) is not throughput
    start = time.perf_counter()
    for _ in range(n_pipeline // args.batch):
        next(iterator)
    pipeline_rate = n_pipeline / (time.perf_counter() - start)
    del iterator

    # 2. the model on a batch held in memory
    model = build_model("P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=0)
    compile_model(model)
    x, y, w = next(iter(dataset))
    in_memory = tf.data.Dataset.from_tensors((x, y, w)).repeat()
    model.fit(in_memory, steps_per_epoch=1, epochs=1, verbose=0)  # compile the train step
    start = time.perf_counter()
    model.fit(in_memory, steps_per_epoch=args.steps, epochs=1, verbose=0)
    in_memory_rate = args.batch * args.steps / (time.perf_counter() - start)

    # 3. the model fed by the pipeline
    streamed = dataset.repeat()
    model.fit(streamed, steps_per_epoch=1, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(streamed, steps_per_epoch=args.steps, epochs=1, verbose=0)
    end_to_end_rate = args.batch * args.steps / (time.perf_counter() - start)

    ratio = end_to_end_rate / in_memory_rate
    result = {
        "benchmark": "pipeline",
        "image_size": args.size, "batch": args.batch, "steps": args.steps,
        "num_parallel_calls": parallel, "crop": args.crop, "augment": True,
        "cpu_count": os.cpu_count(),
        "pipeline_images_per_s": round(pipeline_rate, 2),
        "in_memory_train_images_per_s": round(in_memory_rate, 3),
        "end_to_end_train_images_per_s": round(end_to_end_rate, 3),
        "end_to_end_over_in_memory": round(ratio, 3),
        "pipeline_over_in_memory": round(pipeline_rate / in_memory_rate, 1),
        "goals": {"end_to_end_over_in_memory_ge_0.9": bool(ratio >= 0.9)},
        "numpy": np.__version__, "tensorflow": tf.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
