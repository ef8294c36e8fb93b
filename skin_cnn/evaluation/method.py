"""The training method of a run, in words, listing only the settings that took effect.

A run's ``config.json`` holds every setting, including those its recipe never used: a
``--recipe frozen-linear`` run still carries the study's zoom, rotation, flips, optimizer and
learning rate as unused defaults. Copied into a paper, such a list misreports the method. This
module turns the resolved settings into the rows that describe what ran — the README's recipe
table, the model card, the report's preprocessing and model sections and the reporting
checklists all read it, so none of them can drift from the others.

What applies:

* augmentation (zoom, rotation, shift, flips) only when the training saw augmented images: every
  epoch without the feature cache, or through stored views with it (``cache_views`` > 0); the
  linear heads on a cache without views see none;
* optimizer, learning rate, batch size, epochs, early stopping and the learning-rate schedule only
  for heads trained by gradient descent (``head: mlp``);
* for the linear heads, the logistic regression, its grid of C and how it was chosen, and (when
  known) the C chosen per task;
* mirror views, the pooled blocks and the square root as set;
* the threshold rule and what it was fitted on.

It reads plain dictionaries (the ``train`` and ``resolved`` entries of ``config.json``), so the
evaluation layer can use it without importing the training code.
"""
from __future__ import annotations

#: Inverse L2 strengths the linear heads try (``skin_cnn.training.linear.C_GRID`` refers here).
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
#: Folds of the linear heads' inner cross-validation.
INNER_FOLDS = 5
#: The study's heads are Platt-scaled only on a task whose validation predictions hold at least
#: this many photos of each class (:mod:`skin_cnn.training.head_calibration` re-exports it).
PLATT_MIN_PHOTOS_PER_CLASS = 10


def _on(value):
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def uses_feature_cache(train):
    """Whether the heads trained on stored trunk features (``feature_cache`` resolved)."""
    setting = str(train.get("feature_cache", "auto"))
    if setting == "off":
        return False
    return train.get("variant", "P") == "P" and int(train.get("fine_tune_blocks", 0)) < 5


def augmentation_applies(train, feature_cache=None):
    """Whether any training image was augmented."""
    strengths = any(float(train.get(k, 0) or 0) > 0 for k in ("zoom", "rotation", "translation"))
    if not (strengths or _on(train.get("flip", False))):
        return False
    cached = uses_feature_cache(train) if feature_cache is None else bool(feature_cache)
    return not cached or int(train.get("cache_views", 0)) > 0


def threshold_text(train):
    """The threshold rule and what it is fitted on."""
    rule = str(train.get("threshold", "0.5")).strip().lower()
    try:
        value = float(rule)
    except ValueError:
        value = None
    if value is not None:
        return f"{value:g}, pre-specified"
    what = {"youden": "Youden's J (maximum sensitivity + specificity − 1)",
            "study": "the widest margin over the study's sensitivity and specificity (the smaller of "
                     "the two margins as large as possible)"}.get(rule, rule)
    on = ("the inner out-of-fold predictions of the train and validation images"
          if train.get("head") == "linear" else "the validation predictions of the best epoch")
    return f"{what}, fitted on {on}; the cut-off halfway between adjacent scores"


def calibration_text(train):
    """How the heads' probabilities were calibrated (``calibration`` setting)."""
    platt = str(train.get("calibration", "none")) == "sigmoid"
    if train.get("head") != "linear":
        if not platt:
            return "none: the heads' own sigmoid outputs"
        return ("Platt scaling: a logistic map of each task's score fitted on the validation predictions "
                "of the best epoch and folded into the task's sigmoid layer (a task with fewer than "
                f"{PLATT_MIN_PHOTOS_PER_CLASS} validation photos of a class is left as it was; calibration.json "
                "lists each map). The same photos chose the epoch and the threshold, so the validation "
                "predictions look better calibrated than new photos will; held-out photos measure it")
    if platt:
        return ("Platt scaling: a logistic map of each task's score fitted on the inner out-of-fold "
                "probabilities of the train and validation images and folded into the head's weights")
    return "none: the logistic regression's own probabilities"


