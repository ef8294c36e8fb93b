"""Every setting of a training run in one dataclass, resolved once and written to ``config.json``.

A run is described by three layers of settings, each overriding the one before it:

1. the defaults below (the study's heads and batch 64 with Adam; learning rate 1e-3 (2e-5 when
   trunk layers train), halved after 5 epochs and stopped after 20 without a better validation
   mean AUC, up to 200 epochs — the schedule chosen for heads on the frozen trunk by
   patient-grouped cross-validation on public photos, docs/experiments/study-recipe.md; the
   epoch with the best validation mean AUC kept);
2. a YAML or JSON file given with ``--config`` (keys are the field names below; ``-`` and ``_``
   are interchangeable);
3. the command-line flags the user actually typed.

The resolved configuration, plus library versions and the split file's SHA-256, is what a run
folder's ``config.json`` holds and what ``skin-cnn train --resume`` reads back, so a resumed run
uses exactly the settings of the run it continues. This module imports neither TensorFlow nor
Keras: the CLI reads it just to show ``--help``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from skin_cnn.core.compute_precision import PRECISIONS
from skin_cnn.core.specs import CROP_METHODS, check_mask

VARIANTS = ("P", "N", "PS", "NS")
OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("auto", "mirrored", "multi-worker")
HEADS = ("mlp", "linear")
POOL_BLOCKS = ("5", "4+5", "3+4+5")
CALIBRATIONS = ("auto", "none", "sigmoid")

#: Variants whose convolutional trunk starts from ImageNet weights and stays frozen.
PRETRAINED_VARIANTS = ("P", "PS")


#: Default Adam learning rates: heads on a frozen trunk (chosen by patient-grouped cross-validation,
#: docs/experiments/study-recipe.md) and a trunk that trains (from scratch or fine-tuned blocks).
FROZEN_TRUNK_LEARNING_RATE = 1e-3
TRAINED_TRUNK_LEARNING_RATE = 2e-5


def default_learning_rate(variant, fine_tune_blocks=0):
    """The default initial learning rate for ``variant`` with ``fine_tune_blocks`` trained blocks.

    1e-3 suits the small heads on a frozen ImageNet trunk but wrecks a trunk that trains (random
    VGG-16 weights, or pretrained blocks being fine-tuned), which wants about 2e-5.
    """
    trains = variant not in PRETRAINED_VARIANTS or int(fine_tune_blocks or 0) > 0
    return TRAINED_TRUNK_LEARNING_RATE if trains else FROZEN_TRUNK_LEARNING_RATE


#: Largest model input side accepted (the study: 250). A 1024² input already costs VGG-16 about
#: 0.27 GB of activations per image in its first layer alone.
MAX_IMAGE_SIZE = 1024
#: Smallest second scale: VGG-16 halves the image five times.
MIN_SECOND_SCALE = 32


def prepared_bytes(image_size, n_images=1):
    """Disk taken by ``n_images`` prepared training images (uint8 RGB, ``image_size``²)."""
    return int(n_images) * int(image_size) ** 2 * 3


@dataclass
class TrainConfig:
    """All settings of one training run.

    Attributes
    ----------
    split : str
        Split CSV (manifest plus ``split`` column) to train on.
    out : str
        Run folder to write.
    variant : {"P", "N", "PS", "NS"}
        VGG-16P (ImageNet, frozen trunk), VGG-16N (random, trained trunk), and the same two with
        a spatial transformer in front (PS, NS).
    weights : str
        ``"imagenet"``, ``"none"`` or a path to a VGG-16 notop weights file. Only used by the
        pretrained variants; ``"imagenet"`` resolves through the Keras cache or the
        ``SKIN_CNN_VGG16_WEIGHTS`` environment variable.
    image_size : int
        Height and width of the square model input (the study: 250).
    crop : bool
        Hue-crop the background away before resizing (the study's best data version).
    crop_method : {"study", "circular"}
        How the hue crop clusters hue: the study's (faithful) or hue as a circle with grey,
        dark and bright pixels left out (:mod:`skin_cnn.data.crop`).
    mask_border : float
        Paint this fraction of every side of each photo with the ImageNet mean colour before
        the crop is cut out (0: off; :mod:`skin_cnn.data.masking`).
    mask_boxes : tuple of (float, float, float, float)
        Rectangles ``(left, top, right, bottom)``, fractions of every photo, painted the same
        way (e.g. DermNet NZ's watermark, :data:`skin_cnn.core.specs.DERMNET_WATERMARK_BOX`).
    balanced : bool
        Oversample the training split so each disease is seen equally often.
    zoom, rotation, translation : float
        Augmentation strengths (fractions, as Keras' RandomZoom, RandomRotation and
        RandomTranslation take them; 0 turns one off).
    flip : bool
        Random horizontal and vertical flips.
    epochs, batch_size, optimizer : ...
        Optimisation settings. The defaults (up to 200 epochs, Adam) train the study's heads on a
        frozen trunk to convergence.
    learning_rate : float or None
        Initial learning rate. None (the default) resolves once, when the configuration is made,
        by whether the trunk trains: 1e-3 for heads on a frozen trunk (P, PS), 2e-5 when trunk
        layers train (N, NS, or ``fine_tune_blocks`` > 0), the rate a trained VGG-16 trunk wants
        (:func:`default_learning_rate`). A value given explicitly always wins; the resolved value
        is what ``config.json`` stores, so a resumed run keeps it.
    fine_tune_blocks : int
        Let the last N VGG-16 blocks train (0: the whole trunk frozen, as the paper says).
    patience : int
        Epochs without a better validation mean AUC before training stops early.
    lr_patience, lr_factor : int, float
        Epochs without improvement before the learning rate is multiplied by ``lr_factor``.
    seed : int
        Fixes Python, NumPy and TensorFlow, the shuffling order and the augmentation of every
        epoch (a function of seed and epoch, so a resumed run replays identically).
    feature_cache : {"auto", "on", "off"}
        Train the heads on stored trunk features. ``auto`` uses it whenever the trunk is frozen
        and no spatial transformer sits before it (variant P).
    cache_views : int
        Augmented views per training image stored in the feature cache, besides the clean view.
    cache_dir : str or None
        Feature-cache folder, shared by every run and found again by each photo's content;
        default the per-user folder (:func:`skin_cnn.training.feature_cache.default_cache_dir`).
    strategy : {"auto", "mirrored", "multi-worker"}
        tf.distribute strategy (docs/distributed.md).
    evaluate : bool
        Evaluate the best model on the test split into ``<run folder>/eval_test`` afterwards
        (``--evaluate-test``). Off by default: looking at the test split is a deliberate act,
        normally ``skin-cnn evaluate RUN`` once the model is final.
    tensorboard : bool
        Write TensorBoard logs into ``<run folder>/tensorboard``.
    save_last : bool
        Also write ``last.keras``, the model after the last epoch (``best.keras`` is always
        written; each is a full VGG-16 of about 60 MB).
    precision : {"auto", "float32", "bfloat16", "float16"}
        What the VGG-16 trunk computes in (:mod:`skin_cnn.models.precision_policy`); ``auto``:
        float16 on a GPU, else bfloat16 on CPUs with AMX-BF16 or AVX512-BF16, else float32. The
        resolved value is recorded in ``config.json`` (``resolved``) and a resumed run keeps it.
    second_scale : int
        0, or the side of a second view of every photo: the model resizes its input to
        ``second_scale``² inside itself and pools the same blocks of the trunk run on it, after
        the input scale's (:func:`skin_cnn.models.build_model`).
    calibration : {"auto", "none", "sigmoid"}
        Platt scaling folded into each task's sigmoid layer: linear heads fit it on each task's
        inner out-of-fold probabilities (:func:`skin_cnn.training.linear.calibrate_fit`), the
        study's heads on the validation predictions of the best epoch
        (:mod:`skin_cnn.training.head_calibration`). ``auto`` (the default) is ``sigmoid`` for
        the study's heads, whose out-of-fold expected calibration error it lowered from
        0.12 / 0.06 / 0.12 to 0.05 / 0.03 / 0.05 (docs/experiments/table2.md), and ``none`` for
        the linear heads (the recipes say which they use); it is resolved when the settings are.
    """

    split: str = ""
    out: str = ""
    variant: str = "P"
    weights: str = "imagenet"
    image_size: int = 250
    crop: bool = True
    crop_method: str = "study"
    mask_border: float = 0.0
    mask_boxes: tuple = ()
    balanced: bool = False
    zoom: float = 0.2
    rotation: float = 0.1
    translation: float = 0.1
    flip: bool = True
    epochs: int = 200
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float | None = None
    fine_tune_blocks: int = 0
    patience: int = 20
    lr_patience: int = 5
    lr_factor: float = 0.5
    seed: int = 0
    feature_cache: str = "auto"
    cache_views: int = 4
    cache_dir: str | None = None
    strategy: str = "auto"
    evaluate: bool = False
    tensorboard: bool = True
    save_last: bool = False
    head: str = "mlp"
    pool_blocks: str = "5"
    mirror: bool = False
    sqrt_features: bool = False
    threshold: str = "0.5"
    precision: str = "auto"
    second_scale: int = 0
    calibration: str = "auto"

    def __post_init__(self):
        if self.calibration == "auto":  # resolved here, so a run records what it did
            self.calibration = "none" if self.head == "linear" else "sigmoid"
        #: How ``learning_rate`` was chosen: "set" or the default rule that chose it.
        self.learning_rate_origin = "set"
        if self.learning_rate is None:
            self.learning_rate = default_learning_rate(self.variant, self.fine_tune_blocks)
            self.learning_rate_origin = ("default: the trunk trains" if self.trunk_trains()
                                         else "default: heads on a frozen trunk")

    # -------------------------------------------------------------------------------------
    def validate(self, source="configuration"):
        """Raise one ValueError naming ``source`` and the first bad setting."""
        def bad(name, why):
            raise ValueError(f"{source}: {name}={getattr(self, name)!r}: {why}")

        if self.variant not in VARIANTS:
            bad("variant", f"expected one of {', '.join(VARIANTS)}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"expected one of {', '.join(OPTIMIZERS)}")
        if self.strategy not in STRATEGIES:
            bad("strategy", f"expected one of {', '.join(STRATEGIES)}")
        if self.precision not in PRECISIONS:
            bad("precision", f"expected one of {', '.join(PRECISIONS)}")
        if self.feature_cache not in ("auto", "on", "off"):
            bad("feature_cache", "expected auto, on or off")
        for name in ("image_size", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be at least 1")
        if self.image_size < 32:
            bad("image_size", "VGG-16 needs at least 32x32 pixels")
        if self.image_size > MAX_IMAGE_SIZE:
            bad("image_size", f"at most {MAX_IMAGE_SIZE}: every prepared training image would take "
                f"{prepared_bytes(self.image_size) / 1e9:,.1f} GB of disk and the model's first "
                f"layer {self.image_size ** 2 * 64 * 4 / 1e9:,.1f} GB of memory per image (at "
                f"{MAX_IMAGE_SIZE}: {prepared_bytes(MAX_IMAGE_SIZE) / 1e6:.1f} MB and "
                f"{MAX_IMAGE_SIZE ** 2 * 64 * 4 / 1e9:.2f} GB)")
        for name in ("fine_tune_blocks", "patience", "lr_patience", "cache_views"):
            if int(getattr(self, name)) < 0:
                bad(name, "must not be negative")
        if self.second_scale and not MIN_SECOND_SCALE <= int(self.second_scale) <= MAX_IMAGE_SIZE:
            bad("second_scale", f"0 (off) or a side from {MIN_SECOND_SCALE} to {MAX_IMAGE_SIZE}")
        if self.calibration not in CALIBRATIONS:
            bad("calibration", f"expected one of {', '.join(CALIBRATIONS)}")
        if self.fine_tune_blocks > 5:
            bad("fine_tune_blocks", "VGG-16 has 5 blocks")
        if not self.learning_rate > 0:
            bad("learning_rate", "must be positive")
        if not 0 < self.lr_factor < 1:
            bad("lr_factor", "must lie strictly between 0 and 1")
        for name in ("zoom", "rotation", "translation"):
            if not 0 <= float(getattr(self, name)) < 1:
                bad(name, "augmentation strength must lie in [0, 1)")
        if self.crop_method not in CROP_METHODS:
            bad("crop_method", f"expected one of {', '.join(CROP_METHODS)}")
        try:
            check_mask(self.mask_border, ())
        except ValueError as exc:
            bad("mask_border", str(exc))
        try:
            check_mask(0.0, self.mask_boxes)
        except ValueError as exc:
            bad("mask_boxes", str(exc))
        if self.head not in HEADS:
            bad("head", f"expected one of {', '.join(HEADS)}")
        if str(self.pool_blocks) not in POOL_BLOCKS:
            bad("pool_blocks", f"expected one of {', '.join(POOL_BLOCKS)}")
        if self.head == "linear" and not (self.variant == "P" and self.fine_tune_blocks == 0):
            bad("head", "the linear head is fitted on frozen features: it needs variant P with "
                "fine_tune_blocks 0")
        if self.head == "linear" and self.feature_cache == "off":
            bad("feature_cache", "the linear head is fitted on the cached features; leave the cache on")
        if self.mirror and self.fine_tune_blocks and self.use_feature_cache():
            bad("mirror", "mirror views are averaged behind the trunk; with trained blocks the "
                "feature cache cannot hold them (use --feature-cache off)")
        from skin_cnn.evaluation.threshold import parse_threshold

        try:
            parse_threshold(str(self.threshold))
        except ValueError as exc:
            bad("threshold", str(exc))
        if self.feature_cache == "on" and not self.trunk_frozen_without_stn():
            bad("feature_cache", f"variant {self.variant} trains layers in front of the trunk's end "
                "(trunk or spatial transformer); the feature cache needs variant P")
        return self

    # -------------------------------------------------------------------------------------
    @property
    def pretrained(self):
        return self.variant in PRETRAINED_VARIANTS

    @property
    def has_stn(self):
        return self.variant.endswith("S")

    def trunk_trains(self):
        """True when VGG-16 trunk layers are trained: variants N/NS, or ``fine_tune_blocks`` > 0."""
        return not self.pretrained or int(self.fine_tune_blocks or 0) > 0

    def trunk_frozen_without_stn(self):
        """True when the model's images pass a fixed function before the first trainable layer.

        Only then can the output of that function be computed once and stored: variant P (all
        blocks frozen, or the first ``5 - fine_tune_blocks`` blocks frozen). A spatial
        transformer in front trains, so PS and NS cannot be cached; N trains its trunk.
        """
        return self.variant == "P" and self.fine_tune_blocks < 5

    def use_feature_cache(self):
        """Resolve ``feature_cache="auto"`` to a bool."""
        if self.feature_cache == "off":
            return False
        return self.trunk_frozen_without_stn()

    def model_weights(self):
        """The ``weights`` argument for the trunk: None for random variants and ``"none"``."""
        if not self.pretrained or str(self.weights).lower() in ("none", "random", ""):
            return None
        return self.weights

    def preprocessing(self):
        """The run's :class:`~skin_cnn.core.specs.Preprocessing` (the crop method's default parameters)."""
        from skin_cnn.core.specs import Preprocessing

        return Preprocessing(image_size=(int(self.image_size), int(self.image_size)), crop=bool(self.crop),
                             crop_params={"method": self.crop_method}, mask_border=float(self.mask_border),
                             mask_boxes=tuple(tuple(box) for box in self.mask_boxes))

    def pooled_blocks(self):
        """``pool_blocks`` as the tuple :func:`~skin_cnn.models.build_model` takes."""
        return tuple(int(b) for b in str(self.pool_blocks).split("+"))

    def to_dict(self):
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))

#: Named sets of settings (``--recipe NAME``); flags typed on the command line override them.
#: ``study``: the published recipe (the defaults). ``frozen-linear``: chosen by patient-grouped
#: cross-validation on public photos (docs/experiments/unseen.md).
RECIPES = {
    "study": {},
    "frozen-linear": {"head": "linear", "pool_blocks": "4+5", "mirror": True, "sqrt_features": True,
                      "crop": False, "image_size": 250, "threshold": "youden", "cache_views": 0},
}
#: ``frozen-linear-two-scale``: frozen-linear at 320² with a second pooling at 250² and Platt
#: scaling, chosen by development CV and confirmed on other folds (docs/experiments/best-recipe.md).
RECIPES["frozen-linear-two-scale"] = dict(RECIPES["frozen-linear"], image_size=320, second_scale=250,
                                          calibration="sigmoid")
#: ``study-fine-tuned``: the study's heads with block 5 trained on augmented views and no crop, at
#: the learning rate and epoch budget measured for it by development CV
#: (docs/experiments/study-recipe.md#block-5-trained-on-augmented-views).
RECIPES["study-fine-tuned"] = {"crop": False, "fine_tune_blocks": 1, "learning_rate": 1e-4, "epochs": 100,
                               "patience": 10, "threshold": "study"}


def recipe_table(recipes=None):
    """The recipes as a Markdown table of what each one runs (docs/training.md shows it).

    Each recipe is resolved like ``--recipe NAME`` and described by
    :func:`skin_cnn.evaluation.method.method_rows`: settings a recipe does not use (the study's
    augmentation and optimizer for the linear heads) are "—", not listed as if they ran.
    """
    from skin_cnn.evaluation.method import method_rows

    recipes = RECIPES if recipes is None else recipes
    described = {}
    for name, settings in recipes.items():
        config = resolve_config(dict(settings, split="split.csv", out="run"), source=f"recipe {name}")
        described[name] = {setting: value for _, setting, value in
                           method_rows(config.to_dict(), feature_cache=config.use_feature_cache())}
    settings = list(dict.fromkeys(s for rows in described.values() for s in rows))
    lines = ["| setting | " + " | ".join(f"`--recipe {n}`" for n in recipes) + " |",
             "|---|" + "---|" * len(recipes)]
    for setting in settings:
        lines.append(f"| {setting} | " + " | ".join(described[n].get(setting, "—") for n in recipes) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
def load_config_file(path):
    """Read a YAML or JSON settings file into a dict of TrainConfig field names.

    A run folder's ``config.json`` is accepted too: its ``train`` entry holds the settings.
    Unknown keys are an error (a misspelt setting would otherwise be ignored in silence).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: configuration file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise different types
        raise ValueError(f"{path}: not a valid {path.suffix.lstrip('.').upper() or 'YAML'} file: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of setting names to values")
    if "train" in data and isinstance(data["train"], dict):
        data = data["train"]
    settings = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELD_NAMES:
            raise ValueError(f"{path}: unknown setting {key!r}; known settings: {', '.join(FIELD_NAMES)}")
        coerce_setting(name, value, path)  # a bad value names this file, not a later caller
        settings[name] = value
    return settings


#: Fields whose default is None (resolved later) but whose values have a type: an example value.
_TYPED_NONE_DEFAULTS = {"learning_rate": FROZEN_TRUNK_LEARNING_RATE}


def _field_prototype(name):
    """A value of the type the field ``name`` holds (its default, or an example when that is None)."""
    return _TYPED_NONE_DEFAULTS.get(name, TrainConfig.__dataclass_fields__[name].default)


def _coerce(name, value):
    """Convert a value from YAML/JSON/CLI to the type of the TrainConfig field."""
    default = _field_prototype(name)
    if value is None or name == "cache_dir":
        return None if value in (None, "") else str(value)
    if isinstance(default, bool):
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return bool(value)
    if name == "feature_cache" and isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, tuple):  # mask_boxes: a list of [left, top, right, bottom]
        if isinstance(value, (str, bytes)):
            raise ValueError(f"{name}: expected a list of boxes")
        return tuple(tuple(float(v) for v in box) for box in value)
    return str(value)


