"""The vectorised hue crop gives the published procedure's boxes on the real public photos.

The reference (``benchmarks/published_crop.py``) clusters with scikit-learn's KMeans and loops
over lines in Python. A single k-means restart sometimes stops in a worse local optimum than the
exact 2-means; for those images the reference is rerun with ten restarts, and the exact
partition must never have a larger within-cluster sum of squares than any reference run.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_cnn.data.crop import cluster_hue, downscaled_hue, hue_crop_box
from skin_cnn.data.reading import ImageReadError, read_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from published_crop import box_iou, published_crop_box, reference_labels  # noqa: E402


def _sse(values, labels):
    return sum(((values[labels == c] - values[labels == c].mean()) ** 2).sum() for c in np.unique(labels))


@pytest.mark.slow
def test_fast_crop_agrees_with_the_published_procedure_on_real_photos(public_derm):
    manifest = pd.read_csv(public_derm / "manifest.csv")
    paths = [public_derm / p for p in manifest["image_path"]]
    single, resolved, worse = [], [], []
    unreadable = []
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError as exc:
            unreadable.append(str(exc))
            continue
        fast = hue_crop_box(image)
        iou = box_iou(fast, published_crop_box(image, estimator="kmeans", n_init=1))
        single.append(iou)
        if iou < 0.95:
            hue = downscaled_hue(image)
            exact = cluster_hue(hue)
            for n_init in (1, 10):
                ref = reference_labels(hue, estimator="kmeans", n_init=n_init)
                if _sse(hue, exact) > _sse(hue, ref) * (1 + 1e-6) + 1e-12:
                    worse.append((str(path), n_init))
            iou = box_iou(fast, published_crop_box(image, estimator="kmeans", n_init=10))
        resolved.append(iou)
    single, resolved = np.array(single), np.array(resolved)
    print(
        f"\nhue crop agreement on {len(single)} real photos ({len(unreadable)} unreadable): "
        f"KMeans n_init=1: IoU>=0.95 on {np.mean(single >= 0.95):.1%}, mean IoU {single.mean():.4f}; "
        f"disagreements rerun with n_init=10: IoU>=0.95 on {np.mean(resolved >= 0.95):.1%}, "
        f"mean IoU {resolved.mean():.4f}"
    )
    assert not unreadable, unreadable[:5]
    assert len(single) >= 900
    assert not worse, f"exact 2-means worse than sklearn KMeans on {worse[:5]}"
    assert np.mean(single >= 0.95) >= 0.95
    assert np.mean(resolved >= 0.95) >= 0.99
