"""Apply a skin/non-skin classifier to a manifest, and take the non-skin photos out visibly.

:func:`cleanse_frame` scores every image of a manifest frame and splits it into kept rows, removed
rows (with their score) and unreadable rows (with the reason), so the three together are always
exactly the input: nothing vanishes unseen.

Removal is a reviewed step, because every wrong removal is a real patient's photo lost to the
study. :func:`write_review` shows what *would* go — a contact sheet of the images with their
scores and a CSV of the rows — and changes no manifest; only then does :func:`write_cleansed` write
the three lists and, when the input has a flow JSON beside it, append a ``cleansing`` step to the
flow diagram.

The classifier itself (building, loading, training) is :mod:`skin_cnn.cleanse.classifier`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.cleanse.classifier import SCORE_COLUMN, load_images, model_input_size
from skin_cnn.data.reading import ImageReadError, open_rgb
from skin_cnn.data.manifest import write_manifest
from skin_cnn.data.split import SPLITS, patient_units

#: The step name written into a flow JSON.
FLOW_STEP = "cleansing"

#: Column of the review CSV saying why a row would leave the manifest.
REASON_COLUMN = "reason"

#: The ``reason`` of a row removed as non-skin (unreadable rows carry the read error instead).
NONSKIN_REASON = "non-skin"

#: Thumbnails per page of the review contact sheet: 8 columns × 6 rows stay legible on a screen.
SHEET_COLUMNS = 8
SHEET_PER_PAGE = 48


def score_images(model, paths, *, batch_size=64, progress=True):
    """P(non-skin) for each path (NaN where unreadable) and the reasons for unreadable ones.

    Images are read and scored one batch at a time, so memory stays flat for any manifest size.
    """
    size = model_input_size(model)
    paths = [os.fspath(p) for p in paths]
    scores = np.full(len(paths), np.nan, dtype=np.float64)
    reasons = {}
    with progress_bar(total=len(paths), desc="cleansing", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), int(batch_size)):
            chunk = paths[start:start + int(batch_size)]
            images, ok, bad = load_images(chunk, size, progress=False)
            reasons.update(bad)
            if len(images):
                p = np.asarray(model.predict_on_batch(images)).reshape(-1)
                scores[start + np.flatnonzero(ok)] = p
            bar.update(len(chunk))
    return scores, reasons


@dataclass
class CleanseResult:
    """A manifest frame split three ways; together the parts are exactly the input rows.

    Attributes
    ----------
    kept : pandas.DataFrame
        Rows that show skin (``p_nonskin < threshold``), input columns only.
    removed : pandas.DataFrame
        Rows judged non-skin, with their ``p_nonskin``, lowest (most doubtful) first.
    unreadable : pandas.DataFrame
        Rows whose image could not be read, with the ``reason``.
    threshold : float
    """

    kept: pd.DataFrame
    removed: pd.DataFrame
    unreadable: pd.DataFrame
    threshold: float

    @property
    def n_input(self):
        return len(self.kept) + len(self.removed) + len(self.unreadable)

    def flow_step(self):
        """The cleansing step of a flow diagram (patients: distinct ids, an image without one
        counting as its own patient, as in :func:`skin_cnn.data.split.patient_units`)."""
        def patients(frame):
            return int(patient_units(frame).nunique()) if "patient_id" in frame.columns else None

        step = {
            "name": FLOW_STEP,
            "images": int(len(self.kept)),
            "patients": patients(self.kept),
            "excluded": {"non-skin": int(len(self.removed)), "unreadable": int(len(self.unreadable))},
        }
        if "split" in self.kept.columns:  # a split CSV: the same counts per split, as the split step has them
            for name in SPLITS:
                parts = [f[f["split"] == name] if "split" in f.columns else f.iloc[:0]
                         for f in (self.kept, self.removed, self.unreadable)]
                step[name] = {
                    "images": int(len(parts[0])),
                    "patients": patients(parts[0]),
                    "excluded": {"non-skin": int(len(parts[1])), "unreadable": int(len(parts[2]))},
                }
        return step

    def summary(self, applied=True):
        """One line of counts; ``applied=False`` words it as what a review proposes."""
        keep, remove = ("kept", "removed") if applied else ("would keep", "would remove")
        return (
            f"{self.n_input} images: {keep} {len(self.kept)}, {remove} as non-skin {len(self.removed)} "
            f"(p_nonskin >= {self.threshold:g}), unreadable {len(self.unreadable)}"
        )


def cleanse_frame(frame, model, *, threshold=0.5, batch_size=64, progress=True):
    """Split a manifest frame into kept, removed (non-skin) and unreadable rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        A manifest frame (:func:`skin_cnn.data.manifest.load_manifest`) with absolute ``image_path``.
    model : keras.Model
        A skin classifier (:func:`skin_cnn.cleanse.classifier.load_skin_classifier`).
    threshold : float
        Images with ``p_nonskin >= threshold`` are removed.

    Returns
    -------
    CleanseResult
    """
    if "image_path" not in frame.columns:
        raise ValueError("the frame has no image_path column")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    scores, reasons = score_images(model, list(frame["image_path"]), batch_size=batch_size, progress=progress)
    readable = ~np.isnan(scores)
    nonskin = readable & (scores >= float(threshold))
    kept = frame.loc[readable & ~nonskin].reset_index(drop=True)
    # Most doubtful (lowest score) first: the rows worth a look before they are dropped.
    removed = (
        frame.loc[nonskin].assign(**{SCORE_COLUMN: scores[nonskin]})
        .sort_values(SCORE_COLUMN, kind="stable").reset_index(drop=True)
    )
    unreadable = frame.loc[~readable].copy()
    unreadable["reason"] = [reasons.get(os.fspath(p), "unreadable") for p in unreadable["image_path"]]
    return CleanseResult(kept, removed, unreadable.reset_index(drop=True), float(threshold))


def output_paths(out_csv):
    """The files ``cleanse apply`` writes for ``CLEAN.csv``.

    ``review`` (CSV) and ``sheet`` (first contact-sheet page; later pages are
    ``CLEAN.review-2.png`` and so on) are written by :func:`write_review`; ``kept``, ``removed``,
    ``unreadable`` and ``flow`` by :func:`write_cleansed`.
    """
    out_csv = Path(out_csv)
    stem = out_csv.with_suffix("")
    return {
        "kept": out_csv,
        "removed": Path(f"{stem}.removed.csv"),
        "unreadable": Path(f"{stem}.unreadable.csv"),
        "flow": Path(f"{stem}.flow.json"),
        "review": Path(f"{stem}.review.csv"),
        "sheet": Path(f"{stem}.review.png"),
    }


def review_frame(result):
    """The rows that would leave the manifest: removed ones (scored) first, then unreadable ones.

    Every input column is kept, plus ``p_nonskin`` (empty for unreadable rows) and ``reason``
    (``non-skin`` or why the image could not be read). Removed rows come most doubtful (lowest
    score) first, the order in which they are worth a look.
    """
    removed = result.removed.assign(**{REASON_COLUMN: NONSKIN_REASON})
    unreadable = result.unreadable.assign(**{SCORE_COLUMN: np.nan})
    return pd.concat([removed, unreadable], ignore_index=True, sort=False)


def sheet_pages(n, per_page=SHEET_PER_PAGE):
    """``(start, stop)`` index ranges of the contact-sheet pages for ``n`` images."""
    if int(per_page) < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    return [(start, min(start + int(per_page), n)) for start in range(0, n, int(per_page))]


def sheet_page_path(first_page, page):
    """``CLEAN.review.png`` for page 1, ``CLEAN.review-2.png`` for page 2, and so on."""
    first_page = Path(first_page)
    return first_page if page == 1 else first_page.with_name(f"{first_page.stem}-{page}{first_page.suffix}")


def draw_review_sheet(paths, scores, out_png, *, columns=SHEET_COLUMNS, per_page=SHEET_PER_PAGE, thumb=1.6):
    """Contact sheet of the images that would be removed, each titled with its score and file name.

    A person looking at the thumbnails sees in seconds whether a removed image is a slip or a
    form or a patient's photo; the score beside it says how sure the filter was. Pages hold
    ``per_page`` images so a long list stays legible.

    Parameters
    ----------
    paths : list of str
        Image files, in the order to show them.
    scores : list of float
        ``p_nonskin`` of each.
    out_png : str or Path
        The first page; further pages get ``-2``, ``-3`` … before the suffix.

    Returns
    -------
    list of Path
        The pages written (none when ``paths`` is empty).
    """
    paths, scores = list(paths), list(scores)
    if len(paths) != len(scores):
        raise ValueError(f"{len(paths)} paths but {len(scores)} scores")
    written = []
    for page, (start, stop) in enumerate(sheet_pages(len(paths), per_page), start=1):
        count = stop - start
        cols = min(int(columns), count)
        rows = -(-count // cols)
        fig = Figure(figsize=(cols * thumb, rows * (thumb + 0.35)))
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
        for ax, path, score in zip(axes, paths[start:stop], scores[start:stop]):
            try:
                image = open_rgb(path)
                image.thumbnail((256, 256))
                ax.imshow(np.asarray(image))
            except ImageReadError as exc:
                ax.text(0.5, 0.5, exc.reason, ha="center", va="center", wrap=True, fontsize=6)
            ax.set_title(f"p={score:.2f}\n{Path(path).name[:24]}", fontsize=6)
        for ax in axes:
            ax.set_axis_off()
        if len(paths) > per_page:
            fig.suptitle(f"would be removed: page {page} of {len(sheet_pages(len(paths), per_page))}", fontsize=8)
        fig.tight_layout()
        target = sheet_page_path(out_png, page)
        with atomic.atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        written.append(target)
    return written


def write_review(result, input_csv, out_csv, *, per_page=SHEET_PER_PAGE):
    """Write what ``cleanse apply`` would take out, and change no manifest.

    ``CLEAN.review.csv`` lists the rows that would leave the manifest (:func:`review_frame`);
    ``CLEAN.review.png`` (and ``-2``, ``-3`` … pages) shows the images that would be removed as
    non-skin with their scores. Stale pages of an earlier, longer review are deleted so the folder
    never shows images that would no longer go.

    Returns
    -------
    dict
        ``review``: the CSV path; ``sheets``: the list of pages written.
    """
    paths = output_paths(out_csv)
    if Path(out_csv).resolve() == Path(input_csv).resolve():
        raise ValueError(f"{out_csv}: the output would overwrite the input manifest; choose another name")
    write_manifest(review_frame(result), paths["review"])
    sheets = draw_review_sheet(
        list(result.removed["image_path"]), list(result.removed[SCORE_COLUMN]), paths["sheet"], per_page=per_page
    )
    page = len(sheets) + 1
    while sheet_page_path(paths["sheet"], page).is_file():
        sheet_page_path(paths["sheet"], page).unlink()
        page += 1
    return {"review": paths["review"], "sheets": sheets}


def flow_path(csv_path):
    """``INPUT.flow.json`` beside ``INPUT.csv``: the flow-diagram counts of earlier steps."""
    return Path(csv_path).with_suffix(".flow.json")


def write_cleansed(result, input_csv, out_csv):
    """Write kept, removed and unreadable lists, and extend the input's flow JSON if it has one.

    Returns
    -------
    dict of str -> Path
        What was written (``flow`` only when ``INPUT.flow.json`` exists).
    """
    paths = output_paths(out_csv)
    if Path(out_csv).resolve() == Path(input_csv).resolve():
        raise ValueError(f"{out_csv}: the output would overwrite the input manifest; choose another name")
    for part in ("kept", "removed", "unreadable"):
        write_manifest(getattr(result, part), paths[part])
    written = {k: paths[k] for k in ("kept", "removed", "unreadable")}
    from skin_cnn.evaluation.flow import read_record, write_record

    flow = read_record(input_csv)  # None when absent or written for another version of the input
    if flow is not None:
        written["flow"] = write_record(out_csv, dict(flow, steps=[*flow["steps"], result.flow_step()]))
    return written
