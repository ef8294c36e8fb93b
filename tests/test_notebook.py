"""The quick-start notebook runs end to end and leaves a complete, consistent run behind.

The notebook is executed for real in a fresh Jupyter kernel (nbclient, as ``pytest --nbmake``
does); any cell error fails the test. Its outputs are then checked against expectations worked
out by hand from the demo set's size (3 patients per disease, 2 images each) and from the
definitions of the tasks, not against the package's own code.
"""
import json
import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

#: The notebook runs in a separate Jupyter kernel: minutes on a CPU.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "quickstart.ipynb"

PATIENTS_PER_DISEASE = 3
IMAGES_PER_PATIENT = 2
DISEASES = ("acne", "rosacea", "psoriasis", "eczema", "ctcl")
# task -> (positive, negative), as the study defines them
TASKS = {
    "psoriasis_vs_eczema": ("psoriasis", "eczema"),
    "acne_vs_rosacea": ("acne", "rosacea"),
    "ctcl_vs_eczema": ("ctcl", "eczema"),
}


def test_committed_notebook_has_no_outputs_and_a_python3_kernel():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [], f"stored outputs in cell:\n{cell.source[:200]}"
        assert cell.execution_count is None


def test_notebook_says_its_data_is_synthetic():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert "synthetic" in first.source.lower()
    assert "not a medical device" in first.source.lower()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run the notebook once in a fresh kernel; return (executed notebook, working folder)."""
    tmp = tmp_path_factory.mktemp("quickstart")
    work = tmp / "work"
    env = {
        "SKIN_CNN_QUICKSTART_DIR": str(work),
        "KERAS_HOME": str(tmp / "keras"),
        "MPLCONFIGDIR": str(tmp / "mpl"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp)}})
        client.execute()  # raises CellExecutionError naming the failing cell
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb, work


def test_every_cell_runs_without_error(executed):
    nb, _ = executed
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None
        assert not [o for o in cell.outputs if o.output_type == "error"]


def test_demo_manifest_has_every_patient_and_is_labelled_synthetic(executed):
    _, work = executed
    manifest = pd.read_csv(work / "data" / "manifest.csv")
    assert len(manifest) == len(DISEASES) * PATIENTS_PER_DISEASE * IMAGES_PER_PATIENT
    assert manifest.groupby("diagnosis")["patient_id"].nunique().to_dict() == {
        d: PATIENTS_PER_DISEASE for d in DISEASES
    }
    assert (manifest.groupby("patient_id").size() == IMAGES_PER_PATIENT).all()
    assert manifest["synthetic"].astype(str).str.lower().eq("true").all()
    assert "SYNTHETIC" in (work / "data" / "README.txt").read_text()


def test_split_keeps_patients_together_with_one_patient_per_disease_and_split(executed):
    _, work = executed
    split = pd.read_csv(work / "data" / "split.csv")
    assert (split.groupby("patient_id")["split"].nunique() == 1).all()
    # 3 patients of each disease over three non-empty splits: one patient each
    patients = split.groupby(["diagnosis", "split"])["patient_id"].nunique()
    assert len(patients) == len(DISEASES) * 3
    assert (patients == 1).all()


def test_test_predictions_cover_each_test_image_once_per_task(executed):
    _, work = executed
    run = work / "runs" / "quickstart"
    split = pd.read_csv(run / "split.csv")
    test = split[split["split"] == "test"]
    preds = pd.read_csv(run / "eval_test" / "predictions_test.csv")
    for task, (positive, negative) in TASKS.items():
        part = preds[preds["task"] == task]
        members = test[test["diagnosis"].isin([positive, negative])]
        assert sorted(map(os.path.basename, part["image_path"])) == sorted(
            map(os.path.basename, members["image_path"])
        )
        truth = dict(zip(map(os.path.basename, members["image_path"]),
                         (members["diagnosis"] == positive).astype(int)))
        assert [truth[os.path.basename(p)] for p in part["image_path"]] == part["y_true"].tolist()
        assert part["y_prob"].between(0, 1).all()
    # eczema belongs to two tasks, every other disease to one
    assert len(preds) == len(test) + int((test["diagnosis"] == "eczema").sum())


def test_metrics_agree_with_counts_recomputed_from_the_predictions(executed):
    _, work = executed
    eval_dir = work / "runs" / "quickstart" / "eval_test"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    preds = pd.read_csv(eval_dir / "predictions_test.csv")
    assert set(metrics["tasks"]) == set(TASKS)
    for task, entry in metrics["tasks"].items():
        part = preds[preds["task"] == task]
        y, called = part["y_true"].to_numpy(), part["y_prob"].to_numpy() >= 0.5
        tp, fn = int((called & (y == 1)).sum()), int((~called & (y == 1)).sum())
        tn, fp = int((~called & (y == 0)).sum()), int((called & (y == 0)).sum())
        assert (entry["tp"], entry["fn"], entry["tn"], entry["fp"]) == (tp, fn, tn, fp)
        assert entry["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
        assert entry["specificity"]["value"] == pytest.approx(tn / (tn + fp))
        assert entry["accuracy"]["value"] == pytest.approx((tp + tn) / len(part))
        # AUC as the probability that a positive image outranks a negative one (ties count half)
        pos, neg = part["y_prob"][y == 1].to_numpy(), part["y_prob"][y == 0].to_numpy()
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert entry["auc"]["value"] == pytest.approx(wins / (len(pos) * len(neg)))
        for name in ("sensitivity", "specificity", "accuracy"):
            low, high = entry[name]["ci"]
            assert 0 <= low <= entry[name]["value"] <= high <= 1


def test_run_folder_has_a_model_card_and_the_notebook_draws_its_figures(executed):
    nb, work = executed
    run = work / "runs" / "quickstart"
    card = (run / "model_card.md").read_text()
    for heading in ("## Intended use", "## Data", "## Metrics", "## Limitations"):
        assert heading in card
    assert "Fitzpatrick" in card
    assert (run / "eval_test" / "report.html").is_file()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the example images and the ROC curves


def test_parameter_counts_shown_match_a_frozen_vgg16_trunk(executed):
    nb, _ = executed
    # VGG-16's 13 conv layers: sum of (3*3*c_in + 1) * c_out, independent of the input size
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    trunk = sum((9 * a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    shown = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                      for c in nb.cells if c.cell_type == "code" and "parameter_counts" in c.source
                      for o in c.outputs)
    numbers = {line.split()[0]: int(line.split()[-1]) for line in shown.splitlines()
               if line.split() and line.split()[0] in ("trainable", "non_trainable", "total")}
    assert numbers["non_trainable"] == trunk
    assert numbers["total"] == numbers["trainable"] + numbers["non_trainable"]
    # heads: Dense 64 on the 512 pooled features, then per task Dense 32 and Dense 1
    assert numbers["trainable"] == 512 * 64 + 64 + 3 * (64 * 32 + 32 + 32 + 1)


# ---------------------------------------------------------------------------------------------
# docs/cli.md shows the commands' real --help texts

CLI_PAGE = ROOT / "docs" / "cli.md"
HELP_BLOCK = re.compile(r"```text\n\$ skin-cnn(?P<args>[^\n]*) --help\n(?P<text>.*?)\n```", re.S)


def test_cli_page_shows_every_command_with_its_current_help_text():
    from click.testing import CliRunner

    from skin_cnn.cli import COMMANDS, cli

    blocks = {m["args"].strip(): m["text"] for m in HELP_BLOCK.finditer(CLI_PAGE.read_text(encoding="utf-8"))}
    shown_commands = {args.split()[0] for args in blocks if args}
    assert shown_commands == set(COMMANDS), "docs/cli.md must show every command of the CLI"
    runner = CliRunner()
    for args, text in blocks.items():
        # COLUMNS=100 gives click a help width of 100 - 2 columns
        result = runner.invoke(cli, [*args.split(), "--help"], prog_name="skin-cnn", terminal_width=98)
        assert result.exit_code == 0, result.output
        assert result.output.rstrip("\n") == text, (
            f"docs/cli.md: the `skin-cnn {args} --help` block is out of date; regenerate the "
            f"blocks with the snippet at the top of docs/cli.md"
        )
