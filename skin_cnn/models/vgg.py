"""The four VGG-16 variants of the study and helpers to inspect and split them.

Every variant is one flat functional model: ``image`` (RGB in [0, 255]) → ``skin_cnn_info``
(an identity layer carrying tasks, classes, preprocessing and thresholds:
:mod:`skin_cnn.models.info`) → [spatial transformer] →
:class:`~skin_cnn.models.preprocessing.VGG16Preprocess` → the 18 VGG-16 layers under their Keras
names (``block1_conv1`` … ``block5_pool``) → global average pooling → the
multi-task heads. Keeping the VGG-16 layers flat, instead of nesting the Keras application as a
sub-model, lets Grad-CAM and feature extraction reach ``model.get_layer("block5_conv3")``
directly and lets :func:`split_at_frozen_boundary` cut the graph at any block.
"""

from dataclasses import dataclass, fields, replace
from typing import Any

import keras
import pandas as pd

from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.models.heads import multitask_heads
from skin_cnn.models.info import ModelInfo, task_entries
from skin_cnn.models.preprocessing import VGG16Preprocess
from skin_cnn.models.spatial_transformer import SpatialTransformer
from skin_cnn.models.views import MeanOfViews, MirrorViews, SquareRootFeatures
from skin_cnn.models.weights import (
    WeightsFileError,
    check_weights_file,
    fetch_imagenet_weights,
    resolve_weights,
)

VGG16_BLOCKS = 5
GLOBAL_POOL = "global_pool"
#: Global average of ``block4_pool``, before :data:`GLOBAL_POOL` when block 4 is pooled.
BLOCK4_POOL = "block4_global_pool"
#: Global average of ``block3_pool`` (256 values), first of the input scale's pooled blocks when pooled.
BLOCK3_POOL = "block3_global_pool"
#: The input resized to the second scale inside the model (layer name prefix of that scale).
SECOND_SCALE = "second_scale"
#: The layer whose output the heads read when the pooled features are more than one pooling.
POOLED_FEATURES = "pooled_features"
MIRROR_VIEWS = "mirror_views"
HEADS = ("mlp", "linear")
POOL_BLOCKS = ((5,), (4, 5), (3, 4, 5))
PREPROCESS = "vgg16_preprocess"
SPATIAL_TRANSFORMER = "spatial_transformer"
INPUT_NAME = "image"
MIN_TRUNK_SIZE = 32  # VGG-16 halves the image five times


@dataclass(frozen=True)
class Variant:
    """One of the study's four models."""

    name: str
    pretrained: bool
    spatial_transformer: bool
    description: str

    @property
    def model_name(self):
        return f"vgg16{self.name.lower()}"


VARIANTS = {
    v.name: v
    for v in (
        Variant("P", True, False, "ImageNet weights, conv layers frozen"),
        Variant("N", False, False, "random initialisation, every layer trained"),
        Variant("PS", True, True, "spatial transformer + ImageNet weights, conv layers frozen"),
        Variant(
            "NS", False, True, "spatial transformer + random initialisation, every layer trained"
        ),
    )
}


def resolve_variant(variant):
    """The :class:`Variant` for ``"P"``, ``"VGG-16P"``, ``"vgg16p"``, ``"vgg16_ps"`` and so on."""
    if isinstance(variant, Variant):
        return variant
    key = str(variant).upper().replace("-", "").replace("_", "").replace(" ", "")
    key = key.removeprefix("VGG16")
    if key not in VARIANTS:
        raise ValueError(
            f"unknown model variant {variant!r}; expected one of "
            f"{', '.join('VGG-16' + k for k in VARIANTS)} (or just {', '.join(VARIANTS)})"
        )
    return VARIANTS[key]


def trunk_block(layer_name):
    """Block number (1–5) of a VGG-16 layer name such as ``block4_conv2``, else None."""
    if layer_name.startswith("block") and "_" in layer_name:
        head = layer_name.split("_", 1)[0][len("block") :]
        if head.isdigit():
            return int(head)
    return None


