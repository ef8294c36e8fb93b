"""Platt scaling of the study's heads (``--calibration sigmoid``, the default for them).

The study's heads end, per task, in a ``Dense(1)`` with a sigmoid: the layer's pre-activation is
the logit of the probability it answers. Platt scaling, ``sigmoid(a · logit(p) + b)``, is then a
change of that layer's weights (kernel × a, bias × a + b), so the calibrated model is the same
architecture and predict, serve, Grad-CAM and the exports need to know nothing about it.

The map is fitted on the validation predictions of the best epoch, the only predictions of a run
that its training did not fit (the epoch and the threshold are chosen on them too, so a held-out
check of the map is what ``skin-cnn cv`` measures on each fold's held-out photos). Thresholds are
fitted afterwards, on the calibrated validation predictions.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from skin_cnn.evaluation.method import PLATT_MIN_PHOTOS_PER_CLASS
from skin_cnn.training.linear import platt_parameters

#: A task's map is fitted only on validation predictions holding at least this many photos of
#: each class: on fewer, two free parameters follow a handful of photos (on three separable
#: photos the slope runs into the hundreds and every answer becomes 0 or 1).
MIN_PHOTOS_PER_CLASS = PLATT_MIN_PHOTOS_PER_CLASS


def platt_maps(validation: pd.DataFrame, tasks, min_per_class: int = MIN_PHOTOS_PER_CLASS
               ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Platt slope and intercept of every task of ``validation`` (predictions-table layout).

    Returns
    -------
    maps : dict of str -> {"method", "a", "b", "n"}
        One map per task whose validation predictions hold at least ``min_per_class`` photos of
        each class and give a positive slope (a map with ``a <= 0`` would reverse the model's
        ranking; it happens when the validation photos are ranked the wrong way round).
    notes : list of str
        One line per task left uncalibrated, saying why, and a warning per task whose
        validation predictions were perfectly separated (the fitted slope is then only as large
        as the optimiser's tolerance lets it grow).
    """
    maps, notes = {}, []
    for task in tasks:
        part = validation[validation["task"] == task]
        y = part["y_true"].to_numpy(dtype=np.int64)
        p = part["y_prob"].to_numpy(dtype=np.float64)
        fewest = min(int((y == 1).sum()), int((y == 0).sum()))
        if fewest < min_per_class:
            notes.append(f"{task}: not calibrated, its validation predictions hold {fewest} photo(s) of one "
                         f"class (Platt scaling needs at least {min_per_class} of each)")
            continue
        a, b = platt_parameters(y, p)
        if not a > 0:  # the map would turn the model's ranking round (AUC 1 - AUC)
            notes.append(f"{task}: not calibrated, the Platt slope fitted on its {len(y)} validation predictions "
                         f"is {a:.3g} (a slope at or below 0 would reverse the model's ranking)")
            continue
        maps[task] = {"method": "sigmoid", "a": a, "b": b, "n": int(len(y))}
        if p[y == 1].min() > p[y == 0].max():  # no finite slope fits: the map answers near 0 or 1
            notes.append(f"{task}: warning: its {len(y)} validation predictions are perfectly separated, so the "
                         f"Platt map (slope {a:.3g}) answers close to 0 or 1")
    return maps, notes


def fold_into_heads(model: Any, maps: dict[str, dict[str, float]]) -> None:
    """Write each task's Platt map into the kernel and bias of the model's sigmoid layer of that task."""
    for task, calibration in maps.items():
        layer = model.get_layer(task)
        kernel, bias = layer.get_weights()
        a, b = calibration["a"], calibration["b"]
        layer.set_weights([(kernel * a).astype(kernel.dtype), (bias * a + b).astype(bias.dtype)])


def calibrate_heads(model: Any, validation: pd.DataFrame, tasks, echo: Callable[[str], object] = print,
                    min_per_class: int = MIN_PHOTOS_PER_CLASS) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Fit Platt maps on ``validation`` and fold them into ``model``; returns the maps and the notes
    (:func:`platt_maps`), each note also said through ``echo``."""
    maps, notes = platt_maps(validation, tasks, min_per_class)
    for line in notes:
        echo(line)
    fold_into_heads(model, maps)
    for task, m in maps.items():
        echo(f"  {task:<22} Platt scaling a={m['a']:.3f} b={m['b']:+.3f} (on {m['n']} validation photos)")
    return maps, notes
