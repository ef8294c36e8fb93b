"""What setup.cfg declares matches what the code and the tests import, and the docs cite what exists."""
import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _config():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def _requirements(text):
    return [Requirement(line) for line in text.strip().splitlines() if line.strip() and not line.startswith("#")]


def _core():
    return {r.name.lower(): r for r in _requirements(_config()["options"]["install_requires"])}


def _extras():
    section = _config()["options.extras_require"]
    return {name: _requirements(section[name]) for name in section}


def test_keras_lower_bound_has_the_loss_reduction_the_model_uses():
    # The masked multi-task loss reduces with "mean_with_sample_weight", added in Keras 3.7.
    keras_req = _core()["keras"]
    lowest = min(Version(s.version) for s in keras_req.specifier if s.operator in (">=", "=="))
    assert lowest >= Version("3.7")
    import keras

    keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")  # the installed one has it


def test_optional_features_are_extras_and_the_test_extra_reuses_them():
    core, extras = _core(), _extras()
    assert "tensorboard" not in core and "scikit-image" not in core
    assert {r.name for r in extras["tensorboard"]} == {"tensorboard"}
    assert {r.name for r in extras["photos"]} == {"scikit-image"}
    test = {r.name: r for r in extras["test"]}
    assert {"serve", "tensorboard", "photos"} <= test["skin-cnn"].extras
    served = {r.name for r in extras["serve"]}
    assert not served & set(test), "the test extra repeats the serve extra instead of reusing it"


def _top_level_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def _declared_distributions(*extras):
    names = {_normal(n) for n in _core()}
    all_extras = _extras()
    todo = list(extras)
    while todo:
        for req in all_extras[todo.pop()]:
            if req.name == "skin-cnn":
                todo.extend(req.extras)
            else:
                names.add(_normal(req.name))
    return names


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party(modules):
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    local |= {"skin_cnn", "conftest"}
    return {m for m in modules if m not in sys.stdlib_module_names and m not in local}


def test_every_module_the_tests_import_is_declared_by_the_test_extra():
    # e.g. nbclient and nbformat (tests/test_notebook.py) must not arrive only through nbmake.
    # Named exceptions: modules that belong to a declared package's own API surface.
    through = {"starlette": "fastapi", "threadpoolctl": "scikit-learn"}
    distributions = importlib.metadata.packages_distributions()
    declared = {_normal(d) for d in _declared_distributions("test", "browser")}
    reachable = declared | {_normal(m) for m, owner in through.items() if owner in declared}
    modules = _third_party(m for p in (ROOT / "tests").glob("*.py") for m in _top_level_imports(p))
    undeclared = {}
    for module in sorted(modules):
        owners = {_normal(d) for d in distributions.get(module, [module])}
        if not owners & reachable:
            undeclared[module] = sorted(owners)
    # packaging comes with pip/setuptools and pytest; it is not a runtime dependency
    undeclared.pop("packaging", None)
    assert undeclared == {}


#: Imported only when present: looked up with find_spec, read as a data folder, or imported
#: under ``try: ... except ImportError``.
OPTIONAL = {"tensorboard", "skimage", "ai_edge_litert"}


def test_every_module_the_package_imports_is_declared():
    # The web server may use the serve extra; everything else must come with a plain install.
    distributions = importlib.metadata.packages_distributions()
    through = {"starlette": "fastapi"}
    undeclared = {}
    for path in (ROOT / "skin_cnn").rglob("*.py"):
        extras = ("serve",) if "serve" in path.relative_to(ROOT).parts or path.stem == "serve_cmd" else ()
        declared = {_normal(d) for d in _declared_distributions(*extras)}
        declared |= {_normal(m) for m, owner in through.items() if owner in declared}
        for module in _third_party(_top_level_imports(path)):
            owners = {_normal(d) for d in distributions.get(module, [module])}
            if module not in OPTIONAL and not owners & declared:
                undeclared.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    assert undeclared == {}


def test_the_package_never_imports_optional_extras_at_module_level():
    # tensorboard is only looked up (find_spec) and scikit-image only read as a data folder.
    for path in (ROOT / "skin_cnn").rglob("*.py"):
        imported = set(_top_level_imports(path))
        assert not imported & {"tensorboard", "skimage"}, path


def test_nothing_cites_a_design_document_that_is_not_in_the_repository():
    assert not (ROOT / "DESIGN.md").exists()
    files = [p for folder in ("docs", "skin_cnn") for p in (ROOT / folder).rglob("*")
             if p.suffix in (".py", ".md", ".html", ".ipynb")]
    citing = [str(p.relative_to(ROOT)) for p in files if re.search(r"DESIGN(\.md)?\b", p.read_text("utf-8", "replace"))]
    assert citing == []


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_another_keras_backend_is_refused_with_one_clear_line(backend):
    import os
    import subprocess

    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", "import skin_cnn"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "needs the TensorFlow backend" in last and repr(backend) in last and "KERAS_BACKEND=tensorflow" in last


def _built_wheel(tmp_path):
    """Build skin-cnn's wheel offline from a copy of the files packaging reads; skip without setuptools."""
    import shutil
    import subprocess

    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("skin_cnn", "data_manifests"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.skip(f"no wheel could be built offline here: {done.stderr.strip()[-300:]}")
    (wheel,) = (tmp_path / "dist").glob("skin_cnn-*.whl")
    return wheel


def test_the_wheel_ships_every_package_data_file_and_the_installed_package_finds_them(tmp_path):
    # setup.py maps the top-level data_manifests/ folder to the package skin_cnn.data_manifests;
    # [options.package_data] must name packages the wheel has, and bring their files along.
    import fnmatch
    import os
    import subprocess
    import zipfile

    wheel = _built_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    folders = {"skin_cnn.data_manifests": ROOT / "data_manifests"}
    for package, patterns in _config()["options.package_data"].items():
        folder = folders.get(package, ROOT.joinpath(*package.split(".")))
        assert folder.is_dir(), f"package_data names {package}, which has no folder"
        prefix = package.replace(".", "/") + "/"
        for pattern in patterns.split():
            wanted = {prefix + p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern)}
            assert wanted, f"{package}: {pattern} matches no file"
            assert wanted <= set(names), sorted(wanted - set(names))
    # installed (the wheel unpacked as pip would), the package reads its own copy of the ICD-10 map
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import skin_cnn; from skin_cnn.core.tasks import default_icd10_map_path, load_icd10_map; "
            "print(skin_cnn.__file__); print(default_icd10_map_path()); print(load_icd10_map().lookup('L40.0'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    package_file, map_path, psoriasis = done.stdout.split()
    assert Path(package_file).is_relative_to(site) and Path(map_path).is_relative_to(site)
    assert Path(map_path).read_bytes() == (ROOT / "data_manifests" / "icd10_categories.csv").read_bytes()
    assert psoriasis == "psoriasis"  # L40: psoriasis in ICD-10
