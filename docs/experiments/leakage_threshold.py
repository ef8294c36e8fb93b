"""Choose the leakage audit's cosine-similarity threshold on the public photos.

Positives: a photo and an altered copy of it — a 70% centre crop, a half-size rescale, a JPEG
re-save at quality 50, and all three at once — the copies the patient-level split and the 12-bit
hash match can miss. Negatives: every pair of photos of two *different* diseases (different
lesions, so any flag there is false); pairs within one disease are reported apart, because the
public sets hold genuine repeats under other file names and those pairs are not clean negatives.

Features are the ones the audit uses (``skin_cnn.app.evaluate_run.pooled_features``): the global
average of ``block5_conv3`` of VGG-16 with the ImageNet weights, 250×250 input, no hue crop.

To fit in the time of two shared CPU cores (about one image a second there), a seeded sample of
``--photos`` photos gives the negatives and the first ``--altered`` of them the positives (1,400
forward passes at the defaults; features are cached in --cache)::

    python docs/experiments/leakage_threshold.py \\
        --manifest ../shared/data/public-derm/manifest.csv \\
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5 \\
        --photos 600 --altered 200 --figure docs/experiments/leakage-threshold.png

The printed tables are in docs/experiments/leakage-threshold.md.
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np

TRANSFORMS = ("crop70", "rescale50", "jpeg50", "all three")
POOLINGS = ("avg", "max", "gem")
GRID = np.round(np.arange(0.80, 0.991, 0.01), 2)
MAX_IMAGE_FALSE_FLAG = 0.01  # at most 1% of photos flagged against unrelated training photos


def altered(image, kind):
    """An altered copy of a uint8 RGB photo (PIL in, numpy out)."""
    from PIL import Image

    photo = Image.fromarray(image)
    steps = ("crop70", "rescale50", "jpeg50") if kind == "all three" else (kind,)
    for step in steps:
        if step == "crop70":
            w, h = photo.size
            cw, ch = round(0.7 * w), round(0.7 * h)
            left, top = (w - cw) // 2, (h - ch) // 2
            photo = photo.crop((left, top, left + cw, top + ch))
        elif step == "rescale50":
            photo = photo.resize((max(1, photo.width // 2), max(1, photo.height // 2)), Image.BICUBIC)
        elif step == "jpeg50":
            buffer = io.BytesIO()
            photo.save(buffer, format="JPEG", quality=50)
            photo = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(photo)


def features(manifest, weights, image_size, cache, n_photos=600, n_altered=200, seed=0):
    """Pooled features of ``n_photos`` photos (seeded sample) and of altered copies of the first
    ``n_altered`` of them: ``{name: (n, 512)}`` (cached)."""
    if cache and Path(cache).is_file():
        data = np.load(cache, allow_pickle=False)
        return {k: data[k] for k in data.files}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.manifest import load_manifest
    from skin_cnn.models import build_model
    from skin_cnn.inference.predictor import Predictor
    import keras

    from skin_cnn.app.evaluate_run import pooled_trunk_model

    frame = load_manifest(manifest)
    if n_photos < len(frame):
        frame = frame.sample(n=n_photos, random_state=seed).reset_index(drop=True)
    model = build_model("P", input_shape=(image_size, image_size, 3), weights=str(weights), seed=0)
    predictor = Predictor(model, Preprocessing(image_size=(image_size, image_size), crop=False))
    # one pass through the trunk: the three poolings read one feature map (layers shared)
    heads = [pooled_trunk_model(model, pooling=pooling) for pooling in POOLINGS]
    trunk = keras.Model(model.inputs[0], [head.outputs[0] for head in heads])
    out = {f"{name}:{pooling}": [] for name in ("original", *TRANSFORMS) for pooling in POOLINGS}
    batch = {name: [] for name in ("original", *TRANSFORMS)}

    def flush():
        for name, tensors in batch.items():
            if tensors:
                pooled = trunk(np.stack(tensors), training=False)
                for pooling, values in zip(POOLINGS, pooled):
                    out[f"{name}:{pooling}"].append(np.asarray(values, dtype=np.float32))
                tensors.clear()

    for k, path in enumerate(frame["image_path"].astype(str)):
        photo = predictor.read(path)
        batch["original"].append(predictor.preprocess(photo)[0])
        if k < n_altered:
            for name in TRANSFORMS:
                batch[name].append(predictor.preprocess(altered(photo, name))[0])
        if len(batch["original"]) == 16:
            flush()
        if (k + 1) % 50 == 0:
            print(f"  {k + 1}/{len(frame)} photos", flush=True)
    flush()
    result = {name: np.concatenate(parts) for name, parts in out.items()}
    result["diagnosis"] = frame["diagnosis"].astype(str).to_numpy()
    result["image_path"] = frame["image_path"].astype(str).to_numpy()
    if cache:
        np.savez(cache, **result)
    return result


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def quantile_row(name, values):
    q = np.quantile(values, [0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 0.999, 1.0])
    return f"| {name} | {len(values):,} | " + " | ".join(f"{v:.3f}" for v in q) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--image-size", type=int, default=250)
    parser.add_argument("--cache", default="leakage_features.npz")
    parser.add_argument("--photos", type=int, default=600, help="photos sampled (seed 0) for the negatives")
    parser.add_argument("--altered", type=int, default=200,
                        help="of them, photos whose altered copies are the positives")
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    data = features(args.manifest, args.weights, args.image_size, args.cache, args.photos, args.altered)
    summary = []
    for pooling in POOLINGS:
        figure = None
        if args.figure:
            figure = str(Path(args.figure).with_name(f"{Path(args.figure).stem}-{pooling}.png"))
        summary.append((pooling, *analyse(data, pooling, figure)))
    print("\n## Summary: each pooling at its own threshold (at most "
          f"{MAX_IMAGE_FALSE_FLAG:.0%} of photos falsely flagged)\n")
    print("| pooling | threshold | " + " | ".join(f"found: {t}" for t in TRANSFORMS) + " | photos falsely flagged |")
    print("|---|---|" + "---|" * (len(TRANSFORMS) + 1))
    for pooling, chosen, recall, rate in summary:
        print(f"| {pooling} | {chosen:.2f} | " + " | ".join(f"{recall[t]:.1%}" for t in TRANSFORMS)
              + f" | {rate:.2%} |")


def analyse(data, pooling, figure=None):
    """Print the quantile and threshold tables of one pooling; return (threshold, recall, false-flag rate)."""
    original = unit(data[f"original:{pooling}"])
    dx = data["diagnosis"]
    n = len(original)
    sims = original @ original.T
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    other_dx = dx[:, None] != dx[None, :]
    negatives = sims[upper & other_dx]
    same_dx = sims[upper & ~other_dx]
    positives = {}
    for name in TRANSFORMS:
        copies = unit(data[f"{name}:{pooling}"])
        positives[name] = np.sum(original[:len(copies)] * copies, axis=1)
    # per photo: its highest similarity to a photo of another disease (a training set without its duplicate)
    nearest_other = np.where(other_dx, sims, -np.inf).max(axis=1)

    print(f"\n# Pooling: {pooling}\n")
    print(f"{n} photos (seeded sample), altered copies of {len(positives[TRANSFORMS[0]])}; "
          f"{len(negatives):,} pairs of different diseases, {len(same_dx):,} pairs within a disease\n")
    print(f"Cosine similarity of {pooling}-pooled block5_conv3 features (quantiles)\n")
    print("| pairs | n | min | 1% | 5% | median | 95% | 99% | 99.9% | max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in TRANSFORMS:
        print(quantile_row(f"photo vs its {name} copy", positives[name]))
    print(quantile_row("photos of two different diseases", negatives))
    print(quantile_row("photos of one disease", same_dx))
    print(quantile_row("each photo's nearest photo of another disease", nearest_other))

    print("\nAt each threshold: share of altered copies found (recall), share of different-disease pairs"
          " flagged, share of photos flagged against all photos of other diseases\n")
    print("| threshold | " + " | ".join(f"found: {t}" for t in TRANSFORMS)
          + " | pairs falsely flagged | photos falsely flagged | same-disease pairs flagged |")
    print("|---|" + "---|" * (len(TRANSFORMS) + 3))
    chosen = None
    for t in GRID:
        image_rate = float(np.mean(nearest_other >= t))
        if chosen is None and image_rate <= MAX_IMAGE_FALSE_FLAG:
            chosen = float(t)
        print(f"| {t:.2f} | " + " | ".join(f"{np.mean(positives[k] >= t):.1%}" for k in TRANSFORMS)
              + f" | {np.mean(negatives >= t):.4%} | {image_rate:.2%} | {int(np.sum(same_dx >= t))} |")
    if chosen is None:
        chosen = float(GRID[-1])
    recall = {k: float(np.mean(positives[k] >= chosen)) for k in TRANSFORMS}
    rate = float(np.mean(nearest_other >= chosen))
    print(f"\nchosen threshold: {chosen:.2f} — the lowest on the grid at which at most "
          f"{MAX_IMAGE_FALSE_FLAG:.0%} of photos are flagged against the photos of other diseases")
    print("recall at it: " + ", ".join(f"{k} {v:.1%}" for k, v in recall.items()))
    print(f"false flags at it: {np.mean(negatives >= chosen):.4%} of different-disease pairs "
          f"({int(np.sum(negatives >= chosen))} of {len(negatives):,}); {rate:.2%} of photos")
    close = np.argwhere(np.triu(sims >= chosen, k=1) & ~other_dx)
    print(f"\nsame-disease pairs at or above it: {len(close)} (look at them: repeats under other names?)")
    for i, j in close[np.argsort(-sims[close[:, 0], close[:, 1]])][:8]:
        print(f"  {sims[i, j]:.3f}  {Path(data['image_path'][i]).name}  {Path(data['image_path'][j]).name}")
    if figure:
        plot(positives, negatives, same_dx, chosen, figure, pooling)
        print(f"\nwrote {figure}")
    return chosen, recall, rate


def plot(positives, negatives, same_dx, chosen, path, pooling="avg"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    bins = np.linspace(min(negatives.min(), 0.2), 1.0, 81)
    ax.hist(negatives, bins=bins, density=True, alpha=0.5, label="two different diseases")
    ax.hist(same_dx, bins=bins, density=True, histtype="step", lw=1.2, label="one disease")
    for name, values in positives.items():
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.4, label=f"photo vs {name} copy")
    ax.axvline(chosen, color="k", ls="--", lw=1)
    ax.text(chosen, ax.get_ylim()[1] * 0.95, f" {chosen:.2f}", va="top", fontsize=8)
    ax.set_xlabel(f"cosine similarity of {pooling}-pooled block5_conv3 features (VGG-16, ImageNet)")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
