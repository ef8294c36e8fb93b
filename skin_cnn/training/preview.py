"""What the network saw: redraw a batch that training fed, pixel for pixel.

:func:`training_batch` rebuilds batch ``b`` of epoch ``E`` from the run's settings alone: the
epoch's image order and each image's augmentation are functions of (seed, epoch, image)
(:mod:`skin_cnn.data.pipeline`), and the images come from the same preparation function as
training (:func:`skin_cnn.data.preprocessing.prepare_images`), so only that batch's photos are
decoded. With the feature cache (variant P) the batch shows, for each image, the stored view it
was trained on in that epoch. For a split CSV without a run, the training defaults apply (hue
crop on, the default augmentation), i.e. what ``skin-cnn train SPLIT`` would feed.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from skin_cnn.core.io import atomic_path
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.data.pipeline import epoch_order, epoch_views, image_stream, view_images
from skin_cnn.data.preprocessing import prepare_images
from skin_cnn.data.reading import check_image
from skin_cnn.core.tasks import TASKS, tasks_for_disease
from skin_cnn.data.skipped import read_skipped
from skin_cnn.data.split import load_split
from skin_cnn.training import run_folder
from skin_cnn.training.config import resolve_config
from skin_cnn.training.feature_cache import image_identities
from skin_cnn.training.trainer import augment_config


def training_rows(frame, skipped=None):
    """The training rows training used: the train split less the images it could not read.

    ``skipped`` is a run's ``skipped_images.csv``; None (no run yet) checks every training
    photo, as training would, so the epoch's order is the one training would draw.
    """
    train = frame[frame["split"] == "train"]
    if skipped is None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            reasons = list(pool.map(check_image, train["image_path"].astype(str)))
        return train[[r is None for r in reasons]]
    gone = {str(s["image_path"]) for s in skipped if s.get("split", "train") == "train"}
    return train[~train["image_path"].astype(str).isin(gone)]


def training_batch(config, frame, *, epoch=1, batch=0, skipped=None, progress=False):
    """Images of batch ``batch`` (0-based) of epoch ``epoch`` (1-based, as in ``history.csv``).

    Parameters
    ----------
    config : TrainConfig
        The run's settings (seed, batch size, balancing, augmentation, preprocessing, cache).
    frame : pandas.DataFrame
        The run's split frame.
    skipped : list of dict, optional
        The run's ``skipped_images.csv`` rows: those images were not in the training stream
        (None: find them, as training would).

    Returns
    -------
    images : numpy.ndarray
        float32 (B, H, W, 3) in [0, 255], exactly the model's input (before its normalisation).
    rows : pandas.DataFrame
        The split rows shown, in batch order, with a ``view`` column (feature cache: stored view,
        0 = clean; -1 without the cache).
    """
    train = training_rows(frame, skipped)
    if train.empty:
        raise ValueError("no training rows to preview")
    e = int(epoch) - 1
    if e < 0 or e >= config.epochs:
        raise ValueError(f"epoch {epoch} is outside 1..{config.epochs}")
    diseases = train["diagnosis"].to_numpy()
    order = epoch_order(config.seed, e, diseases, config.balanced)
    bs = int(config.batch_size)
    n_batches = int(np.ceil(len(order) / bs))
    if not 0 <= batch < n_batches:
        raise ValueError(f"batch {batch} is outside 0..{n_batches - 1} (epoch of {len(order)} images)")
    idx = order[batch * bs:(batch + 1) * bs]
    augment = augment_config(config)
    with tempfile.TemporaryDirectory(prefix="skin-cnn-preview-") as work:
        prepared, failed = prepare_images(train, config.preprocessing(), work, splits=("train",),
                                          rows={"train": set(idx.tolist())}, progress=progress)
        if failed:
            reasons = "; ".join(f"{f['image_path']}: {f['reason']}" for f in failed)
            raise ValueError(f"cannot redraw the batch: {reasons}")
        store = prepared["train"].store
        if config.use_feature_cache():
            n_views = 1 + (int(config.cache_views) if augment.enabled else 0)
            views = epoch_views(config.seed, e, len(order), n_views)[idx]
            images = np.zeros((len(idx),) + store.row_shape, dtype=np.float32)
            keys = image_identities(train.iloc[idx])["aug_key"].to_numpy()  # views drawn per photo content
            for view in np.unique(views):
                at = np.flatnonzero(views == view)
                images[at] = view_images(store, idx[at], int(view), seed=config.seed, augment=augment, keys=keys[at])
        else:
            stream = image_stream(store, diseases, seed=config.seed, epochs=[e], batch_size=bs, augment=augment,
                                  balanced=config.balanced)
            images = np.asarray(next(iter(stream.skip(batch).take(1)))[0])
            views = np.full(len(idx), -1)
        store.close()
    rows = train.iloc[idx].assign(view=views).reset_index(drop=True)
    return images, rows


def split_preview_command(config, split="SPLIT"):
    """The ``skin-cnn preview`` command that draws a run's inputs from its split, unaugmented.

    It carries the run's variant, input size and crop setting (``--no-crop`` for a run that did
    not crop), so the picture shows what the model saw, not training's defaults.
    """
    parts = ["skin-cnn", "preview", str(split), "--no-augment", "--variant", str(config.variant),
             "--image-size", str(int(config.image_size))]
    if not config.crop:
        parts.append("--no-crop")
    return " ".join(parts)


def run_training_batch(run_dir, *, epoch=1, batch=0, progress=False):
    """:func:`training_batch` of a run folder, from its ``config.json``, split and skipped list."""
    run_dir = Path(run_dir)
    document = run_folder.read_run_config(run_dir)
    config = resolve_config(dict(document.get("train", {}), out=str(run_dir)), source=str(RunPaths(run_dir).config))
    if config.head == "linear":
        raise ValueError(f"{run_dir}: fitted with the linear head, which has no epochs or batches: it saw every "
                         f"train and val image once, as is; `{split_preview_command(config)}` draws those inputs")
    frame = load_split(RunPaths(run_dir).split)
    skipped = read_skipped(RunPaths(run_dir).skipped)
    return training_batch(config, frame, epoch=epoch, batch=batch, skipped=skipped, progress=progress), config


def draw_preview(images, titles, path, *, columns=None, thumb=2.2, suptitle=None):
    """Save images (float 0..255 or uint8) in a grid with one title each; return the path."""
    n = len(images)
    if n == 0:
        raise ValueError("no images to draw")
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    fig = Figure(figsize=(columns * thumb, rows * thumb + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return path


def preview_title(config, epoch, batch):
    """One line saying which batch and which settings the grid shows."""
    aug = augment_config(config)
    text = f"epoch {epoch}, batch {batch}: {config.preprocessing().describe()}"
    if aug.enabled:
        flips = ("h" if aug.horizontal_flip else "") + ("v" if aug.vertical_flip else "")
        text += (f"; zoom ±{aug.zoom:g}, rotation ±{aug.rotation:g} turn, shift ±{aug.translation:g}"
                 f", flips {flips or 'off'}")
    if config.use_feature_cache():
        text += f"; feature cache, {config.cache_views if aug.enabled else 0} stored views"
    return text


def draw_training_batch(images, rows, path, *, config, epoch, batch, n=16):
    """A grid of the first ``n`` images of the batch with diagnosis, tasks and stored view."""
    n = min(int(n), len(images))
    titles = []
    for diagnosis, view in zip(rows["diagnosis"][:n], rows["view"][:n]):
        label = f"{diagnosis}\n({', '.join(TASKS[t].short for t in tasks_for_disease(diagnosis))})"
        if view >= 0:
            label += f"\nview {view}" + (" (clean)" if view == 0 else "")
        titles.append(label)
    return draw_preview(images[:n], titles, path, suptitle=preview_title(config, epoch, batch))
