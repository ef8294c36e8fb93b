"""Choose the leakage audit's threshold on the public photos, against photos of the same disease.

The audit (``skin-cnn evaluate RUN``) scores every (evaluated, training) pair by the re-crop-aware
feature similarity of ``skin_cnn.evaluation.recrop_match``, checks each evaluated image's 10 best
candidates by it pixel by pixel (``skin_cnn.evaluation.pixel_match``: normalised
cross-correlation of grayscale thumbnails, one shrunk and slid over the other), scores a pair the
higher of the two (``skin_cnn.evaluation.duplicates.verified_scores``) and lists the pairs at or
above a threshold. This script measures, with the audit's own code (``audit_descriptors``,
``match_scores``, ``verified_scores``):

* **positives**: a seeded sample of photos against altered copies of themselves — centre crops
  of 50, 70 and 90% of the side, a 70% corner crop, a half-size rescale, a JPEG re-save at quality
  50, a left–right flip, a 10° rotation (cropped to 85% to drop the corners), a colour jitter
  (brightness 1.15, contrast 0.85, saturation 1.2), and a 70% crop halved and re-saved at once;
  a copy is found when its score with its photo reaches the threshold (each copy is scored
  against all photos, so its photo must also be among its pixel-checked candidates);
* **hard negatives**: each photo against every other photo of the *same disease from the same
  source* (the case that flagged unrelated acne photos of one atlas): the share of photos whose
  highest such score reaches the threshold; and the same against photos of other diseases. The
  public photos carry no patient ids, so some same-disease pairs are true repeats (the same
  lesion, or the same photo in two sources); the share is an upper bound of the false-flag rate;
* **a real split**: the test split of ``skin-cnn split`` (``--split``) against its training
  split, as ``evaluate`` runs the audit: flagged test images and pairs, drawn with ``--sheet``.

Everything is printed for the feature score alone (the audit before the pixel check) and for the
audit's score. Rule: the lowest threshold on a 0.005 grid at which at most 5% of photos are
flagged against other photos of their own disease and source. Descriptors are cached in
``--cache``; ``--time-audit`` also times ``audit_leakage`` on the split (trunk and scoring)::

    skin-cnn split ../shared/data/public-derm/manifest.csv -o split.csv
    python docs/experiments/leakage_threshold.py --split split.csv \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5 --altered 150 \\
        --sheet leakage-pairs.png

The printed tables are in docs/experiments/leakage-threshold.md.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import numpy as np

TRANSFORMS = ("crop50", "crop70", "crop90", "crop70 corner", "rescale50", "jpeg50", "flip", "rotate10",
              "colour jitter", "crop70+rescale50+jpeg50")
GRID = np.round(np.arange(0.850, 0.9501, 0.005), 3)
MAX_SAME_DISEASE_FLAG = 0.05


def altered(photo, kind):
    """An altered copy of a PIL photo."""
    from PIL import Image, ImageEnhance

    def crop(p, f, corner=False):
        w, h = p.size
        cw, ch = round(f * w), round(f * h)
        left, top = (0, 0) if corner else ((w - cw) // 2, (h - ch) // 2)
        return p.crop((left, top, left + cw, top + ch))

    def jpeg(p):
        buffer = io.BytesIO()
        p.save(buffer, format="JPEG", quality=50)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    def half(p):
        return p.resize((max(1, p.width // 2), max(1, p.height // 2)), Image.BICUBIC)

    steps = {
        "crop50": lambda p: crop(p, 0.5), "crop70": lambda p: crop(p, 0.7), "crop90": lambda p: crop(p, 0.9),
        "crop70 corner": lambda p: crop(p, 0.7, corner=True), "rescale50": half, "jpeg50": jpeg,
        "flip": lambda p: p.transpose(Image.FLIP_LEFT_RIGHT),
        "rotate10": lambda p: crop(p.rotate(10, resample=Image.BICUBIC), 0.85),
        "colour jitter": lambda p: ImageEnhance.Color(ImageEnhance.Contrast(
            ImageEnhance.Brightness(p).enhance(1.15)).enhance(0.85)).enhance(1.2),
        "crop70+rescale50+jpeg50": lambda p: jpeg(half(crop(p, 0.7))),
    }
    return steps[kind](photo)


def predictor_for(weights, image_size=250):
    """The ImageNet VGG-16 trunk with the audit's reading of a photo (no hue crop)."""
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.inference.predictor import Predictor
    from skin_cnn.models import build_model

    model = build_model("P", input_shape=(image_size, image_size, 3), weights=str(weights), seed=0)
    return Predictor(model, Preprocessing(image_size=(image_size, image_size), crop=False), precision="float32")