def coerce_setting(name, value, source):
    """:func:`_coerce`, with a bad value reported as one line naming ``source`` and the setting.

    ``int("abc")`` alone says "invalid literal for int() with base 10", naming neither the file
    nor the setting it came from.
    """
    try:
        return _coerce(name, value)
    except (TypeError, ValueError):
        default = _field_prototype(name)
        kind = ("true or false" if isinstance(default, bool) else "a whole number" if isinstance(default, int)
                else "a number" if isinstance(default, float)
                else "a list of [left, top, right, bottom] fractions" if isinstance(default, tuple) else "a text value")
        raise ValueError(f"{source}: {name}={value!r}: expected {kind}") from None


def resolve_config(file_settings: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None,
                   source: str = "configuration") -> TrainConfig:
    """Defaults, then the file's settings, then explicit overrides; validated.

    Parameters
    ----------
    file_settings : dict, optional
        Settings read from ``--config`` (or a run's saved config when resuming).
    overrides : dict, optional
        Settings the user set on the command line; they win over the file.
    """
    merged = {}
    for layer in (file_settings or {}, overrides or {}):
        for name, value in layer.items():
            if name not in FIELD_NAMES:
                raise ValueError(f"{source}: unknown setting {name!r}")
            merged[name] = coerce_setting(name, value, source)
    return TrainConfig(**merged).validate(source)


# ----------------------------------------------------------------------------------------------
def library_versions():
    """Versions of the package and of every library whose behaviour a run depends on."""
    from importlib import metadata

    import skin_cnn

    versions = {"skin_cnn": skin_cnn.__version__, "python": sys.version.split()[0],
                "platform": platform.platform()}
    for dist, name in (("tensorflow", "tensorflow"), ("tensorflow-cpu", "tensorflow"),
                       ("keras", "keras"), ("numpy", "numpy"), ("pandas", "pandas"),
                       ("scikit-learn", "scikit-learn"), ("pillow", "pillow")):
        if name in versions:
            continue
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_config_document(config, *, split_sha256, data=None, resolved=None):
    """The full ``config.json`` document of a run folder."""
    return {
        "train": config.to_dict(),
        "preprocessing": config.preprocessing().to_dict(),
        "split_sha256": split_sha256,
        "versions": library_versions(),
        "resolved": dict(resolved or {}),
        "data": dict(data or {}),
        "created": _now(),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else "",
    }


def _now():
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
