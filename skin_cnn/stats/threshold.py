"""Choosing a decision threshold on validation scores: Youden's J, a target sensitivity or
specificity, or the widest margin over a reference operating point; the cut-off placed midway
between two observed scores.

Only labels and scores come in (NumPy arrays); which predictions may be used for the choice
and how the rule is written on the command line is :mod:`skin_cnn.evaluation.threshold`.
"""

from __future__ import annotations

import numpy as np

#: Rules that choose a threshold from data (the others are fixed numbers).
CHOSEN_METHODS = ("youden", "sensitivity", "specificity", "margin")


def _operating_points(y_true, y_prob):
    """Candidate thresholds (each distinct score, descending) with their sensitivity and
    specificity under the ``y_prob >= t`` rule."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y_true, y_prob, drop_intermediate=False)
    keep = np.isfinite(thr)  # the first point (t = +inf) predicts nothing positive
    return thr[keep], tpr[keep], 1 - fpr[keep]


def choose_threshold(y_true, y_prob, method="youden", target=0.9):
    """Choose a threshold on *validation* predictions.

    Parameters
    ----------
    y_true, y_prob : arrays of shape (n,)
        Validation labels and probabilities; both classes must be present.
    method : {"youden", "sensitivity", "specificity", "margin"}
        * ``youden``: the operating point maximising sensitivity + specificity − 1; among equal
          maxima the one with the fewest positive calls.
        * ``sensitivity``: the operating point with the fewest positive calls whose sensitivity
          reaches ``target`` (so the specificity is the best possible at that sensitivity).
        * ``specificity``: the operating point with the most positive calls whose specificity
          reaches ``target``.
        * ``margin``: ``target`` is a reference operating point ``(sensitivity, specificity)``;
          the operating point whose smaller margin over it, ``min(sens − sens_ref, spec −
          spec_ref)``, is largest: the cut-off that beats the reference on both figures by as
          much as the scores allow (or misses it by as little). Youden's rule maximises the
          *sum* of the two margins and may buy a large one with a negative other; among equal
          smallest margins the larger sum, then the fewest positive calls.
    target : float, or (float, float) for ``margin``

    Returns
    -------
    float
        The midpoint between the lowest score called positive at the chosen operating point and
        the next lower distinct score (:func:`midpoint_cut`). The validation predictions at that
        threshold are exactly the operating point chosen, but no validation photo sits on the
        cut-off, so a new photo scoring like it is not decided by the tie rule alone.
    """
    y = np.asarray(y_true)
    if y.size == 0 or y.min() == y.max():
        raise ValueError("choosing a threshold needs validation predictions of both classes")
    thr, sens, spec = _operating_points(y, np.asarray(y_prob, dtype=float))
    if method == "youden":
        j = sens + spec - 1
        # equal maxima computed through different fractions differ in the last bits
        return midpoint_cut(thr, int(np.flatnonzero(j >= j.max() - 1e-12)[0]))
    if method == "sensitivity":
        ok = np.flatnonzero(sens >= target - 1e-12)
        return midpoint_cut(thr, int(ok[0]))  # thresholds descend; the last point has sensitivity 1
    if method == "margin":
        sens_ref, spec_ref = (float(v) for v in target)
        worst = np.minimum(sens - sens_ref, spec - spec_ref)
        tied = np.flatnonzero(worst >= worst.max() - 1e-12)
        j = (sens + spec)[tied]
        return midpoint_cut(thr, int(tied[np.flatnonzero(j >= j.max() - 1e-12)[0]]))
    if method == "specificity":
        ok = np.flatnonzero(spec >= target - 1e-12)
        if ok.size == 0:
            # every threshold at or below the highest score calls at least that case positive
            return float(np.nextafter(thr[0], np.inf))
        return midpoint_cut(thr, int(ok[-1]))
    raise ValueError(
        f"unknown threshold method {method!r}; expected one of {', '.join(CHOSEN_METHODS)}"
    )


def midpoint_cut(scores, i):
    """The cut-off halfway between the distinct score ``scores[i]`` and the next lower one.

    Parameters
    ----------
    scores : array
        Distinct observed scores in descending order (``roc_curve``'s finite thresholds).
    i : int
        The operating point: scores at or above ``scores[i]`` are called positive.

    Returns
    -------
    float
        ``(scores[i] + scores[i + 1]) / 2``: the same calls on the observed scores as
        ``scores[i]``, with the cut-off between two photos rather than on one. Below the lowest
        score (every photo positive) the next representable number under it.
    """
    if i + 1 < len(scores):
        return float((scores[i] + scores[i + 1]) / 2)
    return float(np.nextafter(scores[i], -np.inf))
