"""Training throughput on the real training path vs the same model fed from memory.

Builds what ``skin-cnn train`` builds, with the trainer's own functions: the model
(``trainer.build``), the prepared uint8 images and the training stream (``trainer.training_data``:
prepare → tf.data order, read, augmentation, labels) and the compiled model
(``trainer.compile_for``). Then, alternately, in one process:

* ``end_to_end``: ``model.fit`` on that stream (what training does);
* ``in_memory``: ``model.fit`` on one batch of the stream held in memory as tensors and repeated.

Images per second come from the batch times after warm-up; the medians of ``--rounds`` rounds
are compared. Goal: ``end_to_end / in_memory >= 0.9`` (the input path keeps the model busy).
Prints one JSON line. The figures in benchmarks/README.md::

    python benchmarks/bench_training_path.py --variant N --size 128 --batch 16 --steps 6
    python benchmarks/bench_training_path.py --variant P --size 250 --batch 16 --steps 4 \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from real_inputs import DEFAULT_DATA  # noqa: E402


def small_split(data, out_csv, n_train, n_val, seed=0):
    """A split CSV of ``n_train`` + ``n_val`` photos of ``data/manifest.csv`` (all diseases)."""
    import pandas as pd

    from skin_cnn.data.manifest import load_manifest
    from skin_cnn.data.split import write_split

    frame = load_manifest(Path(data) / "manifest.csv")
    frame = frame.sample(n=min(len(frame), n_train + n_val), random_state=seed).reset_index(drop=True)
    frame["split"] = ["train"] * min(n_train, len(frame)) + ["val"] * max(0, len(frame) - n_train)
    return write_split(pd.DataFrame(frame), out_csv)


def images_per_s(model, dataset, batch, steps, warmup):
    """Median images/s of ``steps`` training batches of ``model.fit`` after ``warmup`` batches."""
    import keras

    times = []

    class BatchTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, index, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[BatchTimer()], verbose=0)
    timed = sorted(times[warmup:])
    return batch / float(timed[len(timed) // 2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="N", choices=["N", "P"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", default="none", help="VGG-16 notop .h5 for variant P")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from skin_cnn.training import resolve_config
    from skin_cnn.training.distribute import make_strategy
    from skin_cnn.training.trainer import (RunContext, build, compile_for, preparation_folder, read_split,
                                           training_data)

    info = make_strategy("auto")
    with tempfile.TemporaryDirectory(prefix="bench-path-") as tmp:
        tmp = Path(tmp)
        split = small_split(args.data, tmp / "split.csv", args.train_images, 16)
        config = resolve_config({"split": str(split), "out": str(tmp / "run"), "variant": args.variant,
                                 "weights": args.weights, "image_size": args.size, "batch_size": args.batch,
                                 "feature_cache": "off", "epochs": 20, "tensorboard": False})
        frame = read_split(config)
        model = build(config, info)
        with preparation_folder(tmp) as work:
            start = time.perf_counter()
            data = training_data(RunContext(config, info, tmp, progress=False,
                                            echo=lambda m: print(m, file=sys.stderr)), frame, model, work)
            prepare_s = time.perf_counter() - start
            compile_for(config, data, info)
            x, y, w = next(iter(data.stream(0)))
            in_memory = tf.data.Dataset.from_tensors((tf.constant(x), y, w)).repeat()
            end_to_end, memory = [], []
            for _ in range(args.rounds):
                end_to_end.append(images_per_s(data.train_model, data.stream(0), args.batch, args.steps, args.warmup))
                memory.append(images_per_s(data.train_model, in_memory, args.batch, args.steps, args.warmup))
    e2e, mem = float(np.median(end_to_end)), float(np.median(memory))
    result = {
        "benchmark": "training_path", "variant": args.variant, "image_size": args.size, "batch": args.batch,
        "train_images": int((frame["split"] == "train").sum()),
        "prepare_s": round(prepare_s, 2), "prepared_dtype": str(data.val_x.dtype),
        "end_to_end_images_per_s": round(e2e, 2), "in_memory_images_per_s": round(mem, 2),
        "ratio": round(e2e / mem, 3), "goal_ratio": 0.9,
        "rounds_end_to_end": [round(v, 2) for v in end_to_end], "rounds_in_memory": [round(v, 2) for v in memory],
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
