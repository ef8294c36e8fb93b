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
    from skin_cnn.app.train_run import train

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


def test_cache_key_changes_with_the_settings_and_identities_with_the_content(split_csv, tmp_path, monkeypatch):
    import shutil

    from skin_cnn.data.split import load_split
    from skin_cnn.training.feature_cache import cache_key, image_identities

    base = dict(preprocessing={"image_size": [32, 32]}, trunk_digest="t")
    key = cache_key(**base)
    assert key == cache_key(**base) == cache_key(**base, precision="float32")
    assert key != cache_key(**dict(base, trunk_digest="u"))
    assert key != cache_key(**dict(base, preprocessing={"image_size": [40, 40]}))
    assert key != cache_key(**base, precision="bfloat16")
    import skin_cnn.data.preprocessing as preprocessing  # what the entry admits is part of its key

    with monkeypatch.context() as patched:
        patched.setattr(preprocessing, "MAX_ENLARGEMENT", preprocessing.MAX_ENLARGEMENT + 1)
        assert key != cache_key(**base)
    assert key == cache_key(**base)

    frame = load_split(split_csv)
    path = tmp_path / ("copy" + os.path.splitext(frame["image_path"].iloc[0])[1])
    shutil.copyfile(frame["image_path"].iloc[0], path)
    frame.loc[frame.index[0], "image_path"] = str(path)
    before = image_identities(frame)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes: the same image
    assert image_identities(frame).equals(before)
    with open(path, "ab") as fh:  # other bytes: another image
        fh.write(b"\0")
    after = image_identities(frame)
    assert after["sha256"].iloc[0] != before["sha256"].iloc[0]
    assert after.iloc[1:].equals(before.iloc[1:])


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


def test_the_cache_holds_no_test_images_and_the_views_extraction_used(split_csv, tmp_path, feature_cache_dir):
    """Stored view v of image i is the trunk applied to view_images(..., v) of that image."""
    import keras

    from skin_cnn.data.pipeline import view_images
    from skin_cnn.data.preprocessing import prepare_images
    from skin_cnn.models import split_at_frozen_boundary
    from skin_cnn.data.split import load_split
    from skin_cnn.app.train_run import train
    from skin_cnn.training.feature_cache import image_identities, open_chunk
    from skin_cnn.training.trainer import augment_config

    config = tiny_config(split_csv, tmp_path / "run", epochs=1, cache_views=2)
    train(config, progress=False, echo=lambda m: None)
    (folder,) = feature_cache_dir.glob("*/chunks/*")
    chunk = open_chunk(folder)
    frame = load_split(split_csv)
    stored = chunk.rows.set_index("image_path")
    assert set(stored.index) == set(frame.loc[frame["split"] != "test", "image_path"].astype(str))
    assert (stored.loc[frame.loc[frame["split"] == "val", "image_path"].astype(str), "array"] == "val").all()
    prepared, _ = prepare_images(frame, config.preprocessing(), tmp_path / "prep", splits=("train",), progress=False)
    train_rows = frame.loc[prepared["train"].positions]
    model = keras.models.load_model(tmp_path / "run" / "best.keras", compile=False)
    trunk, _ = split_at_frozen_boundary(model)
    idx = np.arange(min(3, len(prepared["train"].store)))
    keys = image_identities(train_rows.iloc[idx])["aug_key"].to_numpy()
    rows = stored.loc[train_rows["image_path"].astype(str).iloc[idx], "row"].astype(int).to_numpy()
    assert chunk.arrays["train"].shape[0] == 3
    for view in range(3):
        images = view_images(prepared["train"].store, idx, view, seed=config.seed, augment=augment_config(config),
                             keys=keys)
        np.testing.assert_allclose(np.asarray(trunk(images, training=False)), chunk.arrays["train"][view, rows],
                                   atol=1e-4)
    assert not np.allclose(chunk.arrays["train"][0, rows], chunk.arrays["train"][1, rows])  # augmented differ
