"""Option groups shared by commands: one definition, so every command spells and checks them alike."""
import click
import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.cli.options import interval_options, stacked
from skin_cnn.core.specs import EvalSettings

INTERVAL_OPTIONS = ("n_bootstrap", "auc_ci", "seed", "confidence")


def _command(name):
    return cli.get_command(click.Context(cli), name)


def _signature(param):
    kind = param.type
    return (param.opts, param.default, type(kind).__name__, getattr(kind, "choices", None),
            getattr(kind, "min", None), getattr(kind, "max", None))


def test_evaluate_and_compare_take_the_same_interval_options():
    evaluate, compare = (dict((p.name, p) for p in _command(n).params) for n in ("evaluate", "compare"))
    for name in INTERVAL_OPTIONS:
        assert _signature(evaluate[name]) == _signature(compare[name]), name
    assert _signature(evaluate["n_bootstrap"])[1:] == (2000, "IntRange", None, 0, None)
    assert list(_signature(evaluate["auc_ci"])[3]) == ["logit", "wald"]
    assert "bootstrap_method" in evaluate and "bootstrap_method" not in compare


def test_stacked_applies_decorators_in_the_order_written():
    @click.command()
    @stacked(click.option("--a"), click.option("--b"), click.option("--c"))
    def listed(a, b, c):
        pass

    @click.command()
    @click.option("--a")
    @click.option("--b")
    @click.option("--c")
    def written(a, b, c):
        pass

    assert [p.name for p in listed.params] == [p.name for p in written.params] == ["a", "b", "c"]


def test_interval_options_reach_the_function_with_their_defaults():
    seen = {}

    @click.command()
    @interval_options(n_bootstrap_help="n", auc_ci_help="a", confidence_help="c", bootstrap_method=True)
    def run(**kwargs):
        seen.update(kwargs)

    result = CliRunner().invoke(run, [])
    assert result.exit_code == 0, result.output
    assert seen == {"settings": EvalSettings(n_bootstrap=2000, seed=0, confidence=0.95, bootstrap_method="percentile",
                                             auc_ci="logit")}
    assert [p.name for p in run.params] == ["n_bootstrap", "bootstrap_method", "auc_ci", "seed", "confidence"]


def test_interval_options_give_the_command_one_settings_object_from_the_flags():
    seen = {}

    @click.command()
    @interval_options(n_bootstrap_help="n", auc_ci_help="a", confidence_help="c")
    def run(**kwargs):
        seen.update(kwargs)

    result = CliRunner().invoke(run, ["--n-bootstrap", "7", "--auc-ci", "wald", "--seed", "3", "--confidence", "0.9"])
    assert result.exit_code == 0, result.output
    # without --bootstrap-method the bootstrap is the percentile one
    assert seen == {"settings": EvalSettings(n_bootstrap=7, seed=3, confidence=0.9, bootstrap_method="percentile",
                                             auc_ci="wald")}