def _check_size(input_shape, stn_output_size, spatial_transformer):
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(
            f"input_shape must be (height, width, 3) for RGB images; got {input_shape}"
        )
    if stn_output_size is not None and not spatial_transformer:
        raise ValueError("stn_output_size applies to the PS and NS variants only")
    trunk = tuple(stn_output_size) if stn_output_size is not None else input_shape[:2]
    if any(s is not None and s < MIN_TRUNK_SIZE for s in trunk):
        raise ValueError(
            f"VGG-16 needs images of at least {MIN_TRUNK_SIZE}×{MIN_TRUNK_SIZE} pixels; "
            f"got {trunk}"
        )
    return input_shape, trunk + (3,)


def _trunk_weights(spec, weights):
    """Local weights file for a pretrained variant, or None for a random trunk."""
    if not spec.pretrained:
        if weights is not None and not (isinstance(weights, str) and weights.lower() == "imagenet"):
            raise ValueError(
                f"VGG-16{spec.name} is randomly initialised; weights={weights!r} applies to the "
                "P and PS variants only (use P/PS with fine_tune_blocks=5 to train a pretrained "
                "trunk end to end)"
            )
        return None
    resolved = resolve_weights(weights)
    if resolved == "imagenet":
        resolved = fetch_imagenet_weights()
    if resolved is not None:
        check_weights_file(resolved)
    return resolved


def _vgg16_layers(trunk_shape, weights_path, seed):
    """Fresh copies of the 18 VGG-16 notop layers, each paired with its weights source.

    Returns ``(copy, source)`` pairs; ``source`` is the loaded ``keras.applications.VGG16``
    layer whose weights the copy takes once built, or None for a random trunk.

    The layers of ``keras.applications.VGG16`` already belong to that model's graph (their
    first inbound node); fresh copies have a single node in the model built here, so
    ``layer.output`` is unambiguous for Grad-CAM and for splitting the model.
    """
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=trunk_shape)
    if weights_path is not None:
        try:
            base.load_weights(weights_path)
        except Exception as exc:  # Keras' legacy loader raises ValueError, KeyError, OSError…
            raise WeightsFileError(
                f"{weights_path}: could not load as VGG-16 notop weights ({exc})"
            ) from exc
    layers = []
    for i, layer in enumerate(base.layers[1:]):
        config = layer.get_config()
        if weights_path is None and seed is not None and "kernel_initializer" in config:
            config["kernel_initializer"] = keras.initializers.serialize(
                keras.initializers.GlorotUniform(seed=int(seed) + i)
            )
        copy = layer.__class__.from_config(config)
        layers.append((copy, layer if weights_path is not None else None))
    return layers


