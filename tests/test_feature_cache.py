"""Frozen-trunk feature cache: same predictions as the image model, reused when unchanged."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from test_training import tiny_config, tiny_split


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory):
    return tiny_split(tmp_path_factory.mktemp("cache"), broken=False)


def test_saved_model_on_images_matches_the_heads_on_cached_features(split_csv, tmp_path):
    import keras

    from skin_cnn.predict import predict_frame
    from skin_cnn.predictions import read_predictions
    from skin_cnn.split import load_split
    from skin_cnn.training import train

    cache_dir = tmp_path / "shared-cache"
    messages = []
    train(tiny_config(split_csv, tmp_path / "a", epochs=2, cache_dir=str(cache_dir)), progress=False,
          echo=messages.append)
    assert any("building feature cache" in m for m in messages)

    # val_predictions.csv came from the head on cached features; predict the images with the saved
    # full model and the run's recorded preprocessing instead
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    model = keras.models.load_model(tmp_path / "a" / "best.keras", compile=False)
    frame = load_split(split_csv)
    val = frame[frame["split"] == "val"].reset_index(drop=True)
    probs = predict_frame(model, val, config["preprocessing"], progress=False)
    cached = read_predictions(tmp_path / "a" / "val_predictions.csv")
    assert len(cached)
    for task, part in cached.groupby("task"):
        by_path = dict(zip(val["image_path"], probs[task]))
        np.testing.assert_allclose(part["y_prob"], [by_path[p] for p in part["image_path"]], atol=1e-4)

    # unchanged inputs: the cache is reused; another image size: a new cache is built
    messages = []
    train(tiny_config(split_csv, tmp_path / "b", epochs=1, cache_dir=str(cache_dir)), progress=False,
          echo=messages.append)
    assert any("reusing feature cache" in m for m in messages)
    messages = []
    train(tiny_config(split_csv, tmp_path / "c", epochs=1, cache_dir=str(cache_dir), image_size=40),
          progress=False, echo=messages.append)
    assert any("building feature cache" in m for m in messages)
    assert len([p for p in cache_dir.iterdir() if not p.name.startswith(".")]) == 2


def test_cache_key_changes_with_the_image_files_and_settings(split_csv):
    from skin_cnn.split import load_split
    from skin_cnn.training.feature_cache import cache_key
    from skin_cnn.training.trainer import image_fingerprints

    frame = load_split(split_csv)
    base = dict(preprocessing={"image_size": [32, 32]}, trunk_digest="t", augmentation={}, views=2, seed=0)
    key = cache_key(image_fingerprints(frame), **base)
    assert key == cache_key(image_fingerprints(frame), **base)
    assert key != cache_key(image_fingerprints(frame), **dict(base, views=3))
    assert key != cache_key(image_fingerprints(frame), **dict(base, trunk_digest="u"))
    path = frame["image_path"].iloc[0]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert key != cache_key(image_fingerprints(frame), **base)


def test_each_epoch_draws_one_stored_view_per_image_from_seed_and_epoch():
    from skin_cnn.training.feature_cache import epoch_views

    views = epoch_views(0, 3, 1000, 3)
    assert views.shape == (1000,) and set(np.unique(views)) == {0, 1, 2}
    assert np.array_equal(views, epoch_views(0, 3, 1000, 3))
    assert not np.array_equal(views, epoch_views(0, 4, 1000, 3))
    assert not epoch_views(0, 3, 10, 1).any()
    counts = pd.Series(views).value_counts(normalize=True)
    assert counts.between(0.28, 0.39).all()


@pytest.mark.parametrize("balanced", [False, True])
def test_in_memory_batches_are_the_stored_views_drawn_for_each_epoch(balanced):
    from skin_cnn.diseases import TASK_NAMES
    from skin_cnn.training.feature_cache import epoch_views
    from skin_cnn.training.trainer import epoch_order, steps_for, training_dataset

    class Config:  # the settings training_dataset reads
        seed, epochs, batch_size = 5, 4, 4

    n_views, n = 3, 10
    # Feature value encodes (view, image), so every gathered row can be decoded by hand.
    features = (np.arange(n_views)[:, None, None] * 100 + np.arange(n)[None, :, None]
                + np.zeros((1, 1, 2))).astype("float32")
    labels = {t: (np.arange(n) % 2).astype("float32") for t in TASK_NAMES}
    masks = {t: (np.arange(n) % 3 > 0).astype("float32") for t in TASK_NAMES}
    groups = np.array(["a"] * 7 + ["b"] * 3) if balanced else None
    steps = steps_for(Config, n, groups)
    assert steps == (4 if balanced else 3)  # 14 (two diseases × 7) or 10 images in batches of 4
    for limit in (1 << 30, 0):  # in-memory tf.data path, and the generator path for large caches
        batches = list(training_dataset(features, labels, masks, config=Config, initial_epoch=1, steps_per_epoch=steps,
                                        groups=groups, views=True, in_memory_limit=limit))
        assert len(batches) == (Config.epochs - 1) * steps
        for epoch in range(1, Config.epochs):
            order = epoch_order(Config.seed, epoch, n, groups)
            view_of_image = epoch_views(Config.seed, epoch, n, n_views)
            got = np.concatenate([np.asarray(b[0]) for b in batches[(epoch - 1) * steps:epoch * steps]])
            np.testing.assert_array_equal(got[:, 0] // 100, view_of_image[order])
            np.testing.assert_array_equal(got[:, 0] % 100, order)
            last = batches[epoch * steps - 1]
            assert len(np.asarray(last[0])) == len(order) - 4 * (steps - 1)  # partial last batch, per epoch
        x, y, w = batches[0]
        images = np.asarray(x)[:, 0].astype(int) % 100
        for t in TASK_NAMES:
            np.testing.assert_array_equal(np.asarray(y[t]).reshape(-1), images % 2)
            np.testing.assert_array_equal(np.asarray(w[t]), (images % 3 > 0).astype("float32"))
