"""The public API is typed: every function a notebook or a command calls has annotations, and mypy
finds the annotations consistent with the code (configuration: ``[mypy]`` in setup.cfg)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import skin_cnn

PACKAGE_DIR = Path(skin_cnn.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

#: module -> the public functions (and methods, ``Class.method``) that must be fully annotated:
#: what ``skin_cnn`` exports and the library functions the commands are thin layers over.
PUBLIC_API = {
    "skin_cnn": ["check_keras_backend", "register_keras_objects"],
    "skin_cnn.core.io": ["atomic_path", "write_text", "write_json", "write_csv", "sha256_file"],
    "skin_cnn.core.tasks": ["tasks_for_disease", "task_targets", "resolve_task", "load_icd10_map",
                            "ICD10Map.lookup"],
    "skin_cnn.core.predictions": ["predictions_frame", "read_predictions", "predicted_columns", "check_columns"],
    "skin_cnn.core.specs": ["resolve_crop_params", "Preprocessing.to_dict", "Preprocessing.from_dict",
                            "Preprocessing.describe"],
    "skin_cnn.core.progress": ["progress_bar"],
    "skin_cnn.models.saving": ["check_keras_archive", "load_keras_model", "store_thresholds"],
    "skin_cnn.app.demo": ["run_demo"],
    "skin_cnn.data.manifest": ["load_manifest", "validate_manifest", "write_manifest"],
    "skin_cnn.data.split": ["patient_split", "write_split", "load_split"],
    "skin_cnn.data.crop": ["compute_crop_boxes"],
    "skin_cnn.training": ["load_resume_config"],
    "skin_cnn.app.train_run": ["train"],
    "skin_cnn.app.cv_run": ["run_cv"],
    "skin_cnn.app.evaluate_run": ["evaluate_run"],
    "skin_cnn.training.config": ["resolve_config"],
    "skin_cnn.inference.predictor": ["load_predictor", "predict_frame"],
    "skin_cnn.inference.export": ["export_model"],
    "skin_cnn.reporting.comparison": ["write_comparison"],
}


def module_path(module):
    parts = module.split(".")[1:]
    path = PACKAGE_DIR.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def functions(tree):
    """``name`` or ``Class.name`` -> the function node, for top-level functions and methods."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            found.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)})
    return found


def unannotated(node):
    """The parameters of a function without an annotation, and ``return`` when it has none."""
    args = node.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, [args.vararg, args.kwarg])]
    missing = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
    return missing + ([] if node.returns is not None else ["return"])


def run_mypy(*files, cache_dir):
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"), "--cache-dir",
                           str(cache_dir), *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_every_public_function_is_annotated():
    problems = []
    for module, names in PUBLIC_API.items():
        found = functions(ast.parse(module_path(module).read_text(encoding="utf-8")))
        for name in names:
            assert name in found, f"{module}.{name} is gone: update PUBLIC_API"
            missing = unannotated(found[name])
            if missing:
                problems.append(f"{module}.{name}: {', '.join(missing)}")
    assert not problems, "unannotated:\n" + "\n".join(problems)


def test_the_annotation_check_sees_a_missing_annotation():
    tree = ast.parse("def f(a: int, b, *, c: str = '') -> int:\n    pass\n\ndef g(x: int):\n    pass\n")
    found = functions(tree)
    assert unannotated(found["f"]) == ["b"]
    assert unannotated(found["g"]) == ["return"]


def test_mypy_accepts_the_public_api(tmp_path):
    done = run_mypy(*sorted({module_path(m) for m in PUBLIC_API}), cache_dir=tmp_path / "cache")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout


def test_mypy_reports_a_call_against_the_annotations(tmp_path):
    wrong = tmp_path / "wrong_call.py"
    wrong.write_text("from skin_cnn.core.io import sha256_file\n\nsha256_file('a.csv', chunk='big')\n",
                     encoding="utf-8")
    done = run_mypy(wrong, cache_dir=tmp_path / "cache")
    assert done.returncode == 1
    assert 'Argument "chunk" to "sha256_file" has incompatible type "str"; expected "int"' in done.stdout
