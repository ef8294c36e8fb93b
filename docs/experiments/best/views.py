"""Development CV of crop and no-crop views together: the hue-cropped photo's features beside the whole photo's.

Two extractions of ``extract.py``'s superset, one without the crop (``extract.py``) and one with
the study's hue crop (``extract.py --crop``), in the same manifest order. Each candidate is a set
of columns of one of them, or of both side by side, fitted per outer fold exactly as
``candidates.py`` fits its candidates (``--head linear``; C by grouped inner 5-fold CV; Youden's
threshold and a nested Platt map on the inner out-of-fold probabilities). Paired AUC differences
are against the first candidate, the recipe ``frozen-linear-two-scale`` chose (whole photo, blocks
4 and 5 at 320² and 250²).

    python docs/experiments/best/views.py --whole OUT_OF_extract.py --crop OUT_OF_extract.py_--crop \
        [--seed 0] -o OUT
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from candidates import columns, fold_fit, summarise_all

#: name -> ((view, scales, blocks), ...): the column sets put side by side.
CANDIDATES = {
    "whole b45-320+250": (("whole", (320, 250), (4, 5)),),
    "crop b45-320+250": (("crop", (320, 250), (4, 5)),),
    "whole+crop b45-320+250": (("whole", (320, 250), (4, 5)), ("crop", (320, 250), (4, 5))),
    "whole+crop b345-320+250": (("whole", (320, 250), (3, 4, 5)), ("crop", (320, 250), (3, 4, 5))),
    "whole b45-320+250 + crop b45-250": (("whole", (320, 250), (4, 5)), ("crop", (250,), (4, 5))),
}


def read_views(whole: Path, crop: Path):
    """Both extractions' features and the (common) frame; stops if their photos differ."""
    frames = {name: pd.read_csv(folder / "frame.csv") for name, folder in (("whole", whole), ("crop", crop))}
    if not frames["whole"]["image_path"].equals(frames["crop"]["image_path"]):
        raise SystemExit(f"{whole} and {crop} hold different photos or orders; extract both from one manifest")
    features = {name: np.load(folder / "features.npy").astype(np.float64)
                for name, folder in (("whole", whole), ("crop", crop))}
    return features, frames["whole"]


def main(argv=None) -> None:
    from skin_cnn.training.cv import assign_folds, group_labels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole", required=True, type=Path)
    parser.add_argument("--crop", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    features, frame = read_views(args.whole, args.crop)
    groups = group_labels(frame, progress=False)
    frame = frame.assign(split_group=groups)
    folds = assign_folds(frame["diagnosis"], groups, 5, seed=args.seed)
    oofs = {}
    for name, parts in CANDIDATES.items():
        x = np.hstack([features[view][:, columns(scales, blocks)] for view, scales, blocks in parts])
        oofs[name] = pd.concat([fold_fit(x, frame, groups, folds, k, args.seed) for k in range(5)], ignore_index=True)
    summarise_all(oofs, frame, args.out, "views.json")


if __name__ == "__main__":
    main()
