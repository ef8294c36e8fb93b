"""Progress: bars on a terminal, whole lines (no carriage returns) in a log file."""

import io
import re
import sys
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.core.progress import LineProgress, progress_bar

PACKAGE = Path(__file__).resolve().parents[1] / "skin_cnn"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_plain_lines_and_a_terminal_gets_a_bar():
    log = io.StringIO()
    assert isinstance(progress_bar(range(3), file=log), LineProgress)
    assert not isinstance(progress_bar(range(3), file=Terminal()), LineProgress)


def test_lines_count_the_work_and_never_carry_a_carriage_return():
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="hue crop", unit="img", file=log, interval=0):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [re.sub(r" \(.*", "", line) for line in lines] == [f"hue crop: {k}/5 img" for k in (1, 2, 3, 4, 5, 5)]


def test_a_task_with_nothing_done_or_a_short_transient_one_writes_nothing():
    log = io.StringIO()
    with progress_bar(total=8, desc="bootstrap", file=log):
        pass
    bar = progress_bar(total=8, desc="bootstrap", file=log, leave=False)
    bar.update(8)
    bar.close()
    assert log.getvalue() == ""


def test_only_the_progress_module_uses_tqdm():
    users = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "tqdm" in p.read_text()]
    assert users == ["core/progress.py"]


def test_a_command_whose_output_is_not_a_terminal_writes_no_carriage_return(tmp_path):
    from skin_cnn.data.demo_data import generate_demo_dataset

    manifest = generate_demo_dataset(tmp_path / "data", n_patients_per_disease=2, images_per_patient=(1, 1),
                                     image_size=(48, 48), progress=False)
    result = CliRunner().invoke(cli, ["crop", str(manifest), "-o", str(tmp_path / "crops"), "--sample", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "crop boxes: 10/10 img" in result.output
    assert len(pd.read_csv(tmp_path / "crops" / "manifest.csv")) == 10


def test_an_imported_ipykernel_without_a_running_kernel_is_not_a_notebook(monkeypatch):
    import types

    from skin_cnn.core import progress

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress.interactive(io.StringIO())

    class ZMQInteractiveShell:
        pass

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    assert progress.interactive(io.StringIO())
