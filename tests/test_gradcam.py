"""Grad-CAM: hand-computed maps on a model simple enough to differentiate on paper, the default
layer of the study's architecture, and a trained model whose heat map finds the region that
carries the signal."""

import keras
import numpy as np
import pytest
from model_fixtures import patch_images, train_heads

from skin_cnn.inference.gradcam import gradcam, gradcam_batch, last_conv_layer, overlay
from skin_cnn.models import build_model


def _one_by_one_model(height=6, width=5, seed=0):
    """image → 1×1 Conv2D (ReLU) → global average → Dense 1 sigmoid, named after a task.

    Grad-CAM of this model can be written down: the logit is ``mean_ij(A_ij) · k + b`` with
    ``A = relu(x W + c)``, so the gradient with respect to ``A_ijc`` is ``k_c / (h w)`` at every
    location and the map is ``relu(Σ_c k_c A_ijc)`` up to a positive factor.
    """
    rng = np.random.default_rng(seed)
    image = keras.Input((height, width, 3), name="image")
    conv = keras.layers.Conv2D(4, 1, activation="relu", name="conv")
    features = conv(image)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    head = keras.layers.Dense(1, activation="sigmoid", name="acne_vs_rosacea")
    model = keras.Model(image, {"acne_vs_rosacea": head(pooled)})
    w_conv, b_conv = (
        rng.normal(size=(1, 1, 3, 4)).astype("float32"),
        rng.normal(size=4).astype("float32"),
    )
    k = np.array([[1.5], [-2.0], [0.7], [-0.4]], dtype="float32")
    conv.set_weights([w_conv, b_conv])
    head.set_weights([k, np.array([0.1], dtype="float32")])
    return model, w_conv[0, 0], b_conv, k[:, 0]


def _expected_map(x, w, c, k, sign):
    activations = np.maximum(x @ w + c, 0.0)  # (h, w, 4)
    cam = np.maximum(sign * activations @ k, 0.0)
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.mark.parametrize("target", ["positive", "negative", "predicted"])
def test_map_equals_the_hand_computed_grad_cam_of_a_one_by_one_conv_model(target):
    model, w, c, k = _one_by_one_model()
    x = np.random.default_rng(1).normal(size=(3, 6, 5, 3)).astype("float32")
    heatmaps, probs = gradcam_batch(model, x, layer_name="conv", target=target)

    for i in range(3):
        logit = np.maximum(x[i] @ w + c, 0.0).mean(axis=(0, 1)) @ k + 0.1
        assert probs["acne_vs_rosacea"][i] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
        sign = {"positive": 1.0, "negative": -1.0, "predicted": 1.0 if logit >= 0 else -1.0}[target]
        np.testing.assert_allclose(
            heatmaps["acne_vs_rosacea"][i], _expected_map(x[i], w, c, k, sign), atol=1e-5
        )


def test_positive_and_negative_maps_never_light_up_the_same_place():
    model, *_ = _one_by_one_model(seed=3)
    x = np.random.default_rng(2).normal(size=(4, 6, 5, 3)).astype("float32")
    pos, _ = gradcam_batch(model, x, layer_name="conv", target="positive")
    neg, _ = gradcam_batch(model, x, layer_name="conv", target="negative")
    assert np.all(np.minimum(pos["acne_vs_rosacea"], neg["acne_vs_rosacea"]) == 0.0)


def test_default_layer_is_block5_conv3_and_maps_have_the_image_resolution():
    model = build_model("P", input_shape=(32, 32, 3), weights=None, seed=0)
    assert last_conv_layer(model) == "block5_conv3"
    image = np.random.default_rng(0).uniform(0, 255, size=(32, 32, 3)).astype("float32")
    for task in model.output_names:
        heat = gradcam(model, image, task)
        assert heat.shape == (32, 32) and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0


def test_model_with_a_spatial_transformer_gives_a_map_of_the_input_size():
    model = build_model("NS", input_shape=(32, 32, 3), weights=None, seed=0)
    assert last_conv_layer(model) == "block5_conv3"
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    heatmaps, probs = gradcam_batch(model, images)
    expected = model.predict(images, verbose=0)
    for task in model.output_names:
        assert heatmaps[task].shape == (2, 32, 32)
        assert np.isfinite(heatmaps[task]).all()
        np.testing.assert_allclose(probs[task], expected[task][:, 0], atol=1e-5)


def test_wrong_image_size_unknown_task_and_unknown_layer_are_clear_errors():
    model, *_ = _one_by_one_model()
    with pytest.raises(ValueError, match="model takes 6×5"):
        gradcam(model, np.zeros((8, 8, 3)), "acne_vs_rosacea")
    with pytest.raises(ValueError, match="no output psoriasis_vs_eczema"):
        gradcam(model, np.zeros((6, 5, 3)), "psoriasis_vs_eczema")
    with pytest.raises(ValueError, match="no layer named 'block5_conv3'"):
        gradcam(model, np.zeros((6, 5, 3)), "acne_vs_rosacea", layer_name="block5_conv3")
    with pytest.raises(ValueError, match="target must be"):
        gradcam_batch(model, np.zeros((6, 5, 3)), target="both")


