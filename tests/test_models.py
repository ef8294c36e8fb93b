"""build_model variants, frozen/trainable parameter counts, feature-cache split, masked loss and
metrics, and .keras save/load (also in a fresh process)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as sklearn_metrics

from skin_cnn.core.tasks import TASK_NAMES, TASKS, task_targets
from skin_cnn.models import (
    VARIANTS,
    ModelSpec,
    SpatialTransformer,
    build_model,
    compile_model,
    model_summary_table,
    parameter_counts,
    resolve_variant,
    split_at_frozen_boundary,
)

# VGG-16 conv layers (in, out) channels, block by block; each has 3·3·in·out + out parameters.
VGG16_CONVS = {
    1: [(3, 64), (64, 64)],
    2: [(64, 128), (128, 128)],
    3: [(128, 256), (256, 256), (256, 256)],
    4: [(256, 512), (512, 512), (512, 512)],
    5: [(512, 512), (512, 512), (512, 512)],
}


def conv_params(blocks):
    return sum(9 * cin * cout + cout for b in blocks for cin, cout in VGG16_CONVS[b])


HEADS = (512 * 64 + 64) + 3 * ((64 * 32 + 32) + (32 + 1))
STN = (3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (8 * 8 * 32 * 100 + 100) + (100 * 4 + 4)
SIZE = (32, 32, 3)


def _images(n, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n,) + tuple(size)).astype("float32")


def test_vgg16_conv_parameter_total_is_the_published_figure():
    assert conv_params(range(1, 6)) == 14_714_688


@pytest.mark.parametrize(
    "spelling, expected",
    [
        ("P", "P"),
        ("VGG-16P", "P"),
        ("vgg16p", "P"),
        ("vgg16_ps", "PS"),
        ("VGG-16NS", "NS"),
        ("n", "N"),
    ],
)
def test_variant_spellings_resolve(spelling, expected):
    assert resolve_variant(spelling).name == expected


def test_unknown_variant_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="VGG-16P"):
        resolve_variant("VGG-19")


@pytest.mark.parametrize(
    "variant, trainable, frozen",
    [
        ("P", HEADS, conv_params(range(1, 6))),
        ("N", conv_params(range(1, 6)) + HEADS, 0),
        ("PS", STN + HEADS, conv_params(range(1, 6))),
        ("NS", STN + conv_params(range(1, 6)) + HEADS, 0),
    ],
)
def test_each_variant_has_the_expected_trainable_and_frozen_parameters(variant, trainable, frozen):
    model = build_model(variant, input_shape=SIZE, weights=None, seed=0)
    assert model.name == VARIANTS[variant].model_name
    counts = parameter_counts(model)
    assert counts == {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}
    assert (SpatialTransformer in {type(layer) for layer in model.layers}) == VARIANTS[
        variant
    ].spatial_transformer


@pytest.mark.parametrize("blocks", [1, 2])
def test_fine_tune_blocks_unfreezes_the_top_blocks(blocks):
    model = build_model("P", input_shape=SIZE, weights=None, fine_tune_blocks=blocks)
    trained = range(6 - blocks, 6)
    frozen = range(1, 6 - blocks)
    assert parameter_counts(model) == {
        "trainable": conv_params(trained) + HEADS,
        "non_trainable": conv_params(frozen),
        "total": conv_params(range(1, 6)) + HEADS,
    }
    table = model_summary_table(model).set_index("layer")
    assert table.loc[f"block{6 - blocks}_conv1", "trainable"] > 0
    assert table.loc[f"block{5 - blocks}_conv1", "frozen"] > 0
    assert table["parameters"].sum() == conv_params(range(1, 6)) + HEADS


def test_outputs_are_one_sigmoid_per_task_and_trunk_layers_are_reachable_by_name():
    model = build_model("N", input_shape=(48, 40, 3), seed=0)
    out = {k: np.asarray(v) for k, v in model(_images(3, (48, 40, 3))).items()}
    assert set(out) == set(TASK_NAMES)
    for task in TASK_NAMES:
        assert out[task].shape == (3, 1)
        assert np.all((out[task] > 0) & (out[task] < 1))
    # Grad-CAM needs block5_conv3 as a tensor of the model's own graph.
    cam = keras.Model(model.inputs, [model.get_layer("block5_conv3").output, model.output])
    conv, _ = cam(_images(1, (48, 40, 3)))
    assert conv.shape == (1, 3, 2, 512)


def test_same_seed_gives_identical_models_and_another_seed_does_not():
    a, b, c = (build_model("NS", input_shape=SIZE, seed=s) for s in (1, 1, 2))
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    kernel = "block3_conv1"
    assert not np.array_equal(
        a.get_layer(kernel).kernel.numpy(), c.get_layer(kernel).kernel.numpy()
    )


def test_preprocessing_layer_equals_keras_vgg16_preprocess_input():
    model = build_model("P", input_shape=SIZE, weights=None)
    x = _images(2)
    inner = np.asarray(model.get_layer("vgg16_preprocess")(x))
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(inner, expected, atol=1e-4)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="at least 32"):
        build_model("P", input_shape=(16, 16, 3), weights=None)
    with pytest.raises(ValueError, match="fine_tune_blocks"):
        build_model("N", input_shape=SIZE, fine_tune_blocks=1)
    with pytest.raises(ValueError, match="P and PS"):
        build_model("N", input_shape=SIZE, weights="/some/file.h5")
    with pytest.raises(ValueError, match="stn_output_size"):
        build_model("P", input_shape=SIZE, weights=None, stn_output_size=(32, 32))


def test_a_model_spec_builds_the_same_model_as_the_same_settings_by_name():
    spec = ModelSpec(input_shape=SIZE, weights=None, seed=3, dense_units=8, task_units=4, head="mlp")
    by_spec, by_name = build_model("P", spec), build_model("P", input_shape=SIZE, weights=None, seed=3,
                                                            dense_units=8, task_units=4)
    assert [w.shape for w in by_spec.weights] == [w.shape for w in by_name.weights]
    for a, b in zip(by_spec.weights, by_name.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # a keyword replaces the spec's setting
    assert build_model("P", spec, dense_units=16).get_layer("shared_dense").units == 16


def test_a_model_spec_refuses_unknown_settings_and_a_positional_shape():
    with pytest.raises(TypeError, match="dense_unit"):
        build_model("P", input_shape=SIZE, weights=None, dense_unit=8)
    with pytest.raises(TypeError, match="ModelSpec"):
        build_model("P", SIZE)


def test_stn_output_size_sets_the_trunk_input():
    model = build_model("NS", input_shape=(64, 48, 3), stn_output_size=(32, 32), seed=0)
    assert tuple(model.get_layer("block1_conv1").output.shape) == (None, 32, 32, 64)
    assert model(_images(1, (64, 48, 3)))[TASK_NAMES[0]].shape == (1, 1)


def test_a_model_without_fixed_size_accepts_several_image_sizes():
    model = build_model("PS", input_shape=(None, None, 3), weights=None, seed=0)
    for shape in [(40, 40, 3), (56, 72, 3)]:
        out = model(_images(2, shape))
        assert {task: tuple(v.shape) for task, v in out.items()} == {t: (2, 1) for t in TASK_NAMES}


def test_dropout_adds_a_layer_but_no_parameters_and_the_split_keeps_it_in_the_head():
    model = build_model("P", input_shape=SIZE, weights=None, dropout=0.5, seed=0)
    assert isinstance(model.get_layer("shared_dropout"), keras.layers.Dropout)
    assert parameter_counts(model)["total"] == conv_params(range(1, 6)) + HEADS
    feature_model, head_model = split_at_frozen_boundary(model)
    assert tuple(feature_model.output.shape) == (None, 512)
    assert "shared_dropout" in [layer.name for layer in head_model.layers]


# ----------------------------------------------------------------------------------------
# feature-cache split


@pytest.mark.parametrize("blocks, feature_shape", [(0, (None, 512)), (1, (None, 2, 2, 512))])
def test_split_reproduces_the_model_and_shares_its_layers(blocks, feature_shape):
    model = build_model("P", input_shape=SIZE, weights=None, fine_tune_blocks=blocks, seed=0)
    feature_model, head_model = split_at_frozen_boundary(model)
    assert tuple(feature_model.output.shape) == feature_shape
    assert not feature_model.trainable_weights
    assert parameter_counts(head_model)["trainable"] == parameter_counts(model)["trainable"]
    x = _images(4, seed=3)
    full = model(x)
    split = head_model(feature_model(x))
    for task in TASK_NAMES:
        np.testing.assert_allclose(np.asarray(split[task]), np.asarray(full[task]), atol=1e-5)
    assert head_model.get_layer("shared_dense") is model.get_layer("shared_dense")


def test_training_the_head_model_updates_the_full_model():
    model = build_model("P", input_shape=SIZE, weights=None, seed=0)
    feature_model, head_model = split_at_frozen_boundary(model)
    compile_model(head_model, learning_rate=1e-2)
    x = _images(6, seed=4)
    labels, masks = task_targets(["acne", "rosacea", "eczema", "psoriasis", "ctcl", "eczema"])
    y = {t: np.array(labels[t], "float32")[:, None] for t in TASK_NAMES}
    w = {t: np.array(masks[t], "float32") for t in TASK_NAMES}
    before = {k: np.asarray(v) for k, v in model(x).items()}
    features = np.asarray(feature_model(x))
    head_model.fit(features, y, sample_weight=w, epochs=3, batch_size=6, verbose=0)
    after_full = model(x)
    after_head = head_model(features)
    for task in TASK_NAMES:
        assert not np.allclose(np.asarray(after_full[task]), before[task])
        np.testing.assert_allclose(
            np.asarray(after_full[task]), np.asarray(after_head[task]), atol=1e-5
        )


@pytest.mark.parametrize("variant, message", [("N", "no frozen"), ("PS", "spatial transformer")])
def test_split_refuses_models_without_fixed_trunk_features(variant, message):
    model = build_model(variant, input_shape=SIZE, weights=None)
    with pytest.raises(ValueError, match=message):
        split_at_frozen_boundary(model)


# ----------------------------------------------------------------------------------------
# masked loss and metrics


def _toy_task_model(weights):
    """A model whose task outputs are sigmoid(w_task · x): predictions set by hand."""
    x = keras.Input((1,), name="x")
    outputs = {}
    for task in TASK_NAMES:
        layer = keras.layers.Dense(1, activation="sigmoid", name=task)
        outputs[task] = layer(x)
        layer.set_weights([np.array([[weights[task]]], "float32"), np.zeros(1, "float32")])
    return keras.Model(x, outputs)


def _dataset(x, diagnoses):
    labels, masks = task_targets(diagnoses)
    y = {t: np.array(labels[t], "float32")[:, None] for t in TASK_NAMES}
    w = {t: np.array(masks[t], "float32") for t in TASK_NAMES}
    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(len(diagnoses)), labels, masks


def _bce(y, p):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


@pytest.mark.parametrize("reduction", ["mean_with_sample_weight", "sum_over_batch_size"])
def test_masked_loss_equals_a_hand_computation(reduction):
    diagnoses = ["eczema", "acne", "psoriasis", "rosacea", "ctcl"]
    x = np.array([[0.3], [-1.2], [0.8], [1.5], [-0.4]], "float32")
    slopes = {"psoriasis_vs_eczema": 1.0, "acne_vs_rosacea": -2.0, "ctcl_vs_eczema": 0.5}
    model = compile_model(_toy_task_model(slopes), reduction=reduction)
    data, _, _ = _dataset(x, diagnoses)
    result = model.evaluate(data, verbose=0, return_dict=True)

    # By hand: eczema (image 0) counts for psoriasis_vs_eczema and ctcl_vs_eczema (label 0);
    # acne/rosacea (1, 3) only for acne_vs_rosacea; psoriasis (2) and ctcl (4) for one task each.
    p = {t: 1 / (1 + np.exp(-slopes[t] * x[:, 0].astype("float64"))) for t in TASK_NAMES}
    members = {
        "psoriasis_vs_eczema": {0: 0, 2: 1},
        "acne_vs_rosacea": {1: 1, 3: 0},
        "ctcl_vs_eczema": {0: 0, 4: 1},
    }
    expected = 0.0
    for task, labelled in members.items():
        total = sum(_bce(y, p[task][i]) for i, y in labelled.items())
        expected += total / (
            len(labelled) if reduction == "mean_with_sample_weight" else len(diagnoses)
        )
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_of_a_built_model_adds_the_l2_penalty_of_the_hidden_layers():
    model = compile_model(build_model("P", input_shape=SIZE, weights=None, seed=0))
    diagnoses = ["eczema", "acne", "ctcl", "rosacea"]
    x = _images(4, seed=5)
    data, labels, masks = _dataset(x, diagnoses)
    loss = model.evaluate(data, verbose=0, return_dict=True)["loss"]
    p = {t: np.asarray(v).astype("float64")[:, 0] for t, v in model(x).items()}
    expected = 0.0
    for task in TASK_NAMES:
        m = np.array(masks[task])
        expected += np.sum(m * _bce(np.array(labels[task]), p[task])) / m.sum()
    for name in ["shared_dense"] + [f"{t}_dense" for t in TASK_NAMES]:
        expected += 5e-4 * np.sum(model.get_layer(name).kernel.numpy().astype("float64") ** 2)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_task_auc_counts_only_the_images_of_the_task():
    diagnoses = ["acne", "rosacea", "acne", "rosacea", "psoriasis", "eczema", "ctcl", "eczema"]
    x = np.array([[2.0], [-1.0], [-0.5], [0.5], [3.0], [-3.0], [-2.0], [1.0]], "float32")
    slopes = {t: 1.0 for t in TASK_NAMES}
    model = compile_model(_toy_task_model(slopes), num_thresholds=2001)
    data, labels, masks = _dataset(x, diagnoses)
    result = model.evaluate(data, verbose=0, return_dict=True)
    for task in TASK_NAMES:
        m = np.array(masks[task], bool)
        y = np.array(labels[task])
        score = x[:, 0]
        masked = sklearn_metrics.roc_auc_score(y[m], score[m])
        assert result[f"{task}_auc"] == pytest.approx(masked, abs=2e-3)
        accuracy = np.mean((score[m] > 0) == (y[m] == 1))
        assert result[f"{task}_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # Without the mask, images of other tasks (label 0) would change the AUC here.
    unmasked = sklearn_metrics.roc_auc_score(np.array(labels["acne_vs_rosacea"]), x[:, 0])
    assert abs(unmasked - result["acne_vs_rosacea_auc"]) > 0.05


# ----------------------------------------------------------------------------------------
# save / load


@pytest.mark.slow
def test_keras_file_round_trip_gives_identical_predictions_in_a_fresh_process(tmp_path):
    model = compile_model(build_model("PS", input_shape=SIZE, weights=None, seed=0))
    # Move the transformer away from the identity so its weights matter after loading.
    stn = model.get_layer("spatial_transformer")
    stn.loc_theta.bias.assign(np.array([0.8, 0.9, 0.1, -0.2], "float32"))
    x = _images(2, seed=7)
    expected = {k: np.asarray(v) for k, v in model(x).items()}
    path = tmp_path / "vgg16ps.keras"
    model.save(path)

    loaded = keras.models.load_model(path, safe_mode=True)
    assert parameter_counts(loaded) == parameter_counts(model)  # frozen layers stay frozen
    again = loaded(x)
    for task in TASK_NAMES:
        np.testing.assert_array_equal(np.asarray(again[task]), expected[task])

    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        import skin_cnn.models, keras
        model = keras.models.load_model({str(path)!r}, safe_mode=True)
        out = model(np.load({str(tmp_path / "x.npy")!r}))
        print(json.dumps({{k: np.asarray(v)[:, 0].tolist() for k, v in out.items()}}))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    for task in TASK_NAMES:
        np.testing.assert_allclose(fresh[task], expected[task][:, 0], atol=1e-6)


def test_tasks_are_the_shared_task_definitions():
    model = build_model("P", input_shape=SIZE, weights=None)
    assert set(model.output_names) == set(TASKS)
