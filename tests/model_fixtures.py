"""Tiny trained skin-cnn models, photos and run folders for tests that need a model.

A real VGG-16 at 250×250 is far too slow for unit tests on a CPU, so these helpers build the
study's architecture (``build_model("P", ...)``) at 32×32 or 64×64 and train only its heads, on
trunk features computed once (``split_at_frozen_boundary``), on a synthetic task whose answer
is known: *positive images carry a bright square in one quadrant, negative images do not*. The
heads learn it in a few seconds, so predictions are far from 0.5 and Grad-CAM has something to
find.

Everything here is deterministic for a given seed. Expensive objects are built once per test
process (:func:`shared_run`) and reused by every test module.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


def patch_images(n, size, seed=0, quadrant="top_left", positive_every=2):
    """Noise images, every ``positive_every``-th one with a bright square patch in ``quadrant``.

    Parameters
    ----------
    n, size : int
        Number of images and their side in pixels.
    seed : int
    quadrant : str
        One of :data:`QUADRANTS`; the patch (side ``size // 4``) lies entirely inside it.

    Returns
    -------
    images : float32 array (n, size, size, 3) in [0, 255]
        Skin-like mid-tone noise (mean 150, sd 20); the patch is pure white.
    labels : float32 array (n,)
        1 for images with the patch.
    boxes : list
        ``(top, left, bottom, right)`` of each image's patch, None for negatives.
    """
    if quadrant not in QUADRANTS:
        raise ValueError(f"quadrant must be one of {QUADRANTS}; got {quadrant!r}")
    rng = np.random.default_rng(seed)
    images = rng.normal(150.0, 20.0, size=(n, size, size, 3)).clip(0, 255)
    labels = (np.arange(n) % positive_every == 0).astype(np.float32)
    side, half = size // 4, size // 2
    row0 = 0 if quadrant.startswith("top") else half
    col0 = 0 if quadrant.endswith("left") else half
    boxes = []
    for i in range(n):
        if not labels[i]:
            boxes.append(None)
            continue
        r, c = rng.integers(0, half - side + 1, size=2)
        top, left = row0 + int(r), col0 + int(c)
        images[i, top : top + side, left : left + side] = 255.0
        boxes.append((top, left, top + side, left + side))
    return images.astype(np.float32), labels, boxes


def train_heads(model, images, labels, steps=60, seed=0, learning_rate=3e-3):
    """Train the heads of a frozen-trunk model on cached trunk features; every task gets ``labels``.

    Full-batch Adam steps in one compiled function: a few seconds, where ``Model.fit``'s
    per-epoch overhead would take several times longer for the same result.
    """
    import keras
    import tensorflow as tf

    from skin_cnn.models.vgg import split_at_frozen_boundary

    keras.utils.set_random_seed(seed)
    features_model, head_model = split_at_frozen_boundary(model)
    features = tf.constant(
        features_model.predict(np.asarray(images, np.float32), batch_size=64, verbose=0)
    )
    targets = tf.constant(np.asarray(labels, np.float32)[:, None])
    optimizer = keras.optimizers.Adam(learning_rate)
    bce = keras.losses.BinaryCrossentropy()
    variables = head_model.trainable_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            outputs = head_model(features, training=True)
            loss = tf.add_n([bce(targets, outputs[t]) for t in model.output_names])
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    for _ in range(steps):
        step()
    return model


def tiny_model(size=32, weights=None, seed=0, n_train=48, steps=60):
    """The VGG-16P architecture at ``size``×``size`` with trained heads (patch task, top-left).

    ``weights=None`` gives a random but frozen trunk (no file needed); pass the ImageNet weights
    file for features that localise well (Grad-CAM tests).
    """
    from skin_cnn.models import build_model

    model = build_model("P", input_shape=(size, size, 3), weights=weights, seed=seed)
    images, labels, _ = patch_images(n_train, size, seed=seed)
    return train_heads(model, images, labels, steps=steps, seed=seed)


def plain_model(size=32, seed=3):
    """A small model saved the way models were before they stored a record of their use.

    Rescale, a 1×1 identity convolution, global average, one sigmoid head per task with random
    weights: no
    ``skin_cnn_info`` layer, so no tasks, preprocessing or thresholds inside.
    """
    import keras

    from skin_cnn.core.tasks import TASK_NAMES

    inputs = keras.Input((size, size, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, name="conv")  # identity: something for Grad-CAM to weigh
    features = conv(keras.layers.Rescaling(1 / 255)(inputs))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(pooled) for t in TASK_NAMES}
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.eye(3, dtype="float32").reshape(1, 1, 3, 3), np.zeros(3, "float32")])
    rng = np.random.default_rng(seed)
    for t in TASK_NAMES:
        model.get_layer(t).set_weights([rng.normal(0, 3, (3, 1)).astype("float32"),
                                        np.zeros(1, "float32")])
    return model


def write_photos(folder, n, size=(48, 40), seed=0, prefix="photo"):
    """Write ``n`` small RGB PNG photos (noise with a patch in odd ones); return their paths."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for i in range(n):
        pixels = rng.normal(150, 25, size=(height, width, 3)).clip(0, 255).astype(np.uint8)
        if i % 2:
            pixels[2 : height // 3, 2 : width // 3] = 255
        path = folder / f"{prefix}_{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def preprocessing_for(size, crop=True, resize="stretch"):
    """A run's ``preprocessing`` entry as ``config.json`` stores it."""
    from skin_cnn.core.specs import DEFAULT_CROP_PARAMS

    params = {k: list(v) if isinstance(v, tuple) else v for k, v in DEFAULT_CROP_PARAMS.items()}
    return {
        "image_size": [size, size],
        "crop": bool(crop),
        "crop_params": params if crop else {},
        "resize": resize,
    }


def write_run_folder(folder, model, preprocessing, split_frame=None):
    """A minimal ``skin-cnn train`` run folder: ``config.json``, ``best.keras`` and ``split.csv``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "variant": "P",
        "image_size": preprocessing["image_size"][0],
        "preprocessing": preprocessing,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    model.save(folder / "best.keras")
    if split_frame is not None:
        split_frame.to_csv(folder / "split.csv", index=False)
    return folder


def write_manifest(folder, n=6, seed=0):
    """Photos and a manifest CSV (relative paths, one diagnosis per image, cycling the five)."""
    import pandas as pd

    from skin_cnn.core.tasks import DISEASES

    folder = Path(folder)
    paths = write_photos(folder / "images", n, seed=seed)
    frame = pd.DataFrame(
        {
            "image_path": [f"images/{p.name}" for p in paths],
            "patient_id": [f"p{i}" for i in range(n)],
            "diagnosis": [DISEASES[i % len(DISEASES)] for i in range(n)],
            "site": [f"site{i % 2}" for i in range(n)],
        }
    )
    path = folder / "manifest.csv"
    frame.to_csv(path, index=False)
    return path, frame


@functools.cache
def shared_run(size=32, crop=True):
    """A run folder with a tiny trained model, built once per test process.

    Returns
    -------
    pathlib.Path
        ``<tmp>/run`` with ``config.json``, ``best.keras`` and ``split.csv`` (8 photos, split
        train/val/test); the photos are in ``<tmp>/data/images``.
    """
    import pandas as pd

    root = Path(tempfile.mkdtemp(prefix="skin-cnn-model-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # ~60 MB of model per process
    manifest, frame = write_manifest(root / "data", n=8)
    frame = frame.assign(
        image_path=[str((manifest.parent / p).resolve()) for p in frame["image_path"]],
        split=["train", "train", "train", "train", "val", "val", "test", "test"],
    )
    model = tiny_model(size=size)
    return write_run_folder(
        root / "run", model, preprocessing_for(size, crop=crop), pd.DataFrame(frame)
    )
