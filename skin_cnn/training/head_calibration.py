"""Platt scaling of the study's heads (``--calibration sigmoid`` without ``--head linear``).

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

from skin_cnn.training.linear import platt_parameters


def platt_maps(validation: pd.DataFrame, tasks) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Platt slope and intercept of every task of ``validation`` (predictions-table layout).

    Returns
    -------
    maps : dict of str -> {"method", "a", "b", "n"}
        One map per task whose validation predictions hold both classes and give a positive
        slope (a map with ``a <= 0`` would reverse the model's ranking; it happens when the
        validation photos are ranked the wrong way round).
    notes : list of str
        One line per task left uncalibrated, saying why, and a warning per task whose
        validation predictions were perfectly separated (the fitted slope is then only as large
        as the optimiser's tolerance lets it grow).
    """
    maps, notes = {}, []
    for task in tasks:
        part = validation[validation["task"] == task]
        y = part["y_true"].to_numpy(dtype=np.int64)
        if len(np.unique(y)) < 2:
            notes.append(f"{task}: not calibrated, its validation predictions hold "
                           f"{'no photo' if not len(y) else 'one class only'}")
            continue
        a, b = platt_parameters(y, part["y_prob"].to_numpy(dtype=np.float64))
        if not a > 0:  # the map would turn the model's ranking round (AUC 1 - AUC)
            notes.append(f"{task}: not calibrated, the Platt slope fitted on its {len(y)} validation "
                           f"predictions is {a:.3g} (a slope at or below 0 would reverse the model's ranking)")
            continue
        maps[task] = {"method": "sigmoid", "a": a, "b": b, "n": int(len(y))}
        p = part["y_prob"].to_numpy(dtype=np.float64)
        if p[y == 1].min() > p[y == 0].max():  # no finite slope fits: the map answers near 0 or 1
            notes.append(f"{task}: warning: its {len(y)} validation predictions are perfectly separated, so "
                           f"the Platt map (slope {a:.3g}) answers close to 0 or 1; more validation photos "
                           "give a map worth having")
    return maps, notes


def fold_into_heads(model: Any, maps: dict[str, dict[str, float]]) -> None:
    """Write each task's Platt map into the kernel and bias of the model's sigmoid layer of that task."""
    for task, calibration in maps.items():
        layer = model.get_layer(task)
        kernel, bias = layer.get_weights()
        a, b = calibration["a"], calibration["b"]
        layer.set_weights([(kernel * a).astype(kernel.dtype), (bias * a + b).astype(bias.dtype)])


def calibrate_heads(model: Any, validation: pd.DataFrame, tasks,
                    echo: Callable[[str], object] = print) -> dict[str, dict[str, float]]:
    """Fit Platt maps on ``validation`` and fold them into ``model``; returns the maps."""
    maps, notes = platt_maps(validation, tasks)
    for line in notes:
        echo(line)
    fold_into_heads(model, maps)
    for task, m in maps.items():
        echo(f"  {task:<22} Platt scaling a={m['a']:.3f} b={m['b']:+.3f} (on {m['n']} validation photos)")
    return maps