def descriptors(split_csv, weights, cache, n_altered=150, seed=0):
    """Descriptors of every photo of the split and of altered copies of a seeded sample (cached)."""
    from skin_cnn.evaluation.recrop_match import Descriptors

    if cache and Path(cache).is_file():
        data = np.load(cache, allow_pickle=False)
        load = {k: data[k] for k in data.files}
        return {name: Descriptors({float(s): load[f"{name}/whole/{s}"] for s in load[f"{name}/scales"]},
                                  {float(s): load[f"{name}/windows/{s}"] for s in load[f"{name}/scales"][1:]},
                                  load[f"{name}/thumbs"])
                for name in ("photos", "copies")}, load["sample"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pandas as pd
    from PIL import Image

    from skin_cnn.data.split import load_split
    from skin_cnn.app.evaluate_run import audit_descriptors

    frame = load_split(split_csv)
    predictor = predictor_for(weights)
    photos, ok = audit_descriptors(predictor, frame, progress=True)
    if not ok.all():
        raise SystemExit(f"{(~ok).sum()} photos could not be read")
    sample = np.sort(np.random.default_rng(seed).choice(len(frame), n_altered, replace=False))
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k in sample:
            with Image.open(frame["image_path"].iloc[k]) as im:
                photo = im.convert("RGB")
            for t, kind in enumerate(TRANSFORMS):
                path = Path(folder) / f"{k}_{t}.png"
                altered(photo, kind).save(path)
                paths.append(str(path))
        copies, _ = audit_descriptors(predictor, pd.DataFrame({"image_path": paths}), progress=True)
    result = {"photos": photos, "copies": copies}
    if cache:
        flat = {"sample": sample}
        for name, d in result.items():
            flat[f"{name}/scales"] = np.array(list(d.whole))
            flat.update({f"{name}/whole/{s}": v for s, v in d.whole.items()})
            flat.update({f"{name}/windows/{s}": v for s, v in d.windows.items()})
            flat[f"{name}/thumbs"] = d.thumbs
        np.savez(cache, **flat)
    return result, sample


def quantiles(values):
    return " | ".join(f"{v:.3f}" for v in np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0]))


def analyse(name, photo_scores, copy_scores, sample, frame):
    """Print one scoring's tables; return its chosen threshold and the rows at it."""
    n = len(frame)
    dx, source = frame["diagnosis"].astype(str).to_numpy(), frame["source_repo"].astype(str).to_numpy()
    same = (dx[:, None] == dx[None, :]) & (source[:, None] == source[None, :]) & ~np.eye(n, dtype=bool)
    other = dx[:, None] != dx[None, :]
    same_best = np.where(same, photo_scores, -np.inf).max(axis=1)
    other_best = np.where(other, photo_scores, -np.inf).max(axis=1)
    own = copy_scores.reshape(len(sample), len(TRANSFORMS), n)[np.arange(len(sample)), :, sample]  # (sample, T)
    test, train = (frame["split"] == "test").to_numpy(), (frame["split"] == "train").to_numpy()
    split_scores = photo_scores[np.ix_(test, train)]
    print(f"\n# {name}\n")
    print("| pairs | n | min | 5% | median | 95% | max |\n|---|---|---|---|---|---|---|")
    for t, kind in enumerate(TRANSFORMS):
        print(f"| photo vs its {kind} copy | {len(sample)} | {quantiles(own[:, t])} |")
    print(f"| each photo's best other photo of its disease and source | {n} | {quantiles(same_best)} |")
    print(f"| each photo's best photo of another disease | {n} | {quantiles(other_best)} |")
    print("\n| threshold | " + " | ".join(TRANSFORMS) + " | photos flagged: same disease and source "
          "| photos flagged: other diseases | split: test images flagged | split: pairs |")
    print("|---" * (len(TRANSFORMS) + 5) + "|")
    chosen = None
    for t in GRID:
        rate = float(np.mean(same_best >= t))
        if chosen is None and rate <= MAX_SAME_DISEASE_FLAG:
            chosen = float(t)
        print(f"| {t:.3f} | " + " | ".join(f"{np.mean(own[:, k] >= t):.0%}" for k in range(len(TRANSFORMS)))
              + f" | {rate:.1%} | {np.mean(other_best >= t):.1%} | {int((split_scores >= t).any(axis=1).sum())} of "
              f"{int(test.sum())} | {int((split_scores >= t).sum())} |")
    chosen = float(GRID[-1]) if chosen is None else chosen
    print(f"\nchosen: {chosen:.3f} (lowest on the grid with at most {MAX_SAME_DISEASE_FLAG:.0%} of photos flagged "
          "against other photos of their own disease and source)")
    return chosen


