"""``training_curves.png``: loss and per-task AUC per epoch, training vs validation."""
from __future__ import annotations

import math

from skin_cnn.core import io as atomic
from skin_cnn.core.tasks import TASK_NAMES


def plot_training_curves(history, path, title=None):
    """Draw loss and per-task AUC curves from a history table and save them as a PNG.

    Parameters
    ----------
    history : pandas.DataFrame
        ``history.csv``: one row per epoch with ``epoch``, ``loss``, ``val_loss``,
        ``<task>_auc``/``val_<task>_auc`` and ``mean_auc``/``val_mean_auc`` where available.
    path : path
        Output PNG.
    """
    from matplotlib.figure import Figure

    panels = (
        [("loss", "loss")]
        + [(f"{t}_auc", t.replace("_", " ") + " AUC") for t in TASK_NAMES]
        + [("mean_auc", "mean AUC")]
    )
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    epochs = history["epoch"] if "epoch" in history else range(1, len(history) + 1)
    best = None
    if "val_mean_auc" in history and len(history):
        best = int(history["epoch"].iloc[int(history["val_mean_auc"].to_numpy().argmax())])
    for ax, (key, label) in zip(axes.flat, panels):
        for name, style, text in ((key, "-o", "train"), (f"val_{key}", "-s", "validation")):
            if name in history and history[name].notna().any():
                ax.plot(epochs, history[name], style, ms=3, label=text)
        if best is not None:
            ax.axvline(best, color="grey", ls=":", lw=1, label=f"best epoch ({best})")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        if key != "loss":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
