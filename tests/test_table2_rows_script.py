"""docs/experiments/table2_rows.py: the Table 2/3 page's rows printed from the runs' output files."""
import json

import pytest

from experiment_scripts import load_experiment_script
from skin_cnn.core.tasks import TASK_NAMES


def _script():
    return load_experiment_script("table2_rows.py")


def _run(root, name, auc, sens, spec, ece):
    """A cross-validation folder with the two files the script reads, every task alike."""
    (root / name / "eval_oof").mkdir(parents=True)
    tasks = {t: {"auc": {"value": auc, "ci": [auc - 0.05, auc + 0.04]}} for t in TASK_NAMES}
    (root / name / "eval_oof" / "metrics.json").write_text(json.dumps({"tasks": tasks}))
    point = {"at_stored": {"sensitivity": [sens, 0, 1], "specificity": [spec, 0, 1]},
             "ece": ece, "ece_sigmoid": ece / 2}
    where = {w: {t: point for t in TASK_NAMES} for w in ("pooled", "DermNet NZ")}
    (root / f"operating_points_{name}.json").write_text(json.dumps(where))
    return root / name


def test_rows_carry_each_file_value_rounded_with_signed_differences(tmp_path, capsys):
    ref = _run(tmp_path, "p", 0.7641, 0.5925, 0.7921, 0.1349)
    other = _run(tmp_path, "ps", 0.8, 0.6, 0.8136, 0.0982)
    difference = {"difference": -0.0224, "ci": [-0.0491, 0.0052]}
    comparison = {t: {"difference_pooled": difference, "difference_DermNet NZ": difference} for t in TASK_NAMES}
    (tmp_path / "ps_vs_p.json").write_text(json.dumps(comparison))

    _script().main(["--reference", str(ref), "--runs", str(other), "--names", "VGG-16P", "VGG-16PS",
                    "--comparisons", str(tmp_path / "ps_vs_p.json"), "--size", "250"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| model, 250² | psoriasis vs eczema | acne vs rosacea | CTCL vs eczema |"
    assert lines[2] == "| VGG-16P: AUC | " + " | ".join(["0.764 (0.714–0.804)"] * 3) + " |"
    assert lines[4] == "| PS − P, pooled | " + " | ".join(["−0.022 (−0.049 to +0.005)"] * 3) + " |"
    assert lines[5].startswith("| PS − P, DermNet NZ | −0.022")
    assert lines[6] == ("| VGG-16P: sensitivity / specificity; DermNet NZ | "
                        + " | ".join(["59.2 / 79.2; 59.2 / 79.2"] * 3) + " |")
    assert lines[9] == ("| VGG-16PS: ECE (Platt-scaled on out-of-fold scores) | "
                        + " | ".join(["0.098 (0.049)"] * 3) + " |")
    assert len(lines) == 10


@pytest.mark.parametrize("names, comparisons", [(["P"], ["c.json"]), (["P", "PS"], [])])
def test_a_name_or_comparison_missing_is_refused_before_any_file_is_read(names, comparisons, capsys):
    with pytest.raises(SystemExit):
        _script().main(["--reference", "a", "--runs", "b", "--names", *names, "--comparisons", *comparisons,
                        "--size", "250"])
    assert "one name per run" in capsys.readouterr().err