def test_overlay_blends_the_colour_map_by_alpha():
    image = np.full((4, 6, 3), 100, dtype=np.uint8)
    # jet(0) is dark blue (0, 0, 0.5); jet(1) is dark red (0.5, 0, 0).
    cold = overlay(image, np.zeros((4, 6)), alpha=0.5)
    assert cold.dtype == np.uint8 and cold.shape == (4, 6, 3)
    assert tuple(cold[0, 0]) == (50, 50, 114)  # 0.5·100 + 0.5·(0, 0, 127.5)
    hot = overlay(image, np.ones((2, 3)), alpha=0.5)  # a coarser map is resized to the image
    assert hot.shape == (4, 6, 3) and tuple(hot[3, 5]) == (114, 50, 50)
    assert np.array_equal(overlay(image, np.ones((4, 6)), alpha=0.0), image)


@pytest.fixture(scope="module")
def patch_model(vgg16_weights):
    """The study's VGG-16P at 64×64 (ImageNet trunk), heads trained on 'bright square top left'."""
    model = build_model("P", input_shape=(64, 64, 3), weights=str(vgg16_weights), seed=0)
    images, labels, _ = patch_images(64, 64, seed=0, quadrant="top_left")
    return train_heads(model, images, labels, steps=60, seed=0)


@pytest.mark.parametrize("quadrant", ["top_left", "bottom_right"])
def test_heat_map_peak_lies_in_the_quadrant_holding_the_signal(patch_model, quadrant):
    # Trained on top-left squares; the bottom-right case checks that the map follows the square
    # rather than remembering where squares used to be.
    images, labels, _ = patch_images(16, 64, seed=1, quadrant=quadrant)
    heatmaps, probs = gradcam_batch(patch_model, images, ["acne_vs_rosacea"])
    heat, prob = heatmaps["acne_vs_rosacea"], probs["acne_vs_rosacea"]
    positives = np.flatnonzero(labels == 1)
    assert (prob[positives] >= 0.5).all() and (prob[labels == 0] < 0.5).all()
    for i in positives:
        row, col = np.unravel_index(np.argmax(heat[i]), heat[i].shape)
        in_top, in_left = row < 32, col < 32
        assert (in_top, in_left) == {"top_left": (True, True), "bottom_right": (False, False)}[
            quadrant
        ]


@pytest.mark.parametrize("threshold, sign", [(0.0, 1.0), (1.0, -1.0)])
def test_predicted_class_follows_the_tasks_threshold(threshold, sign):
    """At threshold 0 every image is called positive, at 1 none is: the map explains that call."""
    model, w, c, k = _one_by_one_model()
    x = np.random.default_rng(1).normal(size=(3, 6, 5, 3)).astype("float32")
    heatmaps, _ = gradcam_batch(model, x, layer_name="conv",
                                thresholds={"acne_vs_rosacea": threshold})
    for i in range(3):
        np.testing.assert_allclose(
            heatmaps["acne_vs_rosacea"][i], _expected_map(x[i], w, c, k, sign), atol=1e-5
        )


def test_stretched_heat_map_fills_the_crop_box_and_nothing_else():
    from skin_cnn.data.preprocessing import heatmap_on_photo

    heat = np.zeros((8, 8), np.float32)
    heat[:4, :4] = 1.0  # top-left quarter of the model input
    on_photo = heatmap_on_photo(heat, (80, 100, 3), (10, 20, 50, 60))
    assert on_photo.shape == (80, 100)
    assert np.isnan(on_photo[:20]).all() and np.isnan(on_photo[:, :10]).all()
    assert np.isnan(on_photo[60:]).all() and np.isnan(on_photo[:, 50:]).all()
    box = on_photo[20:60, 10:50]
    assert not np.isnan(box).any()
    assert box[:15, :15].min() == 1.0 and box[25:, 25:].max() == 0.0  # the quarter stays a quarter


def test_padded_heat_map_loses_its_padding_on_the_photo():
    """A 2:1 box padded into 8×8 uses rows 2..5; those rows alone cover the whole box."""
    from skin_cnn.data.preprocessing import heatmap_on_photo

    heat = np.zeros((8, 8), np.float32)
    heat[2:6] = 1.0
    on_photo = heatmap_on_photo(heat, (40, 80, 3), (0, 0, 80, 40), resize="pad")
    np.testing.assert_array_equal(on_photo, 1.0)


def test_figure_keeps_the_photo_pixels_outside_the_box_and_adds_a_caption():
    from skin_cnn.inference.gradcam import Caption, gradcam_figure

    photo = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    box = (100, 50, 300, 250)
    picture = gradcam_figure(photo, np.ones((8, 8), np.float32), box,
                             caption=Caption(title="If it is A or B", lines=("P(A) = 0.9",), bar_label="Grad-CAM"))
    assert picture.dtype == np.uint8 and picture.shape[1] == 400 and picture.shape[0] > 300
    outside = np.ones((300, 400), bool)
    outside[box[1] - 2 : box[3] + 2, box[0] - 2 : box[2] + 2] = False  # box and its outline
    np.testing.assert_array_equal(picture[:300][outside], photo[outside])
    inside = picture[60:240, 110:290].astype(float)
    expected = 0.55 * photo[60:240, 110:290] + 0.45 * np.array([127.5, 0, 0])  # jet(1), alpha
    assert np.abs(inside - expected).max() <= 1.0
    caption = picture[300:]
    assert (caption < 100).any() and (caption == 255).any()  # dark text on white
    small = gradcam_figure(photo[:30, :40], np.ones((8, 8)), (0, 0, 40, 30), caption=Caption("t"), alpha=0.0)
    np.testing.assert_array_equal(small[:30, :40], photo[:30, :40])  # alpha 0: the photo itself
    assert small.shape[1] == 360  # narrow photos get a readable caption width
