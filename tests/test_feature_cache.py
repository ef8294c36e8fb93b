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

    from skin_cnn.inference.predictor import predict_frame
    from skin_cnn.core.predictions import read_predictions
    from skin_cnn.data.split import load_split
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
    from skin_cnn.data.split import load_split
    from skin_cnn.training.feature_cache import cache_key
    from skin_cnn.training.feature_cache import image_fingerprints

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
    from skin_cnn.data.pipeline import epoch_views

    views = epoch_views(0, 3, 1000, 3)
    assert views.shape == (1000,) and set(np.unique(views)) == {0, 1, 2}
    assert np.array_equal(views, epoch_views(0, 3, 1000, 3))
    assert not np.array_equal(views, epoch_views(0, 4, 1000, 3))
    assert not epoch_views(0, 3, 10, 1).any()
    counts = pd.Series(views).value_counts(normalize=True)
    assert counts.between(0.28, 0.39).all()


def test_leftovers_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from skin_cnn.training.feature_cache import remove_stale_partials
    from skin_cnn.training.trainer import preparation_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    cache = tmp_path / "feature_cache"
    for pid in (dead_pid, os.getpid()):
        (cache / f".abc.partial-{pid}-x1").mkdir(parents=True)
        (tmp_path / f".prepared-{pid}-y1").mkdir()
    removed = remove_stale_partials(cache)
    assert [p.name for p in removed] == [f".abc.partial-{dead_pid}-x1"]
    assert (cache / f".abc.partial-{os.getpid()}-x1").is_dir()
    with preparation_folder(tmp_path) as work:
        assert work.is_dir() and work.name.startswith(f".prepared-{os.getpid()}-")
        assert not (tmp_path / f".prepared-{dead_pid}-y1").exists()
    assert not work.exists()
    assert (tmp_path / f".prepared-{os.getpid()}-y1").is_dir()  # a live process's folder is not touched


def test_the_cache_holds_no_test_images_and_the_views_extraction_used(split_csv, tmp_path):
    """Stored view v of image i is the trunk applied to view_images(..., v) of that image."""
    import keras

    from skin_cnn.data.pipeline import view_images
    from skin_cnn.data.preprocessing import prepare_images
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.data.split import load_split
    from skin_cnn.training import train
    from skin_cnn.training.feature_cache import open_cache
    from skin_cnn.training.trainer import augment_config

    config = tiny_config(split_csv, tmp_path / "run", epochs=1, cache_views=2)
    train(config, progress=False, echo=lambda m: None)
    cache = open_cache(next((tmp_path / "run" / "feature_cache").glob("*/index.json")).parent)
    frame = load_split(split_csv)
    assert len(cache.index["positions"]["train"]) == (frame["split"] == "train").sum()
    assert not hasattr(cache, "test")
    prepared, _ = prepare_images(frame, config.preprocessing(), tmp_path / "prep", splits=("train",), progress=False)
    model = keras.models.load_model(tmp_path / "run" / "best.keras", compile=False)
    trunk, _ = split_at_frozen_boundary(model)
    idx = np.arange(min(3, len(prepared["train"].store)))
    for view in range(cache.num_views):
        images = view_images(prepared["train"].store, idx, view, seed=config.seed, augment=augment_config(config))
        np.testing.assert_allclose(np.asarray(trunk(images, training=False)), cache.train[view, idx], atol=1e-4)
    assert not np.allclose(cache.train[0, idx], cache.train[1, idx])  # augmented views differ from the clean one
