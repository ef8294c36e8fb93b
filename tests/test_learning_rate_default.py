"""The default learning rate follows whether the VGG-16 trunk trains; a rate that was set always wins."""
import json

import pytest
import yaml


def _resolve(**settings):
    from skin_cnn.training import resolve_config

    return resolve_config(dict(settings, split="split.csv", out="run"))


@pytest.mark.parametrize("variant, blocks, expected", [
    ("P", 0, 1e-3), ("PS", 0, 1e-3),      # heads (and a transformer) on a frozen trunk
    ("N", 0, 2e-5), ("NS", 0, 2e-5),      # trunk from random weights
    ("P", 1, 2e-5), ("PS", 3, 2e-5),      # pretrained blocks fine-tuned
])
def test_the_default_rate_depends_on_whether_the_trunk_trains(variant, blocks, expected):
    config = _resolve(variant=variant, fine_tune_blocks=blocks)
    assert config.learning_rate == expected
    assert config.learning_rate_origin.startswith("default")
    assert config.to_dict()["learning_rate"] == expected  # what config.json stores


@pytest.mark.parametrize("value", [5e-4, "5e-4", "0.0005"])
def test_a_rate_that_was_set_wins_and_is_read_as_a_number(value):
    config = _resolve(variant="N", learning_rate=value)
    assert config.learning_rate == 5e-4 and isinstance(config.learning_rate, float)
    assert config.learning_rate_origin == "set"


def test_a_bad_rate_in_a_settings_file_is_one_line_naming_the_file(tmp_path):
    from skin_cnn.training.config import load_config_file

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"learning-rate": "fast"}))
    with pytest.raises(ValueError, match=r"exp\.yaml: learning_rate='fast': expected a number"):
        load_config_file(path)


def test_the_cli_resolves_the_rate_after_the_settings_file_and_flags(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import skin_cnn.app.train_run as train_run
    from skin_cnn.cli import cli

    split = tmp_path / "split.csv"
    split.write_text("image_path,patient_id,diagnosis,split\n")
    seen = []
    monkeypatch.setattr(train_run, "train", lambda config, **kw: seen.append(config))
    settings = tmp_path / "n.yaml"
    settings.write_text(yaml.safe_dump({"variant": "N"}))
    for args, expected in ((["--variant", "N"], 2e-5), (["--config", str(settings)], 2e-5),
                           (["--fine-tune-blocks", "2"], 2e-5), ([], 1e-3),
                           (["--variant", "N", "--learning-rate", "1e-3"], 1e-3)):
        out = tmp_path / f"run{len(seen)}"
        result = CliRunner().invoke(cli, ["train", str(split), "-o", str(out), *args])
        assert result.exit_code == 0, result.output
        assert seen[-1].learning_rate == expected, args


def test_a_run_records_the_resolved_rate_and_resume_keeps_it(tmp_path):
    from test_training import tiny_config, tiny_split

    from skin_cnn import train
    from skin_cnn.training import load_resume_config

    split = tiny_split(tmp_path, broken=False)
    out = tmp_path / "n"
    train(tiny_config(split, out, variant="N", epochs=1), progress=False, echo=lambda m: None)
    document = json.loads((out / "config.json").read_text())
    assert document["train"]["learning_rate"] == 2e-5
    assert document["resolved"]["learning_rate"] == {"value": 2e-5, "origin": "default: the trunk trains"}
    # a resumed run reads the stored rate back as a set value, whatever the default is by then
    document["train"]["learning_rate"] = 7e-5
    (out / "config.json").write_text(json.dumps(document))
    resumed = load_resume_config(out)
    assert resumed.learning_rate == 7e-5 and resumed.learning_rate_origin == "set"
