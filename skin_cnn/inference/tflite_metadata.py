"""What a TFLite export expects, recorded in the file itself.

A ``.tflite`` file holds a list of named metadata buffers. ``skin-cnn export --format tflite``
adds one, :data:`METADATA_NAME`, a JSON object saying whether the file wants a photo already
hue-cropped (the export resizes only) and the preprocessing it was trained with, and the model's
facts (:func:`skin_cnn.inference.export.model_facts`: whether it learnt from synthetic images, its
tasks and thresholds). Whoever holds the file alone — a phone app, ``skin-cnn predict``,
:func:`skin_cnn.inference.export.run_tflite` — can read it back with :func:`read_tflite_metadata`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: Name of the metadata entry (JSON) of a TFLite export: what photo it expects, what its model is.
METADATA_NAME = "skin_cnn"


def with_metadata(flat, entry):
    """The TFLite flat buffer ``flat`` with the JSON ``entry`` added as metadata :data:`METADATA_NAME`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(entry).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    item = schema.MetadataT()
    item.name = METADATA_NAME
    item.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME] + [item]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _text(name):
    """A metadata name as a string: the flatbuffer object API reads names back as bytes, so an
    entry already in the file must be compared decoded (or it is kept beside its replacement)."""
    return name.decode("utf-8") if isinstance(name, bytes) else name


def read_tflite_metadata(path):
    """The :data:`METADATA_NAME` entry of a TFLite file, or None when it has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        item = model.Metadata(i)
        if item.Name() and item.Name().decode("utf-8") == METADATA_NAME:
            return json.loads(model.Buffers(item.Buffer()).DataAsNumpy().tobytes().decode("utf-8"))
    return None
