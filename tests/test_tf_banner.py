"""TensorFlow's start-up banner is kept off the command line's stderr; its errors are not."""

import os
import subprocess
import sys

import pytest

from skin_cnn.cli.quiet_tf import without_banner

# what `import tensorflow` (2.21, CPU) writes to stderr before its logging is set up
BANNER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796399532.827668    8166 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different computation "
    "orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796400212.981461   29562 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.\n"
)
ERROR = "E0000 00:00:1796399687.450761   13353 node_def_util.cc:682] something went wrong\n"


def test_the_banner_lines_go_and_errors_and_other_lines_stay():
    assert without_banner(BANNER) == ""
    assert without_banner(BANNER + ERROR + "a warning of our own\n" + BANNER) == ERROR + "a warning of our own\n"


def test_the_tflite_delegate_notice_goes_and_other_tflite_lines_stay():
    notice = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    other = "ERROR: Didn't find op for builtin opcode 'CONV_2D'\n"
    assert without_banner(notice + other + notice) == other


def test_native_lines_are_filtered_only_where_the_cli_quietened_tensorflow(monkeypatch, capfd):
    import skin_cnn.cli.quiet_tf as quiet_tf

    for installed, expected in [(False, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nmine\n"),
                                (True, "mine\n")]:
        monkeypatch.setattr(quiet_tf, "_installed", installed)
        with quiet_tf.quiet_native_lines():
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nmine\n")
        assert capfd.readouterr().err == expected


@pytest.mark.slow
@pytest.mark.slow  # TensorFlow started in another process
def test_a_command_that_loads_tensorflow_prints_only_its_own_error(tmp_path):
    (tmp_path / "m.csv").write_text("image_path,diagnosis\na.jpg,acne\n")
    (tmp_path / "model").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-m", "skin_cnn", "cleanse", "apply", str(tmp_path / "m.csv"), "-o", str(tmp_path / "c.csv"),
         "--model", str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "skin classifier not found" in lines[0], result.stderr
