"""Training throughput of the variants that cannot use the feature cache (N, PS, NS) by input size.

N and NS train VGG-16 from random weights and PS trains a spatial transformer in front of the
ImageNet trunk, so every training step runs the photos through the whole network and back. For
each variant and size this builds what ``skin-cnn train`` builds (``trainer.build``,
``trainer.training_data``, ``trainer.compile_for``; the trunk in the precision ``auto`` resolves
to) and times ``model.fit`` batches on the real training stream after warm-up, then prints the
CPU hours a 5-fold cross-validation of ``--epochs`` epochs needs at that speed::

    python benchmarks/bench_variant_throughput.py --variants N PS NS --sizes 250 128 64 \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5

One JSON line per variant and size; ``cv_hours`` = 5 folds x epochs x (training photos per fold
/ training images per s + validation photos per fold / (3 x training images per s)), a forward
pass taken as a third of a training step. The load average is printed beside every figure: on a
shared CPU the speed is what this process got, not what the machine can do.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_path import images_per_s, small_split  # noqa: E402
from real_inputs import DEFAULT_DATA  # noqa: E402


def cpu_flags():
    """The CPU's bfloat16-relevant flags (what ``--precision auto`` decides on), read as the package reads them."""
    from skin_cnn.core.compute_precision import cpu_flags as flags_in, read_cpuinfo

    return sorted(flags_in(read_cpuinfo()) & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def measure(variant, size, args):
    """Images/s of training batches of ``variant`` at ``size``² on the real training stream."""
    from skin_cnn.training import resolve_config
    from skin_cnn.training.distribute import make_strategy
    from skin_cnn.training.trainer import (RunContext, build, compile_for, preparation_folder, read_split,
                                           training_data)

    info = make_strategy("auto")
    with tempfile.TemporaryDirectory(prefix="bench-variant-") as tmp:
        tmp = Path(tmp)
        split = small_split(args.data, tmp / "split.csv", args.train_images, 8)
        config = resolve_config({"split": str(split), "out": str(tmp / "run"), "variant": variant,
                                 "weights": args.weights, "image_size": size, "batch_size": args.batch,
                                 "feature_cache": "off", "epochs": 20, "tensorboard": False,
                                 "learning_rate": 2e-5, "precision": "auto"})
        frame = read_split(config)
        model = build(config, info)
        with preparation_folder(tmp) as work:
            data = training_data(RunContext(config, info, tmp, progress=False,
                                            echo=lambda m: print(m, file=sys.stderr)), frame, model, work)
            compile_for(config, data, info)
            return images_per_s(data.train_model, data.stream(0), args.batch, args.steps, args.warmup)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["N", "PS", "NS"], choices=["N", "PS", "NS", "P"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 128, 64])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=60, help="epochs per fold in the CV estimate")
    parser.add_argument("--fold-train", type=int, default=565, help="training photos per fold (5-fold CV of the 942)")
    parser.add_argument("--fold-val", type=int, default=189, help="validation photos per fold")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--weights", default="none", help="VGG-16 notop .h5 for PS (and P)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    for size in args.sizes:
        for variant in args.variants:
            start = time.perf_counter()
            speed = measure(variant, size, args)
            per_fold_s = args.epochs * (args.fold_train / speed + args.fold_val / (3 * speed))
            print(json.dumps({
                "benchmark": "variant_throughput", "variant": variant, "image_size": size, "batch": args.batch,
                "train_images_per_s": round(speed, 2), "epochs": args.epochs,
                "cv_hours": round(5 * per_fold_s / 3600, 1), "measured_in_s": round(time.perf_counter() - start, 1),
                "load_average": [round(v, 2) for v in os.getloadavg()], "cpu_flags": cpu_flags(),
                "cpu_count": os.cpu_count(), "tensorflow": tf.__version__}), flush=True)


if __name__ == "__main__":
    main()
