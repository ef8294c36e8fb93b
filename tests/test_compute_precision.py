"""The trunk's precision: ``auto`` from the CPU flags, per-layer policies, float32 outside the trunk,
a model predicting in another precision than it was trained in, and what runs record."""
import json
import zipfile

import numpy as np
import pytest

from model_fixtures import patch_images, tiny_model

AMX_CPU = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
bugs\t\t: spectre_v1
"""
AVX512_BF16_CPU = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_vnni
processor\t: 1
flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_vnni
"""
AVX2_CPU = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme avx avx2 fma
bugs\t\t: not_avx512_bf16_either
"""
#: Largest |Δp| between a tiny random-trunk model's float32 and bfloat16 probabilities accepted
#: here: bfloat16 keeps 8 significant bits in each convolution (relative rounding 2^-9 ≈ 0.2%),
#: 13 convolutions deep, and the sigmoid's slope is at most 1/4; measured ≈2e-3 on 16 images.
TINY_MODEL_TOLERANCE = 1e-2


# ---------------------------------------------------------------------------------------------
# choosing


def test_auto_picks_bfloat16_on_cpus_with_bf16_instructions_and_says_which():
    from skin_cnn.core.compute_precision import choose_precision

    amx = choose_precision("auto", AMX_CPU, has_gpu=False)
    assert (amx.name, amx.policy, amx.reason) == ("bfloat16", "mixed_bfloat16", "auto: CPU has amx_bf16")
    amd = choose_precision("auto", AVX512_BF16_CPU, has_gpu=False)
    assert amd.describe() == "precision: bfloat16 (auto: CPU has avx512_bf16)"
    # a GPU runs the convolutions, whatever the CPU
    assert choose_precision("auto", AMX_CPU, has_gpu=True).name == "float16"


def test_auto_on_a_cpu_without_bf16_is_float32_and_says_why():
    from skin_cnn.core.compute_precision import choose_precision

    plain = choose_precision("auto", AVX2_CPU, has_gpu=False)
    assert plain.name == "float32" and plain.policy == "float32"
    assert "no amx_bf16 or avx512_bf16" in plain.reason and "no GPU" in plain.reason
    assert choose_precision("auto", "", has_gpu=False).name == "float32"  # no /proc/cpuinfo
    gpu = choose_precision("auto", AVX2_CPU, has_gpu=True)
    assert (gpu.name, gpu.policy) == ("float16", "mixed_float16")


def test_an_explicit_precision_is_used_whatever_the_cpu():
    from skin_cnn.core.compute_precision import choose_precision
    from skin_cnn.models.precision_policy import resolve_precision

    assert choose_precision("float32", AMX_CPU, has_gpu=True).name == "float32"
    assert choose_precision("BFloat16", AVX2_CPU, has_gpu=False).name == "bfloat16"
    assert resolve_precision("float16").reason == "set"
    with pytest.raises(ValueError, match="'double' is not a precision; expected one of auto"):
        resolve_precision("double")


def test_only_flags_lines_count():
    from skin_cnn.core.compute_precision import bf16_flags, cpu_flags

    assert bf16_flags(AVX2_CPU) == ()
    assert bf16_flags(AMX_CPU) == ("amx_bf16", "avx512_bf16")
    assert "avx512_vnni" in cpu_flags(AVX512_BF16_CPU)


# ---------------------------------------------------------------------------------------------
# applying


@pytest.fixture(scope="module")
def model():
    return tiny_model(size=32, steps=30)


def test_the_trunk_computes_in_bfloat16_and_everything_else_stays_float32(model):
    from skin_cnn.models.precision_policy import apply_precision, model_precision, trunk_layers, trunk_precision

    images, _, _ = patch_images(4, 32, seed=5)
    with trunk_precision(model, "bfloat16"):
        assert model_precision(model) == "bfloat16"
        trunk = {layer.name for layer in trunk_layers(model)}
        assert len(trunk) == 18 and {"block1_conv1", "block5_pool"} <= trunk
        for layer in model.layers:
            expected = "mixed_bfloat16" if layer.name in trunk else "float32"
            assert layer.dtype_policy.name == expected, layer.name
        outputs = model(images)
        assert {str(v.dtype) for v in outputs.values()} == {"<dtype: 'float32'>"}
        assert {v.dtype for v in model.weights} == {"float32"}
        block5 = model.get_layer("block5_conv3")
        assert block5.compute_dtype == "bfloat16" and block5.kernel.dtype == "float32"
    assert model_precision(model) == "float32"
    apply_precision(model, "float32")


def test_float32_and_bfloat16_probabilities_agree_within_the_stated_tolerance(model):
    from skin_cnn.models.precision_policy import trunk_precision

    images, _, _ = patch_images(16, 32, seed=7)
    reference = {t: np.asarray(v) for t, v in model(images).items()}
    with trunk_precision(model, "bfloat16"):
        reduced = {t: np.asarray(v) for t, v in model(images).items()}
    gaps = [np.max(np.abs(reference[t] - reduced[t])) for t in reference]
    assert max(gaps) < TINY_MODEL_TOLERANCE
    assert max(gaps) > 0  # bfloat16 really ran: float32 would agree to the bit


def test_a_saved_model_is_float32_on_disk_records_its_precision_and_predicts_in_another(model, tmp_path):
    from skin_cnn.models.precision_policy import trunk_precision
    from skin_cnn.models import read_file_info, with_model_info
    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.training.callbacks import save_model_atomic

    path = tmp_path / "m.keras"
    with trunk_precision(model, "bfloat16"):
        with_model_info(model, precision="bfloat16")
        save_model_atomic(model, path)
        assert model.get_layer("block1_conv1").dtype_policy.name == "mixed_bfloat16"  # restored after saving
    layers = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
    policies = {entry["config"]["name"]: entry["config"]["dtype"]["config"]["name"] for entry in layers
                if isinstance(entry["config"].get("dtype"), dict)}
    assert policies["block3_conv2"] == "float32" and set(policies.values()) == {"float32"}
    assert read_file_info(path)["precision"] == "bfloat16"

    images, _, _ = patch_images(8, 32, seed=11)
    as_float32 = load_predictor(path, preprocessing={"image_size": [32, 32]}, precision="float32")
    as_bfloat16 = load_predictor(path, preprocessing={"image_size": [32, 32]}, precision="bfloat16")
    assert (as_float32.precision.name, as_bfloat16.precision.name) == ("float32", "bfloat16")
    exact = {t: np.asarray(v) for t, v in model(images).items()}  # the in-memory model, float32 again
    with_model_info(model, precision=None)
    a, b = as_float32.predict_tensors(images), as_bfloat16.predict_tensors(images)
    for task in a:
        np.testing.assert_allclose(a[task], exact[task].reshape(-1), rtol=0, atol=1e-6)
        assert np.max(np.abs(a[task] - b[task])) < TINY_MODEL_TOLERANCE


def test_gradcam_explains_a_bfloat16_trunk_like_a_float32_one(model):
    from skin_cnn.models.precision_policy import trunk_precision
    from skin_cnn.inference.gradcam import gradcam_batch

    images, _, _ = patch_images(2, 32, seed=2)
    maps32, probs32 = gradcam_batch(model, images)
    with trunk_precision(model, "bfloat16"):
        maps16, probs16 = gradcam_batch(model, images)
    for task in maps32:
        assert maps16[task].dtype == np.float32 and np.isfinite(maps16[task]).all()
        assert np.max(np.abs(probs32[task] - probs16[task])) < TINY_MODEL_TOLERANCE
        # same places light up: the maps correlate strongly
        assert np.corrcoef(maps32[task].ravel(), maps16[task].ravel())[0, 1] > 0.9


def test_float16_trunk_that_trains_gets_loss_scaling():
    import keras

    from skin_cnn.models.precision_policy import apply_precision
    from skin_cnn.models import build_model, compile_model

    n = build_model("N", input_shape=(32, 32, 3), seed=0)
    apply_precision(n, "float16")
    assert isinstance(compile_model(n).optimizer, keras.optimizers.LossScaleOptimizer)
    apply_precision(n, "bfloat16")  # bfloat16 has float32's exponent range: no scaling
    assert not isinstance(compile_model(n).optimizer, keras.optimizers.LossScaleOptimizer)


# ---------------------------------------------------------------------------------------------
# what a run records


def test_a_run_says_records_and_stores_its_precision(tmp_path):
    from test_training import tiny_config, tiny_split

    from skin_cnn.models import read_file_info
    from skin_cnn.app.train_run import train

    split = tiny_split(tmp_path, broken=False)
    messages = []
    train(tiny_config(split, tmp_path / "run", precision="bfloat16"), progress=False, echo=messages.append)
    assert messages.count("precision: bfloat16 (set)") == 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["precision"] == "bfloat16"
    assert config["resolved"]["precision"] == {"precision": "bfloat16", "requested": "bfloat16", "reason": "set"}
    assert read_file_info(tmp_path / "run" / "best.keras")["precision"] == "bfloat16"
    assert "- Trunk precision: bfloat16 (set)" in (tmp_path / "run" / "model_card.md").read_text()


def test_a_bad_precision_setting_is_one_line_naming_it(tmp_path):
    from test_training import tiny_config

    with pytest.raises(ValueError, match=r"precision='half': expected one of auto, float32, bfloat16, float16"):
        tiny_config(tmp_path / "split.csv", tmp_path / "run", precision="half")


def test_features_computed_in_another_precision_are_not_reused(tmp_path):
    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train

    split = tiny_split(tmp_path, broken=False)
    cache = tmp_path / "cache"
    for precision in ("float32", "bfloat16", "bfloat16"):
        messages = []
        train(tiny_config(split, tmp_path / f"run-{precision}-{len(list(cache.glob('*')))}", precision=precision,
                          cache_dir=str(cache)), progress=False, echo=messages.append)
    entries = [json.loads(e.read_text())["precision"] for e in cache.glob("*/entry.json")]
    assert sorted(entries) == ["bfloat16", "float32"]  # one entry per precision; the second bfloat16 run reused
    assert any("reusing" in m or "reused" in m for m in messages)
