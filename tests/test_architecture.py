"""The package's architecture: import contracts checked with import-linter on every module, and a
command line whose help texts load no TensorFlow.

The contracts live in ``setup.cfg`` (``[importlinter]``): the stage layers (each imports only the
stages below it, and every module belongs to a stage), no import cycles between the modules of any
package, a model layer that loads no image reader, and an evaluation that imports no TensorFlow.
Each is shown to fail on a copy of the package with one bad import added, so a passing check means
something.
"""
import configparser
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import skin_cnn

PACKAGE_DIR = Path(skin_cnn.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
CONFIG = ROOT / "setup.cfg"

#: Libraries that ``skin-cnn --help`` must not load (each takes from a fraction of a second to
#: several seconds to import).
HEAVY = ("tensorflow", "keras", "matplotlib", "sklearn", "pandas", "scipy")

LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))")


def contract_names(config=CONFIG):
    """The names of the contracts in an import-linter configuration."""
    parser = configparser.ConfigParser()
    parser.read(config, encoding="utf-8")
    return [parser[s]["name"] for s in parser.sections() if s.startswith("importlinter:contract:")]


def lint_imports(root):
    """Run import-linter on the ``skin_cnn`` package found under ``root`` (its ``setup.cfg``)."""
    pytest.importorskip("importlinter")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package and its ``setup.cfg`` to break on purpose."""
    shutil.copytree(PACKAGE_DIR, tmp_path / "skin_cnn", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(CONFIG, tmp_path / "setup.cfg")
    return tmp_path


def add_function(path, body):
    """Append a function whose body is ``body`` to a module (an import inside a function counts)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n\ndef _added():\n" + textwrap.indent(textwrap.dedent(body), "    "))


def broken(result):
    """The names of the contracts a lint-imports run reports broken."""
    # a contract with ignored imports reads "NAME BROKEN (3 ignored imports)"
    found = (re.fullmatch(r"(.+) BROKEN( \(\d+ ignored imports?\))?", line) for line in result.stdout.splitlines())
    return [m.group(1) for m in found if m]


# ---------------------------------------------------------------------------------------------
# the package


def test_the_package_keeps_every_import_contract():
    names = contract_names()
    assert len(names) >= 4, names
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout, result.stdout


