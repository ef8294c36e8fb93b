"""A skin-cnn ``.keras`` file on disk: checked and loaded (the one place that opens a saved model),
and its stored thresholds rewritten in place.

It lives with the models, below the predictor, and reads and writes the stored record with the
helpers of :mod:`skin_cnn.models.info`, which never loads a model itself.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from skin_cnn.core.io import PathLike, atomic_path

if TYPE_CHECKING:
    import keras
from skin_cnn.models.info import (INFO_LAYER, _archive_config, _check_preprocessing, _check_thresholds, _info_config,
                                  read_file_info, with_model_info)


#: Most bytes a ``.keras`` archive may inflate to. A VGG-16 with its 138 million parameters in
#: float32 takes 0.55 GB; a file claiming more is refused before a byte is inflated.
MAX_MODEL_INFLATED_BYTES = 2_000_000_000


def check_keras_archive(path: PathLike, max_inflated: int = MAX_MODEL_INFLATED_BYTES) -> None:
    """Refuse a ``.keras`` file from its zip directory and stored record, before Keras opens it.

    Keras would inflate a zip bomb in full (3.8 GB for a 4 MB file), report a damaged archive
    as "File not found", and bury a bad stored threshold at the end of a page-long message.
    Here each is one line naming the file: missing, not a zip archive, inflating to more than
    ``max_inflated`` bytes (the sizes the zip directory declares, which bound what Python's
    :mod:`zipfile` will inflate), or a bad ``skin_cnn_info`` record
    (:func:`skin_cnn.models.info.read_file_info`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras .keras model file (not a zip archive: damaged, "
                         "truncated or another format)")
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path}: damaged .keras archive ({exc})") from None
    if inflated > max_inflated:
        raise ValueError(f"{path}: the archive would inflate to {inflated / 1e9:,.1f} GB, more than any "
                         f"skin-cnn model ({max_inflated / 1e9:g} GB); refused as a possible zip bomb")
    read_file_info(path)


def load_keras_model(path: PathLike) -> keras.Model:
    """Load a ``.keras`` file with ``safe_mode=True`` (no arbitrary code from the file), after
    :func:`check_keras_archive`."""
    import keras

    from skin_cnn import check_keras_backend

    if Path(path).suffix.lower() == ".keras":
        check_keras_archive(path)
    check_keras_backend()  # the layers are registered: this module lies in skin_cnn.models
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: cannot load the model ({exc})") from exc
    check_finite_weights(model, path)
    return model


def check_finite_weights(model: keras.Model, path: PathLike) -> None:
    """Refuse a model any of whose weights is NaN or infinite.

    Such a model answers NaN for every photo, and NaN compares below every threshold: without
    this check ``predict`` would call each photo the task's negative class ("nan% — below this
    model's cut-off"). A file gets such weights by damage, by editing, or from a training run
    that diverged.
    """
    import numpy as np
    from keras import ops

    for variable in model.weights:
        values = np.asarray(ops.convert_to_numpy(variable))
        if values.dtype.kind != "f":
            continue
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise ValueError(f"{path}: {bad} of the {values.size} weights of {variable.path} are NaN or "
                             "infinite; the model would answer NaN for every photo (a damaged file, or one "
                             "saved from a training run that diverged)")


def store_thresholds(path: PathLike, thresholds: Mapping[str, Any],
                     preprocessing: Mapping[str, Any] | None = None) -> None:
    """Write thresholds chosen on validation into the ``.keras`` file at ``path``.

    Only the archive's ``config.json`` is rewritten (weights and optimizer state are copied
    byte for byte) and the file is replaced atomically, so a server reading it meanwhile sees the
    old or the new model, never half of one. A file saved before :class:`ModelInfo` existed is
    loaded, given the layer and saved again (without optimizer state).

    Parameters
    ----------
    path : str or Path
        A ``.keras`` file.
    thresholds : dict
        ``{task: {"value", "rule", "method"}}``; tasks not named keep their stored threshold.
    preprocessing : dict, optional
        Stored as well when the file records none yet (a model saved before the layer existed,
        whose run folder's ``config.json`` knows it).
    """
    path = Path(path)
    config = _archive_config(path)
    layer = _info_config(config)
    if layer is None:
        model = with_model_info(load_keras_model(path), thresholds=thresholds,
                                preprocessing=preprocessing)
        with atomic_path(path) as tmp:
            model.save(tmp)
        return
    merged = _check_thresholds(layer.get("thresholds"), f"{path}: {INFO_LAYER}")
    merged.update(_check_thresholds(thresholds, f"thresholds for {path}"))
    layer["thresholds"] = merged
    if layer.get("preprocessing") is None and preprocessing is not None:
        layer["preprocessing"] = _check_preprocessing(preprocessing, f"preprocessing for {path}")
    with atomic_path(path) as tmp, zipfile.ZipFile(path) as source, \
            zipfile.ZipFile(tmp, "w") as target:
        for item in source.infolist():
            if item.filename == "config.json":
                target.writestr(item, json.dumps(config))
                continue
            with source.open(item) as src, target.open(item, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
