"""Settings that travel together through the stages, as plain dataclasses and dictionaries.

:class:`Preprocessing` (how a photo becomes the model's input) is written into a run's
``config.json`` and into the model file, and read back by training, evaluation, ``predict``,
``serve`` and ``export``; the crop settings it carries are resolved here too. Nothing here reads
an image, so the model layer can check a stored record without loading Pillow or the crop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

#: Crop methods: the study's hue line (the faithful default) and hue as a circle.
CROP_METHODS = ("study", "circular")

#: Default keyword arguments of :func:`~skin_cnn.data.crop.hue_crop_box`, as recorded in a run's ``crop_params``.
DEFAULT_CROP_PARAMS = {
    "method": "study",
    "downscale": 4,
    "n_clusters": 2,
    "ratio_bounds": (0.1, 0.3),
    "max_scan_height": 1 / 2.3,
    "max_scan_width": 1 / 2.1,
}

#: Settings only the ``"circular"`` method has, with their defaults: pixels whose HSV saturation
#: or value (0..1) falls outside these limits have no meaningful hue and are left out.
CIRCULAR_CROP_PARAMS = {
    "min_saturation": 0.15,
    "min_value": 0.12,
    "max_value": 0.98,
}


def resolve_crop_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full crop settings for ``params``: its method's defaults, then ``params``.

    A mapping without ``method`` is the study's method (what runs recorded before there was a
    choice). Unknown keys, an unknown method, or circular-only keys given to the study's method
    are one ValueError naming them.
    """
    params = dict(params or {})
    method = params.get("method", DEFAULT_CROP_PARAMS["method"])
    if method not in CROP_METHODS:
        raise ValueError(f"unknown crop method {method!r}; expected one of {', '.join(CROP_METHODS)}")
    defaults = dict(DEFAULT_CROP_PARAMS, method=method)
    if method == "circular":
        defaults.update(CIRCULAR_CROP_PARAMS)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown crop_params {unknown} for the {method} crop; expected some of {sorted(defaults)}")
    defaults.update(params)
    return defaults


def check_scan_limits(ratio_bounds, max_scan_height, max_scan_width):
    """The crop's ratio bounds as ``(low, high)`` floats, once its scan limits are checked.

    Both crop implementations (NumPy and TensorFlow) accept the same settings, so they refuse
    the same ones with the same message: bounds outside ``0 <= low <= high <= 1``, or a scan
    deeper than half the image (opposite scans could cross).
    """
    lo, hi = (float(b) for b in ratio_bounds)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"ratio_bounds must satisfy 0 <= low <= high <= 1; got {ratio_bounds!r}")
    for name, frac in (("max_scan_height", max_scan_height), ("max_scan_width", max_scan_width)):
        if not 0.0 <= frac <= 0.5:
            raise ValueError(f"{name} must lie in [0, 0.5] so opposite scans cannot cross; got {frac!r}")
    return lo, hi


RESIZE_MODES = ("stretch", "pad")

#: Masks are given in fractions of the photo and applied at this resolution (1/10,000 of a
#: side), so the NumPy and TensorFlow masks decide every pixel with the same integer arithmetic.
MASK_RESOLUTION = 10_000

#: The colour masked pixels get: the ImageNet mean that VGG-16's caffe normalisation subtracts
#: (RGB 123.68, 116.78, 103.94, rounded), so a masked pixel enters the network as about zero.
MASK_FILL = (124, 117, 104)

#: Where DermNet NZ stamps its logo and "Te Whatu Ora / Health New Zealand" text on the public
#: photos, ``(left, top, right, bottom)`` in fractions of the photo: near-white in more than 6%
#: of its 534 photos at x 0.084-0.419, y 0.683-0.908, padded by about 1%
#: (``python docs/experiments/watermark_region.py``).
DERMNET_WATERMARK_BOX = (0.07, 0.67, 0.43, 0.92)