@dataclass(frozen=True)
class ModelSpec:
    """Every setting of a study model but its variant: what :func:`build_model` builds.

    The settings travel together from a run's configuration to the model, so they are one
    object; :func:`build_model` also takes them one by one as keywords (the same names).

    Attributes
    ----------
    input_shape : (int, int, 3)
        Image size the model takes; RGB float in [0, 255] (the VGG-16 preprocessing is the
        model's first layer). The study used 250×250.
    weights : "imagenet", None or path
        Trunk weights of the P and PS variants: ``"imagenet"`` (``$SKIN_CNN_VGG16_WEIGHTS``,
        Keras' cache, or a download — see :mod:`skin_cnn.models.weights`), a local notop ``.h5``
        file, or None for a random but still frozen trunk (for tests). N and NS are always
        randomly initialised: ``"imagenet"`` and None are accepted and ignored, a path is an error.
    fine_tune_blocks : int
        P/PS only: number of VGG-16 blocks, counted from the top (block 5), left trainable. 0
        (default) freezes every conv layer as in the paper; 1 is the authors' released code
        (block 5 trained).
    dense_units, task_units, l2, dropout
        Head sizes, L2 factor and dropout (see :func:`skin_cnn.models.heads.multitask_heads`).
    seed : int, optional
        Seeds every random initialiser (heads, random trunk, spatial transformer), so two builds
        with the same seed are identical.
    stn_output_size : (int, int), optional
        PS/NS only: size of the image the spatial transformer hands to VGG-16; defaults to
        ``input_shape[:2]``.
    preprocessing : Preprocessing or dict, optional
        How photos become this model's input (training passes the run's); stored in the model's
        :class:`~skin_cnn.models.info.ModelInfo` layer so that a ``.keras`` file alone is enough
        to use the model correctly. Its ``image_size`` must equal ``input_shape[:2]``.
    head : {"mlp", "linear"}
        ``"mlp"``: the study's heads (shared Dense 64, per task Dense 32, sigmoid).
        ``"linear"``: one sigmoid Dense per task on the pooled features, the shape of a logistic
        regression (:mod:`skin_cnn.training.linear` fits it).
    pool_blocks : (5,), (4, 5) or (3, 4, 5)
        Which blocks' outputs are globally averaged into the features: block 5 alone (the
        study), or blocks 4 and 5 (1,024 values: block 4 keeps finer texture), or blocks 3, 4
        and 5 (1,280 values), side by side in block order.
    mirror : bool
        Average the pooled features of each photo and its left–right mirror image inside the
        model (:mod:`skin_cnn.models.views`): test-time augmentation every consumer inherits.
    sqrt_features : bool
        Square-root the pooled features of each view
        (:class:`~skin_cnn.models.views.SquareRootFeatures`) before the views are averaged.
    second_scale : int, optional
        Also run the trunk on the input resized inside the model to ``second_scale``² and put
        that scale's pooled blocks after the input scale's (:func:`_scaled_trunk_outputs`).
    """

    input_shape: Any = (250, 250, 3)
    weights: Any = "imagenet"
    fine_tune_blocks: int = 0
    dense_units: int = 64
    task_units: int = 32
    l2: float = 5e-4
    dropout: float = 0.0
    seed: int | None = None
    stn_output_size: Any = None
    preprocessing: Any = None
    head: str = "mlp"
    pool_blocks: Any = (5,)
    mirror: bool = False
    sqrt_features: bool = False
    second_scale: int = 0


