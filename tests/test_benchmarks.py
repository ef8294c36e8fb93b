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


def _json_lines(args):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


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
