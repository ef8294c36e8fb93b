"""RunPaths names every file of a run folder once; the layout its module documents is what it names."""
from pathlib import Path

from skin_cnn.core import run_paths
from skin_cnn.core.run_paths import RunPaths


def test_run_paths_join_the_documented_names_to_the_folder(tmp_path):
    paths = RunPaths(tmp_path / "run")
    assert paths.root == tmp_path / "run"
    assert paths.best_model == tmp_path / "run" / "best.keras"
    assert paths.state == tmp_path / "run" / "backup" / "state.npz"
    assert paths.eval_dir("val") == tmp_path / "run" / "eval_val"
    assert paths.predictions("test") == tmp_path / "run" / "eval_test" / "predictions_test.csv"
    assert paths.predictions("val", tmp_path / "elsewhere") == tmp_path / "elsewhere" / "predictions_val.csv"
    assert [p.relative_to(paths.root).as_posix() for p in paths.validation_candidates] == [
        "val_predictions.csv", "predictions_val.csv", "eval_val/predictions_val.csv"]


def test_every_named_file_is_in_the_documented_layout():
    documented = run_paths.__doc__
    paths = RunPaths("run")
    named = {name for name in dir(RunPaths) if isinstance(getattr(RunPaths, name), property)}
    for name in named - {"validation_candidates", "training_files"}:
        relative = getattr(paths, name).relative_to("run").as_posix()
        assert relative in documented, f"RunPaths.{name} ({relative}) is missing from the module's layout"


def test_a_folder_is_a_run_only_with_its_settings_and_split(tmp_path):
    paths = RunPaths(tmp_path)
    assert not paths.is_run()
    paths.config.write_text("{}")
    assert not paths.is_run()
    paths.split.write_text("image_path,diagnosis,split\n")
    assert paths.is_run()


def test_commands_refuse_inputs_among_the_files_training_writes():
    from skin_cnn.training.run_folder import RUN_FILES

    assert set(RUN_FILES) == {p.name for p in RunPaths("run").training_files}
    assert {"config.json", "best.keras", "split.csv", "status.json"} <= set(RUN_FILES)
    assert all(Path(name).parent == Path(".") for name in RUN_FILES)
