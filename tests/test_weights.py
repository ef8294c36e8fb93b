"""Weights resolution: local file, environment variable, Keras cache, failed download; and the
real ImageNet file loaded into VGG-16P."""

import socket
import threading
import time

import numpy as np
import pytest

from skin_cnn.models import weights as w


@pytest.fixture
def no_env_weights(monkeypatch, tmp_path):
    """No $SKIN_CNN_VGG16_WEIGHTS and an empty Keras cache folder."""
    monkeypatch.delenv(w.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home"


@pytest.fixture
def closed_port_url():
    """A URL on a local port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/vgg16_notop.h5"


def test_resolve_weights_passes_none_and_imagenet_through(no_env_weights):
    assert w.resolve_weights(None) is None
    assert w.resolve_weights("imagenet") == "imagenet"
    assert w.resolve_weights("ImageNet") == "imagenet"


def test_environment_variable_replaces_the_download(monkeypatch, tmp_path):
    local = tmp_path / "notop.h5"
    local.write_bytes(b"x")
    monkeypatch.setenv(w.WEIGHTS_ENV_VAR, str(local))
    assert w.resolve_weights("imagenet") == str(local)
    assert w.imagenet_weights_available()
    monkeypatch.setenv(w.WEIGHTS_ENV_VAR, str(tmp_path / "missing.h5"))
    with pytest.raises(FileNotFoundError, match=w.WEIGHTS_ENV_VAR):
        w.resolve_weights("imagenet")
    assert not w.imagenet_weights_available()


def test_missing_weights_path_names_the_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        w.resolve_weights(missing)


def test_cached_file_counts_only_when_its_hash_matches(no_env_weights):
    assert not w.imagenet_weights_available()
    cached = no_env_weights / "models" / w.KERAS_NOTOP_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    assert w.keras_cached_weights() is None
    assert not w.imagenet_weights_available()


def test_failed_download_raises_one_clear_error_quickly(no_env_weights, closed_port_url):
    import keras  # noqa: F401  imported before timing: the import alone takes seconds
    start = time.monotonic()
    with pytest.raises(w.WeightsUnavailableError) as info:
        w.fetch_imagenet_weights(origin=closed_port_url)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "--weights PATH" in message and w.WEIGHTS_ENV_VAR in message
    assert isinstance(info.value, RuntimeError)


def test_silent_server_times_out_instead_of_hanging(no_env_weights):
    import keras  # noqa: F401  imported before timing: the import alone takes seconds
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/vgg16_notop.h5"
    try:
        start = time.monotonic()
        with pytest.raises(w.WeightsUnavailableError, match="timed out"):
            w.fetch_imagenet_weights(timeout=1.0, origin=url)
        assert time.monotonic() - start < 10
    finally:
        for conn, _ in accepted:
            conn.close()
        server.close()


def test_build_model_with_imagenet_and_no_network_raises_the_clear_error(
    no_env_weights, closed_port_url, monkeypatch
):
    from skin_cnn.models import build_model

    monkeypatch.setattr(w, "KERAS_NOTOP_URL", closed_port_url)
    with pytest.raises(w.WeightsUnavailableError, match=w.WEIGHTS_ENV_VAR):
        build_model("P", input_shape=(32, 32, 3), weights="imagenet")


def test_wrong_files_are_rejected_with_the_reason(tmp_path):
    import h5py
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(w.WeightsFileError, match="not an HDF5"):
        w.check_weights_file(text)

    with_top = tmp_path / "with_top.h5"
    names = list(w.VGG16_CONV_LAYERS) + ["fc1"]
    with h5py.File(with_top, "w") as fh:
        fh.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            group = fh.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode()])
    with pytest.raises(w.WeightsFileError, match="fc1"):
        w.check_weights_file(with_top)

    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as fh:
        fh.create_dataset("x", data=np.zeros(3))
    with pytest.raises(w.WeightsFileError, match="layer_names"):
        w.check_weights_file(bare)


@pytest.mark.slow
def test_real_imagenet_file_fills_a_frozen_trunk_that_training_leaves_unchanged(
    vgg16_weights, monkeypatch, closed_port_url
):
    import h5py
    import tensorflow as tf
    from skin_cnn.core.tasks import TASK_NAMES, task_targets
    from skin_cnn.models import build_model, compile_model

    # Through the environment variable, with any download attempt doomed to fail.
    monkeypatch.setattr(w, "KERAS_NOTOP_URL", closed_port_url)
    monkeypatch.setenv(w.WEIGHTS_ENV_VAR, str(vgg16_weights))
    model = compile_model(
        build_model("P", input_shape=(32, 32, 3), weights="imagenet", seed=0), learning_rate=1e-2
    )
    with h5py.File(vgg16_weights, "r") as fh:
        for name in w.VGG16_CONV_LAYERS:
            group = fh[name]
            kernel, bias = (group[n][()] for n in group.attrs["weight_names"])
            layer = model.get_layer(name)
            np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
            np.testing.assert_array_equal(layer.bias.numpy(), bias)
            assert not layer.trainable

    diagnoses = ["eczema", "acne", "ctcl", "rosacea"]
    labels, masks = task_targets(diagnoses)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = {t: np.array(labels[t], "float32")[:, None] for t in TASK_NAMES}
    sw = {t: np.array(masks[t], "float32") for t in TASK_NAMES}
    data = tf.data.Dataset.from_tensor_slices((x, y, sw)).batch(4)
    trunk = [v.numpy().copy() for v in model.non_trainable_weights]
    heads = [v.numpy().copy() for v in model.trainable_weights]
    model.fit(data, epochs=1, verbose=0)
    for before, after in zip(trunk, model.non_trainable_weights):
        np.testing.assert_array_equal(after.numpy(), before)
    assert all(not np.array_equal(a.numpy(), b) for a, b in zip(model.trainable_weights, heads))
