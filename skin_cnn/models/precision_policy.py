"""The trunk's precision applied to a model: per-layer Keras dtype policies on the VGG-16 layers.

:func:`apply_precision` gives the trunk layers (the 18 VGG-16 layers ``block1_conv1`` …
``block5_pool``) the Keras mixed policy of a precision (``mixed_bfloat16``, ``mixed_float16``;
:mod:`skin_cnn.core.compute_precision`) and leaves every other layer at ``float32``: the input
normalisation, the spatial transformer (its sampling grid needs float32 coordinates), the global
pooling, the heads, the losses and the outputs. Mixed policies keep the variables in float32 and
cast them to the compute type inside each call, so weights, gradients and saved files are float32
whatever the precision; the first float32 layer behind the trunk casts its activations back to
float32.

Because the policy is a per-layer setting and not part of the weights, a model trained in one
precision predicts in another: the loader sets the policy it is asked for. ``.keras`` files are
always written with float32 layers (:func:`float32_layers`), so any Keras loads them at full
precision; the precision a run computed its features in is recorded in the model's
:class:`~skin_cnn.models.info.ModelInfo`, its ``config.json`` and its model card.
"""
from __future__ import annotations

import contextlib

from skin_cnn.core.compute_precision import Precision, check_precision, choose_precision, read_cpuinfo
from skin_cnn.models.vgg import trunk_block


def gpu_visible():
    """True when TensorFlow lists a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(requested="auto"):
    """The :class:`Precision` of a setting on this machine (``auto`` looks at the CPU and GPU).

    A :class:`Precision` is returned as it is, so API functions accept either.
    """
    if isinstance(requested, Precision):
        return requested
    requested = check_precision(requested)
    if requested != "auto":
        return Precision(requested, requested, "set")
    return choose_precision(requested, read_cpuinfo(), has_gpu=gpu_visible())


# ---------------------------------------------------------------------------------------------
# models


def trunk_layers(model):
    """The VGG-16 layers of ``model`` (``block1_conv1`` … ``block5_pool``), in order.

    Layers of nested models (a cross-validation ensemble's folds) are included.
    """
    found = []
    for layer in model.layers:
        if trunk_block(layer.name) is not None:
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(trunk_layers(layer))
    return found


def apply_precision(model, precision):
    """Set the trunk layers of ``model`` to the dtype policy of ``precision``; return ``model``.

    Every other layer keeps its policy (float32), so the model's outputs and all its variables stay
    float32. Takes effect at the next call or trace of the model (a ``tf.function`` traced before
    keeps what it traced).

    Parameters
    ----------
    model : keras.Model
    precision : Precision or str
        A resolved precision, or a setting resolved here (:func:`resolve_precision`).
    """
    policy = resolve_precision(precision).policy
    for layer in trunk_layers(model):
        layer.dtype_policy = policy
    return model


def model_precision(model):
    """The precision the trunk of ``model`` computes in now (``float32`` when it has no trunk)."""
    layers = trunk_layers(model)
    if not layers:
        return "float32"
    compute = {layer.dtype_policy.compute_dtype for layer in layers}
    if len(compute) != 1:
        raise ValueError(f"model {model.name!r} mixes trunk compute dtypes {sorted(compute)}")
    return compute.pop()


@contextlib.contextmanager
def trunk_precision(model, precision):
    """Within the block, the trunk of ``model`` computes in ``precision``; its policies come back after."""
    layers = trunk_layers(model)
    saved = [layer.dtype_policy for layer in layers]
    try:
        apply_precision(model, precision)
        yield model
    finally:
        for layer, policy in zip(layers, saved):
            layer.dtype_policy = policy


def float32_layers(model):
    """Within the block, the trunk of ``model`` is float32 (for saving a portable file)."""
    return trunk_precision(model, "float32")