def platt_maps_text(maps):
    """``psoriasis_vs_eczema a=0.40 b=-0.34, …; left as it was: …`` for the study heads' maps."""
    from skin_cnn.core.tasks import TASK_NAMES

    fitted = ", ".join(f"{t} a={m['a']:.2f} b={m['b']:+.2f}" for t, m in maps.items()) or "none fitted"
    left = [t for t in TASK_NAMES if t not in maps]
    return fitted + (f"; left as it was: {', '.join(left)}" if left else "")


def _mask_rows(train):
    """The method row of a run that masks parts of every photo (none when it masks nothing)."""
    parts = []
    if float(train.get("mask_border") or 0):
        parts.append(f"{float(train['mask_border']):.0%} of every side")
    parts += [f"box {', '.join(f'{float(v):g}' for v in box)}" for box in train.get("mask_boxes") or ()]
    if not parts:
        return []
    return [("preprocessing", "Masks", "; ".join(parts) + " of every photo painted with the ImageNet mean colour")]


def trained_blocks_text(tuned):
    """Which of VGG-16's five blocks train when the last ``tuned`` do, in words a reader checks.

    >>> trained_blocks_text(1)
    'block 5 trained, blocks 1–4 frozen'
    >>> trained_blocks_text(2)
    'blocks 4–5 trained, blocks 1–3 frozen'
    >>> trained_blocks_text(4)
    'blocks 2–5 trained, block 1 frozen'
    >>> trained_blocks_text(5)
    'all five blocks trained'
    """
    first = 6 - int(tuned)
    if first <= 1:
        return "all five blocks trained"
    trained = "block 5" if first == 5 else f"blocks {first}–5"
    frozen = "block 1" if first == 2 else f"blocks 1–{first - 1}"
    return f"{trained} trained, {frozen} frozen"


def method_rows(train, *, feature_cache=None, preprocessing=None, chosen_c=None, platt_maps=None):
    """What ran, as ``(section, setting, value)`` rows; ``section`` is ``preprocessing`` or ``model``.

    Parameters
    ----------
    train : dict
        The run's resolved settings (``config.json``'s ``train``).
    feature_cache : bool, optional
        Whether the heads trained on stored features (``config.json``'s ``resolved``); derived
        from ``train`` when not given.
    preprocessing : dict, optional
        ``config.json``'s ``preprocessing`` (resize, antialias, crop parameters).
    chosen_c : dict of str -> float, optional
        The C each task's logistic regression chose (``linear_fit.json``).
    platt_maps : dict of str -> dict, optional
        The study heads' Platt maps by task (``calibration.json``); a task without one was left
        as it was.
    """
    size = train.get("image_size", (preprocessing or {}).get("image_size"))
    size = size[0] if isinstance(size, (list, tuple)) else size
    rows = [("preprocessing", "Model input", f"{size}×{size} pixels"
             + (f", resize {preprocessing.get('resize')}" if preprocessing and preprocessing.get("resize") else ""))]
    if _on(train.get("crop", False)):
        rows.append(("preprocessing", "Hue-clustering crop", f"on ({train.get('crop_method', 'study')} method)"))
    else:
        rows.append(("preprocessing", "Hue-clustering crop", "off: the whole photo is resized"))
    rows += _mask_rows(train)
    rows.append(("preprocessing", "Mirror views",
                 "each photo and its left-right mirror image; their features averaged inside the model"
                 if _on(train.get("mirror", False)) else "none"))
    if augmentation_applies(train, feature_cache):
        cached = uses_feature_cache(train) if feature_cache is None else bool(feature_cache)
        text = (f"zoom ±{float(train.get('zoom', 0)):g}, rotation ±{float(train.get('rotation', 0)):g} turn, "
                f"shift ±{float(train.get('translation', 0)):g}, flips {'on' if _on(train.get('flip')) else 'off'}")
        text += (f"; {int(train.get('cache_views', 0))} stored augmented views per training image" if cached
                 else "; drawn anew every epoch")
        rows.append(("preprocessing", "Augmentation", f"training images only: {text}"))
    else:
        rows.append(("preprocessing", "Augmentation", "none"))
    linear = train.get("head") == "linear"
    if _on(train.get("balanced", False)) and not linear:
        rows.append(("preprocessing", "Class-balanced oversampling", "on"))

    variant = str(train.get("variant", "P"))
    weights = "ImageNet weights" if variant in ("P", "PS") and str(train.get("weights", "")).lower() not in (
        "none", "random", "") else "random initial weights"
    tuned = int(train.get("fine_tune_blocks", 0) or 0)
    trunk = f"VGG-16 ({weights}), " + ("frozen" if variant in ("P", "PS") and not tuned
                                       else trained_blocks_text(tuned) if variant in ("P", "PS")
                                       else "all layers trained")
    rows.append(("model", "Trunk", trunk + (", spatial transformer in front" if variant.endswith("S") else "")))
    rows.append(("model", "Pooled features", "global average of " + pooled_blocks_text(
                     train.get("pool_blocks", "5"), train.get("second_scale", 0), size)
                 + (", square-rooted" if _on(train.get("sqrt_features", False)) else "")))
    if linear:
        grid = ", ".join(f"{c:g}" for c in C_GRID)
        rows.append(("model", "Heads", "one L2 logistic regression per task on the standardised features of the "
                     f"train and validation images; C from {{{grid}}} chosen by patient-grouped inner "
                     f"{INNER_FOLDS}-fold cross-validation (AUC)"))
        if chosen_c:
            rows.append(("model", "C chosen", ", ".join(f"{t} {float(c):g}" for t, c in chosen_c.items())))
        rows.append(("model", "Calibration", calibration_text(train)))
    else:
        rows.extend(_study_head_rows(train, platt_maps))
    rows.append(("model", "Threshold", threshold_text(train)))
    rows.append(("model", "Seed", str(train.get("seed"))))
    return rows


