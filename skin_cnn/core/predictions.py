"""The predictions table (docs/predict.md): one row per (image, task the image belongs to).

Training (validation predictions), ``skin-cnn evaluate`` and ``skin-cnn predict`` all write this
table through :func:`predictions_frame`, and evaluation reads it back with
:func:`read_predictions`, so the contract lives in one place.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from skin_cnn.core.io import PathLike
from skin_cnn.core.tasks import TASK_NAMES, TASKS

PREDICTION_COLUMNS = ("image_path", "patient_id", "task", "y_true", "y_prob")


def marks_synthetic(frame: pd.DataFrame) -> bool:
    """True when the table's ``synthetic`` column (the demo set's manifest, split and predictions
    carry it) marks any image synthetic: what is trained or evaluated on it must say so."""
    if "synthetic" not in frame.columns:
        return False
    return bool(frame["synthetic"].astype(str).str.strip().str.lower().isin(("true", "1", "yes")).any())


def predictions_frame(manifest: pd.DataFrame, probabilities: Mapping[str, Any],
                      tasks: Sequence[str] = TASK_NAMES) -> pd.DataFrame:
    """Long-format predictions for the images of ``manifest``.

    Parameters
    ----------
    manifest : pandas.DataFrame
        Rows in the same order as the probabilities, with ``image_path``, ``patient_id``,
        ``diagnosis`` and any extra columns (kept in the output).
    probabilities : dict of str -> array of shape (n,) or (n, 1)
        The model's probability of each task's positive class for every image.
    tasks : sequence of str
        Tasks to report; an image appears only under the tasks its diagnosis belongs to.
    """
    n = len(manifest)
    extra = predicted_columns(manifest.columns)[len(PREDICTION_COLUMNS):]
    frames = []
    for name in tasks:
        task = TASKS[name]
        prob = np.asarray(probabilities[name], dtype=float).reshape(-1)
        if prob.shape[0] != n:
            raise ValueError(f"task {name}: {prob.shape[0]} probabilities for {n} images")
        labels = manifest["diagnosis"].map(task.label)
        keep = labels.notna().to_numpy()
        part = pd.DataFrame(
            {
                "image_path": manifest["image_path"].to_numpy()[keep],
                "patient_id": manifest["patient_id"].fillna("").astype(str).to_numpy()[keep],
                "task": name,
                "y_true": labels[keep].astype(int).to_numpy(),
                "y_prob": prob[keep],
            }
        )
        for col in extra:
            part[col] = manifest[col].to_numpy()[keep]
        frames.append(part)
    if not frames:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS) + extra)
    return pd.concat(frames, ignore_index=True)


def predicted_columns(manifest_columns: Iterable[object]) -> list[str]:
    """The columns :func:`predictions_frame` gives the predictions of a manifest with these columns.

    Known before any model runs, so options naming a column (``--by``, ``--fairness``) can be
    checked against them at once.
    """
    extra = [str(c) for c in manifest_columns if c not in PREDICTION_COLUMNS + ("diagnosis",)]
    return [*PREDICTION_COLUMNS, *extra]


def check_columns(columns: Sequence[str], options: Mapping[str, Iterable[str]],
                  name: str = "the predictions") -> None:
    """Refuse an option naming a column that ``columns`` lacks, naming the ones that exist.

    Parameters
    ----------
    columns : sequence of str
        The columns available (e.g. :func:`predicted_columns` of a split, before predicting).
    options : dict of str -> sequence of str
        Option name -> the columns it names, e.g. ``{"--by": ("source",)}``.
    name : str
        What holds the columns, for the message.

    Raises
    ------
    ValueError
        One line: the option, the missing column, and the available columns.
    """
    available = [str(c) for c in columns]
    for option, wanted in options.items():
        for column in wanted:
            if column not in available:
                raise ValueError(
                    f"{option} {column}: no column {column!r} in {name} "
                    f"(columns: {', '.join(available)})"
                )


def check_unique_rows(frame: pd.DataFrame, name: PathLike) -> None:
    """Refuse a predictions table that lists one (image, task) pair more than once.

    A repeated row would count one image twice in every metric and interval.
    """
    dup = frame.duplicated(["image_path", "task"], keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        raise ValueError(
            f"{name}: {int(dup.sum())} rows repeat an (image, task) pair, e.g. "
            f"{first['image_path']} / {first['task']}; each image may appear once per task"
        )


def _read_csv(path: PathLike) -> pd.DataFrame:
    """The CSV as a frame; one ValueError naming the file when it is empty, binary or header-only."""
    path_text = str(path)
    try:
        if os.path.getsize(path) == 0:
            raise ValueError(f"{path_text}: empty file (0 bytes); expected a predictions CSV with the columns "
                             f"{', '.join(PREDICTION_COLUMNS)}")
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
                raise ValueError(f"{path_text}: not a text CSV file (byte {exc.start} is not UTF-8)") from None
        if b"\x00" in head:
            raise ValueError(f"{path_text}: not a text CSV file (it contains NUL bytes)")
        df = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise FileNotFoundError(f"{path_text}: predictions file not found") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path_text}: not a text CSV file (byte {exc.start} is not UTF-8)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path_text}: not a readable CSV file ({exc})") from None
    if len(df) == 0:
        raise ValueError(f"{path_text}: no rows (only a header)")
    return df


def blank(values: pd.Series) -> pd.Series:
    """True where a cell is missing or only whitespace (an identifier that names nothing)."""
    return values.isna() | (values.astype(str).str.strip() == "")


def _line(mask: pd.Series) -> int:
    """The CSV line of the first true row of ``mask`` (line 1 is the header)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def _cell(value: Any) -> str:
    """A cell as the file shows it: ``an empty cell`` for a missing value, else its text quoted."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "an empty cell"
    return repr(str(value))


def read_predictions(path: PathLike) -> pd.DataFrame:
    """Read and check a predictions CSV; one clear error naming the file and line for each problem."""
    df = _read_csv(path)
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        found = [str(c) for c in df.columns]
        hint = ("; is it separated by ';' or tabs? predictions CSVs use commas"
                if len(found) == 1 and any(sep in found[0] for sep in ";\t") else "")
        shown = ", ".join(found[:12]) + (f", … ({len(found)} in all)" if len(found) > 12 else "")
        raise ValueError(f"{path}: predictions CSV lacks columns {', '.join(missing)} (columns found: {shown}){hint}")
    for column in ("image_path", "task"):
        empty = blank(df[column])
        if empty.any():
            raise ValueError(f"{path}: line {_line(empty)}: {column} is empty; every row names its image and task")
    unknown = ~df["task"].isin(TASK_NAMES)
    if unknown.any():
        names = ", ".join(sorted(set(df.loc[unknown, "task"].astype(str))))
        raise ValueError(f"{path}: line {_line(unknown)}: unknown task(s) {names}; expected {', '.join(TASK_NAMES)}")
    labels = pd.to_numeric(df["y_true"], errors="coerce")
    bad_labels = ~labels.isin([0, 1])
    if bad_labels.any():
        raise ValueError(f"{path}: line {_line(bad_labels)}: y_true must be 0 or 1, got "
                         f"{_cell(df['y_true'][bad_labels].iloc[0])}")
    df["y_true"] = labels.astype(int)
    prob = pd.to_numeric(df["y_prob"], errors="coerce")
    bad_prob = prob.isna() | (prob < 0) | (prob > 1)
    if bad_prob.any():
        raise ValueError(f"{path}: line {_line(bad_prob)}: y_prob must be a probability in [0, 1], got "
                         f"{_cell(df['y_prob'][bad_prob].iloc[0])}")
    df["y_prob"] = prob.astype(float)
    df["patient_id"] = df["patient_id"].fillna("")
    check_unique_rows(df, path)
    df.attrs["path"] = str(path)
    return df
