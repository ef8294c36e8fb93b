"""The feature cache maps rows by image identity: a changed split never attaches another image's features."""
import numpy as np
import pandas as pd
import pytest

from test_training import tiny_config, tiny_split
from skin_cnn.core.specs import EvalSettings


def _weights(run_dir):
    import keras

    return keras.models.load_model(run_dir / "best.keras", compile=False).get_weights()


def test_reused_cache_after_a_test_row_is_dropped_equals_a_fresh_cache(tmp_path):
    """One test row dropped (as ``cleanse apply --apply`` does) must not shift the cached rows."""
    from skin_cnn.data.split import load_split, write_split
    from skin_cnn.app.train_run import train

    split = tiny_split(tmp_path, patients=3, broken=False)
    frame = load_split(split)
    shared = tmp_path / "shared-cache"
    train(tiny_config(split, tmp_path / "first", epochs=2, cache_dir=str(shared)), progress=False,
          echo=lambda m: None)

    # drop the first test row that comes before training rows, so every later row moves up one
    first_test = frame.index[frame["split"] == "test"][0]
    assert (frame.index[frame["split"] == "train"] > first_test).any()
    cleaned = write_split(frame.drop(index=first_test).reset_index(drop=True), tmp_path / "cleaned.csv")

    messages = []
    train(tiny_config(cleaned, tmp_path / "reused", epochs=2, cache_dir=str(shared)), progress=False,
          echo=messages.append)
    assert any("reusing feature cache" in m for m in messages), messages
    train(tiny_config(cleaned, tmp_path / "fresh", epochs=2, cache_dir=str(tmp_path / "fresh-cache")),
          progress=False, echo=lambda m: None)

    for got, want in zip(_weights(tmp_path / "reused"), _weights(tmp_path / "fresh")):
        np.testing.assert_array_equal(got, want)
    reused = pd.read_csv(tmp_path / "reused" / "val_predictions.csv")
    fresh = pd.read_csv(tmp_path / "fresh" / "val_predictions.csv")
    pd.testing.assert_frame_equal(reused, fresh)


# ----------------------------------------------------------------------------------------------
# The store itself, with a tiny feature model


def _feature_model():
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(image)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    return keras.Model(image, keras.layers.GlobalAveragePooling2D()(x))


@pytest.fixture()
def store(tmp_path):
    """A split of demo photos, a tiny trunk and its settings (2 augmented views)."""
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.split import load_split
    from skin_cnn.training.feature_cache import FeatureSettings, weights_digest

    frame = load_split(tiny_split(tmp_path, patients=2, broken=False))
    model = _feature_model()
    settings = FeatureSettings(trunk_digest=weights_digest(model),
                               preprocessing=Preprocessing(image_size=(32, 32), crop=False).to_dict(),
                               augmentation={"zoom": 0.2, "rotation": 0.1, "translation": 0.0,
                                             "horizontal_flip": True, "vertical_flip": False}, seed=1)
    return frame, model, settings, tmp_path / "cache"


def _features(store_, frame=None, **kwargs):
    from skin_cnn.training.feature_cache import cached_features

    base, model, settings, cache_dir = store_
    messages = []
    got = cached_features(base if frame is None else frame, {"train": 3, "val": 1}, model, settings,
                          cache_dir=cache_dir, progress=False, echo=messages.append, **kwargs)
    return got, messages


def _chunk_file(cache_dir, name):
    (path,) = cache_dir.glob(f"*/chunks/*/{name}")
    return path


def test_rows_are_found_by_identity_whatever_their_order_and_neighbours(store):
    frame = store[0]
    first, messages = _features(store)
    assert any("building feature cache" in m for m in messages)
    shuffled = frame.drop(index=frame.index[frame["split"] == "test"][:1]).sample(frac=1, random_state=0)
    again, messages = _features(store, shuffled.reset_index(drop=True))
    assert again.reused and any("reusing feature cache" in m for m in messages)
    for split, n_axis in (("train", 1), ("val", 0)):
        by_path = dict(zip(frame.loc[first.positions[split], "image_path"],
                           np.moveaxis(first.arrays[split], n_axis, 0)))
        paths = shuffled.reset_index(drop=True).loc[again.positions[split], "image_path"]
        np.testing.assert_array_equal(np.moveaxis(again.arrays[split], n_axis, 0),
                                      np.stack([by_path[p] for p in paths]))


