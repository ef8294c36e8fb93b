"""The flow record: how many images each step kept, per split, and why the others left.

A STARD flow diagram must show, for the images evaluated, every step between the eligible
images and the index test results, with each exclusion and its reason. The steps are separate
commands (``split``, ``cleanse apply``, ``crop``, ``train``, ``evaluate``) joined by CSV files, so
the record travels with the CSVs: beside each output ``NAME.csv`` lies ``NAME.flow.json``, a copy
of its input's record with the command's own step appended::

    {"describes": {"file": "split.csv", "sha256": "..."},
     "steps": [{"name": "manifest", "images": 130, "patients": 60},
               {"name": "validation", "images": 127, "excluded": {"missing file": 3}},
               {"name": "split", "train": {"images": 100, ...}, "val": {...}, "test": {...}},
               {"name": "crop", "images": 126, "excluded": {"damaged image header": 1},
                "train": {"images": 99, "patients": 47, "excluded": {...}}, ...}]}

A step counts the images it passes on (``images``, ``patients``) and those it dropped since the
previous step (``excluded``, reason -> count). Once the images are split, a step also carries the
same counts per split, because a diagram of the test split needs test-split numbers, never
whole-set ones. The first step with per-split counts is the *assignment*: the images of the
other splits were assigned there (to training or validation), not excluded.

``describes`` holds the SHA-256 of the CSV the record belongs to, so a record left beside a CSV
that was edited afterwards is recognised and not carried on as if it still described it.

:func:`chain` turns a record into the steps of one split, in the form
:func:`skin_cnn.reporting.plots.plot_stard_flow` draws.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

from skin_cnn.core.io import sha256_file

SPLIT_NAMES = ("train", "val", "test")
SUFFIX = ".flow.json"

#: Words shown in the diagram and the report for the step names the commands write.
STEP_LABELS = {
    "manifest": "Eligible images (manifest)",
    "input": "Images in the input file",
    "validation": "Valid rows (manifest checks)",
    "split": "Assigned by patient",
    "cleansing": "Skin photos (cleanse apply)",
    "crop": "Cropped (crop)",
    "training": "Training run",
    "evaluation": "Index test results (evaluated)",
}


def flow_path(csv_path):
    """``NAME.flow.json`` beside ``NAME.csv``."""
    return Path(csv_path).with_suffix(SUFFIX)


def short_reason(reason):
    """A reason without its per-file detail, so that equal causes are counted together.

    ``"damaged image header (OSError: ...)"`` and ``"PATH: file not found"`` become
    ``"damaged image header"`` and ``"file not found"``.
    """
    text = str(reason).strip() or "reason not recorded"
    if ": " in text and ("/" in text.split(": ", 1)[0] or "\\" in text.split(": ", 1)[0]):
        text = text.split(": ", 1)[1]
    return text.split(" (", 1)[0].strip() or "reason not recorded"


def _patients(frame):
    from skin_cnn.data.split import patient_units

    if frame is None or "patient_id" not in frame.columns:
        return None
    return int(patient_units(frame.reset_index(drop=True)).nunique())


def counts(frame):
    """``{"images", "patients"}`` of a frame (an image without a patient id is its own patient)."""
    return {"images": int(len(frame)), "patients": _patients(frame)}


def make_step(name, kept, excluded=None, details=None):
    """A step of the record: the rows kept and, per reason, the rows dropped at this step.

    Parameters
    ----------
    name : str
        Step name (``crop``, ``training``, ...; see :data:`STEP_LABELS`).
    kept : pandas.DataFrame
        Rows passed on. When it has a ``split`` column the counts are repeated per split.
    excluded : dict of str -> pandas.DataFrame, optional
        Dropped rows by reason; per-split counts need their ``split`` column.
    details : str, optional
        The file that lists the dropped rows one by one, named in the step so a reader can
        check every count.
    """
    excluded = {reason: rows for reason, rows in (excluded or {}).items()}
    step = {"name": name, **counts(kept), "excluded": {r: int(len(rows)) for r, rows in excluded.items()}}
    if details:
        step["details"] = str(details)
    if "split" in kept.columns:
        for split in SPLIT_NAMES:
            part = kept[kept["split"] == split]
            step[split] = {
                **counts(part),
                "excluded": {
                    r: int((rows["split"] == split).sum()) if "split" in rows.columns else 0
                    for r, rows in excluded.items()
                },
            }
    return step


def excluded_by_reason(rows, reason_column="reason"):
    """Split dropped rows into ``{short reason: rows}`` (see :func:`short_reason`)."""
    if rows is None or not len(rows):
        return {}
    reasons = rows[reason_column].map(short_reason) if reason_column in rows.columns else None
    if reasons is None:
        return {"reason not recorded": rows}
    return {reason: rows[reasons == reason] for reason in dict.fromkeys(reasons)}


def read_record(csv_path):
    """The record beside ``csv_path``, or None when there is none or it no longer describes it.

    A record whose ``describes.sha256`` differs from the CSV's was written for another version
    of the file (edited since); its counts would be wrong, so it is not used (with a warning).

    Raises
    ------
    ValueError
        The record exists but is not a flow JSON.
    """
    path = flow_path(csv_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable flow JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("steps"), list):
        raise ValueError(f'{path}: a flow JSON must be an object with a "steps" list')
    described = (record.get("describes") or {}).get("sha256")
    if described and Path(csv_path).is_file() and described != sha256_file(csv_path):
        warnings.warn(
            f"{path} describes an earlier version of {Path(csv_path).name} (SHA-256 differs); "
            "the flow starts again from this file",
            UserWarning,
            stacklevel=2,
        )
        return None
    return record


def start_record(csv_path, frame):
    """A record for a CSV that has none: an ``input`` step with its counts and, for a split CSV,
    a ``split`` step with the counts per split (where the other splits' images were assigned)."""
    steps = [{"name": "input", "file": Path(csv_path).name, **counts(frame)}]
    if "split" in frame.columns:
        steps.append(make_step("split", frame))
    return {"steps": steps}


def write_record(out_csv, record):
    """Write ``record`` beside ``out_csv`` (which must already exist), stamped with its hash."""
    from skin_cnn.core.io import write_json

    out_csv = Path(out_csv)
    record = dict(record, describes={"file": out_csv.name, "sha256": sha256_file(out_csv)})
    path = flow_path(out_csv)
    write_json(path, record)
    return path


def extend_record(input_csv, out_csv, step, input_frame=None):
    """Copy the record of ``input_csv``, append ``step`` and write it beside ``out_csv``.

    Without a usable input record a new one starts from ``input_frame`` (the rows of
    ``input_csv``); without that either, the record holds ``step`` alone.

    Returns
    -------
    Path
        The record written.
    """
    record = read_record(input_csv)
    if record is None:
        record = start_record(input_csv, input_frame) if input_frame is not None else {"steps": []}
    record = {key: value for key, value in record.items() if key != "describes"}
    record["steps"] = [*record["steps"], step]
    return write_record(out_csv, record)


def training_step(split_frame, skipped):
    """The ``training`` step of a run: the images training left out, by split and reason.

    Training reads the train and validation images and never the test split, so a test image is
    never excluded here. ``skipped`` are the rows of the run's ``skipped_images.csv``
    (``image_path``, ``split``, ``reason``).
    """
    import pandas as pd

    skipped = pd.DataFrame(list(skipped), columns=["image_path", "split", "reason"])
    gone = set(zip(skipped["image_path"].astype(str), skipped["split"].astype(str)))
    keys = list(zip(split_frame["image_path"].astype(str), split_frame["split"].astype(str)))
    kept = split_frame[[key not in gone for key in keys]]
    step = make_step("training", kept, excluded_by_reason(skipped), details="skipped_images.csv")
    step["test"]["note"] = "not read by training"
    return step


def record_training(split_csv, run_dir, frame, skipped):
    """Write the run's own record, ``RUN/split.flow.json``: the record of the split trained on
    (or one started from it) with the ``training`` step appended.

    Meant for the trainer once ``RUN/split.csv`` and ``skipped_images.csv`` are written, so the
    run folder carries its flow even when the split's folder moves. Without it the evaluation
    builds the same step from ``skipped_images.csv``
    (:func:`skin_cnn.app.evaluate_run.run_record`).

    Parameters
    ----------
    split_csv : str or Path
        The split CSV the run was trained on (its record lies beside it, if any).
    run_dir : str or Path
        The run folder, holding ``split.csv``.
    frame : pandas.DataFrame
        The split table trained on.
    skipped : list of dict
        The rows of ``skipped_images.csv``.
    """
    record = read_record(split_csv) or start_record(split_csv, frame)
    steps = [step for step in record["steps"] if step.get("name") != "training"]
    return write_record(Path(run_dir) / "split.csv", {"steps": [*steps, training_step(frame, skipped)]})


# ---------------------------------------------------------------------------------------------
# one split's chain


def _is_count(value):
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _label(step):
    name = str(step["name"])
    label = step.get("label") or STEP_LABELS.get(name, name)
    if name == "input" and step.get("file"):
        label = f"Images in {step['file']}"
    return label


def chain(record, split="test"):
    """The steps of one split, each with its count and what left before it.

    Whole-set steps (before the split) are kept as they are; reasons with no image are dropped.
    The first step with per-split counts becomes the evaluated split's step, the other splits
    listed as *assigned* (to training or validation), never as excluded. Later steps give that split's own counts and
    exclusions. A count that the previous count, the exclusions and the assignments do not
    explain is recorded as ``unexplained`` (previous − excluded − assigned − this), so the
    diagram shows a gap instead of hiding it.

    Returns
    -------
    dict
        ``{"split": split, "steps": [{"name", "images", "patients", "excluded", "assigned",
        "note", "unexplained"}]}``.

    Raises
    ------
    ValueError
        A step without a name, or counts that are not non-negative integers.
    """
    steps = record.get("steps") if isinstance(record, dict) else None
    if not isinstance(steps, list) or not steps:
        raise ValueError("flow JSON needs a non-empty list 'steps'")
    out, assigned_yet = [], False
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "name" not in step:
            raise ValueError(f"steps[{i}] needs a 'name'")
        per = step.get(split)
        entry = {"name": _label(step), "step": str(step["name"]), "assigned": {}, "note": None}
        if isinstance(per, dict):
            entry.update(images=per.get("images"), patients=per.get("patients"), note=per.get("note"))
            if not assigned_yet:
                entry["name"] = f"{split.capitalize()} split ({_label(step)[:1].lower()}{_label(step)[1:]})"
                entry["assigned"] = {
                    s: step[s].get("images") for s in SPLIT_NAMES
                    if s != split and isinstance(step.get(s), dict)
                }
                entry["excluded"] = per.get("excluded") or {}
                assigned_yet = True
            else:
                entry["excluded"] = per.get("excluded") or {}
        else:
            entry.update(images=step.get("images"), patients=step.get("patients"),
                         excluded=step.get("excluded") or {})
            if assigned_yet:
                entry["name"] = f"{_label(step)} (all splits together)"
                entry["note"] = "counted over all splits, not per split"
        if isinstance(entry["excluded"], dict):  # a reason with no image is not an exclusion
            entry["excluded"] = {r: n for r, n in entry["excluded"].items() if n != 0}
        for key in ("images", "patients"):
            if not _is_count(entry.get(key)):
                raise ValueError(f"steps[{i}].{key} must be a non-negative integer or null")
        for key in ("excluded", "assigned"):
            values = entry[key]
            if not isinstance(values, dict) or not all(_is_count(v) and v is not None for v in values.values()):
                raise ValueError(f"steps[{i}].{key} must map names to integer counts")
        out.append(entry)
    previous = None
    for entry in out:
        entry["unexplained"] = 0
        whole = entry["note"] == "counted over all splits, not per split"
        if previous is not None and previous.get("images") is not None and entry["images"] is not None and not whole:
            entry["unexplained"] = (
                previous["images"] - sum(entry["excluded"].values()) - sum(entry["assigned"].values())
                - entry["images"]
            )
        if not whole:
            previous = entry
    return {"split": split, "steps": out}


def evaluation_step(predictions, skipped, already_excluded=()):
    """The last step: images with an index test result, and those that could not be read.

    ``already_excluded`` are image paths an earlier step (training) already left out; they are
    not counted twice.
    """
    ids = predictions["patient_id"].astype(str) if "patient_id" in predictions else None
    patients = int(ids[ids != ""].nunique()) if ids is not None else None
    previous = {str(p) for p in already_excluded}
    reasons = Counter(short_reason(s.get("reason", "")) for s in skipped
                      if str(s.get("image_path")) not in previous)
    return {
        "name": STEP_LABELS["evaluation"],
        "step": "evaluation",
        "images": int(predictions["image_path"].nunique()),
        "patients": patients or None,
        "excluded": dict(reasons),
        "assigned": {},
        "note": None,
    }


def append_step(flow, entry):
    """Append an already split-specific entry to a :func:`chain` result (recomputing its gap)."""
    steps = [s for s in flow["steps"] if s.get("note") != "counted over all splits, not per split"]
    entry = dict(entry, unexplained=0)
    if steps and steps[-1].get("images") is not None and entry.get("images") is not None:
        entry["unexplained"] = (
            steps[-1]["images"] - sum(entry["excluded"].values()) - sum(entry["assigned"].values())
            - entry["images"]
        )
    return {**flow, "steps": [*flow["steps"], entry]}


def flow_table(flow):
    """Rows of the report's flow table: step, images, patients, what left before it."""
    rows = []
    for step in flow["steps"]:
        left = [f"excluded, {reason}: {n:,}" for reason, n in step["excluded"].items() if n]
        left += [f"assigned to {name}: {n:,} (not evaluated)" for name, n in step["assigned"].items()]
        if step.get("unexplained"):
            left.append(f"not accounted for: {step['unexplained']:,}")
        if step.get("note"):
            left.append(step["note"])
        rows.append([
            step["name"],
            "—" if step["images"] is None else f"{step['images']:,}",
            "—" if step["patients"] is None else f"{step['patients']:,}",
            "; ".join(left) or "none",
        ])
    return rows


def load_flow(path, split="test"):
    """Read a flow record (``NAME.flow.json``) and return the chain of ``split`` that
    :func:`skin_cnn.reporting.plots.plot_stard_flow` draws (see :func:`chain`).

    Raises
    ------
    ValueError
        The file cannot be read or is not a flow record; the message names the file.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read flow JSON: {exc}") from None
    try:
        return normalise_flow(record, split)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def normalise_flow(flow, split="test"):
    """The chain of ``split`` of a flow record; an already normalised chain is returned as is."""
    if isinstance(flow, dict) and flow.get("split") and all(
        isinstance(s, dict) and "assigned" in s for s in flow.get("steps") or [None]
    ):
        return flow
    return chain(flow, split)


def flow_from_predictions(predictions, split="evaluated"):
    """The chain known from a predictions table alone: the images that received predictions."""
    return {"split": split, "steps": [dict(evaluation_step(predictions, []), unexplained=0)]}


def flow_from_split(split_frame, split):
    """The chain known from a run's split table alone: its images, then the evaluated split,
    the other splits shown as assigned elsewhere."""
    return chain(start_record("split.csv of the run", split_frame), split)
