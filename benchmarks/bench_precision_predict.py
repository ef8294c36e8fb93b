"""``skin-cnn predict`` over a folder of real photos: bfloat16 vs float32, and vs the bare trunk.

What ``skin-cnn predict FOLDER`` runs — :func:`~skin_cnn.inference.predictor.load_predictor` and
:func:`~skin_cnn.inference.predictor.predict_frame` (photos decoded, cropped and resized on ``tf.data`` in
parallel while the model works) — on the first ``--photos`` public photos, with the
``--recipe frozen-linear`` model at 250² (ImageNet trunk, blocks 4 + 5 pooled, mirror views,
seeded linear heads: the speed does not depend on trained head weights). Three things are timed
on the same photos, alternating chunk by chunk so that load from other processes hits all alike:

* ``predict_f32``, ``predict_bf16``: the whole path in each precision;
* ``forward_bf16``: the same bfloat16 model on the photos already prepared in memory (no decode,
  crop or resize): the rate the input path has to keep up with.

Prints one JSON line: photos/s of each, ``speedup = predict_bf16 / predict_f32``,
``keeps_up = predict_bf16 / forward_bf16``, the largest probability difference between the
precisions, how many answers at 0.5 differ, and the CPU flags::

    python benchmarks/bench_precision_predict.py [--photos 300] [--chunk 50] [--batch 16]
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
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=50, help="photos per timed chunk (precisions alternate)")
    ap.add_argument("--batch", type=int, default=16, help="photos per model call (skin-cnn predict's default)")
    ap.add_argument("--size", type=int, default=250)
    add_real_inputs(ap)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from skin_cnn.core.compute_precision import cpu_description
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input
    from skin_cnn.models import build_model
    from skin_cnn.inference.predictor import load_predictor, predict_frame
    from skin_cnn.training.callbacks import save_model_atomic

    manifest = pd.read_csv(args.data / "manifest.csv")
    frame = pd.DataFrame({"image_path": [str(args.data / p) for p in manifest["image_path"].iloc[: args.photos]]})
    preprocessing = Preprocessing(image_size=(args.size, args.size), crop=False)
    model = build_model("P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=0,
                        preprocessing=preprocessing, head="linear", pool_blocks=(4, 5), mirror=True,
                        sqrt_features=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frozen_linear.keras"
        save_model_atomic(model, path)
        predictors = {name: load_predictor(path, precision=name) for name in ("float32", "bfloat16")}
    prepared = np.stack([load_model_input(p, preprocessing)[0] for p in frame["image_path"]]).astype("float32")

    def forward(chunk):
        predictors["bfloat16"].predict_tensors(prepared[chunk])  # batches of args.batch, as predict

    chunks = [np.arange(s, min(s + args.chunk, len(frame))) for s in range(0, len(frame), args.chunk)]
    warm = frame.iloc[: args.batch]
    for predictor in predictors.values():  # tracing
        predict_frame(predictor, warm, batch_size=args.batch, progress=False)
    seconds = {"predict_f32": 0.0, "predict_bf16": 0.0, "forward_bf16": 0.0}
    probabilities = {"float32": [], "bfloat16": []}
    for chunk in chunks:
        for key, name in (("predict_f32", "float32"), ("predict_bf16", "bfloat16")):
            start = time.perf_counter()
            result = predict_frame(predictors[name], frame.iloc[chunk], batch_size=args.batch, progress=False)
            seconds[key] += time.perf_counter() - start
            probabilities[name].append(np.stack([result[t] for t in sorted(result)], axis=1))
        start = time.perf_counter()
        for begin in range(0, len(chunk), args.batch):
            forward(chunk[begin:begin + args.batch])
        seconds["forward_bf16"] += time.perf_counter() - start
    rate = {k: len(frame) / s for k, s in seconds.items()}
    a, b = (np.concatenate(probabilities[n]) for n in ("float32", "bfloat16"))
    print(json.dumps({
        "measure": f"skin-cnn predict's path (load_predictor + predict_frame) over {len(frame)} public photos, "
                   f"frozen-linear model at {args.size}², batch {args.batch}, chunks of {args.chunk} alternated",
        "photos_per_s": {k: round(v, 2) for k, v in rate.items()},
        "speedup_bf16_over_f32": round(rate["predict_bf16"] / rate["predict_f32"], 2),
        "keeps_up_predict_over_bare_bf16_forward": round(rate["predict_bf16"] / rate["forward_bf16"], 3),
        "max_abs_probability_difference": float(np.nanmax(np.abs(a - b))),
        "answers_at_0.5_that_differ": int(np.sum((a >= 0.5) != (b >= 0.5))),
        "answers": int(a.size),
        "cpu": cpu_description(),
    }))


if __name__ == "__main__":
    main()