def check_mask(mask_border: float, mask_boxes) -> tuple:
    """The mask settings as ``(border, boxes)`` in plain floats, or one ValueError saying what is wrong.

    ``mask_border`` is the band masked along every side, a fraction of that side in ``[0, 0.5)``;
    ``mask_boxes`` holds ``(left, top, right, bottom)`` fractions with ``0 <= left < right <= 1``
    and ``0 <= top < bottom <= 1``.
    """
    try:
        border = float(mask_border)
    except (TypeError, ValueError):
        raise ValueError(f"mask_border must be a number; got {mask_border!r}") from None
    if not 0.0 <= border < 0.5:
        raise ValueError(f"mask_border must lie in [0, 0.5) (a fraction of each side); got {mask_border!r}")
    boxes = []
    for box in mask_boxes or ():
        try:
            left, top, right, bottom = (float(v) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"mask box {box!r} must be four fractions (left, top, right, bottom)") from None
        if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
            raise ValueError(f"mask box {box!r} needs 0 <= left < right <= 1 and 0 <= top < bottom <= 1")
        boxes.append((left, top, right, bottom))
    return border, tuple(boxes)


def mask_rectangles(mask_border: float, mask_boxes) -> tuple:
    """Every masked rectangle as integer ``(left, top, right, bottom)`` in units of
    :data:`MASK_RESOLUTION`: the four border bands, then the boxes.

    A pixel is masked when its centre lies in a rectangle: left <= centre < right (both axes),
    with ``right`` equal to the resolution meaning the far edge itself.
    """
    def units(value):
        return int(round(float(value) * MASK_RESOLUTION))

    full, band = MASK_RESOLUTION, units(mask_border)
    rects = []
    if band:
        rects += [(0, 0, full, band), (0, full - band, full, full), (0, 0, band, full), (full - band, 0, full, full)]
    rects += [tuple(units(v) for v in box) for box in mask_boxes]
    return tuple(rects)


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the model's input; stored in ``config.json`` as ``preprocessing``.

    Attributes
    ----------
    image_size : (int, int)
        ``(height, width)`` of the model input (the study: 250 × 250).
    crop : bool
        Cut the hue-clustering box out of the photo before resizing (the study's best data
        version); a frame's ``crop_*`` columns, when present, give the box.
    crop_params : dict
        Keyword arguments of :func:`~skin_cnn.data.crop.hue_crop_box` (default: the study's
        method and parameters; ``{"method": "circular"}`` treats hue as a circle). An entry
        without ``method`` is the study's.
    resize : {"stretch", "pad"}
        ``"stretch"`` distorts the aspect ratio to the model size, as the study's Keras loader
        did; ``"pad"`` keeps it and pads with black.
    antialias : bool
        Low-pass filter when shrinking (TensorFlow's ``antialias=True``), so a 4000-pixel photo
        shrunk to 250 keeps texture instead of aliasing into moiré.
    mask_border : float
        Paint this fraction of every side of the photo with :data:`MASK_FILL` (0: no border
        mask), so a model cannot read frames, rulers or captions there.
    mask_boxes : tuple of (float, float, float, float)
        Rectangles ``(left, top, right, bottom)``, fractions of the photo, painted the same way
        in every photo (e.g. :data:`DERMNET_WATERMARK_BOX`). Masks apply to the whole photo,
        after its crop box is found and before it is cut out.
    """

    image_size: tuple = (250, 250)
    crop: bool = True
    crop_params: dict = field(default_factory=lambda: dict(DEFAULT_CROP_PARAMS))
    resize: str = "stretch"
    antialias: bool = True
    mask_border: float = 0.0
    mask_boxes: tuple = ()

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, (int, np.integer)):
            size = (size, size)
        if not (isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(s, (int, np.integer)) and s > 0 for s in size)):
            raise ValueError(f"image_size must be [height, width] of positive integers; got {self.image_size!r}")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        params = resolve_crop_params(self.crop_params)
        params["ratio_bounds"] = tuple(float(v) for v in params["ratio_bounds"])
        object.__setattr__(self, "crop_params", params)
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {self.resize!r}")
        object.__setattr__(self, "crop", bool(self.crop))
        object.__setattr__(self, "antialias", bool(self.antialias))
        border, boxes = check_mask(self.mask_border, self.mask_boxes)
        object.__setattr__(self, "mask_border", border)
        object.__setattr__(self, "mask_boxes", boxes)

    @property
    def masked(self) -> bool:
        """Whether any part of the photo is masked."""
        return bool(self.mask_border or self.mask_boxes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready ``preprocessing`` entry of ``config.json``.

        The mask entries are written only when a mask is set, so a record (and the feature
        cache's key made from it) of a run without masks is the same as before masks existed.
        """
        values = {"image_size": list(self.image_size), "crop": self.crop,
                  "crop_params": _json_params(self.crop_params), "resize": self.resize,
                  "antialias": self.antialias}
        if self.mask_border:
            values["mask_border"] = self.mask_border
        if self.mask_boxes:
            values["mask_boxes"] = [list(box) for box in self.mask_boxes]
        return values

    @classmethod
    def from_dict(cls, values: Preprocessing | Mapping[str, Any], source: str = "preprocessing") -> Preprocessing:
        """Read a ``preprocessing`` entry; one ValueError naming ``source`` when it is bad.

        Missing keys take the defaults (crop on with the study's parameters, stretched,
        antialiased), so an entry written before ``antialias`` existed still loads.
        """
        if isinstance(values, cls):
            return values
        if not isinstance(values, dict):
            raise ValueError(f"{source}: preprocessing must be a mapping; got {type(values).__name__}")
        known = {"image_size", "crop", "crop_params", "resize", "antialias", "mask_border", "mask_boxes"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown preprocessing settings {unknown}; expected some of {sorted(known)}")
        if "image_size" not in values:
            raise ValueError(f"{source}: preprocessing needs image_size")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None

    def describe(self) -> str:
        """One line for reports and previews."""
        height, width = self.image_size
        crop = "no crop"
        if self.crop:
            crop = "hue crop" if self.crop_params["method"] == "study" else f"{self.crop_params['method']} hue crop"
        masks = []
        if self.mask_border:
            masks.append(f"border {self.mask_border:.0%} masked")
        masks += [f"box {','.join(f'{v:g}' for v in box)} masked" for box in self.mask_boxes]
        extra = "".join(f", {m}" for m in masks)
        return f"{height}×{width}, {crop}, {self.resize}{'' if self.antialias else ', no antialias'}{extra}"


#: Ways of turning bootstrap resamples into an interval (:mod:`skin_cnn.stats.bootstrap`).
BOOTSTRAP_METHODS = ("percentile", "bca")
#: Scales of the DeLong AUC interval (:func:`skin_cnn.stats.delong.auc_interval`).
AUC_CI_SCALES = ("logit", "wald")


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation computes its intervals; one object from the command line to the bootstrap.

    The same five settings decide every interval of ``metrics.json``, the subgroup and fairness
    tables and ``compare``; passing them as one value keeps them from drifting apart on the way.

    Attributes
    ----------
    n_bootstrap : int
        Bootstrap resamples (0: no bootstrap, only the image-level intervals).
    seed : int
        Seed of the resampling; a fixed seed gives the same intervals.
    confidence : float
        Confidence level of every interval, strictly between 0 and 1.
    bootstrap_method : {"percentile", "bca"}
        How the resamples become an interval.
    auc_ci : {"logit", "wald"}
        Scale of the DeLong AUC interval: logit (inside (0, 1)) or the AUC itself (the study's).
    """

    n_bootstrap: int = 2000
    seed: int = 0
    confidence: float = 0.95
    bootstrap_method: str = "percentile"
    auc_ci: str = "logit"

    def __post_init__(self) -> None:
        if not _whole(self.n_bootstrap) or self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be a whole number of resamples, 0 or more, got {self.n_bootstrap!r}")
        if not _whole(self.seed):
            raise ValueError(f"seed must be a whole number, got {self.seed!r}")
        if not _number(self.confidence) or not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence!r}")
        if self.bootstrap_method not in BOOTSTRAP_METHODS:
            raise ValueError(f"bootstrap_method must be one of {', '.join(BOOTSTRAP_METHODS)}, "
                             f"got {self.bootstrap_method!r}")
        if self.auc_ci not in AUC_CI_SCALES:
            raise ValueError(f"auc_ci must be one of {', '.join(AUC_CI_SCALES)}, got {self.auc_ci!r}")

    def replace(self, **changes: Any) -> "EvalSettings":
        """A copy with ``changes`` (checked like a new one), e.g. ``settings.replace(n_bootstrap=0)``."""
        from dataclasses import replace

        return replace(self, **changes)