def build_model(variant: str, spec: ModelSpec | None = None, **settings: Any) -> keras.Model:
    """Build one of the study's multi-task VGG-16 models.

    Parameters
    ----------
    variant : str
        ``"P"``, ``"N"``, ``"PS"`` or ``"NS"`` (``"VGG-16P"``, ``"vgg16p"`` … also accepted).
    spec : ModelSpec, optional
        The model's settings (defaults: the study's VGG-16 at 250×250 with the ImageNet trunk).
    **settings
        Any field of :class:`ModelSpec` by name (``input_shape=(64, 64, 3)``, ``seed=0`` …),
        replacing the one in ``spec``; an unknown name is a TypeError.

    Returns
    -------
    keras.Model
        Named ``vgg16p``, ``vgg16n``, ``vgg16ps`` or ``vgg16ns``; input ``image``, then the
        ``skin_cnn_info`` identity layer (tasks, classes, preprocessing); outputs a dict keyed
        by ``skin_cnn.core.tasks.TASK_NAMES``, each ``(batch, 1)`` sigmoid.
    """
    variant_spec = resolve_variant(variant)
    spec = _model_spec(spec, settings)
    input_shape, trunk_shape = _check_size(spec.input_shape, spec.stn_output_size, variant_spec.spatial_transformer)
    fine_tune_blocks = _check_fine_tuning(spec.fine_tune_blocks, variant_spec)
    info = ModelInfo(tasks=task_entries(TASK_NAMES), preprocessing=_as_dict(spec.preprocessing))
    if info.preprocessing is not None and tuple(info.preprocessing["image_size"]) != input_shape[:2]:
        raise ValueError(
            f"preprocessing image_size {tuple(info.preprocessing['image_size'])} differs from the "
            f"model input {input_shape[:2]}"
        )
    if spec.head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}; got {spec.head!r}")
    pool_blocks = tuple(int(b) for b in spec.pool_blocks)
    if pool_blocks not in POOL_BLOCKS:
        raise ValueError(f"pool_blocks must be one of {POOL_BLOCKS}; got {pool_blocks}")
    weights_path = _trunk_weights(variant_spec, spec.weights)

    image = keras.Input(shape=input_shape, name=INPUT_NAME, dtype="float32")
    x = info(image)
    if spec.mirror:
        x = MirrorViews(name=MIRROR_VIEWS)(x)
    if variant_spec.spatial_transformer:
        x = SpatialTransformer(output_size=spec.stn_output_size, seed=spec.seed, name=SPATIAL_TRANSFORMER)(x)
    x = VGG16Preprocess(name=PREPROCESS)(x)
    first_trained_block = VGG16_BLOCKS - fine_tune_blocks + 1 if variant_spec.pretrained else 1
    trunk_in = x
    outputs, trunk = _trunk(x, _vgg16_layers(trunk_shape, weights_path, spec.seed), first_trained_block)
    pooled = [_global_pool(outputs, b, f"block{b}_global_pool" if b < 5 else GLOBAL_POOL) for b in pool_blocks]
    if spec.second_scale:
        pooled += _scaled_trunk_outputs(trunk_in, trunk, int(spec.second_scale), pool_blocks)
    x = _pooled_features(pooled, spec.mirror, spec.sqrt_features)
    return keras.Model(image, _heads(x, spec), name=variant_spec.model_name)


def _model_spec(spec, settings):
    """``spec`` (or the defaults) with ``settings`` put in; a TypeError names an unknown setting."""
    if spec is not None and not isinstance(spec, ModelSpec):
        raise TypeError(f"build_model() takes a ModelSpec after the variant, got {spec!r}; "
                        "pass settings such as input_shape by name")
    unknown = sorted(set(settings) - {f.name for f in fields(ModelSpec)})
    if unknown:
        raise TypeError(f"build_model() got unexpected keyword arguments {unknown}; "
                        f"expected some of {[f.name for f in fields(ModelSpec)]}")
    return replace(spec if spec is not None else ModelSpec(), **settings)


def _check_fine_tuning(fine_tune_blocks, variant_spec):
    """``fine_tune_blocks`` as an int, once it is known to suit the variant."""
    fine_tune_blocks = int(fine_tune_blocks)
    if not 0 <= fine_tune_blocks <= VGG16_BLOCKS:
        raise ValueError(
            f"fine_tune_blocks must be between 0 and {VGG16_BLOCKS}; got {fine_tune_blocks}"
        )
    if fine_tune_blocks and not variant_spec.pretrained:
        raise ValueError(
            f"fine_tune_blocks applies to P and PS; VGG-16{variant_spec.name} trains every layer"
        )
    return fine_tune_blocks


def _trunk(x, layers, first_trained_block):
    """Apply the VGG-16 ``layers`` (``(copy, weights source)`` pairs) to ``x``.

    Each copy takes its source's weights once built, and blocks below ``first_trained_block``
    are frozen. Returns every layer's output by layer name (the pooled blocks read them) and
    the layers in order (a second scale calls them again).
    """
    outputs, trunk = {}, []
    for layer, source in layers:
        x = outputs[layer.name] = layer(x)
        if source is not None:
            layer.set_weights(source.get_weights())
        if trunk_block(layer.name) < first_trained_block:
            layer.trainable = False
        trunk.append(layer)
    return outputs, trunk


