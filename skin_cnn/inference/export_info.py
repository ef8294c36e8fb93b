"""What an export records about its model, readable by whoever holds the exported file alone.

A ``.keras`` file carries its :class:`~skin_cnn.models.info.ModelInfo` (tasks, thresholds,
whether it learnt from synthetic images); an export is a different file and would lose it. So
``skin-cnn export`` writes a JSON entry into every export:

* **TFLite**: the metadata entry :data:`~skin_cnn.inference.tflite_metadata.METADATA_NAME` of the
  flat buffer (:mod:`skin_cnn.inference.tflite_metadata`);
* **SavedModel**: the file :data:`SAVEDMODEL_INFO` (``assets.extra/skin_cnn.json``).
  ``assets.extra`` is TensorFlow's folder for files that travel with a SavedModel without being
  loaded by its graph (TF Serving keeps its warm-up requests there): copying the folder keeps the
  entry, loading or serving the model ignores it, and any JSON reader reads it without skin-cnn.

Both entries hold ``synthetic`` (bool), ``synthetic_model`` (the warning to show, or null),
``tasks`` and ``thresholds`` (:func:`skin_cnn.inference.export.model_facts`). Exports written
before the entry existed have none: :func:`export_synthetic` reads them as False.

This module reads and writes files only; it imports no TensorFlow until a TFLite file is read,
so ``skin-cnn predict`` can say what an export is before loading anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from skin_cnn.core.io import PathLike, write_json
from skin_cnn.inference.tflite_metadata import read_tflite_metadata

#: TensorFlow's ``EXTRA_ASSETS_DIRECTORY``: files kept with a SavedModel that its graph does not load.
EXTRA_ASSETS = "assets.extra"
#: Where a SavedModel export keeps its entry, relative to the SavedModel folder.
SAVEDMODEL_INFO = f"{EXTRA_ASSETS}/skin_cnn.json"


def is_savedmodel(path: PathLike) -> bool:
    """True for a SavedModel folder (one holding ``saved_model.pb``)."""
    return (Path(path) / "saved_model.pb").is_file()


def write_savedmodel_info(directory: PathLike, entry: dict[str, Any]) -> Path:
    """Write ``entry`` as :data:`SAVEDMODEL_INFO` into the SavedModel folder ``directory``."""
    path = Path(directory) / SAVEDMODEL_INFO
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, entry)
    return path


def read_export_info(path: PathLike) -> dict[str, Any] | None:
    """The entry of an export (a ``.tflite`` file or a SavedModel folder), or None without one.

    Exports written before the entry existed give None (a TFLite file) or an entry without
    the model's facts (a TFLite file's metadata then holds only what photo it expects).
    """
    path = Path(path)
    if path.is_dir():
        info = path / SAVEDMODEL_INFO
        if not info.is_file():
            return None
        try:
            return json.loads(info.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{info}: not valid JSON ({exc})") from None
    return read_tflite_metadata(path)


def says_synthetic(entry: Mapping[str, Any] | None) -> bool:
    """Whether an export's entry says its model learnt from synthetic images; only a JSON
    ``true`` does (an entry without the key is an export from before it existed)."""
    return (entry or {}).get("synthetic") is True


def export_synthetic(path: PathLike) -> bool:
    """Whether the export at ``path`` says its model learnt from synthetic images (False for
    exports that do not say: those written before the entry existed)."""
    return says_synthetic(read_export_info(path))
