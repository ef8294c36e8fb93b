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
