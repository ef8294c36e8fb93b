"""How a metric appears in a report: ``73.57% (69.76–77.13%)`` with its caveats in the cell, and
the sentences that name how its intervals were computed.

Shared by the evaluation report, its extra sections and the comparison report, so that a number
and its method read the same wherever they are shown.
"""

from __future__ import annotations

from skin_cnn.stats.precision import flagged


#: Metrics shown as proportions rather than percentages (the AUC is not a share of images).
PROPORTION_METRICS = ("auc",)


def fmt_value(value, metric=None):
    """``73.57%`` for a share of images, ``0.853`` (three decimals) for the AUC."""
    return f"{value:.3f}" if metric in PROPORTION_METRICS else f"{100 * value:.2f}%"


def fmt_pct(entry, metric=None):
    """``73.57% (69.76–77.13%)``, or for the AUC ``0.853 (0.781–0.925)``; ``n/a`` with the
    reason when undefined."""
    if entry is None or entry.get("value") is None:
        note = (entry or {}).get("note")
        return f"n/a ({note})" if note else "n/a"
    text = fmt_value(entry["value"], metric)
    if entry.get("ci") is not None:
        text += f" ({fmt_interval(entry['ci'], metric)})"
    return text


def metric_cell(metric, task):
    """A metric of a task entry as a table cell, with its caveats in the cell itself."""
    return flagged(fmt_pct(task[metric], metric), metric, task[metric], task)


def fmt_interval(ci, metric=None):
    """``69.76–77.13%``, or for the AUC ``0.781–0.925``; ``n/a`` when there is no interval."""
    if ci is None:
        return "n/a"
    if metric in PROPORTION_METRICS:
        return f"{ci[0]:.3f}–{ci[1]:.3f}"
    return f"{100 * ci[0]:.2f}–{100 * ci[1]:.2f}%"


def fmt_gap(value, metric):
    """A difference between groups: ``12.50 points`` of a share of images, ``0.085`` of the AUC."""
    return f"{value:.3f}" if metric in PROPORTION_METRICS else f"{100 * value:.2f} points"


UNIT_TEXT = {
    "split group": "whole **split groups** (the groups of `skin-cnn split`: patients joined with "
    "their near-duplicate images, an image with neither its own group), so that images of one "
    "patient or near-duplicate photos stay together",
    "patient": "whole **patients** (an image without a patient id is its own cluster), so that "
    "images of one patient stay together",
    "image": "single **images**: the predictions carry neither patient ids nor split groups, so "
    "images are treated as independent",
}


def bootstrap_text(boot):
    """One sentence saying how the bootstrap was run and which unit it really resampled."""
    return (
        f"{boot['n_resamples']:,} {boot['method']} bootstrap resamples (seed {boot['seed']}), "
        f"drawing {UNIT_TEXT.get(boot['unit'], boot['unit'])}. Resampling unit: "
        f"**{boot['unit']}**; units are drawn within each class (stratified), so every resample "
        "has as many positive and negative units as the data."
    )


def auc_method_text(metrics):
    """Which DeLong interval the AUC rows carry."""
    if metrics.get("auc_ci", "wald") == "logit":
        return (
            "DeLong variance, interval on the logit scale (inside (0, 1)); where the logit does not "
            "exist (AUC 0 or 1, or zero variance) the Newcombe (2006) score interval"
        )
    return "DeLong variance, Wald interval on the AUC scale clipped to [0, 1] (as the study)"
