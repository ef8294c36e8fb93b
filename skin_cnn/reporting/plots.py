"""Figures of the evaluation report: ROC curves, 2×2 tables, calibration, STARD flow diagram.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so they can be
drawn from any thread and never open a window.
"""

from __future__ import annotations

import functools
import textwrap
import warnings
from pathlib import Path

import numpy as np

from skin_cnn.core.io import atomic_path
from skin_cnn.core.tasks import TASKS, task_title  # noqa: F401 (task_title: public here too)
from skin_cnn.stats.precision import caveats
from skin_cnn.evaluation.threshold import threshold_label

DPI = 120


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


#: Fonts tried, in order, for characters DejaVu Sans (matplotlib's own) lacks: group names and
#: paths in Chinese, Japanese or Korean. Only those installed are used.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
                  "Source Han Sans", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback",
                  "Microsoft YaHei", "SimHei", "MS Gothic", "Yu Gothic", "Malgun Gothic", "Hiragino Sans",
                  "PingFang SC", "Apple SD Gothic Neo", "Arial Unicode MS")


@functools.cache
def figure_fonts():
    """DejaVu Sans, then every installed font of :data:`FALLBACK_FONTS`, with their character sets.

    Matplotlib (3.6+) draws each character in the first font of the list that has it.

    A family is several files (regular, bold, condensed, extra-light, ...) whose character sets
    differ: DejaVu Sans ExtraLight lacks '≥', for one. The character set read is that of the file
    matplotlib itself draws the family's regular text with (``findfont``), not whichever file the
    font list happens to name last, since that order changes each time the list is rebuilt.

    Returns
    -------
    list of (str, frozenset of int)
        Font family name and the code points it covers.
    """
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {f.name for f in font_manager.fontManager.ttflist}
    fonts = []
    for name in ("DejaVu Sans", *FALLBACK_FONTS):
        if name in installed:
            try:
                regular = font_manager.fontManager.findfont(
                    font_manager.FontProperties(family=name), fallback_to_default=False)
                fonts.append((name, frozenset(FT2Font(regular).get_charmap())))
            except (OSError, RuntimeError, ValueError):
                continue
    return fonts


def missing_glyphs(texts):
    """The characters of ``texts`` that no font of :func:`figure_fonts` can draw, in order of
    first appearance."""
    covered = [chars for _, chars in figure_fonts()]
    return list(dict.fromkeys(ch for text in texts for ch in str(text)
                              if not ch.isspace() and not any(ord(ch) in chars for chars in covered)))


