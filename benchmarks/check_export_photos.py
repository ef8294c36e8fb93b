"""Exported models on real photos: crop boxes and probabilities against ``skin-cnn predict``.

For every photo of the public set (``../shared/data/public-derm``, 942 photos) this decodes the
photo as ``skin-cnn predict`` does and compares

* the SavedModel export (photo in; hue crop, resize and model in the graph): its ``crop_box``
  against :func:`skin_cnn.data.crop.hue_crop_box`, and its probabilities against
  :class:`skin_cnn.inference.predictor.Predictor` (goal: every box equal, max |Δp| < 1e-4);
* the TFLite export (resize and model; the crop is not in TFLite, whose built-in kernels have
  no float64): fed the photo cut to ``hue_crop_box``, its probabilities against the same
  predictor (goal: max |Δp| < 1e-2). The interpreter is the default one, XNNPACK included, as a
  phone app would run it.

The model is VGG-16P (``build_model("P")``) with the ImageNet trunk at ``--size`` and
untrained, seeded heads: a check of numerical equivalence, not of diagnosis. The crop check
does not depend on the model size. Writes ``OUT.json`` and ``OUT.md`` and prints one JSON line.

    python benchmarks/check_export_photos.py [--size 64] [--limit N] [--out benchmarks/results/export_photos]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from real_inputs import add_real_inputs

HERE = Path(__file__).resolve().parent


def _summary(diffs):
    diffs = np.asarray(diffs, np.float64)
    return {"max": float(diffs.max()), "p99": float(np.quantile(diffs, 0.99)),
            "median": float(np.median(diffs))} if diffs.size else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_real_inputs(parser)
    parser.add_argument("--size", type=int, default=64, help="model input side in pixels")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "export_photos")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from skin_cnn.data.crop import crop_image, hue_crop_box
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.inference.export import (BOX_NAME, CROP_NOTES, INPUT_NAME, SIGNATURE, TOLERANCES, export_savedmodel,
                                 export_tflite, tflite_interpreter)
    from skin_cnn.models import build_model
    from skin_cnn.inference.predictor import Predictor

    manifest = pd.read_csv(args.data / "manifest.csv")
    if args.limit:
        manifest = manifest.head(args.limit)
    model = build_model("P", input_shape=(args.size, args.size, 3), weights=str(args.weights), seed=0)
    preprocessing = Preprocessing(image_size=(args.size, args.size))
    predictor = Predictor(model, preprocessing)
    tasks = predictor.tasks

    with tempfile.TemporaryDirectory(prefix="skin-cnn-export-check-") as tmp:
        start = time.perf_counter()
        export_savedmodel(model, preprocessing, Path(tmp) / "savedmodel")
        export_tflite(model, preprocessing, Path(tmp) / "model.tflite")
        export_seconds = time.perf_counter() - start
        saved = tf.saved_model.load(str(Path(tmp) / "savedmodel")).signatures[SIGNATURE]
        interpreter = tflite_interpreter(Path(tmp) / "model.tflite")
        lite = interpreter.get_signature_runner(SIGNATURE)

        rows, unreadable, mismatches = [], [], []
        seconds = {"predict": 0.0, "savedmodel": 0.0, "tflite": 0.0}
        for i, rel in enumerate(manifest["image_path"]):
            try:
                photo = predictor.read(args.data / rel)
            except ValueError as exc:
                unreadable.append({"image_path": rel, "reason": str(exc)})
                continue
            t0 = time.perf_counter()
            box = hue_crop_box(photo, **preprocessing.crop_params)
            reference = predictor.predict_images([photo])
            t1 = time.perf_counter()
            out = saved(**{INPUT_NAME: tf.constant(photo)})
            t2 = time.perf_counter()
            lite_out = lite(**{INPUT_NAME: np.ascontiguousarray(crop_image(photo, box))})
            t3 = time.perf_counter()
            seconds["predict"] += t1 - t0
            seconds["savedmodel"] += t2 - t1
            seconds["tflite"] += t3 - t2
            got_box = tuple(int(v) for v in np.asarray(out[BOX_NAME]))
            if got_box != tuple(box):
                mismatches.append({"image_path": rel, "hue_crop_box": list(box), "savedmodel": list(got_box)})
            row = {"image_path": rel, "height": photo.shape[0], "width": photo.shape[1],
                   "box_equal": got_box == tuple(box)}
            for task in tasks:
                ref = float(reference[task][0])
                row[f"savedmodel_{task}"] = abs(float(np.asarray(out[task]).reshape(-1)[0]) - ref)
                row[f"tflite_{task}"] = abs(float(np.asarray(lite_out[task]).reshape(-1)[0]) - ref)
            rows.append(row)
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{len(manifest)} photos", file=sys.stderr, flush=True)

    frame = pd.DataFrame(rows)
    n = len(frame)
    result = {
        "photos": int(len(manifest)),
        "compared": n,
        "unreadable": unreadable,
        "model": (f"VGG-16P, ImageNet trunk ({args.weights.name}), {args.size}x{args.size} input, untrained "
                  "seeded heads (numerical equivalence check, not a diagnostic model)"),
        "preprocessing": preprocessing.to_dict(),
        "reference": "skin_cnn.inference.predictor.Predictor (the skin-cnn predict path), one photo per call",
        "savedmodel": {
            "crop_boxes_equal": int(frame["box_equal"].sum()) if n else 0,
            "crop_box_mismatches": mismatches[:20],
            "max_abs_diff": {t: _summary(frame[f"savedmodel_{t}"]) for t in tasks},
            "max_abs_diff_all": float(frame[[f"savedmodel_{t}" for t in tasks]].to_numpy().max()) if n else None,
            "tolerance": TOLERANCES["savedmodel"],
            "ms_per_photo": 1000 * seconds["savedmodel"] / max(n, 1),
        },
        "tflite": {
            "crop": CROP_NOTES["tflite"],
            "interpreter": type(interpreter).__module__ + "." + type(interpreter).__name__ + " (default delegates)",
            "max_abs_diff": {t: _summary(frame[f"tflite_{t}"]) for t in tasks},
            "max_abs_diff_all": float(frame[[f"tflite_{t}" for t in tasks]].to_numpy().max()) if n else None,
            "tolerance": TOLERANCES["tflite"],
            "ms_per_photo": 1000 * seconds["tflite"] / max(n, 1),
        },
        "predict_ms_per_photo": 1000 * seconds["predict"] / max(n, 1),
        "export_seconds": export_seconds,
        "sizes": {"min": [int(frame["height"].min()), int(frame["width"].min())],
                  "max": [int(frame["height"].max()), int(frame["width"].max())]} if n else None,
        "versions": {"tensorflow": tf.__version__, "python": platform.python_version()},
    }
    saved_ok = (result["savedmodel"]["crop_boxes_equal"] == n
                and result["savedmodel"]["max_abs_diff_all"] < TOLERANCES["savedmodel"])
    lite_ok = result["tflite"]["max_abs_diff_all"] < TOLERANCES["tflite"]
    result["passed"] = {"savedmodel": bool(saved_ok), "tflite": bool(lite_ok)}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(result, args), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("photos", "compared", "passed")}
                     | {"crop_boxes_equal": result["savedmodel"]["crop_boxes_equal"],
                        "savedmodel_max_abs_diff": result["savedmodel"]["max_abs_diff_all"],
                        "tflite_max_abs_diff": result["tflite"]["max_abs_diff_all"]}))
    return 0 if saved_ok and lite_ok else 1


def _markdown(result, args):
    saved, lite = result["savedmodel"], result["tflite"]
    lines = [
        "# Exported models on the public photos",
        "",
        f"`python benchmarks/check_export_photos.py --size {args.size}"
        + (f" --limit {args.limit}" if args.limit else "") + "`",
        "",
        f"Photos: {result['compared']} compared of {result['photos']} "
        f"({len(result['unreadable'])} unreadable). Model: {result['model']}. "
        f"Reference: {result['reference']}.",
        "",
        "| export | crop in the export | crop boxes equal to `hue_crop_box` | max \\|Δp\\| | tolerance "
        "| ms/photo | passed |",
        "|---|---|---|---|---|---|---|",
        f"| SavedModel | yes | {saved['crop_boxes_equal']}/{result['compared']} | "
        f"{saved['max_abs_diff_all']:.2e} | {saved['tolerance']:g} | {saved['ms_per_photo']:.0f} | "
        f"{result['passed']['savedmodel']} |",
        f"| TFLite | no (fed the photo cut to `hue_crop_box`) | — | {lite['max_abs_diff_all']:.2e} | "
        f"{lite['tolerance']:g} | {lite['ms_per_photo']:.0f} | {result['passed']['tflite']} |",
        "",
        f"`skin-cnn predict` path: {result['predict_ms_per_photo']:.0f} ms/photo. TFLite: {lite['crop']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
