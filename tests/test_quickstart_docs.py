"""docs/quickstart.md is run: the demo command on tiny settings, then every file the page says it
writes, and every demo path it names, must exist; every line the page says it prints is printed
(numbers aside); and the page sends readers to the test report only after the command that
writes it."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli

PAGE = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"


def written_tree(text):
    """Paths of the "What it writes" block, each relative to the folder above the tree."""
    block = text.split("## What it writes", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    stack, paths = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        level = (len(line) - len(line.lstrip())) // 2
        name = re.split(r"\s{2,}", line.strip())[0]
        if name.startswith("`"):  # a comment continued on the next line
            continue
        del stack[level:]
        for part in name.split(", "):
            paths.append("/".join([*stack, part]))
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    patch = pytest.MonkeyPatch()
    patch.delenv("SKIN_CNN_VGG16_WEIGHTS", raising=False)
    patch.chdir(root)
    try:
        # the page's command, `skin-cnn demo -o runs/demo`, at the smallest size
        result = CliRunner().invoke(cli, ["demo", "-o", "runs/demo", "--patients", "3", "--epochs", "1",
                                          "--image-size", "32", "--quiet"], catch_exceptions=False)
    finally:
        patch.undo()
    assert result.exit_code == 0, result.output
    (root / "output.txt").write_text(result.output)
    return root


def test_every_file_the_page_says_the_demo_writes_exists(demo):
    paths = written_tree(PAGE.read_text())
    assert "runs/demo/run/best.keras" in paths and "runs/demo/run/eval_test/report.html" in paths
    tasks = json.loads((demo / "runs/demo/run/eval_test/metrics.json").read_text())["tasks"]
    missing = []
    for path in paths:
        if "<disease>" in path:  # the drawn images: the folder holds them
            assert any((demo / path).parent.glob("demo-p*_*_*.jpg"))
            continue
        for name in ([path.replace("<task>", t) for t in tasks] if "<task>" in path else [path]):
            if not (demo / name).exists():
                missing.append(name)
    assert missing == []


def _without_numbers(line):
    """The line with every number (``149``, ``0.850``, ``64x64``'s two) as ``#``: the page's run and
    the test's tiny one differ in counts, sizes and AUCs, not in what they say."""
    return re.sub(r"\d+(\.\d+)?", "#", line.rstrip())


def _machine_neutral(line):
    """The precision line names what this CPU offers (float32 without bfloat16 instructions,
    bfloat16 with them); the page shows one machine's, so only its start must match."""
    return "precision:" if line.startswith("precision: ") else line


def test_every_line_the_page_says_the_demo_prints_is_printed_in_that_order(demo):
    block = PAGE.read_text().split("## What it prints", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    shown = [_machine_neutral(_without_numbers(line)) for line in block.strip("\n").splitlines()]
    assert len(shown) > 20 and any("report.html" in line for line in shown)
    printed = [_machine_neutral(_without_numbers(line)) for line in (demo / "output.txt").read_text().splitlines()]
    position, missing = 0, []
    for line in shown:
        if line.startswith("TensorBoard is not installed") and importlib.util.find_spec("tensorboard"):
            continue  # the page's install had no [tensorboard] extra; the test extra brings it
        try:  # each page line after the one before it
            position = printed.index(line, position) + 1
        except ValueError:
            missing.append(line)
    assert missing == []


def test_every_demo_path_named_in_the_prose_exists(demo):
    named = set(re.findall(r"runs/demo/[\w./-]+", PAGE.read_text()))
    named = {p.rstrip(".") for p in named if "<" not in p}
    assert "runs/demo/run/eval_test/report.html" in named
    assert [p for p in sorted(named) if not (demo / p).exists()] == []


def test_the_test_report_is_read_only_after_the_command_that_writes_it():
    own = PAGE.read_text().split("## Your own images", 1)[1]
    assert "skin-cnn evaluate" in own
    assert own.index("skin-cnn evaluate") < own.index("eval_test/report.html")
    assert "last.keras" not in PAGE.read_text()


def test_the_demo_model_warns_that_it_learnt_from_synthetic_images(demo):
    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING

    photo = next((demo / "runs/demo/data").rglob("*.jpg"))
    result = CliRunner().invoke(cli, ["predict", str(demo / "runs/demo/run"), str(photo), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"warning: {SYNTHETIC_MODEL_WARNING}" in result.output
