"""Extract, once, the frozen features of every photo that all development candidates are cut from.

The feature model is the product's own (``skin_cnn.training.cv.shared_features``, the per-user
feature cache): 320² input without crop, blocks 3, 4 and 5 globally averaged at the input scale
and again on the input resized to 250² inside the model, square-rooted, averaged with the mirror
image. Every candidate of ``candidates.py`` is a set of columns of these features, so one trunk
pass per photo and view serves them all, and ``skin-cnn cv --recipe`` of the superset finds
them in the cache. Writes ``features.npy`` (n × 2,560, manifest order) and ``frame.csv``.
``--crop`` extracts the same superset from the study's hue-cropped photos (``views.py``).

    python docs/experiments/best/extract.py --manifest MANIFEST --weights W -o OUT [--crop]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: The superset the candidates are cut from (``--recipe`` settings).
SUPERSET = {"head": "linear", "pool_blocks": "3+4+5", "mirror": True, "sqrt_features": True, "crop": False,
            "image_size": 320, "second_scale": 250, "threshold": "youden", "cache_views": 0}


def main(argv=None) -> None:
    from skin_cnn.models.precision_policy import resolve_precision
    from skin_cnn.training.config import resolve_config
    from skin_cnn.training.cv import read_source, shared_features

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--crop", action="store_true", help="the study's hue crop before resizing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = read_source(args.manifest)
    settings = dict(SUPERSET, crop=True) if args.crop else SUPERSET
    config = resolve_config(dict(settings, weights=args.weights, split=args.manifest, out=str(out / "run")))
    precision = resolve_precision(config.precision)
    print(precision.describe(), flush=True)
    shared = shared_features(config, frame, out, progress=True, echo=print, precision=precision)
    labels, rows = shared.rows_of(frame)
    if len(labels) != len(frame):
        raise SystemExit(f"{len(frame) - len(labels)} photos could not be read")
    np.save(out / "features.npy", np.asarray(shared.features[0, rows], dtype=np.float32))
    frame.to_csv(out / "frame.csv", index=False)
    print(f"features {shared.features.shape} -> {out / 'features.npy'}")


if __name__ == "__main__":
    main()
