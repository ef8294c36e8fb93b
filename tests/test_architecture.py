"""Import direction between the package's layers, checked on the source of every module, and a
command line whose help texts load no TensorFlow."""
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import skin_cnn

PACKAGE_DIR = Path(skin_cnn.__file__).resolve().parent

#: layer -> packages no module of that layer may import (at module level or inside a function).
FORBIDDEN = {
    "skin_cnn.data": ("skin_cnn.training", "skin_cnn.evaluation", "skin_cnn.cleanse"),
    "skin_cnn.evaluation": ("skin_cnn.training", "skin_cnn.models", "skin_cnn.inference"),
}

#: Libraries that ``skin-cnn --help`` must not load (each takes from a fraction of a second to
#: several seconds to import).
HEAVY = ("tensorflow", "keras", "matplotlib", "sklearn", "pandas", "scipy")


def within(name, package):
    """Whether the dotted module ``name`` is ``package`` or lies below it."""
    return name == package or name.startswith(package + ".")


def module_name(path, root=PACKAGE_DIR):
    """``skin_cnn/data/crop.py`` -> ``skin_cnn.data.crop``; a package's ``__init__.py`` -> the package."""
    parts = list(Path(path).resolve().relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source, module, is_package=False):
    """Every ``(line, module)`` a source imports, wherever the import statement stands.

    ``from a.b import c`` counts as importing ``a.b`` and ``a.b.c`` (``c`` may be a submodule);
    relative imports are resolved against ``module``; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(source, module, is_package=False):
    """``(line, forbidden package)`` for each import that breaks :data:`FORBIDDEN`."""
    rules = [banned for layer, banned in FORBIDDEN.items() if within(module, layer)]
    return sorted(
        {
            (line, package)
            for line, name in imported_names(source, module, is_package)
            for banned in rules
            for package in banned
            if within(name, package)
        }
    )


def package_modules():
    return sorted(PACKAGE_DIR.rglob("*.py"))


# ---------------------------------------------------------------------------------------------
# the checker itself


def test_checker_finds_forbidden_imports_at_module_and_function_level():
    source = textwrap.dedent(
        """
        import os
        import skin_cnn.training.trainer
        from skin_cnn.data.reading import read_image
        from skin_cnn import evaluation


        def later():
            from skin_cnn.evaluation.metrics import auc_estimate
            from ..cleanse import apply
            import importlib
            return importlib.import_module("skin_cnn.training")


        class Lazy:
            def method(self):
                from . import crop, pipeline
                from .. import inference
        """
    )
    found = violations(source, "skin_cnn.data.example")
    assert found == [
        (3, "skin_cnn.training"),
        (5, "skin_cnn.evaluation"),
        (9, "skin_cnn.evaluation"),
        (10, "skin_cnn.cleanse"),
        (12, "skin_cnn.training"),
    ]
    # The same source is allowed above the data layer, and ``inference`` is only banned for evaluation.
    assert violations(source, "skin_cnn.cleanse.example") == []
    assert (18, "skin_cnn.inference") in violations(source, "skin_cnn.evaluation.example")


def test_checker_resolves_relative_imports_and_package_boundaries():
    assert violations("from ..models import build_model", "skin_cnn.evaluation.report") == [
        (1, "skin_cnn.models")
    ]
    # In a package's __init__.py one dot is the package itself.
    assert violations("from .metrics import auc_estimate", "skin_cnn.evaluation", is_package=True) == []
    assert violations("from ..inference import predictor", "skin_cnn.evaluation.plots") == [
        (1, "skin_cnn.inference")
    ]
    # A name that only starts like a banned package is not inside it.
    assert violations("import skin_cnn.models_notes", "skin_cnn.evaluation.report") == []
    assert violations("from skin_cnn import models_notes", "skin_cnn.evaluation.report") == []


def test_module_names_follow_the_file_layout():
    assert module_name(PACKAGE_DIR / "data" / "crop.py") == "skin_cnn.data.crop"
    assert module_name(PACKAGE_DIR / "evaluation" / "__init__.py") == "skin_cnn.evaluation"


# ---------------------------------------------------------------------------------------------
# the package


def test_every_layer_imports_only_downwards():
    modules = package_modules()
    names = {module_name(path) for path in modules}
    for layer in FORBIDDEN:  # the rules look at real modules, not at an empty or moved tree
        assert layer in names and sum(within(n, layer) for n in names) > 1, layer
    problems = []
    for path in modules:
        name = module_name(path)
        for line, package in violations(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            layer = next(layer for layer in FORBIDDEN if within(name, layer))
            problems.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line}: {layer} must not import {package}")
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


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