def _heads(features, spec):
    """The per-task outputs on the pooled ``features``: the study's MLP heads or linear ones."""
    if spec.head == "linear":
        return linear_heads(features, TASK_NAMES, seed=spec.seed)
    return multitask_heads(
        features,
        TASK_NAMES,
        dense_units=spec.dense_units,
        task_units=spec.task_units,
        l2=spec.l2,
        dropout=spec.dropout,
        seed=spec.seed,
    )


def _global_pool(outputs, block, name):
    """Global average of ``block{block}_pool``'s tensor in ``outputs`` (layer name → tensor)."""
    return keras.layers.GlobalAveragePooling2D(name=name)(outputs[f"block{block}_pool"])


def _scaled_trunk_outputs(trunk_input, trunk, size, pool_blocks):
    """The pooled blocks of the same trunk run on its input resized to ``size``² inside the model.

    The VGG-16 layers are called a second time (shared weights, one copy in the file), on the
    preprocessed input bilinearly resized: the photo's lesions meet the ImageNet filters at a
    second scale without a second input. Their first call stays node 0, so Grad-CAM and
    ``layer.output`` keep meaning the input scale. The names carry the size
    (``second_scale250_block5_global_pool``).
    """
    if size < MIN_TRUNK_SIZE:
        raise ValueError(f"second_scale must be at least {MIN_TRUNK_SIZE}; got {size}")
    prefix = f"{SECOND_SCALE}{size}"
    x = keras.layers.Resizing(size, size, interpolation="bilinear", name=prefix)(trunk_input)
    outputs = {}
    for layer in trunk:
        x = outputs[layer.name] = layer(x)
    return [_global_pool(outputs, b, f"{prefix}_block{b}_global_pool") for b in pool_blocks]


def _pooled_features(pooled, mirror, sqrt_features=False):
    """The pooled feature vector the heads read; its last layer is :data:`POOLED_FEATURES` when composite.

    Order: the pooled blocks side by side (input scale in block order, then the second scale's)
    → [square root] → [mean of the views].
    """
    steps = []
    if len(pooled) > 1:
        steps.append(lambda x, name: keras.layers.Concatenate(name=name)(pooled))
    if sqrt_features:
        steps.append(lambda x, name: SquareRootFeatures(name=name)(x))
    if mirror:
        steps.append(lambda x, name: MeanOfViews(views=MirrorViews.views, name=name)(x))
    x = pooled[0]
    for i, step in enumerate(steps):
        x = step(x, POOLED_FEATURES if i == len(steps) - 1 else f"pooled_step{i + 1}")
    return x


def linear_heads(features, tasks=TASK_NAMES, seed=None):
    """One sigmoid ``Dense(1)`` per task on ``features``, named after the task."""
    return {
        task: keras.layers.Dense(
            1,
            activation="sigmoid",
            kernel_initializer=keras.initializers.GlorotUniform(
                seed=None if seed is None else int(seed) + 102 + 2 * i
            ),
            name=task,
        )(features)
        for i, task in enumerate(tasks)
    }


def _as_dict(preprocessing):
    return preprocessing.to_dict() if hasattr(preprocessing, "to_dict") else preprocessing


# ------------------------------------------------------------------------------------------
# Splitting a frozen-trunk model for the feature cache


