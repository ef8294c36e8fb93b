"""The benchmarks run the product's own training path: they must keep working when it changes.

Each benchmark here is run for a few steps on tiny inputs; its JSON line is checked for the figures
it promises (a measured speed, the CPU flags and load average printed beside it).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _public_derm():
    shared = os.environ.get("SKIN_CNN_SHARED")
    for candidate in (os.environ.get("SKIN_CNN_PUBLIC_DERM"), shared and Path(shared) / "data" / "public-derm",
                      ROOT.parent / "shared" / "data" / "public-derm"):
        if candidate and (Path(candidate) / "manifest.csv").is_file():
            return Path(candidate)
    return None


WEIGHTS_NAME = "vgg16_imagenet_notop_caffe_input.h5"


def _weights():
    data = _public_derm()
    for candidate in (os.environ.get("SKIN_CNN_SHARED") and Path(os.environ["SKIN_CNN_SHARED"]) / "weights",
                      data and data.parent.parent / "weights", ROOT.parent / "shared" / "weights"):
        if candidate and (Path(candidate) / WEIGHTS_NAME).is_file():
            return Path(candidate) / WEIGHTS_NAME
    return None


def _needs(*, weights=False):
    """The public photos (and the ImageNet weights), or skip: the benchmarks time real inputs."""
    data = _public_derm()
    if data is None:
        pytest.skip("needs the public photos (SKIN_CNN_PUBLIC_DERM or ../shared)")
    if weights and _weights() is None:
        pytest.skip(f"needs ../shared/weights/{WEIGHTS_NAME} (or SKIN_CNN_SHARED)")
    return data


def _json_lines(args):
    # the checkout's package, not whichever skin_cnn is installed: a benchmark's folder, not the
    # checkout, is first on its sys.path
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _one_line(args):
    lines = _json_lines(args)
    assert len(lines) == 1, lines
    return lines[0]


def _is_quotient(ratio, top, bottom, decimals):
    """Whether ``ratio`` is ``top / bottom`` as far as their printed rounding allows.

    ``decimals`` gives the decimals each of (ratio, top, bottom) was rounded to; the quotient of
    the unrounded figures lies between the bounds of the rounded ones.
    """
    half = [0.5 * 10.0 ** -d for d in decimals]
    assert bottom - half[2] > 0, f"{bottom} too small to check a quotient"
    low = (top - half[1]) / (bottom + half[2]) - half[0]
    high = (top + half[1]) / (bottom - half[2]) + half[0]
    return low <= ratio <= high


def _small_manifest(data, folder, per_disease=8, split=False):
    """The first ``per_disease`` public photos of each disease, image paths absolute.

    With ``split``, a split column too: per disease all but two in train, one in val, one in
    test, so every task has both diseases in every part.
    """
    import pandas as pd

    manifest = pd.read_csv(data / "manifest.csv")
    small = manifest.groupby("diagnosis", group_keys=False).head(per_disease).copy()
    small["image_path"] = [str(data / p) for p in small["image_path"]]
    if split:
        rank = small.groupby("diagnosis").cumcount()
        small["split"] = ["val" if r == 0 else "test" if r == 1 else "train" for r in rank]
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / ("split.csv" if split else "manifest.csv")
    small.to_csv(csv, index=False)
    return csv


@pytest.mark.slow
def test_variant_throughput_benchmark_times_training_batches_of_the_real_stream():
    data = _public_derm()
    if data is None:
        pytest.skip("needs the public photos (SKIN_CNN_PUBLIC_DERM or ../shared)")
    lines = _json_lines(["benchmarks/bench_variant_throughput.py", "--variants", "N", "--sizes", "32",
                         "--steps", "1", "--warmup", "1", "--train-images", "8", "--data", str(data)])
    assert [(line["variant"], line["image_size"]) for line in lines] == [("N", 32)]
    assert lines[0]["train_images_per_s"] > 0 and lines[0]["cv_hours"] > 0
    assert "load_average" in lines[0] and "cpu_flags" in lines[0]


@pytest.mark.slow
def test_training_path_benchmark_compares_the_stream_with_one_batch_in_memory():
    data = _public_derm()
    if data is None:
        pytest.skip("needs the public photos (SKIN_CNN_PUBLIC_DERM or ../shared)")
    lines = _json_lines(["benchmarks/bench_training_path.py", "--variant", "N", "--size", "32", "--batch", "8",
                         "--steps", "1", "--warmup", "1", "--rounds", "1", "--train-images", "16",
                         "--data", str(data)])
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["end_to_end_images_per_s"] > 0 and line["in_memory_images_per_s"] > 0
    assert line["ratio"] == pytest.approx(line["end_to_end_images_per_s"] / line["in_memory_images_per_s"], abs=2e-3)


def test_linear_fit_threads_benchmark_reports_both_timings_and_their_ratio():
    lines = _json_lines(["benchmarks/bench_linear_fit_threads.py", "--images", "60", "--features", "32",
                         "--rounds", "1"])
    line = lines[0]
    assert line["one_thread_s"] > 0 and line["default_threads_s"] > 0
    assert line["ratio_default_over_one"] == pytest.approx(line["default_threads_s"] / line["one_thread_s"],
                                                           rel=0.02, abs=0.01)


def test_quotient_check_allows_only_the_printed_rounding():
    assert _is_quotient(2.0, 4.0, 2.0, (1, 1, 1))
    assert _is_quotient(1.3, 2.768, 2.1174, (1, 3, 4))      # 1.307 printed as 1.3
    assert not _is_quotient(1.5, 2.768, 2.1174, (1, 3, 4))
    assert _is_quotient(3.1, 13.9, 4.5, (1, 1, 1))           # 13.85 / 4.55 = 3.04 .. 13.95 / 4.45 = 3.13
    assert not _is_quotient(3.2, 13.9, 4.5, (1, 1, 1))


@pytest.mark.slow
def test_bootstrap_benchmark_matches_scikit_learn_and_reports_its_speedup():
    line = _one_line(["benchmarks/bench_bootstrap.py", "--n", "2000", "--resamples", "100"])
    assert (line["n_images"], line["n_resamples"], line["unit"]) == (2000, 100, "image")
    assert line["max_abs_auc_difference"] < 1e-9
    assert _is_quotient(line["speedup"], line["loop_sklearn_s"], line["vectorised_s"], (1, 3, 3))


@pytest.mark.slow
def test_crop_benchmark_times_the_fast_and_the_published_crop_on_real_photos():
    data = _needs()
    line = _one_line(["benchmarks/bench_crop.py", "--n", "2", "--repeat", "1", "--data", str(data)])
    assert line["n_images"] == 2
    assert _is_quotient(line["speedup_vs_published"], line["published_ms_per_image"], line["fast_ms_per_image"],
                        (1, 2, 3))
    assert _is_quotient(line["crop_over_decode"], line["fast_ms_per_image"], line["decode_ms_per_image"], (3, 3, 3))
    assert line["goals"] == {"speedup_ge_20": line["speedup_vs_published"] >= 20,
                             "crop_cheaper_than_decode": line["crop_over_decode"] < 1}
    assert 0 <= line["iou_vs_published_minibatch"]["mean"] <= 1


@pytest.mark.slow
def test_slow_clients_benchmark_answers_the_normal_upload_and_times_out_the_slow_one():
    # held past the 2 s grace of the default BodyLimits, the trickling client gets its 408
    line = _one_line(["benchmarks/bench_slow_clients.py", "--slow", "1", "--hold", "3"])
    assert line["normal_status"] == 200 and line["slow_answers"] == ["HTTP/1.1 408 Request Timeout"]
    assert _is_quotient(line["ratio"], line["normal_s"], line["alone_s"], (1, 3, 4))


@pytest.mark.slow
def test_mirror_tta_benchmark_reports_the_cost_of_the_mirror_view():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_mirror_tta.py", "--n", "1", "--size", "32", "--data", str(data),
                      "--weights", str(_weights())])
    assert (line["photos"], line["size"], line["crop"]) == (1, 32, False)
    assert _is_quotient(line["ratio"], line["mirror_s_per_photo"], line["plain_s_per_photo"], (3, 4, 4))


@pytest.mark.slow
def test_predict_latency_benchmark_compares_a_photo_with_the_bare_forward():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_predict_latency.py", "--n", "1", "--size", "32", "--data", str(data),
                      "--weights", str(_weights())])
    assert line["photos"] == 1 and "32x32" in line["model"]
    assert _is_quotient(line["ratio"], line["predict_ms"], line["forward_ms"], (3, 1, 1))
    assert set(line["stages_ms"]) == {"decode", "hue_crop", "resize"} and min(line["stages_ms"].values()) >= 0


@pytest.mark.slow
def test_precision_trunk_benchmark_compares_float32_with_bfloat16():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_precision_trunk.py", "--photos", "2", "--repeats", "1", "--batch", "2",
                      "--size", "32", "--data", str(data), "--weights", str(_weights())])
    rate = line["images_per_s"]
    assert _is_quotient(line["speedup_bf16_over_f32"], rate["bfloat16"], rate["float32"], (2, 2, 2))
    # bfloat16 keeps 8 bits of mantissa: the pooled features keep their direction
    assert line["features_mean_cosine"] > 0.99 and line["features_relative_l2"] < 0.1
    assert "flags:" in line["cpu"]


@pytest.mark.slow
def test_precision_profile_benchmark_splits_the_forward_by_layer_kind():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_precision_profile.py", "--photos", "2", "--repeats", "1", "--size", "32",
                      "--data", str(data), "--weights", str(_weights())])
    for precision in ("float32", "bfloat16"):
        profile = line["profile"][precision]
        total = profile["forward_ms_per_batch"]
        assert _is_quotient(profile["images_per_s"], 2 * 1000, total, (2, 0, 1))
        assert profile["overhead_ms"] == pytest.approx(total - sum(profile["ms_by_kind"].values()),
                                                       abs=0.05 * (1 + len(profile["ms_by_kind"])))
    assert set(line["input_path_ms_per_photo_one_core"]) == {"decode", "hue_crop_box", "resize"}


@pytest.mark.slow
def test_precision_extraction_benchmark_writes_the_same_features_as_the_bare_model():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_precision_extraction.py", "--photos", "2", "--size", "32",
                      "--data", str(data), "--weights", str(_weights())])
    rate = line["photos_per_s"]
    assert line["max_abs_feature_difference"] == 0.0
    assert _is_quotient(line["keeps_up_product_over_bare"], rate["product"], rate["bare_forward"], (3, 2, 2))


@pytest.mark.slow
def test_precision_predict_benchmark_compares_precisions_on_the_predict_path():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_precision_predict.py", "--photos", "4", "--chunk", "2", "--batch", "2",
                      "--size", "32", "--data", str(data), "--weights", str(_weights())])
    rate = line["photos_per_s"]
    assert _is_quotient(line["speedup_bf16_over_f32"], rate["predict_bf16"], rate["predict_f32"], (2, 2, 2))
    assert _is_quotient(line["keeps_up_predict_over_bare_bf16_forward"], rate["predict_bf16"],
                        rate["forward_bf16"], (3, 2, 2))
    assert line["answers"] == 4 * 3 and 0 <= line["answers_at_0.5_that_differ"] <= line["answers"]
    assert line["max_abs_probability_difference"] < 0.05


@pytest.mark.slow
def test_cache_extraction_benchmark_times_build_chunk_against_the_bare_trunk():
    data = _needs(weights=True)
    line = _one_line(["benchmarks/bench_cache_extraction.py", "--size", "32", "--train-images", "4",
                      "--val-images", "2", "--views", "1", "--batch", "4", "--rounds", "1", "--data", str(data),
                      "--weights", str(_weights())])
    assert line["images_extracted"] == 2 + (1 + 1) * 4  # val once, train plain and one augmented view
    assert _is_quotient(line["ratio"], line["extraction_images_per_s"], line["bare_forward_images_per_s"],
                        (3, 2, 2))
    assert len(line["load_average"]) == 3 and isinstance(line["cpu_flags"], list)


@pytest.mark.slow
def test_training_memory_benchmark_measures_two_trainings():
    line = _one_line(["benchmarks/bench_training_memory.py", "--small", "50", "--large", "60", "--batch", "8"])
    assert (line["small_images"], line["large_images"]) == (50, 60)
    assert _is_quotient(line["ratio"], line["peak_rss_mb_large"], line["peak_rss_mb_small"], (3, 1, 1))
    assert line["growth_mb"] == pytest.approx(line["peak_rss_mb_large"] - line["peak_rss_mb_small"], abs=0.11)
    assert line["prepared_uint8_mb_large"] == round(0.9 * 60 * 64 * 64 * 3 / 2**20, 1)
    assert line["peak_rss_mb_small"] > 100  # TensorFlow alone takes more


@pytest.mark.slow
def test_export_check_agrees_with_predict_on_real_photos(tmp_path):
    data = _needs(weights=True)
    line = _one_line(["benchmarks/check_export_photos.py", "--size", "32", "--limit", "2", "--data", str(data),
                      "--weights", str(_weights()), "--out", str(tmp_path / "export")])
    assert (line["photos"], line["compared"], line["crop_boxes_equal"]) == (2, 2, 2)
    assert line["passed"] == {"savedmodel": True, "tflite": True}
    assert line["savedmodel_max_abs_diff"] <= 1e-4 and line["tflite_max_abs_diff"] <= 1e-2


@pytest.mark.slow
def test_feature_cache_benchmark_compares_cached_and_end_to_end_epochs(tmp_path):
    split = _small_manifest(_needs(weights=True), tmp_path, per_disease=4, split=True)
    line = _one_line(["benchmarks/bench_feature_cache.py", "--split", str(split), "--weights", str(_weights()),
                      "--image-size", "32", "--epochs", "1", "--views", "1", "--batch-size", "4"])
    assert (line["train_images"], line["val_images"], line["epochs"]) == (5 * 2, 5 * 1, 1)
    assert _is_quotient(line["speedup_per_epoch"], line["epoch_s_end_to_end"], line["epoch_s_cached"], (1, 3, 4))
    assert line["val_mean_auc_difference"] == pytest.approx(
        line["val_mean_auc_cached"] - line["val_mean_auc_end_to_end"], abs=2e-4)
    assert line["val_mean_auc_within_0.02"] == (abs(line["val_mean_auc_difference"]) <= 0.02)


@pytest.mark.slow
def test_cv_cost_benchmark_compares_cv_with_one_training(tmp_path):
    split = _small_manifest(_needs(weights=True), tmp_path, per_disease=4, split=True)
    line = _one_line(["benchmarks/bench_cv_cost.py", "--split", str(split), "--weights", str(_weights()),
                      "--size", "32", "--folds", "2", "--views", "1", "--epochs", "1"])
    assert (line["folds"], line["image_size"], line["epochs"]) == (2, 32, 1)
    assert _is_quotient(line["ratio"], line["cv_s"], line["train_s"], (3, 1, 1))
    assert line["oof_rows"] > 0


@pytest.mark.slow
def test_feature_reuse_benchmark_computes_each_photo_once_across_commands(tmp_path):
    manifest = _small_manifest(_needs(weights=True), tmp_path / "data")
    line = _one_line(["benchmarks/bench_feature_reuse.py", "--data", str(manifest.parent), "--photos", "40",
                      "--folds", "2", "--image-size", "32", "--weights", str(_weights())])
    computed = line["photos_computed"]
    assert line["photos"] == 40
    # train computes train and val, evaluate the test split, cv nothing: every photo once
    assert computed["train"] + computed["evaluate"] == 40 and computed["cv_warm"] == 0
    assert computed["cv_cold"] == 40
    assert line["trunk_passes_per_photo_train_evaluate_cv"] == 1.0
    wall = line["wall_s"]
    assert _is_quotient(line["cv_cold_over_warm"], wall["cv_cold"], wall["cv_warm"], (2, 1, 1))



@pytest.mark.slow
def test_precision_cv_benchmark_runs_cv_in_both_precisions(tmp_path):
    manifest = _small_manifest(_needs(weights=True), tmp_path / "data")
    line = _one_line(["benchmarks/bench_precision_cv.py", "--out", str(tmp_path / "runs"), "--folds", "2",
                      "--manifest", str(manifest), "--image-size", "32", "--weights", str(_weights())])
    wall = line["wall_s"]
    assert _is_quotient(line["speedup_f32_over_bf16"], wall["float32"], wall["bfloat16"], (2, 1, 1))
    aucs = line["oof_auc"]
    assert set(aucs["float32"]) == set(aucs["bfloat16"]) == {"acne_vs_rosacea", "ctcl_vs_eczema",
                                                              "psoriasis_vs_eczema"}
    for task, difference in line["oof_auc_difference_bf16_minus_f32"].items():
        assert difference == pytest.approx(aucs["bfloat16"][task] - aucs["float32"][task], abs=6e-5)
    assert "--image-size 32" in line["commands"]["bfloat16"]
