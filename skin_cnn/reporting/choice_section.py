"""The report's sentence and table on a fitted threshold's own uncertainty.

The intervals come from :func:`skin_cnn.evaluation.threshold_choice.add_threshold_choice`
(``threshold_choice`` of each task in ``metrics.json``): one redoes the threshold's choice in
every bootstrap resample, the other holds the threshold fixed.
"""

from __future__ import annotations

from skin_cnn.core.tasks import task_title
from skin_cnn.evaluation.threshold_choice import CHOICE_METRICS
from skin_cnn.reporting.cells import fmt_interval, fmt_value


def _computed_choices(metrics):
    """``(task, task entry, threshold_choice entry)`` of every task whose choice holds intervals."""
    for task, entry in metrics["tasks"].items():
        choice = entry.get("threshold_choice")
        if choice and not choice.get("too_few_units"):
            yield task, entry, choice


def _first_computed(metrics):
    """The first task's ``threshold_choice`` entry that holds intervals (its method is the one named)."""
    return next(choice for _, _, choice in _computed_choices(metrics))


def choice_text(metrics):
    """A report sentence per task comparing the two intervals, or "" when there is none."""
    parts = []
    for task, _, choice in _computed_choices(metrics):
        cells = []
        for m in CHOICE_METRICS:
            refit, fixed = choice.get(m), choice["fixed"].get(m)
            if refit and fixed:
                cells.append(f"{m} {100 * refit[0]:.1f}–{100 * refit[1]:.1f}% "
                             f"(threshold held fixed: {100 * fixed[0]:.1f}–{100 * fixed[1]:.1f}%)")
        if cells:
            parts.append(f"{task}: " + "; ".join(cells))
    if not parts:
        return ""
    first = _first_computed(metrics)
    return ("Intervals that include the uncertainty of choosing the threshold "
            f"({int(100 * first['confidence'])}%, {first['method']}): " + "; ".join(parts) + ".")


def add_choice_text(rep, metrics):
    """The sentence of :func:`choice_text` as a paragraph of ``rep``, when there is one."""
    text = choice_text(metrics)
    if text:
        rep.para(text)


CHOICE_HEADER = ["Task", "Sensitivity, threshold choice included", "Sensitivity, threshold held fixed",
                 "Specificity, threshold choice included", "Specificity, threshold held fixed"]


def choice_rows(metrics):
    """Rows of the table beside the main sensitivity/specificity table, one per task whose
    threshold was chosen on validation predictions: the point estimate with the interval that
    redoes the choice in every resample, and with the interval at the threshold held fixed."""
    rows = []
    for task, entry, choice in _computed_choices(metrics):
        cells = []
        for m in CHOICE_METRICS:
            value = (entry.get(m) or {}).get("value")
            shown = fmt_value(value) if value is not None else "n/a"
            cells += [f"{shown} ({fmt_interval(choice.get(m))})", f"{shown} ({fmt_interval(choice['fixed'].get(m))})"]
        rows.append([task_title(task), *cells])
    return rows


def add_choice_table(rep, metrics):
    """The table of :func:`choice_rows` under a sentence saying what it shows; nothing when no
    task's threshold was chosen on validation predictions."""
    few = [f"{task_title(t)}: {e['threshold_choice']['too_few_units']}" for t, e in metrics["tasks"].items()
           if (e.get("threshold_choice") or {}).get("too_few_units")]
    if few:
        rep.para("No interval including the threshold choice for " + "; ".join(few) + ".")
    rows = choice_rows(metrics)
    if not rows:
        return
    first = _first_computed(metrics)
    rep.table(CHOICE_HEADER, rows)
    rep.para(
        f"The threshold was chosen on validation predictions, so it is an estimate too: the "
        f"first interval of each metric ({int(100 * first['confidence'])}%) includes the uncertainty "
        f"of that choice ({first['method']}); the second holds the threshold fixed on the same "
        "resamples of the evaluated images."
    )