def split_at_frozen_boundary(model):
    """Split a frozen-trunk model into a fixed feature extractor and the part that trains.

    The boundary is the last layer of the model's input chain before the first layer with
    trainable weights: the global pooling when the whole trunk is frozen (features are 512-d
    vectors), the last frozen block's pooling (e.g. ``block4_pool``) with ``fine_tune_blocks``.

    Features from ``feature_model`` can be cached because everything before the boundary is a
    fixed function of the image: no trainable weights, no batch statistics or dropout in VGG-16.
    A cache is only exact for the images it was computed from, so random augmentation has to
    happen before caching (e.g. a few augmented copies), not per epoch.

    Returns
    -------
    feature_model, head_model : keras.Model
        ``feature_model``: image → boundary features. ``head_model``: features → the task dict.
        Both share their layers with ``model``: training ``head_model`` updates ``model`` in
        place, and ``head_model(feature_model(x))`` equals ``model(x)``.

    Raises
    ------
    ValueError
        The model has a spatial transformer (trainable and in front of the trunk, so trunk
        features change during training) or no frozen layer with weights (VGG-16N).
    """
    stns = [layer.name for layer in model.layers if isinstance(layer, SpatialTransformer)]
    if stns:
        raise ValueError(
            f"model {model.name!r} cannot be split for a feature cache: its spatial transformer "
            f"({stns[0]}) trains and sits in front of the trunk, so trunk features change with "
            "every step; train the full model on images instead"
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.inputs)} inputs; expected one image input"
        )
    previous = model.inputs[0]
    boundary = None
    frozen_weights = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if (
            layer.input is not previous
            or layer.trainable_weights
            or isinstance(layer, keras.layers.Dropout)
        ):
            break
        boundary = layer
        frozen_weights += len(layer.non_trainable_weights)
        previous = layer.output
    pooled = _frozen_pooled_features(model)
    if pooled is not None:  # the input chain ends inside the trunk (or forks: a second scale)
        boundary, frozen_weights = pooled, len(keras.Model(model.inputs[0], pooled.output).non_trainable_weights)
    if boundary is not None and boundary.name != POOLED_FEATURES and _has_layer(model, MIRROR_VIEWS):
        raise ValueError(
            f"model {model.name!r} averages mirror views after its trainable layers, so its "
            f"frozen part ({boundary.name}) sees two rows per photo and cannot be cached; train "
            "it on images (feature cache off) or freeze the whole trunk"
        )
    if boundary is None or frozen_weights == 0:
        raise ValueError(
            f"model {model.name!r} has no frozen trunk layers in front of its first trainable "
            "layer (a fully trainable VGG-16N?), so there are no fixed features to cache"
        )
    output_names = set(getattr(model, "output_names", []) or [])
    if boundary.name in output_names:
        raise ValueError(f"model {model.name!r} is frozen up to its outputs; nothing would train")
    feature_model = keras.Model(model.inputs[0], boundary.output, name=f"{model.name}_features")
    head_model = keras.Model(boundary.output, model.output, name=f"{model.name}_head")
    return feature_model, head_model


def _has_layer(model, name):
    return any(layer.name == name for layer in model.layers)


def _frozen_pooled_features(model):
    """The :data:`POOLED_FEATURES` layer when everything in front of it is frozen, else None."""
    try:
        layer = model.get_layer(POOLED_FEATURES)
    except ValueError:
        return None
    head = keras.Model(layer.output, model.output)
    downstream = {id(h) for h in head.layers}
    if any(other.trainable_weights for other in model.layers if id(other) not in downstream):
        return None
    return layer


# ------------------------------------------------------------------------------------------
# Parameter counts


def _size(variables):
    total = 0
    for v in variables:
        n = 1
        for d in v.shape:
            n *= int(d)
        total += n
    return total


def parameter_counts(model):
    """``{"trainable": n, "non_trainable": n, "total": n}`` parameter counts of ``model``."""
    trainable = _size(model.trainable_weights)
    frozen = _size(model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}


def model_summary_table(model):
    """One row per layer: name, type, output shape, parameters, and how many of them train.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, type, output_shape, parameters, trainable, frozen``; print it or write
        it to a run folder to show what a variant fine-tunes.
    """
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            shape = None
        trainable = _size(layer.trainable_weights)
        frozen = _size(layer.non_trainable_weights)
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(shape),
                "parameters": trainable + frozen,
                "trainable": trainable,
                "frozen": frozen,
            }
        )
    return pd.DataFrame(
        rows, columns=["layer", "type", "output_shape", "parameters", "trainable", "frozen"]
    )
