"""Package attributes imported on first use (skin_cnn.core.lazy_exports)."""
import subprocess
import sys
import types

import pytest

from skin_cnn.core.lazy_exports import lazy_exports


@pytest.fixture
def package(monkeypatch):
    """A throwaway package exporting ``sqrt`` from ``math`` and pointing ``old`` to ``elsewhere``."""
    module = types.ModuleType("lazy_demo")
    monkeypatch.setitem(sys.modules, "lazy_demo", module)
    module.__getattr__, module.__dir__ = lazy_exports("lazy_demo", {"sqrt": "math"}, moved={"old": "elsewhere"})
    return module


def test_an_export_is_the_modules_own_object_and_is_stored_after_the_first_access(package):
    import math

    assert "sqrt" not in vars(package)
    assert package.sqrt is math.sqrt
    assert vars(package)["sqrt"] is math.sqrt  # the next access does not go through __getattr__


def test_a_moved_name_says_where_it_went_and_an_unknown_one_is_an_attribute_error(package):
    with pytest.raises(ImportError, match=r"lazy_demo.old is now elsewhere.old \(from elsewhere import old\)"):
        package.old
    with pytest.raises(AttributeError, match="module 'lazy_demo' has no attribute 'nothing'"):
        package.nothing
    assert not hasattr(package, "nothing")


def test_dir_lists_the_exports_before_they_are_imported(package):
    assert "sqrt" in dir(package) and "old" not in dir(package)


@pytest.mark.parametrize("name", ["skin_cnn", "skin_cnn.evaluation", "skin_cnn.reporting"])
def test_every_public_name_of_a_stage_resolves(name):
    import importlib

    stage = importlib.import_module(name)
    public = getattr(stage, "__all__", None) or list(stage.EXPORTS)
    for attribute in public:
        assert getattr(stage, attribute) is not None, attribute
        assert attribute in dir(stage)


def test_importing_the_package_and_the_evaluation_stage_loads_no_tensorflow():
    code = ("import sys, skin_cnn, skin_cnn.evaluation, skin_cnn.reporting; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