def test_a_changed_photo_or_diagnosis_is_recomputed_and_said(store):
    from PIL import Image

    frame = store[0]
    _features(store)
    changed = frame.copy()
    val_rows = changed.index[changed["split"] == "val"]
    other = {"acne": "rosacea", "rosacea": "acne", "psoriasis": "eczema", "eczema": "psoriasis", "ctcl": "eczema"}
    changed.loc[val_rows[0], "diagnosis"] = other[changed.loc[val_rows[0], "diagnosis"]]
    photo = changed.loc[val_rows[1], "image_path"]
    Image.fromarray(np.full((40, 48, 3), 200, dtype=np.uint8)).save(photo)
    got, messages = _features(store, changed)
    line = next(m for m in messages if "extending feature cache" in m)
    assert "computing 2 image(s)" in line and "1 file changed since cached" in line
    assert "1 another diagnosis than cached" in line
    fresh, _ = _features((changed,) + store[1:3] + (store[3].parent / "fresh",))
    np.testing.assert_array_equal(got.val, fresh.val)
    np.testing.assert_array_equal(got.train, fresh.train)


def test_a_same_size_overwritten_val_array_is_detected_and_recomputed(store):
    first, _ = _features(store)
    path = _chunk_file(store[3], "val.npy")
    size = path.stat().st_size
    np.save(path, np.asarray(first.val) + 0.5)  # other values, same shape: same size
    assert path.stat().st_size == size
    again, messages = _features(store)
    assert any(str(path) in m and "SHA-256 differs" in m for m in messages), messages
    assert not again.reused
    np.testing.assert_array_equal(again.val, first.val)
    np.testing.assert_array_equal(again.train, first.train)


def test_a_truncated_train_array_is_rebuilt_in_place(store):
    first, _ = _features(store)
    path = _chunk_file(store[3], "train.npy")
    entry = path.parents[2]
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    again, messages = _features(store)
    assert any(str(path) in m for m in messages), messages
    assert again.path == entry and not path.exists()  # the damaged chunk is gone, the entry rebuilt
    np.testing.assert_array_equal(again.train, first.train)
    third, messages = _features(store)
    assert third.reused and third.path == entry, messages
    np.testing.assert_array_equal(third.train, first.train)


def test_a_damaged_index_names_its_file(store):
    _features(store)
    path = _chunk_file(store[3], "index.json")
    path.write_text("{not json")
    again, messages = _features(store)
    assert any(str(path) in m and "unreadable" in m for m in messages), messages
    assert not again.reused


