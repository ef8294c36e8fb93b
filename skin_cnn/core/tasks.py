"""The five disease categories, the three binary tasks, and ICD-10 code mapping.

Every other module asks this one which tasks a disease belongs to and what its label is there,
so the study's task definitions live in exactly one place.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Iterable

DISEASES = ("acne", "rosacea", "psoriasis", "eczema", "ctcl")


@dataclass(frozen=True)
class Task:
    """A binary task: the positive class is the disease the task is named after first."""

    name: str
    positive: str
    negative: str

    @property
    def short(self) -> str:
        """A compact name for narrow places (progress lines, figure titles): ``psor/ecz``."""
        return f"{self.positive[:4]}/{self.negative[:3]}"

    def label(self, diagnosis: str) -> int | None:
        """1 for the positive class, 0 for the negative, None when the disease is not in the task."""
        if diagnosis == self.positive:
            return 1
        if diagnosis == self.negative:
            return 0
        return None


TASKS = {
    t.name: t
    for t in (
        Task("psoriasis_vs_eczema", "psoriasis", "eczema"),
        Task("acne_vs_rosacea", "acne", "rosacea"),
        Task("ctcl_vs_eczema", "ctcl", "eczema"),
    )
}
TASK_NAMES = tuple(TASKS)

#: The study's operating points (its Table 2, VGG-16P on its test photos): sensitivity and
#: specificity of each task, as printed there (81.79% / 73.57%, …). ``--threshold study`` aims the
#: cut-off to beat them on both figures.
STUDY_OPERATING_POINTS: dict[str, tuple[float, float]] = {
    "psoriasis_vs_eczema": (0.8179, 0.7357),
    "acne_vs_rosacea": (0.8542, 0.8953),
    "ctcl_vs_eczema": (0.7429, 0.8409),
}


def task_title(task: str) -> str:
    """How figures and reports name a task: ``"Acne vs rosacea"``, ``"CTCL vs eczema"``."""
    t = TASKS[task]
    return (
        f"{t.positive.upper() if t.positive == 'ctcl' else t.positive.capitalize()} vs "
        f"{t.negative.upper() if t.negative == 'ctcl' else t.negative}"
    )


def tasks_for_disease(diagnosis: str) -> tuple[str, ...]:
    """Names of the tasks an image of ``diagnosis`` contributes to (eczema: two, others: one)."""
    if diagnosis not in DISEASES:
        raise ValueError(f"unknown diagnosis {diagnosis!r}; expected one of {', '.join(DISEASES)}")
    return tuple(name for name, task in TASKS.items() if task.label(diagnosis) is not None)


def task_targets(diagnoses: Iterable[str]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-task labels and masks for a sequence of diagnoses.

    Returns
    -------
    labels, masks : dict of str -> list of float
        ``labels[task][i]`` is 1.0 for the task's positive class and 0.0 otherwise;
        ``masks[task][i]`` is 1.0 when image ``i`` belongs to the task, else 0.0, so the image
        adds nothing to that task's loss.
    """
    labels: dict[str, list[float]] = {name: [] for name in TASK_NAMES}
    masks: dict[str, list[float]] = {name: [] for name in TASK_NAMES}
    for diagnosis in diagnoses:
        for name, task in TASKS.items():
            y = task.label(diagnosis)
            labels[name].append(float(y or 0))
            masks[name].append(0.0 if y is None else 1.0)
    return labels, masks


def resolve_task(name: str | None) -> tuple[str, ...]:
    """Accept a task name, or ``all``; return a tuple of task names."""
    if name in (None, "all"):
        return TASK_NAMES
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)} or 'all'")
    return (name,)


# ---------------------------------------------------------------------------------------------
# ICD-10

def default_icd10_map_path() -> Path:
    """Path of the ICD-10 → category table shipped with skin-cnn (installed or in a checkout)."""
    try:
        shipped = files("skin_cnn.data_manifests") / "icd10_categories.csv"
        if shipped.is_file():
            return Path(str(shipped))
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "data_manifests" / "icd10_categories.csv"


def normalize_icd10(code: object) -> str:
    """Upper-case, drop spaces, and drop a trailing dot: ``' l70.0 '`` → ``'L70.0'``."""
    return re.sub(r"\s+", "", str(code)).upper().rstrip(".")


@dataclass(frozen=True)
class ICD10Map:
    """ICD-10 codes and prefixes mapped to disease categories.

    Rows whose ``code`` ends in ``*`` match every code starting with the part before it
    (``L70*`` matches ``L70``, ``L70.0``, ``L708``); other rows match the exact code, with or
    without the dot (``C84.0`` matches ``C840``). The longest matching entry wins, so a table can
    map a family by prefix and override single codes.
    """

    exact: dict
    prefixes: tuple  # (prefix, category) sorted longest first
    source: str = ""

    def lookup(self, code: object) -> str | None:
        """The category of ``code``, or None when the table has no entry for it."""
        if code is None or (isinstance(code, float) and code != code):
            return None
        norm = normalize_icd10(code)
        if not norm:
            return None
        nodot = norm.replace(".", "")
        for key in (norm, nodot):
            if key in self.exact:
                return self.exact[key]
        for prefix, category in self.prefixes:
            if nodot.startswith(prefix):
                return category
        return None


def load_icd10_map(path: str | os.PathLike[str] | None = None) -> ICD10Map:
    """Read a mapping CSV with columns ``code`` and ``category`` (others, e.g. ``label``, ignored).

    Parameters
    ----------
    path : str or Path, optional
        A user's own table; defaults to ``data_manifests/icd10_categories.csv``.
    """
    path = Path(path) if path is not None else default_icd10_map_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ICD-10 mapping file not found")
    exact, prefixes = {}, []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(row for row in fh if not row.lstrip().startswith("#"))
        missing = {"code", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: ICD-10 mapping needs columns code and category; missing {sorted(missing)}")
        for lineno, row in enumerate(reader, start=2):
            code = normalize_icd10(row["code"] or "")
            category = (row["category"] or "").strip().lower()
            if not code:
                continue
            if category not in DISEASES:
                raise ValueError(
                    f"{path}: row {lineno}: category {category!r} for code {code} is not one of {', '.join(DISEASES)}"
                )
            if code.endswith("*"):
                prefixes.append((code[:-1].replace(".", ""), category))
            else:
                exact[code] = category
                exact[code.replace(".", "")] = category
    prefixes.sort(key=lambda pc: -len(pc[0]))
    return ICD10Map(exact=exact, prefixes=tuple(prefixes), source=os.fspath(path))