@pytest.mark.parametrize("name", ["evaluate", "compare"])
@pytest.mark.parametrize("option, value", [("--n-bootstrap", "-1"), ("--confidence", "1.5"), ("--auc-ci", "exact")])
def test_both_commands_refuse_a_bad_interval_setting_in_one_line(tmp_path, name, option, value):
    csv = tmp_path / "p.csv"
    csv.write_text("image_path,patient_id,task,y_true,y_prob\n", encoding="utf-8")
    args = ["--predictions", str(csv), "-o", str(tmp_path / "out")] if name == "evaluate" else [str(csv), str(csv)]
    result = CliRunner().invoke(cli, [name, *args, option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output


def test_gathered_hands_the_command_one_object_and_keeps_the_options_in_place():
    from skin_cnn.cli.options import gathered

    @click.command()
    @click.option("--a", default=1, type=int)
    @click.option("--b", default="x")
    @click.option("--c", default=2.5, type=float)
    @gathered("pair", lambda a, c: (a, c), ("a", "c"))
    def command(b, pair):
        click.echo(f"{b} {pair}")

    assert [p.name for p in command.params] == ["a", "b", "c"]  # the order --help lists them in
    assert CliRunner().invoke(command, []).output == "x (1, 2.5)\n"
    assert CliRunner().invoke(command, ["--c", "4", "--b", "y", "--a", "3"]).output == "y (3, 4.0)\n"


def test_cv_hands_its_folding_options_to_run_cv(monkeypatch, tmp_path):
    seen = {}

    def run_cv(source, out, n_folds, settings, **kwargs):
        options = kwargs.pop("options")
        seen.update(kwargs, n_folds=n_folds, image_size=settings.get("image_size"),
                    n_bootstrap=options.n_bootstrap, group_near_duplicates=options.group_near_duplicates)

    monkeypatch.setattr("skin_cnn.app.cv_run.run_cv", run_cv)
    source = tmp_path / "manifest.csv"
    source.write_text("image_path,diagnosis\n")
    result = CliRunner().invoke(cli, ["cv", str(source), "-o", str(tmp_path / "cv"), "--folds", "3", "--resume",
                                      "--n-bootstrap", "40", "--no-group-near-duplicates", "--image-size", "64"])
    assert result.exit_code == 0, result.output
    assert (seen["n_folds"], seen["resume"], seen["n_bootstrap"], seen["group_near_duplicates"]) == (3, True, 40, False)
    assert seen["image_size"] == 64


def test_split_hands_its_settings_to_patient_split(monkeypatch, tmp_path):
    import numpy as np
    from PIL import Image

    import skin_cnn.data.split as split_module

    rows = ["image_path,patient_id,diagnosis"]
    for i in range(12):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,p{i},{('psoriasis', 'eczema')[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    seen = {}
    real = split_module.patient_split

    def spy(frame, **kwargs):
        seen.update(kwargs)
        return real(frame, **kwargs)

    monkeypatch.setattr(split_module, "patient_split", spy)
    result = CliRunner().invoke(cli, ["split", str(tmp_path / "m.csv"), "-o", str(tmp_path / "s.csv"), "--seed", "7",
                                      "--fractions", "0.5", "0.25", "0.25", "--hash-distance", "3", "--quiet",
                                      "--allow-empty"])
    assert result.exit_code == 0, result.output
    assert seen == {"fractions": (0.5, 0.25, 0.25), "seed": 7, "group_near_duplicates": True, "hash_distance": 3,
                    "progress": False}


def _recipe_option_names():
    from skin_cnn.cli.train_cmd import recipe_options

    @click.command()
    @recipe_options
    def probe(**params):
        pass

    return {p.name for p in probe.params}


def test_every_recipe_option_is_a_training_setting():
    # user_settings keeps the parameters named like TrainConfig fields: an option named otherwise
    # would be parsed and then silently left out of the run's settings
    from skin_cnn.training.config import FIELD_NAMES

    assert _recipe_option_names() - {"recipe"} <= set(FIELD_NAMES)
    assert {"second_scale", "calibration", "pool_blocks", "mirror"} <= _recipe_option_names()


@pytest.mark.parametrize("flags, expected", [
    (["--second-scale", "250"], {"second_scale": 250}),
    (["--calibration", "sigmoid", "--head", "linear"], {"calibration": "sigmoid", "head": "linear"}),
    (["--image-size", "320", "--pool-blocks", "3+4+5", "--no-crop"],
     {"image_size": 320, "pool_blocks": "3+4+5", "crop": False}),
])
def test_typed_recipe_flags_reach_the_cv_settings(monkeypatch, tmp_path, flags, expected):
    seen = {}
    monkeypatch.setattr("skin_cnn.app.cv_run.run_cv",
                        lambda source, out, n_folds, settings, **kwargs: seen.update(settings))
    source = tmp_path / "manifest.csv"
    source.write_text("image_path,diagnosis\n")
    result = CliRunner().invoke(cli, ["cv", str(source), "-o", str(tmp_path / "cv"), *flags])
    assert result.exit_code == 0, result.output
    assert {k: seen.get(k) for k in expected} == expected
    assert "folds" not in seen and "n_bootstrap" not in seen  # folding options are not settings


def test_typed_second_scale_reaches_the_train_config(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("skin_cnn.app.train_run.train", lambda config, **kwargs: seen.update(config=config))
    split = tmp_path / "split.csv"
    split.write_text("image_path,diagnosis,split\n")
    result = CliRunner().invoke(cli, ["train", str(split), "-o", str(tmp_path / "run"), "--head", "linear",
                                      "--second-scale", "200", "--calibration", "sigmoid"])
    assert result.exit_code == 0, result.output
    assert (seen["config"].second_scale, seen["config"].calibration) == (200, "sigmoid")
