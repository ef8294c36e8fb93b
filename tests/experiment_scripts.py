"""Import a script of ``docs/experiments`` as a module, so a test calls its functions and ``main``."""
import importlib.util
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "docs" / "experiments"


def load_experiment_script(relative):
    """The module of ``docs/experiments/<relative>`` (e.g. ``"table2_rows.py"``), freshly executed."""
    path = EXPERIMENTS / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