def test_every_stage_of_the_package_is_a_layer():
    """The layers contract is exhaustive: it names every subpackage, and the package root holds
    no module besides ``__init__`` and ``__main__``."""
    parser = configparser.ConfigParser()
    parser.read(CONFIG, encoding="utf-8")
    layers = parser["importlinter:contract:layers"]
    named = {n.strip() for line in layers["layers"].split("\n") for n in line.split("|") if n.strip()}
    stages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert named == stages
    assert layers.getboolean("exhaustive")
    assert sorted(p.name for p in PACKAGE_DIR.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_the_architecture_page_shows_the_layers_of_the_contract():
    parser = configparser.ConfigParser()
    parser.read(CONFIG, encoding="utf-8")
    contract = [line.strip() for line in parser["importlinter:contract:layers"]["layers"].strip().split("\n")]
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("## Import direction", 1)[1]
    block = next(b for b in section.split("\n\n") if b.strip() and all(x.startswith("    ") for x in b.split("\n")))
    listed = [line.strip() for line in block.split("\n")]
    assert listed == contract
    for stage in (n.strip() for line in contract for n in line.split("|")):
        assert f'    {stage}["{stage} — ' in page, stage  # a box in the picture


# ---------------------------------------------------------------------------------------------
# each contract fails when broken


def test_an_upward_import_inside_a_function_breaks_the_layers(package_copy):
    add_function(package_copy / "skin_cnn" / "core" / "tasks.py", "from skin_cnn.training import config\n")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    # training imports core, so the same import also closes a cycle between the two stages
    assert broken(result)[:2] == ["Each stage imports only the stages below it",
                                  "No import cycles between the modules of a package, at any depth"], result.stdout
    assert "skin_cnn.core.tasks -> skin_cnn.training.config" in result.stdout


def test_two_independent_stages_may_not_import_each_other(package_copy):
    add_function(package_copy / "skin_cnn" / "evaluation" / "metrics.py", "from skin_cnn.models import info\n")
    result = lint_imports(package_copy)
    assert broken(result) == ["Each stage imports only the stages below it"], result.stdout
    assert "skin_cnn.evaluation.metrics -> skin_cnn.models.info" in result.stdout


def test_a_module_at_the_package_root_breaks_the_layers(package_copy):
    (package_copy / "skin_cnn" / "loose.py").write_text("VALUE = 1\n", encoding="utf-8")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "skin_cnn.loose" in result.stdout + result.stderr


def test_an_import_cycle_inside_a_package_breaks_the_cycle_contract(package_copy):
    # cells is imported by report; report imported back from cells closes a cycle in one stage,
    # which no layer rule sees.
    cells = package_copy / "skin_cnn" / "reporting" / "cells.py"
    add_function(cells, "from skin_cnn.reporting.report import Report\n")
    result = lint_imports(package_copy)
    assert broken(result) == ["No import cycles between the modules of a package, at any depth"], result.stdout
    assert ".cells -> .report" in result.stdout


def test_a_model_module_reading_images_breaks_its_contract(package_copy):
    add_function(package_copy / "skin_cnn" / "models" / "heads.py", "from PIL import Image\n")
    result = lint_imports(package_copy)
    assert broken(result) == ["Loading a model loads no image reader, crop or plotting library"], result.stdout


def test_evaluation_importing_keras_breaks_its_contract(package_copy):
    add_function(package_copy / "skin_cnn" / "evaluation" / "metrics.py", "import keras\n")
    result = lint_imports(package_copy)
    assert broken(result) == ["Evaluation works on predictions tables and imports neither TensorFlow nor Keras"], \
        result.stdout


def test_evaluation_writing_a_report_breaks_the_layers(package_copy):
    add_function(package_copy / "skin_cnn" / "evaluation" / "metrics.py", "from skin_cnn.reporting import report\n")
    result = lint_imports(package_copy)
    assert broken(result)[:1] == ["Each stage imports only the stages below it"], result.stdout
    assert "skin_cnn.evaluation.metrics -> skin_cnn.reporting.report" in result.stdout


def test_statistics_reading_a_table_breaks_their_contract(package_copy):
    add_function(package_copy / "skin_cnn" / "stats" / "intervals.py", "import pandas\n")
    result = lint_imports(package_copy)
    assert broken(result) == ["Statistics work on arrays: stats imports no pandas, evaluation or reporting"], \
        result.stdout


def test_a_listed_exception_to_the_layers_that_matches_no_import_fails(package_copy):
    """Each ``ignore_imports`` entry of the layers contract must name an import that exists, so
    the entry goes when the import does."""
    config = package_copy / "setup.cfg"
    parser = configparser.ConfigParser()
    parser.read(config, encoding="utf-8")
    layers = parser["importlinter:contract:layers"]
    layers["ignore_imports"] = layers.get("ignore_imports", "") + "\nskin_cnn.core.tasks -> skin_cnn.cli"
    with open(config, "w", encoding="utf-8") as handle:
        parser.write(handle)
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "No matches for ignored import skin_cnn.core.tasks -> skin_cnn.cli" in " ".join(
        (result.stdout + result.stderr).split()), result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# the command line


def test_help_texts_load_no_tensorflow():
    """``skin-cnn --help`` loads no heavy library; no command's ``--help`` loads TensorFlow or Keras."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from skin_cnn.cli import COMMANDS, main

        def loaded(args):
            try:
                main(args)
            except SystemExit:
                pass
            return sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))

        report = {{"--help": loaded(["--help"])}}
        for name in COMMANDS:
            report[name] = loaded([name, "--help"])
        print(json.dumps(report))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report.pop("--help") == []
    assert report and all(not {"tensorflow", "keras"} & set(libs) for libs in report.values()), report
