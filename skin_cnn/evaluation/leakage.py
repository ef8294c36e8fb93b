"""Refuse threshold-fitting predictions that overlap the predictions being evaluated.

A fitted threshold (Youden, a target sensitivity or specificity) is only a pre-specified cut-off
for the evaluated images if it was chosen on *other* images of *other* patients. A file that
merely calls itself validation (a ``split`` column reading ``val``) proves nothing, so the two
tables are compared directly: they may not share an image (by path, or by the content of the
file when it can be read), a patient id, or a ``split_group`` of ``skin-cnn split`` (patients
joined with their near-duplicate photos).
"""

from __future__ import annotations

import os
from pathlib import Path

from skin_cnn.core.io import sha256_file


def _resolved_paths(frame):
    """Normalised absolute image paths; relative ones against the table's own folder when known
    (``frame.attrs["path"]``, set by :func:`skin_cnn.core.predictions.read_predictions`), else the
    current folder."""
    source = frame.attrs.get("path")
    base = Path(source).resolve().parent if source else Path.cwd()
    out = {}
    for raw in frame["image_path"].astype(str):
        path = Path(raw)
        out[raw] = os.path.normpath(path if path.is_absolute() else base / path)
    return out


def _content_hashes(paths):
    """SHA-256 of each readable file, hashing only files whose size occurs in both sets."""
    sizes = [{}, {}]
    for k, group in enumerate(paths):
        for p in set(group):
            try:
                sizes[k][p] = os.path.getsize(p)
            except OSError:
                continue
    common = set(sizes[0].values()) & set(sizes[1].values())
    return [{sha256_file(p): p for p, size in s.items() if size in common} for s in sizes]


def _ids(frame, column):
    """The non-empty values of ``column``; patient ids as :func:`skin_cnn.data.manifest.patient_key`
    (the identity manifest and split use: ``P7`` and ``p7`` are one patient)."""
    if column not in frame.columns:
        return None
    values = frame[column].fillna("").astype(str).str.strip()
    if column == "patient_id":
        from skin_cnn.data.manifest import patient_key

        values = values.map(patient_key)
    return set(values[values != ""])


def overlaps(fit, evaluated):
    """What the two predictions tables share.

    Returns
    -------
    dict of str -> list
        ``images`` (paths in both), ``same content`` (files with identical bytes under different
        paths), ``patients`` (ids), ``split groups``; each sorted, empty when nothing is shared.
    """
    fit_paths, eval_paths = _resolved_paths(fit), _resolved_paths(evaluated)
    # as written or as resolved: a relative path may be read against either table's folder
    resolved = set(eval_paths.values())
    shared_paths = {raw for raw, full in fit_paths.items() if raw in eval_paths or full in resolved}
    hashes = _content_hashes([set(fit_paths.values()), set(eval_paths.values())])
    same_content = [
        f"{hashes[0][h]} = {hashes[1][h]}"
        for h in set(hashes[0]) & set(hashes[1])
        if hashes[0][h] != hashes[1][h]
    ]
    out = {
        "images": sorted(shared_paths),
        "same content": sorted(same_content),
        "patients": sorted(_ids(fit, "patient_id") & _ids(evaluated, "patient_id")),
        "split groups": [],
    }
    groups_fit, groups_eval = _ids(fit, "split_group"), _ids(evaluated, "split_group")
    if groups_fit is not None and groups_eval is not None:
        out["split groups"] = sorted(groups_fit & groups_eval)
    return out


def check_disjoint(fit, evaluated, fit_name, evaluated_name="the evaluated predictions"):
    """Raise ``ValueError`` (one line, naming ``fit_name``) when ``fit`` shares an image, a
    patient or a split group with ``evaluated``.

    Parameters
    ----------
    fit, evaluated : pandas.DataFrame
        Predictions tables (``image_path``, ``patient_id``; ``split_group`` when present).
    fit_name, evaluated_name : str
        How to name the two in the message (file paths where they came from files).
    """
    found = {kind: items for kind, items in overlaps(fit, evaluated).items() if items}
    if "split" in fit.columns:
        marked = fit.loc[fit["split"].astype(str).str.strip() == "test", "image_path"]
        if len(marked):
            found["rows marked as test split"] = marked.astype(str).tolist()
    if not found:
        return
    parts = "; ".join(f"{len(items)} {kind} (e.g. {items[0]})" for kind, items in found.items())
    raise ValueError(
        f"{fit_name}: cannot choose a threshold on these predictions, they overlap "
        f"{evaluated_name}: {parts}; fit it on a validation split of other images and patients"
    )
