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
    """The TFLite flat buffer ``flat`` with the JSON ``entry`` as metadata :data:`METADATA_NAME`.

    An entry already there is replaced, bytes included: its buffer is overwritten when nothing
    else in the file refers to it, so the old JSON does not linger in the file unread.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    data = np.frombuffer(json.dumps(entry).encode("utf-8"), dtype=np.uint8)
    ours = [m for m in (model.metadata or []) if _text(m.name) == METADATA_NAME]
    others = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME]
    in_use = _buffers_in_use(model, others)
    reusable = [m.buffer for m in ours if m.buffer not in in_use]
    if reusable:
        index = reusable[0]
        for stale in reusable[1:]:
            model.buffers[stale].data = None
    else:
        model.buffers.append(schema.BufferT())
        index = len(model.buffers) - 1
    model.buffers[index].data = data
    item = schema.MetadataT()
    item.name = METADATA_NAME
    item.buffer = index
    model.metadata = others + [item]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _buffers_in_use(model, metadata):
    """Indices of the buffers the tensors of every subgraph and the entries ``metadata`` point to."""
    used = {m.buffer for m in metadata}
    for subgraph in model.subgraphs or []:
        used.update(tensor.buffer for tensor in subgraph.tensors or [])
    return used


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
