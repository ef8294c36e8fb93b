"""A command whose optional dependency is missing stops with one line naming what to install."""
import sys

import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli, missing_dependency_message


@pytest.mark.parametrize("module", ["uvicorn", "fastapi"])
def test_serve_without_the_serve_extra_says_which_extra_to_install(module, monkeypatch, tmp_path):
    # A None entry makes `import uvicorn` (or fastapi) raise ModuleNotFoundError, as on a machine
    # where the [serve] extra was never installed.
    monkeypatch.setitem(sys.modules, module, None)
    for loaded in [m for m in sys.modules if m.startswith("skin_cnn.serve")]:
        monkeypatch.delitem(sys.modules, loaded)
    result = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert module in lines[0] and '.[serve]' in lines[0]


def test_debug_shows_the_original_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["--debug", "serve", str(tmp_path)])
    assert isinstance(result.exception, ModuleNotFoundError)


@pytest.mark.parametrize(
    "module, extra",
    [("tensorboard", "tensorboard"), ("skimage.data", "photos"), ("playwright.sync_api", "browser"),
     ("python_multipart", "serve")],
)
def test_each_optional_module_names_its_extra(module, extra):
    message = missing_dependency_message(module)
    assert f"[{extra}]" in message and module.split(".")[0] in message and "\n" not in message


def test_an_unknown_module_names_the_module_to_install():
    assert missing_dependency_message("somepkg.sub").endswith("python -m pip install somepkg")
