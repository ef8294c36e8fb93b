"""Bad settings name the file and the setting; image sizes beyond reason are refused with the
disk they would take."""
import json

import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="skin-cnn")


@pytest.mark.parametrize("suffix, text", [(".yaml", "epochs: abc\n"), (".json", '{"batch_size": "x"}')])
def test_a_bad_value_in_a_config_file_names_the_file_and_the_setting(tmp_path, suffix, text):
    from skin_cnn.training.config import load_config_file

    path = tmp_path / f"exp{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}: (epochs='abc'|batch_size='x'): expected a whole number$"):
        load_config_file(path)
    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")
    for command in (["train", split, "-o", tmp_path / "run"], ["cv", split, "-o", tmp_path / "cv"]):
        result = _run(*command, "--config", path)
        assert result.exit_code == 1 and str(path) in result.output and "expected a whole number" in result.output
        assert "invalid literal" not in result.output


def test_a_bad_value_in_a_runs_config_json_names_it_on_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"epochs": "ten", "split": "s.csv"}}))
    result = _run("train", "--resume", run)
    assert result.exit_code == 1
    assert f"{run / 'config.json'}: epochs='ten': expected a whole number" in result.output


def test_a_bad_status_json_names_the_file_and_the_setting(tmp_path):
    from skin_cnn.training.run_folder import is_finished

    (tmp_path / "status.json").write_text('{"finished": true, "best_epoch": "x", "epochs_run": 3}')
    with pytest.raises(ValueError, match=r"status\.json: best_epoch='x': expected a whole number"):
        is_finished(tmp_path)
    (tmp_path / "status.json").write_text('{"finished": true, "best_epoch": 2, "epochs_run": 3}')
    assert is_finished(tmp_path)["best_epoch"] == 2


def test_an_image_size_beyond_the_bound_is_refused_with_the_disk_it_would_take(tmp_path):
    from skin_cnn.training.config import MAX_IMAGE_SIZE, prepared_bytes

    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")
    result = _run("train", split, "-o", tmp_path / "run", "--image-size", "100000")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "image_size=100000: at most 1024" in result.output
    assert "30.0 GB of disk" in result.output  # 100000² × 3 bytes, by hand
    assert prepared_bytes(100_000) == 30_000_000_000
    assert _run("train", split, "-o", tmp_path / "run", "--image-size", str(MAX_IMAGE_SIZE)).output.count(
        "at most") == 0


def test_a_run_whose_prepared_images_do_not_fit_on_the_disk_is_refused_before_preparing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train

    split = tiny_split(tmp_path, broken=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(ValueError, match=r"prepared at 32×32 take .* GB of disk and 0\.0 GB are free"):
        train(tiny_config(split, tmp_path / "run"), progress=False, echo=lambda m: None)
    assert not list((tmp_path / "run").glob(".prepared-*"))
