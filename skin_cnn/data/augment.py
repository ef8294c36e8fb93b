"""Training-time augmentation: random zoom in and out, flips, rotation and shift (Keras layers).

The study augmented training images with random zoom in or out, horizontal and vertical flips,
rotation and shift. The same four transformations are Keras preprocessing layers here, so they
run inside a ``tf.data`` pipeline, inside a model, or on a NumPy batch (the training feature
cache calls :func:`augmentation_layers` to make augmented views), always with the same code.

Keras is imported only when the layers are built, so reading a configuration stays cheap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

FILL_MODES = ("reflect", "wrap", "constant", "nearest")


@dataclass
class AugmentConfig:
    """Strengths of the random transformations applied to training images.

    Attributes
    ----------
    zoom : float
        Maximum zoom as a fraction of the size, both in and out: 0.2 draws a zoom factor in
        ``[-20 %, +20 %]`` (Keras ``RandomZoom(height_factor=(-zoom, zoom))``, width the same).
    rotation : float
        Maximum rotation as a fraction of a full turn, both directions (Keras
        ``RandomRotation``): 0.1 is up to ±36°. Skin photos have no canonical "up".
    translation : float
        Maximum shift as a fraction of height and width, both directions.
    horizontal_flip, vertical_flip : bool
        Random mirror images left-right and top-bottom.
    fill_mode : {"reflect", "wrap", "constant", "nearest"}
        How pixels uncovered by zoom-out, rotation or shift are filled. ``reflect`` (Keras'
        default) continues the skin texture instead of adding black corners.
    """

    zoom: float = 0.2
    rotation: float = 0.1
    translation: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = True
    fill_mode: str = "reflect"

    def __post_init__(self):
        for name in ("zoom", "rotation", "translation"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"augmentation {name} must lie in [0, 1); got {value!r}")
            setattr(self, name, value)
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}; got {self.fill_mode!r}")
        self.horizontal_flip = bool(self.horizontal_flip)
        self.vertical_flip = bool(self.vertical_flip)

    @property
    def enabled(self):
        """True when at least one transformation is switched on."""
        return bool(self.zoom or self.rotation or self.translation or self.horizontal_flip or self.vertical_flip)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict; a single ``flip`` key sets both flips (the ``skin-cnn train`` option)."""
        values = dict(values or {})
        if "flip" in values:
            flip = bool(values.pop("flip"))
            values.setdefault("horizontal_flip", flip)
            values.setdefault("vertical_flip", flip)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {unknown}; expected some of {sorted(known)}")
        return cls(**values)


def augmentation_layers(config=None, *, seed=0):
    """A ``keras.Sequential`` applying the configured random transformations.

    Parameters
    ----------
    config : AugmentConfig, PipelineConfig or None
        The strengths; a :class:`~skin_cnn.data.pipeline.PipelineConfig` contributes its
        ``augment`` field and its ``seed``. ``None`` means the defaults.
    seed : int
        Base seed; each layer gets its own seed derived from it, so two models built with the
        same seed draw the same transformations.

    Returns
    -------
    keras.Sequential
        Called with ``training=True`` it transforms a float batch ``(B, H, W, 3)`` and keeps its
        shape and value range; with ``training=False`` it returns the batch unchanged. An
        all-off configuration gives an identity model.
    """
    import keras

    if config is None:
        config = AugmentConfig()
    if not isinstance(config, AugmentConfig):
        seed = int(getattr(config, "seed", seed))
        config = getattr(config, "augment", None)
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"expected an AugmentConfig or a PipelineConfig; got {type(config).__name__}")
    layers = []
    if config.horizontal_flip or config.vertical_flip:
        mode = "horizontal_and_vertical"
        if not config.vertical_flip:
            mode = "horizontal"
        elif not config.horizontal_flip:
            mode = "vertical"
        layers.append(keras.layers.RandomFlip(mode, seed=seed, name="random_flip"))
    if config.rotation:
        layers.append(
            keras.layers.RandomRotation(config.rotation, fill_mode=config.fill_mode, seed=seed + 1,
                                        name="random_rotation")
        )
    if config.zoom:
        layers.append(
            keras.layers.RandomZoom((-config.zoom, config.zoom), (-config.zoom, config.zoom),
                                    fill_mode=config.fill_mode, seed=seed + 2, name="random_zoom")
        )
    if config.translation:
        layers.append(
            keras.layers.RandomTranslation(config.translation, config.translation, fill_mode=config.fill_mode,
                                           seed=seed + 3, name="random_translation")
        )
    if not layers:
        layers.append(keras.layers.Identity(name="no_augmentation"))
    return keras.Sequential(layers, name="augmentation")