def _save(fig, path):
    """Write ``fig`` as PNG, drawing with the fallback fonts and saying when glyphs are missing."""
    import matplotlib
    from matplotlib.text import Text

    path = Path(path)
    missing = missing_glyphs(t.get_text() for t in fig.findobj(Text))
    if missing:
        warnings.warn(
            f"{path.name}: no installed font has {''.join(missing[:10])!r}; those characters show as "
            "boxes (install a font that has them, such as Noto Sans CJK)", stacklevel=2)
    families = [name for name, _ in figure_fonts()]
    with matplotlib.rc_context({"font.sans-serif": families + list(matplotlib.rcParams["font.sans-serif"])}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # said once above
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _fmt_ci(entry, pct=False):
    if entry["value"] is None:
        return "undefined"
    scale, unit = (100, "%") if pct else (1, "")
    text = f"{entry['value'] * scale:.2f}{unit}" if pct else f"{entry['value']:.3f}"
    if entry["ci"] is not None:
        lo, hi = entry["ci"]
        text += (
            f" (95% CI {lo * scale:.2f}–{hi * scale:.2f}{unit})"
            if pct
            else f" (95% CI {lo:.3f}–{hi:.3f})"
        )
    return text


def roc_labels(entry):
    """Legend texts of a ROC curve: the AUC with its interval and, on the lines below, what must
    be said with it (zero-width interval, too few images); the operating point, with a note when
    the threshold puts every image on one side (why a high AUC can sit beside 0% sensitivity)."""
    curve = "\n".join([f"AUC {_fmt_ci(entry['auc'])}"] + caveats("auc", entry["auc"], entry))
    sens, spec = entry["sensitivity"]["value"], entry["specificity"]["value"]
    point = None
    if sens is not None and spec is not None:
        sides = [c for m in ("sensitivity", "specificity") for c in caveats(m, entry[m], entry)
                 if c.startswith("no image predicted")]
        cut = threshold_label(entry["threshold"], ".3g")
        point = "\n".join([f"threshold {cut}: sens {sens:.2f}, spec {spec:.2f}"] + sides)
    return curve, point


def plot_roc(y_true, y_prob, entry, task, path):
    """ROC curve with the AUC and its DeLong interval in the legend and the operating point at the
    evaluation threshold marked."""
    from sklearn.metrics import roc_curve

    fig = _figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="chance")
    y = np.asarray(y_true)
    if 0 < y.sum() < y.size:
        fpr, tpr, _ = roc_curve(y, y_prob)
        ax.plot(fpr, tpr, color="C0", lw=2, label=roc_labels(entry)[0])
    else:
        ax.text(0.5, 0.5, "ROC undefined:\nonly one class present", ha="center", va="center")
    sens, spec = entry["sensitivity"]["value"], entry["specificity"]["value"]
    if sens is not None and spec is not None:
        ax.plot(
            [1 - spec],
            [sens],
            "o",
            color="C3",
            label=roc_labels(entry)[1],
        )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="1 − specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        aspect="equal",
    )
    ax.set_title(f"{task_title(task)}  (n = {entry['n_images']})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def plot_confusion(entry, task, path):
    """The 2×2 table of index test (rows) against reference standard (columns)."""
    fig = _figure(4.2, 3.4)
    ax = fig.add_subplot()
    t = TASKS[task]
    cells = np.array([[entry["tp"], entry["fp"]], [entry["fn"], entry["tn"]]])
    ax.imshow(cells, cmap="Blues", vmin=0, vmax=max(1, cells.max()) * 1.3)
    names = [["TP", "FP"], ["FN", "TN"]]
    for i in range(2):
        for j in range(2):
            dark = cells[i, j] > 0.6 * max(1, cells.max())
            ax.text(
                j,
                i,
                f"{names[i][j]}\n{cells[i, j]}",
                ha="center",
                va="center",
                fontsize=12,
                color="white" if dark else "black",
            )
    ax.set_xticks([0, 1], [f"{t.positive}\n(reference)", f"{t.negative}\n(reference)"])
    ax.set_yticks([0, 1], [f"predicted\n{t.positive}", f"predicted\n{t.negative}"])
    ax.set_title(f"{task_title(task)} at threshold {threshold_label(entry['threshold'], '.3g')}", fontsize=10)
    return _save(fig, path)


def plot_calibration(predictions, path, n_bins=10):
    """Reliability diagram per task: observed share of positives against the mean predicted
    probability in equal-width bins, with the number of images per bin underneath, and behind
    each point the range of shares a calibrated model would give with that bin's images
    (:func:`~skin_cnn.stats.calibration.reliability_bins`): a bin of 5 images can sit far off the
    diagonal by chance, one of 200 cannot."""
    from skin_cnn.stats.calibration import bin_index, reliability_bins

    tasks = [t for t in TASKS if (predictions["task"] == t).any()]
    fig = _figure(4.4 * max(1, len(tasks)), 4.8)
    grid = fig.add_gridspec(2, max(1, len(tasks)), height_ratios=(3, 1))
    edges = np.linspace(0, 1, n_bins + 1)
    for k, task in enumerate(tasks):
        part = predictions[predictions["task"] == task]
        y, p = part["y_true"].to_numpy(), part["y_prob"].to_numpy()
        bins = reliability_bins(y, p, n_bins)
        count = np.bincount(bin_index(p, n_bins), minlength=n_bins)
        ax = fig.add_subplot(grid[0, k])
        ax.plot([0, 1], [0, 1], color="0.7", ls="--", lw=1, label="perfect calibration")
        ax.vlines(bins["mean_p"], bins["calibrated_low"], bins["calibrated_high"], color="0.55", lw=5, alpha=0.35,
                  label="95% range of a calibrated model\n(per bin, for its images)")
        ax.plot(bins["mean_p"], bins["share"], "o-", color="C0", label="model")
        ax.set(
            xlim=(0, 1),
            ylim=(-0.02, 1.02),
            ylabel="observed share positive",
            title=task_title(task),
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
        hist = fig.add_subplot(grid[1, k], sharex=ax)
        hist.bar(
            edges[:-1],
            count,
            width=1 / n_bins,
            align="edge",
            color="C0",
            alpha=0.6,
            edgecolor="white",
        )
        hist.set(xlabel=f"predicted probability of {TASKS[task].positive}", ylabel="images")
    if not tasks:
        fig.add_subplot().text(0.5, 0.5, "no predictions", ha="center")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# STARD flow diagram

def _count_text(images, patients):
    parts = []
    if images is not None:
        parts.append(f"{images:,} image" + ("" if images == 1 else "s"))
    if patients is not None:
        parts.append(f"{patients:,} patient" + ("" if patients == 1 else "s"))
    return ", ".join(parts) if parts else "count not recorded"


def _side_lines(step):
    """The lines of the box beside the arrow into ``step``: exclusions (with reasons), the images
    assigned to other splits, and any count the record does not explain."""
    excluded = [(r, n) for r, n in step.get("excluded", {}).items() if n]
    boxes = []
    if excluded:
        lines = [f"{reason}: {n:,}" for reason, n in excluded]
        lines = [textwrap.shorten(line, 46, placeholder="…") for line in lines]
        if len(lines) > 6:  # keep the box between the two steps
            lines = lines[:5] + [f"… {len(lines) - 5} more reasons"]
        boxes.append(("Excluded:", lines, "#fbeaea"))
    if step.get("unexplained"):
        n = step["unexplained"]
        text = f"{n:,} images" if n > 0 else f"{-n:,} more images than before"
        boxes.append(("Not accounted for by the record:", [text], "#fff3c4"))
    assigned = step.get("assigned") or {}
    if assigned:
        lines = [f"{name}: {n:,}" for name, n in assigned.items() if n is not None]
        boxes.append(("Assigned to other splits\n(not evaluated):", lines, "#eeeeee"))
    return boxes


def plot_stard_flow(flow, metrics, path):
    """STARD 2015 flow diagram of the evaluated split: one box per step with its count, beside
    each arrow the images excluded there (with reasons) or assigned to other splits, and one box
    per task for the images evaluated (with the reference-standard classes)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    steps = flow["steps"]
    tasks = list(metrics["tasks"])
    n_rows = len(steps) + 1
    width = max(9.0, 3.1 * len(tasks))
    row_h = 1.6
    fig = _figure(width, row_h * n_rows + 0.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(0, row_h * n_rows + 0.3)

    def box(x, y, w, h, text, color):
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=color, ec="0.25", lw=1
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, wrap=True)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0),
                (x1, y1),
                arrowstyle="-|>",
                mutation_scale=12,
                color="0.25",
                lw=1,
                shrinkA=0,
                shrinkB=0,
                zorder=3,
            )
        )

    main_x = min(width * 0.3, width / 2 - 1.6)
    bw, bh = 3.4, 0.8
    ys = [row_h * (n_rows - i) - 0.45 for i in range(n_rows)]
    for i, step in enumerate(steps):
        name = step["name"][:1].upper() + step["name"][1:]
        text = f"{textwrap.fill(name, 44)}\n{_count_text(step.get('images'), step.get('patients'))}"
        if step.get("note"):
            text += f"\n({step['note']})"
        box(main_x, ys[i], bw, bh, text, "#e8f0fb")
        if i + 1 < len(steps):
            arrow(main_x, ys[i] - bh / 2 - 0.05, main_x, ys[i + 1] + bh / 2 + 0.06)
            side = _side_lines(steps[i + 1])
            if side:
                ym = (ys[i] + ys[i + 1]) / 2
                sw = 2.9
                xs = [main_x + bw / 2 + 0.35 + sw / 2 + k * (sw + 0.2) for k in range(len(side))]
                arrow(main_x, ym, xs[0] - sw / 2 - 0.06, ym)
                for x, (title, lines, color) in zip(xs, side):
                    box(x, ym, sw, 0.3 + 0.16 * (len(lines) + title.count("\n")),
                        title + "\n" + "\n".join(lines), color)
    # per-task evaluated boxes
    last_y = ys[len(steps) - 1]
    ty = ys[-1]
    slot = width / max(1, len(tasks))
    for k, task in enumerate(tasks):
        e = metrics["tasks"][task]
        x = slot * (k + 0.5)
        t = TASKS[task]
        text = (
            f"Evaluated: {task_title(task)}\n{_count_text(e['n_images'], e['n_patients'])}\n"
            f"{t.positive} {e['n_positive']:,} / {t.negative} {e['n_negative']:,}"
        )
        arrow(main_x, last_y - bh / 2 - 0.05, x, ty + (bh + 0.1) / 2 + 0.06)
        box(x, ty, min(2.9, slot - 0.2), bh + 0.1, text, "#e9f6ea")
    split = flow.get("split")
    title = "STARD flow diagram" + (f" of the {split} split" if split in ("train", "val", "test") else "")
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def plot_forest(result, metrics, path):
    """Forest plot: per task (rows) and metric (columns) each group's value with its interval.

    Groups too small for a metric are drawn hollow and grey, the unknown group as a square;
    the dashed line is the value on all images.
    """
    from skin_cnn.evaluation.fairness import FAIRNESS_METRICS, UNKNOWN
    from skin_cnn.reporting.cells import fmt_gap

    tasks = list(result["tasks"])
    n_groups = max(1, len(result["groups"]))
    fig = _figure(11, max(2.4, len(tasks) * (0.32 * n_groups + 1.3)))
    axes = fig.subplots(max(1, len(tasks)), len(FAIRNESS_METRICS), squeeze=False, sharex="col")
    labels = {"auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity"}
    for i, task in enumerate(tasks):
        entry = result["tasks"][task]
        groups = [g for g in result["groups"] if g in entry["groups"]]
        for j, m in enumerate(FAIRNESS_METRICS):
            ax = axes[i, j]
            for y, g in enumerate(groups):
                e = entry["groups"][g]
                value, ci = e[m]["value"], e[m]["ci"]
                if value is None:
                    continue
                small = m in entry["small"][g]
                color = "0.6" if small else "C0"
                if ci is not None:
                    ax.plot(ci, [y, y], color=color, lw=1.6)
                ax.plot([value], [y], "s" if g == UNKNOWN else "o", color=color,
                        mfc="white" if small else color, ms=6)
            overall = (metrics or {}).get("tasks", {}).get(task, {}).get(m, {}).get("value")
            if overall is not None:
                ax.axvline(overall, color="0.4", ls="--", lw=0.8)
            ax.set_yticks(range(len(groups)))
            ax.set_yticklabels(
                [f"{g} (n={entry['groups'][g]['n_images']})" + (" *" if m in entry["small"][g] else "")
                 for g in groups], fontsize=8)
            ax.set_ylim(len(groups) - 0.5, -0.5)
            ax.set_xlim(-0.02, 1.02)
            ax.grid(axis="x", alpha=0.3)
            gap = entry["gaps"][m]
            sub = ("gap n/a" if gap["value"] is None else
                   f"gap {fmt_gap(gap['value'], m)}"
                   + (f" ({fmt_gap(gap['ci'][0], m)} to {fmt_gap(gap['ci'][1], m)})" if gap["ci"] else ""))
            ax.set_title(f"{task_title(task)}: {labels[m]}\n{sub}", fontsize=9)
    for j, m in enumerate(FAIRNESS_METRICS):
        axes[-1, j].set_xlabel(f"{labels[m]} (95% CI)")
    fig.suptitle(
        f"By {result['column']}: * / hollow = fewer than {result['min_count']} images behind the "
        "value; dashed = all images", fontsize=9)
    return _save(fig, path)
