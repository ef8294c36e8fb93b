"""Warnings that travel with a number: degenerate intervals and counts below the minimum.

"AUC 100.00% (100.00–100.00%)" on seven test images reads as certainty, and an AUC of 100%
beside a sensitivity of 0% reads as a contradiction. Both are arithmetic facts that need their
reason next to them, in the table cell, the legend or the CSV row itself, because readers copy a
cell without its footnotes. This module says, for one metric entry of ``metrics.json``, what a
reader must know before quoting it; every table, legend and CSV that prints a metric uses it.

The minimum (:data:`MIN_COUNT`) and its reason are stated in ``docs/statistics.md``.
"""

from __future__ import annotations

#: Fewest images in a metric's denominator (for the AUC: in each class) below which the value
#: is flagged as resting on too few images. Below it one image moves a proportion by more than
#: ten percentage points, the exact interval of a perfect 9/9 still reaches down to 66%, and the
#: DeLong variance (a large-sample approximation) is unreliable.
MIN_COUNT = 10

_WHAT = {
    "sensitivity": ("n_positive", "positive image"),
    "specificity": ("n_negative", "negative image"),
    "accuracy": ("n_images", "image"),
}


def denominator(metric, task):
    """``[(count, what), ...]``: the images a metric of a task entry is computed from."""
    if metric in _WHAT:
        key, what = _WHAT[metric]
        return [(task.get(key), what)]
    if metric == "ppv":
        return [(task.get("tp", 0) + task.get("fp", 0), "image predicted positive")]
    if metric == "npv":
        return [(task.get("tn", 0) + task.get("fn", 0), "image predicted negative")]
    if metric == "auc":
        return [(task.get("n_positive"), "positive image"), (task.get("n_negative"), "negative image")]
    raise ValueError(f"unknown metric {metric!r}")


def _plural(n, what):
    """``1 positive image``, ``3 images predicted positive``."""
    return f"{n} {what if n == 1 else what.replace('image', 'images', 1)}"


def caveats(metric, entry, task, min_count=MIN_COUNT):
    """What must be said beside a metric's value, one short phrase each (empty when nothing).

    Parameters
    ----------
    metric : str
        ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``accuracy`` or ``auc``.
    entry : dict
        ``{"value", "ci"}`` (a ``metrics.json`` metric or a bootstrap interval as ``ci``).
    task : dict
        The task entry of ``metrics.json`` (class counts and 2×2 cells).
    min_count : int

    Returns
    -------
    list of str
        ``zero-width interval (not certainty)`` when the interval has no width; ``only N
        positive images (minimum 10)`` for each denominator below ``min_count``; and, for
        sensitivity or specificity, ``no image predicted positive (negative)`` when the threshold
        put every image on one side, which is why an AUC (a ranking) can be high beside a
        sensitivity of 0%.
    """
    entry = entry or {}
    if entry.get("value", entry.get("ci")) is None:
        return []  # already printed as n/a with its reason
    out = []
    ci = entry.get("ci")
    if ci is not None and ci[0] is not None and ci[1] is not None and abs(ci[1] - ci[0]) < 1e-12:
        out.append("zero-width interval (not certainty)")
    if metric == "sensitivity" and task.get("tp", 0) + task.get("fp", 0) == 0 and task.get("n_images"):
        out.append("no image predicted positive at this threshold")
    if metric == "specificity" and task.get("tn", 0) + task.get("fn", 0) == 0 and task.get("n_images"):
        out.append("no image predicted negative at this threshold")
    # a denominator of 0 leaves the value undefined, which its own note already says
    small = [(n, what) for n, what in denominator(metric, task) if n is not None and 0 < n < min_count]
    if small:
        out.append("only " + " and ".join(_plural(n, what) for n, what in small) + f" (minimum {min_count})")
    return out


def flagged(text, metric, entry, task, min_count=MIN_COUNT):
    """``text`` followed by its caveats in bold brackets, for a table cell."""
    found = caveats(metric, entry, task, min_count)
    return f"{text} **[{'; '.join(found)}]**" if found else text