def test_unreadable_photos_are_remembered_by_content_and_reported_again(store, tmp_path):
    frame = store[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    row = frame[frame["split"] == "train"].iloc[:1].assign(image_path=str(bad))
    with_bad = pd.concat([frame, row], ignore_index=True)
    first, _ = _features(store, with_bad)
    again, messages = _features(store, with_bad)
    assert again.reused, messages
    assert [s["image_path"] for s in again.skipped] == [str(bad)] == [s["image_path"] for s in first.skipped]
    assert again.skipped[0]["split"] == "train" and again.skipped[0]["reason"] == first.skipped[0]["reason"]


def test_features_for_aligns_to_the_frame_and_leaves_uncached_rows_nan(store):
    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input
    from skin_cnn.training.feature_cache import features_for

    frame, model, settings, cache_dir = store
    first, _ = _features(store)
    preprocessing = Preprocessing.from_dict(settings.preprocessing)
    order = frame.sample(frac=1, random_state=1).reset_index(drop=True)
    got = features_for(order, model, preprocessing, cache_dir=cache_dir)
    test = (order["split"] == "test").to_numpy()
    assert np.isnan(got[test]).all() and not np.isnan(got[~test]).any()
    expected = dict(zip(frame.loc[first.positions["val"], "image_path"], first.val))
    expected.update(zip(frame.loc[first.positions["train"], "image_path"], first.train[0]))
    np.testing.assert_array_equal(got[~test], np.stack([expected[p] for p in order.loc[~test, "image_path"]]))
    computed = features_for(order, model, preprocessing, cache_dir=cache_dir, compute=True)
    np.testing.assert_array_equal(computed[~test], got[~test])
    assert not np.isnan(computed).any()
    images = np.stack([load_model_input(p, preprocessing)[0] for p in order.loc[test, "image_path"]])
    np.testing.assert_allclose(computed[test], np.asarray(model(images.astype("float32"))), atol=1e-6)


def test_eviction_removes_least_recently_used_whole_entries(tmp_path):
    from skin_cnn.training.feature_cache import ENTRY_FILE, evict, touch_entry

    for name, used, size in (("old", 100, 600), ("mid", 200, 300), ("new", 300, 300)):
        entry = tmp_path / name
        (entry / "chunks" / "c").mkdir(parents=True)
        (entry / ENTRY_FILE).write_text("{}")
        (entry / "chunks" / "c" / "train.npy").write_bytes(bytes(size))
        touch_entry(entry, when=used)
    (tmp_path / "not-a-cache").mkdir()
    (tmp_path / "not-a-cache" / "data.bin").write_bytes(bytes(5000))
    removed = evict(tmp_path, 700, keep=(tmp_path / "mid",), echo=lambda m: None)
    assert [p.name for p in removed] == ["old"]  # "mid" is in use; 600 + 2 × 302 bytes > 700 before
    assert (tmp_path / "mid").is_dir() and (tmp_path / "new").is_dir() and (tmp_path / "not-a-cache").is_dir()
    assert evict(tmp_path, 10_000, echo=lambda m: None) == []
    assert [p.name for p in evict(tmp_path, 0, keep=(tmp_path / "new",), echo=lambda m: None)] == ["mid"]


def test_the_default_cache_folder_and_size_bound_follow_the_environment(monkeypatch, tmp_path):
    from skin_cnn.training.feature_cache import default_cache_dir, max_cache_bytes

    monkeypatch.setenv("SKIN_CNN_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("SKIN_CNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "skin-cnn" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "skin-cnn" / "features"
    monkeypatch.delenv("SKIN_CNN_CACHE_MAX_GB", raising=False)
    assert max_cache_bytes() == 5_000_000_000
    monkeypatch.setenv("SKIN_CNN_CACHE_MAX_GB", "0.25")
    assert max_cache_bytes() == 250_000_000
    monkeypatch.setenv("SKIN_CNN_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match="SKIN_CNN_CACHE_MAX_GB"):
        max_cache_bytes()


def test_evaluating_a_frozen_trunk_run_reads_its_features_and_equals_the_full_model(tmp_path):
    """The heads on cached features answer as the saved image-in model does (1e-4), unreadable photos alike."""
    from skin_cnn.data.split import load_split
    from skin_cnn.inference.predictor import load_predictor, predict_frame
    from skin_cnn.app.train_run import train
    from skin_cnn.training.feature_cache import run_frame_predictions

    split = tiny_split(tmp_path, patients=3, broken=True)  # one unreadable training photo
    run = tmp_path / "run"
    train(tiny_config(split, run, epochs=1, cache_dir=str(tmp_path / "cache")), progress=False, echo=lambda m: None)
    frame = load_split(run / "split.csv")
    part = frame[frame["split"].isin(["val", "test"]) | frame["image_path"].str.endswith("broken.jpg")]
    predictor = load_predictor(run, precision="float32")  # the run's: its features are reused
    messages = []
    cached = run_frame_predictions(run, echo=messages.append)(predictor, part, progress=False)
    n_test = int((part["split"] == "test").sum())
    assert any(f"computing {n_test} image(s)" in m for m in messages), messages  # val and the broken one known
    full = predict_frame(predictor, part, progress=False)
    assert cached.ok.tolist() == full.ok.tolist() and not cached.ok.all()
    assert [(s["image_path"], s["index"]) for s in cached.skipped] == [(s["image_path"], s["index"])
                                                                       for s in full.skipped]
    for task in predictor.tasks:
        np.testing.assert_allclose(cached[task][cached.ok], full[task][full.ok], atol=1e-4)
    messages = []
    again = run_frame_predictions(run, echo=messages.append)(predictor, part, progress=False)
    assert any("reusing feature cache" in m for m in messages), messages
    for task in predictor.tasks:
        np.testing.assert_array_equal(again[task], cached[task])
    assert run_frame_predictions(tmp_path / "no-such-run") is None


@pytest.mark.slow
def test_train_evaluate_then_cv_on_the_same_photos_runs_the_trunk_once_per_photo(tmp_path):
    """The README path with the frozen-linear recipe: cv finds every photo train and evaluate stored."""
    from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run
    from skin_cnn.app.train_run import train
    from skin_cnn.training import resolve_config
    from skin_cnn.training.config import RECIPES
    from skin_cnn.app.cv_run import CVOptions, run_cv
    from skin_cnn.training.feature_cache import run_frame_predictions

    split = tiny_split(tmp_path, patients=5, broken=False)
    settings = dict(RECIPES["frozen-linear"], image_size=32, weights="none", seed=1, tensorboard=False,
                    cache_dir=str(tmp_path / "cache"))
    messages = []
    train(resolve_config(dict(settings, split=str(split), out=str(tmp_path / "run"))), progress=False,
          echo=messages.append)
    evaluate_run(tmp_path / "run", split="test", out=tmp_path / "run" / "eval_test",
                 settings=EvalSettings(n_bootstrap=20), progress=False,
                 options=RunEvaluationOptions(frame_predictions=run_frame_predictions(tmp_path / "run",
                                                                                      echo=messages.append)))
    run_cv(split, tmp_path / "cv", 3, settings, progress=False, echo=messages.append,
           options=CVOptions(n_bootstrap=20))
    computed = [m for m in messages if "building feature cache" in m or "extending feature cache" in m]
    frame = pd.read_csv(split)
    n_train_val, n_test = int((frame["split"] != "test").sum()), int((frame["split"] == "test").sum())
    assert len(computed) == 2, computed  # train: its train and val photos; evaluate: the test photos
    assert f"computing {n_train_val} image(s)" in computed[0] and f"computing {n_test} image(s)" in computed[1]
    assert any("reusing feature cache" in m and f"({len(frame)} images found by content)" in m
               for m in messages), messages  # cv
