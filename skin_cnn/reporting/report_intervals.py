"""Which intervals the report's main tables carry, and the section with the other kind.

Images of one patient (or of one near-duplicate group of ``skin-cnn split``) are not independent,
so when the evaluated images come from fewer such units than images the main tables show the
cluster bootstrap intervals (:func:`skin_cnn.evaluation.metrics.promote_cluster_intervals`) and
the image-level intervals (Clopper–Pearson, Mercaldo–Lau–Zhou, DeLong) follow as a labelled
secondary table. When every image is its own unit the image-level intervals stay first and the
bootstrap ones are the secondary table, as before.
"""

from __future__ import annotations

from skin_cnn.stats.bootstrap import METRICS
from skin_cnn.reporting.cells import auc_method_text, bootstrap_text, fmt_interval
from skin_cnn.evaluation.metrics import METRIC_LABELS
from skin_cnn.core.tasks import task_title
from skin_cnn.stats.precision import flagged

IMAGE_LEVEL_HEADING = "Image-level intervals (secondary: every image treated as independent)"


def _promoted(tasks):
    return [t for t, e in tasks.items() if e.get("interval_unit", "image") != "image"]


def _units_phrase(entry):
    boot = entry["bootstrap"]
    return f"{boot['n_units']} {boot['unit']}s for {entry['n_images']} images"


def image_level_text(metrics):
    """What the image-level intervals are, for the sentence under a table that shows them."""
    return (
        "exact Clopper–Pearson for sensitivity, specificity and accuracy; logit interval of "
        "Mercaldo, Lau & Zhou (2007) at the sample prevalence for PPV and NPV; AUC: "
        + auc_method_text(metrics)
    )


def _too_few(tasks):
    """Task → why it has no cluster bootstrap interval (too few patients or split groups per class)."""
    return {t: e["bootstrap"]["too_few_units"] for t, e in tasks.items()
            if (e.get("bootstrap") or {}).get("too_few_units")}


def too_few_text(tasks):
    """The sentence naming the tasks without a cluster interval, and why; "" when there are none."""
    few = _too_few(tasks)
    if not few:
        return ""
    return (" No cluster bootstrap interval for " + "; ".join(f"{task_title(t)}: {why}" for t, why in few.items())
            + ". Its intervals are image-level, which treat every image as independent: with "
            "several images per patient they are too narrow.")


def headline_text(metrics):
    """The sentence under the main tables: which intervals they show and why."""
    tasks = metrics["tasks"]
    promoted = _promoted(tasks)
    if not promoted and _too_few(tasks):
        return "Intervals in these tables are image-level: " + image_level_text(metrics) + "." + too_few_text(tasks)
    if not promoted:
        return (
            "Intervals in these tables are image-level: " + image_level_text(metrics) + ". Every "
            "evaluated image is its own unit here (no patient or split group holds two), so "
            "image-level intervals are appropriate."
        )
    boot = tasks[promoted[0]]["bootstrap"]
    where = "; ".join(f"{task_title(t)}: {_units_phrase(tasks[t])}" for t in promoted)
    text = (
        f"Intervals in these tables are **cluster bootstrap** intervals ({boot['method']}, "
        f"{boot['n_resamples']:,} resamples, seed {boot['seed']}; resampling unit: **{boot['unit']}**, "
        "whole units drawn within each class), "
        f"because the images come from fewer units than images ({where}) and images of one unit "
        "are not independent. The image-level intervals, which treat every image as "
        "independent and are narrower for it, follow in their own table below."
    )
    rest = [task_title(t) for t in tasks if t not in promoted and t not in _too_few(tasks)]
    text += too_few_text(tasks)
    if rest:
        text += (
            f" {', '.join(rest)}: every image is its own unit or the bootstrap did not run, so "
            "its intervals are image-level (" + image_level_text(metrics) + ")."
        )
    return text


def add_secondary_intervals(rep, metrics):
    """The table of the intervals the main tables do not show.

    Cluster bootstrap first → the image-level intervals, labelled as secondary. Image-level
    first → the bootstrap intervals (their unit said), as a second view. Nothing when neither
    exists (bootstrap not run and nothing promoted).
    """
    tasks = metrics["tasks"]
    promoted = _promoted(tasks)
    if promoted:
        rep.heading(IMAGE_LEVEL_HEADING)
        rep.para(
            "The same metrics with intervals that treat every image as independent: "
            + image_level_text(metrics)
            + ". Several images of one unit are correlated, so these intervals are too narrow "
            "here; they are given for comparison with studies that report them, not as the "
            "result."
        )
        rows = []
        for t in promoted:
            e = tasks[t]
            cells = []
            for m in METRICS:
                image = e[m].get("image_level") or e[m]
                cells.append(flagged(fmt_interval(image["ci"], m), m, {"ci": image["ci"]}, e))
            rows.append([task_title(t)] + cells)
        rep.table(["Task"] + [METRIC_LABELS[m] for m in METRICS], rows)
        return
    boots = {t: e["bootstrap"] for t, e in tasks.items() if e.get("bootstrap")}
    if not boots:
        return
    rep.heading("Bootstrap intervals")
    rep.para(bootstrap_text(next(iter(boots.values()))) + too_few_text(tasks))
    rep.table(
        ["Task"] + [METRIC_LABELS[m] for m in METRICS],
        [
            [task_title(t)]
            + [flagged(fmt_interval(b.get(m), m), m, {"ci": b.get(m)}, tasks[t]) for m in METRICS]
            for t, b in boots.items()
        ],
    )


def independence_limitation(metrics):
    """The limitation about correlated images, saying what this report did about it."""
    tasks = metrics["tasks"]
    boots = [e["bootstrap"] for e in tasks.values() if e.get("bootstrap")]
    unit = boots[0]["unit"] if boots else None
    if _promoted(tasks):
        return (
            "Several images of one patient are correlated; the main tables therefore show "
            f"{unit}-level cluster bootstrap intervals, and the image-level intervals (too "
            "narrow here) only as a labelled secondary table. The bootstrap itself assumes the "
            f"{unit}s are independent of one another."
        )
    text = (
        "Clopper–Pearson, logit and DeLong intervals treat images as independent; several images "
        "of one patient are correlated, so these intervals are too narrow when patients contribute "
        "many images"
    )
    if _too_few(tasks):
        return text + f"; here there were too few {unit}s for a cluster bootstrap interval."
    if unit in ("patient", "split group"):
        return text + f" (here every {unit} holds one image, so the two coincide)."
    return text + "; without patient ids or split groups the bootstrap cannot correct this."