def _study_head_rows(train, platt_maps=None):
    """The rows of the study's heads: architecture, optimizer, epochs, calibration and its maps."""
    rows = [("model", "Heads", "Dense 64 ReLU, then per task Dense 32 ReLU and a sigmoid (L2 5e-4)")]
    parts = [str(train["optimizer"])] if train.get("optimizer") else []
    if train.get("learning_rate") is not None:
        parts.append(f"learning rate {float(train['learning_rate']):g}")
    if train.get("batch_size") is not None:
        parts.append(f"batch {train['batch_size']}")
    if parts:
        rows.append(("model", "Optimizer", ", ".join(parts)))
    if train.get("epochs") is not None:
        rows.append(("model", "Epochs", f"at most {train['epochs']}; the epoch with the best validation mean AUC "
                     f"kept; early stop after {train.get('patience')} epochs without improvement; learning rate "
                     f"×{train.get('lr_factor')} after {train.get('lr_patience')}"))
    rows.append(("model", "Calibration", calibration_text(train)))
    if platt_maps is not None:
        rows.append(("model", "Platt maps", platt_maps_text(platt_maps)))
    return rows


def pooled_blocks_text(pool_blocks, second_scale=0, size=None):
    """The pooled blocks in words, with the second scale when the model has one."""
    names = {"5": "block 5", "4+5": "blocks 4 and 5, side by side", "3+4+5": "blocks 3, 4 and 5, side by side"}
    text = names.get(str(pool_blocks), f"blocks {pool_blocks}")
    if second_scale and int(second_scale):
        at = f" at {size}×{size}" if size else ""
        text += f"{at} and again on the input resized to {int(second_scale)}×{int(second_scale)} inside the model"
    return text


def method_summary(train, **kwargs):
    """One line of the method (for a checklist cell): the rows' values joined."""
    return "; ".join(f"{name}: {value}" for _, name, value in method_rows(train, **kwargs)
                     if name not in ("Seed",))
