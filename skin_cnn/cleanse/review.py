"""Whether removing what the skin/non-skin filter flags is advisable, judged on its held-out photos.

Every wrong removal is a real patient's photo lost to the study, and losses that differ by disease
bias every later estimate. The filter's own held-out skin photos (``holdout_predictions.csv``,
written by :func:`skin_cnn.cleanse.classifier.train_skin_classifier`; they took no part in its
training) estimate how many real skin photos ``cleanse apply --apply`` would remove at the
threshold in use: overall and per disease, each with its exact 95% interval. Removal is advisable
only when no estimate exceeds the limit (:data:`MAX_FALSE_REMOVAL`); otherwise the input split
stays the one to work with.

No TensorFlow here: the review's advice is read from files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from skin_cnn.stats.intervals import clopper_pearson

#: The largest share of real skin photos, overall or in any one disease, that removal may cost.
MAX_FALSE_REMOVAL = 0.01

#: Written beside the model by ``cleanse train``: held-out ``image_path``, ``label``, ``p_nonskin``.
HOLDOUT_FILENAME = "holdout_predictions.csv"


@dataclass(frozen=True)
class RemovalEstimate:
    """Held-out skin photos of one group that the filter would remove.

    Attributes
    ----------
    group : str
        ``"all"`` or a diagnosis.
    removed, n_skin : int
        Skin photos scored at or above the threshold, of all held-out skin photos of the group.
    ci : tuple of float
        Exact (Clopper–Pearson) 95% interval of ``removed / n_skin``.
    """

    group: str
    removed: int
    n_skin: int
    ci: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.removed / self.n_skin

    def line(self) -> str:
        return (f"  {self.group:<10} {self.removed:>4d} of {self.n_skin:<5d} {self.rate:6.1%} "
                f"(95% CI {self.ci[0]:.1%}-{self.ci[1]:.1%})")


@dataclass(frozen=True)
class ApplyAdvice:
    """The review's verdict on ``--apply``.

    Attributes
    ----------
    threshold : float
        The ``p_nonskin`` cut-off the review used.
    limit : float
        The largest acceptable false-removal rate (:data:`MAX_FALSE_REMOVAL`).
    estimates : tuple of RemovalEstimate
        Overall first, then per disease (empty when no held-out predictions were found).
    source : str
        The held-out predictions file, or why there is none.
    """

    threshold: float
    limit: float
    estimates: tuple[RemovalEstimate, ...]
    source: str

    @property
    def advisable(self) -> bool:
        return bool(self.estimates) and all(e.rate <= self.limit for e in self.estimates)

    def lines(self, input_csv, out_csv) -> list[str]:
        """What the review prints: the estimates, the verdict, and which CSV the next step takes."""
        if not self.estimates:
            return [f"--apply is not advisable: {self.shortfall()}. Keep {input_csv} for the next steps "
                    "(e.g. skin-cnn crop); nothing was removed"]
        lines = [f"held-out skin photos the filter would remove at p_nonskin >= {self.threshold:g} "
                 f"(its estimated false-removal rate; from {self.source}):"]
        lines += [e.line() for e in self.estimates]
        if self.advisable:
            lines.append(f"--apply is advisable: at most {self.limit:.0%} overall and in every disease. Look "
                         f"through the review, run again with --apply, then continue with {out_csv}")
        else:
            lines.append(f"--apply is not advisable: {self.shortfall()}. Keep {input_csv} for the next "
                         "steps (e.g. skin-cnn crop); nothing was removed")
        return lines

    def shortfall(self) -> str:
        """Why removal is not advisable, in a phrase."""
        if not self.estimates:
            return f"its false-removal rate is unknown ({self.source})"
        worst = max(self.estimates, key=lambda e: e.rate)
        return (f"it would remove {worst.rate:.1%} of real skin photos ({worst.group}), "
                f"above the {self.limit:.0%} limit")


def holdout_path(model_dir):
    """``holdout_predictions.csv`` of a model folder, or beside a ``.keras`` file."""
    path = Path(model_dir)
    return (path if path.is_dir() else path.parent) / HOLDOUT_FILENAME


def apply_advice(holdout, threshold=0.5, diagnoses=None, *, limit=MAX_FALSE_REMOVAL, source=""):
    """Estimate the false-removal rate at ``threshold`` and say whether removal is advisable.

    Parameters
    ----------
    holdout : pandas.DataFrame or None
        Held-out predictions: ``image_path``, ``label`` (``skin`` / ``non-skin``), ``p_nonskin``.
    threshold : float
        Images with ``p_nonskin >= threshold`` would be removed (the ``cleanse apply`` rule).
    diagnoses : dict of str -> str, optional
        ``image_path`` -> diagnosis, for the per-disease estimates (held-out photos found in it).
    limit : float
        The largest acceptable rate, overall and per disease.
    source : str
        Where ``holdout`` came from, for the printed lines.
    """
    if holdout is None:
        return ApplyAdvice(float(threshold), float(limit), (), source or "no held-out predictions")
    skin = holdout[holdout["label"].astype(str) == "skin"]
    if skin.empty:
        return ApplyAdvice(float(threshold), float(limit), (), f"{source}: no held-out skin photos")
    removed = skin["p_nonskin"].astype(float) >= float(threshold)
    groups = [("all", removed)]
    if diagnoses:
        disease = skin["image_path"].astype(str).map(diagnoses)
        groups += [(str(d), removed[disease == d]) for d in sorted(disease.dropna().unique())]
    estimates = tuple(
        RemovalEstimate(name, int(part.sum()), int(len(part)), clopper_pearson(int(part.sum()), len(part)).ci)
        for name, part in groups
    )
    return ApplyAdvice(float(threshold), float(limit), estimates, source)


def review_advice(model_dir, frame, threshold=0.5, *, limit=MAX_FALSE_REMOVAL):
    """:func:`apply_advice` for a model folder and the manifest frame under review."""
    path = holdout_path(model_dir)
    if not path.is_file():
        source = f"no {HOLDOUT_FILENAME} beside the model; was it trained by `skin-cnn cleanse train`?"
        return apply_advice(None, threshold, limit=limit, source=source)
    holdout = pd.read_csv(path, dtype={"image_path": str, "label": str})
    diagnoses = None
    if "diagnosis" in frame.columns:
        diagnoses = dict(zip(frame["image_path"].astype(str), frame["diagnosis"].astype(str)))
    return apply_advice(holdout, threshold, diagnoses, limit=limit, source=str(path))