def scorings(photos, copies, frame):
    """(name, photo × photo scores, copy × photo scores, test × train scores, parts) of the feature
    score alone and of the audit's verified score."""
    from skin_cnn.evaluation.duplicates import verified_scores
    from skin_cnn.evaluation.recrop_match import match_scores

    features, copy_features = match_scores(photos, photos), match_scores(copies, photos)
    test, train = (frame["split"] == "test").to_numpy(), (frame["split"] == "train").to_numpy()
    split_features = features[np.ix_(test, train)]
    own = features.copy()
    np.fill_diagonal(own, -2.0)  # a photo is not its own candidate
    verified = verified_scores(own, photos.thumbs, photos.thumbs)[0]
    copy_verified = verified_scores(copy_features, copies.thumbs, photos.thumbs)[0]
    split_verified, split_pixel = verified_scores(split_features, photos.thumbs[test], photos.thumbs[train])
    return [("Feature score alone (re-crop-aware, recrop_match.match_scores)", features, copy_features,
             split_features, {}),
            ("The audit's score: feature score, best 10 candidates checked pixel by pixel "
             "(duplicates.verified_scores)", verified, copy_verified, split_verified,
             {"feature_similarity": split_features, "pixel_correlation": split_pixel})]


def candidate_rates(copy_features, sample, n_photos):
    """Print, per alteration, the share of copies whose photo is among their pixel-checked candidates."""
    from skin_cnn.evaluation.duplicates import CANDIDATES

    scores = copy_features.reshape(len(sample), len(TRANSFORMS), n_photos)
    own = scores[np.arange(len(sample)), :, sample]  # (sample, T)
    better = (scores > own[:, :, None]).sum(axis=2)  # photos scoring above the copy's own photo
    print(f"\ncopies whose photo is among their {CANDIDATES} candidates by the feature score: "
          + ", ".join(f"{kind} {np.mean(better[:, t] < CANDIDATES):.0%}" for t, kind in enumerate(TRANSFORMS)))


def time_audit(weights, frame):
    """Seconds ``audit_leakage`` takes on the split's test images (trunk, thumbnails and scoring)."""
    import time

    from skin_cnn.app.evaluate_run import audit_leakage

    predictor = predictor_for(weights)
    start = time.perf_counter()
    result = audit_leakage(predictor, frame, frame[frame["split"] == "test"], "test")
    seconds = time.perf_counter() - start
    audit = result["audit"]
    print(f"\naudit_leakage on the split: {audit['n_evaluated']} test against {audit['n_training']} training "
          f"images, {audit['suspected']} flagged, {seconds:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="skin-cnn split of the public manifest")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--cache", default="leakage_descriptors.npz")
    parser.add_argument("--altered", type=int, default=150, help="photos (seed 0) whose altered copies are positives")
    parser.add_argument("--sheet", default=None, help="draw the split's flagged pairs at the chosen threshold here")
    parser.add_argument("--time-audit", action="store_true", help="also time audit_leakage on the split")
    args = parser.parse_args()
    from skin_cnn.data.split import load_split
    from skin_cnn.evaluation.duplicates import pairs_at_threshold
    from skin_cnn.reporting.gallery import plot_pairs

    frame = load_split(args.split)
    data, sample = descriptors(args.split, args.weights, args.cache, args.altered)
    test, train = frame[frame["split"] == "test"], frame[frame["split"] == "train"]
    for k, (name, photo_scores, copy_scores, split_scores, parts) in enumerate(
            scorings(data["photos"], data["copies"], frame)):
        threshold = analyse(name, photo_scores, copy_scores, sample, frame)
        pairs = pairs_at_threshold(test.reset_index(drop=True), train.reset_index(drop=True), split_scores,
                                   threshold, parts)
        print(f"\nat {threshold:.3f}: {pairs['image_path'].nunique()} of {len(test)} test images flagged, "
              f"{len(pairs)} pairs")
        for _, r in pairs.iterrows():
            extra = "".join(f"  {key} {r[key]:.3f}" for key in parts)
            print(f"  {r['similarity']:.3f}  {Path(r['image_path']).name}  {Path(r['train_image_path']).name}{extra}")
        if k == 0:
            candidate_rates(copy_scores, sample, len(frame))
        if k == 1 and args.sheet:
            plot_pairs(pairs, args.sheet, max_pairs=len(pairs))
            print(f"wrote {args.sheet}")
    if args.time_audit:
        time_audit(args.weights, frame)


if __name__ == "__main__":
    main()
