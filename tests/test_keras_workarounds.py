"""Where skin-cnn reaches into Keras, why it still must, and how its custom layers get registered.

* ``skin_cnn.training.distribute.patch_keras_for_multi_worker`` builds the model before ``fit``
  and wraps a private Keras function so that MultiWorkerMirroredStrategy can train. The tests
  check that what it relies on still exists, that it changes nothing for other strategies, and
  (with two real worker processes on 127.0.0.1) that an unpatched Keras still fails: when a Keras
  release fixes the bug, :func:`test_keras_still_needs_the_multi_worker_workaround` fails and
  the workaround can be removed.
* Importing :mod:`skin_cnn.models` registers every custom layer, with no import hook: the tests
  check in fresh processes, both import orders, that each class the source registers is found,
  and that ``import skin_cnn`` alone loads no Keras and leaves nothing in ``sys.meta_path``.
"""
import ast
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    mode = sys.argv[1]
    if mode == "build-only":  # the first half of the workaround, without the private function
        with strategy.scope():
            model._symbolic_build(data_batch=(x[:8], y[:8]))
        model._maybe_symbolic_build = lambda *args, **kwargs: None
    if mode == "patched":
        from keras.src.backend.tensorflow import trainer
        from skin_cnn.training.distribute import patch_keras_for_multi_worker

        original = trainer._collective_all_reduce_multi_worker
        patch_keras_for_multi_worker(model, strategy, (x[:8], y[:8]))
        wrapper = trainer._collective_all_reduce_multi_worker
        other = tf.distribute.OneDeviceStrategy("/cpu:0")
        print("SCOPE", json.dumps([wrapper.wrapped is original, wrapper(strategy), wrapper(other)]))
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    print("WEIGHTS", json.dumps([w.ravel().tolist() for w in model.get_weights()]))
    """
)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _two_workers(mode):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, mode], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [p.returncode for p in procs], outputs


def _line(output, tag):
    return json.loads(next(line.split(" ", 1)[1] for line in output.splitlines() if line.startswith(tag + " ")))


def test_the_private_keras_pieces_the_workaround_uses_still_exist():
    import keras

    from skin_cnn.training.distribute import keras_private_hooks

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    trainer = keras_private_hooks(model)
    assert callable(trainer._collective_all_reduce_multi_worker)


@pytest.mark.slow
def test_keras_still_needs_the_multi_worker_workaround():
    codes, outputs = _two_workers("unpatched")
    assert codes != [0, 0], "Keras now builds models under MultiWorkerMirroredStrategy: drop that half"
    assert any("PerReplica" in text for text in outputs), outputs[0][-2000:]
    codes, outputs = _two_workers("build-only")
    assert codes != [0, 0], "Keras now reduces multi-worker logs itself: drop the private-function wrapper"
    assert any("Invalid reduction dimension" in text for text in outputs), outputs[0][-2000:]


@pytest.mark.slow
def test_the_workaround_trains_in_step_and_leaves_other_strategies_to_keras():
    codes, outputs = _two_workers("patched")
    assert codes == [0, 0], outputs[0][-3000:]
    # the wrapper wraps Keras' function, answers False for the patched strategy, and gives any
    # other strategy Keras' own answer (False for a one-device strategy)
    assert _line(outputs[0], "SCOPE") == [True, False, False]
    first, second = (_line(text, "WEIGHTS") for text in outputs)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def _fresh(code, **env):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env), timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def registered_in_source():
    """``skin_cnn>Name`` of every class the models' source decorates with
    ``register_keras_serializable(package="skin_cnn")``, read from the files, not from Keras."""
    import skin_cnn.models as models_package

    names = []
    for path in sorted(Path(models_package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                registers = isinstance(decorator, ast.Call) and \
                    getattr(decorator.func, "attr", "") == "register_keras_serializable"
                if registers and any(k.arg == "package" and k.value.value == "skin_cnn" for k in decorator.keywords):
                    names.append(f"skin_cnn>{node.name}")
    return names


@pytest.mark.slow
@pytest.mark.parametrize("order", ["skin_cnn.models, keras", "keras, skin_cnn.models"])
def test_importing_skin_cnn_models_registers_every_custom_layer(order):
    expected = registered_in_source()
    assert len(expected) >= 5, expected  # ModelInfo, VGG16Preprocess, SpatialTransformer, the views
    out = _fresh(
        f"""
        import json
        import {order}
        import keras
        names = {expected!r}
        print(json.dumps([n for n in names if keras.saving.get_registered_object(n) is None]))
        """
    )
    assert out == []


def test_importing_the_package_loads_no_keras_and_installs_no_import_hook():
    out = _fresh(
        """
        import json, sys
        before = list(sys.meta_path)
        import skin_cnn
        added = [type(f).__module__ + "." + type(f).__name__ for f in sys.meta_path if f not in before]
        print(json.dumps([added, "keras" in sys.modules, "tensorflow" in sys.modules]))
        """
    )
    assert out == [[], False, False]


@pytest.mark.slow
def test_load_model_opens_a_saved_model_in_a_fresh_process(tmp_path):
    from skin_cnn.models import build_model

    model = build_model("PS", input_shape=(32, 32, 3), weights=None, seed=0)
    model.save(tmp_path / "m.keras")
    out = _fresh(
        f"""
        import json
        from skin_cnn.models import load_model
        model = load_model({str(tmp_path / "m.keras")!r})
        print(json.dumps(sorted({{type(layer).__name__ for layer in model.layers}})))
        """
    )
    assert "SpatialTransformer" in out and "VGG16Preprocess" in out
