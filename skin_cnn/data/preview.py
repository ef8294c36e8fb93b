"""A grid of augmented training images with their diagnoses: look at what the network sees.

Before a long training run it is worth checking, by eye, that crops keep the lesions, that
zoom and rotation stay plausible, and that labels match pictures. The grid is made by the same
code as training batches (:func:`skin_cnn.data.pipeline.load_images` and
:func:`skin_cnn.data.augment.augmentation_layers`).
"""
from __future__ import annotations

import numpy as np

from skin_cnn.diseases import tasks_for_disease


def sample_rows(frame, n=16, seed=0):
    """``n`` training rows drawn without replacement (seeded); the ``train`` split when present."""
    if "split" in frame.columns:
        frame = frame[frame["split"] == "train"]
    if frame.empty:
        raise ValueError("no training rows to preview")
    n = min(int(n), len(frame))
    return frame.sample(n=n, random_state=int(seed)).reset_index(drop=True)


def augmented_images(frame, config, *, seed=0):
    """Load ``frame`` as the pipeline does and apply one random augmentation per image.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, H, W, 3)`` in [0, 255].
    """
    from skin_cnn.data.augment import augmentation_layers
    from skin_cnn.data.pipeline import load_images

    images = load_images(frame, config, progress=False)
    if not config.augment.enabled:
        return images
    layers = augmentation_layers(config.augment, seed=seed)
    return np.asarray(layers(images, training=True), dtype=np.float32)


def draw_preview(images, titles, path, *, columns=None, thumb=2.2, suptitle=None):
    """Save images (float 0..255 or uint8) in a grid with one title each; return the path."""
    from matplotlib.figure import Figure

    from skin_cnn.atomic import atomic_path

    n = len(images)
    if n == 0:
        raise ValueError("no images to draw")
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(columns * thumb, rows * thumb + 0.4))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return path


def preview_grid(frame, config, path, *, n=16, seed=0):
    """Draw ``n`` augmented training images of ``frame`` with diagnosis and tasks as titles.

    Returns
    -------
    pandas.DataFrame
        The rows shown, in grid order.
    """
    rows = sample_rows(frame, n=n, seed=seed)
    images = augmented_images(rows, config, seed=seed)
    titles = [f"{d}\n({', '.join(tasks_for_disease(d))})" for d in rows["diagnosis"]]
    from skin_cnn.data.pipeline import resolve_crop

    height, width = config.image_size
    aug = config.augment
    suptitle = (f"training view {height}×{width}, crop={resolve_crop(rows, config)}, resize={config.resize}; "
                f"zoom ±{aug.zoom:g}, rotation ±{aug.rotation:g} turn, shift ±{aug.translation:g}, "
                f"flips {'h' if aug.horizontal_flip else ''}{'v' if aug.vertical_flip else ''}")
    draw_preview(images, titles, path, suptitle=suptitle if aug.enabled else suptitle.split(";")[0])
    return rows
