"""Calibration of predicted probabilities: expected calibration error, Brier score, and the
calibration slope and intercept.

Discrimination (the AUC) says whether positives score higher than negatives; calibration says
whether a probability of 0.8 means that about 80% of such images are positive. A model can rank
perfectly and still be badly calibrated, which matters as soon as a probability is shown to a
reader (``predict``, ``serve``) rather than only cut at a threshold.

* **ECE** uses the bins of the reliability diagram (``calibration.png``): ``n_bins`` equal-width
  bins of the predicted probability, ``[0, 0.1), [0.1, 0.2), …, [0.9, 1.0]``; it is the
  image-weighted mean of ``|mean predicted − observed share positive|`` over non-empty bins. Its
  value depends on the binning, which is therefore stated with it.
* **ECE of a calibrated model** (consistency resampling, Bröcker & Smith 2007): ECE is never 0
  on a finite set, even for a perfectly calibrated model, because each bin's share of positives
  is a sample. Drawing the outcomes from the model's own probabilities (``y* ~ Bernoulli(p)``)
  many times gives the ECE a perfectly calibrated model with these probabilities would show on
  this many images: its median, 95th percentile and the share of draws at or above the observed
  ECE. On a few hundred images that reference is itself around 0.04, so a fixed bar such as
  "ECE ≤ 0.05" cannot tell a calibrated model from a slightly miscalibrated one there.
* **Brier score**: the mean of ``(p − y)²`` (0 is perfect; 0.25 is what a constant 0.5 scores).
* **Calibration slope and intercept** (Cox 1958): the logistic regression
  ``logit P(y = 1) = a + b · logit(p)``, fitted by unpenalised maximum likelihood. ``b = 1`` and
  ``a = 0`` for a calibrated model; ``b < 1`` means the predictions are too extreme (typical of
  overfitting), ``b > 1`` too modest. The intercept here is that of the joint fit (the
  "calibration-in-the-large" intercept with slope fixed at 1 is a different quantity).
"""

from __future__ import annotations

import numpy as np

#: Probabilities are clipped to ``[EPS, 1 − EPS]`` before the logit, so a score of exactly 0 or 1
#: does not make the regression undefined.
EPS = 1e-6


def bin_index(y_prob, n_bins=10):
    """Bin of each probability among ``n_bins`` equal-width bins (the last one closed)."""
    edges = np.linspace(0, 1, n_bins + 1)
    return np.clip(np.digitize(np.asarray(y_prob, dtype=float), edges[1:-1]), 0, n_bins - 1)


def reliability_bins(y_true, y_prob, n_bins=10, confidence=0.95):
    """The non-empty bins of the reliability diagram, with what a calibrated model would show.

    Returns
    -------
    dict of arrays, one entry per non-empty bin
        ``count`` (images), ``mean_p`` (mean predicted probability), ``share`` (observed share
        positive), and ``calibrated_low`` / ``calibrated_high``: the central ``confidence`` range
        of the share a calibrated model would give in a bin of that many images at that mean
        probability (binomial quantiles; Bröcker & Smith's consistency bars). A point outside its
        range is more miscalibration than the bin's size explains.
    """
    from scipy import stats

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    which = bin_index(p, n_bins)
    count = np.bincount(which, minlength=n_bins)
    used = count > 0
    count = count[used]
    mean_p = np.bincount(which, weights=p, minlength=n_bins)[used] / count
    tail = (1 - confidence) / 2
    return {
        "count": count,
        "mean_p": mean_p,
        "share": np.bincount(which, weights=y, minlength=n_bins)[used] / count,
        "calibrated_low": stats.binom.ppf(tail, count, mean_p) / count,
        "calibrated_high": stats.binom.ppf(1 - tail, count, mean_p) / count,
    }


def expected_calibration_error(y_true, y_prob, n_bins=10):
    """ECE over equal-width bins, weighted by the number of images per bin.

    Returns
    -------
    float or None
        None without images.
    """
    y = np.asarray(y_true, dtype=float)
    if y.size == 0:
        return None
    bins = reliability_bins(y, y_prob, n_bins)
    return float(np.sum(bins["count"] / y.size * np.abs(bins["mean_p"] - bins["share"])))


def brier_score(y_true, y_prob):
    """Mean squared difference between probability and outcome (None without images)."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    return float(np.mean((p - y) ** 2)) if y.size else None


def calibration_slope_intercept(y_true, y_prob, max_iter=100, tol=1e-10):
    """Fit ``logit P(y = 1) = a + b · logit(p)`` by maximum likelihood (Newton–Raphson).

    Written out (two parameters) rather than taken from a statistics package, because the only
    candidates at hand either penalise the fit by default (scikit-learn) or are not installed
    (statsmodels), and a penalty would pull the slope towards zero.

    Returns
    -------
    slope, intercept : float or None
        None with a ``note`` when the fit does not exist: one class only, a constant score, or
        scores that separate the classes perfectly (the likelihood then has no maximum).
    note : str or None
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(y_prob, dtype=float), EPS, 1 - EPS)
    if y.size == 0 or y.min() == y.max():
        return None, None, "undefined: only one class among the images"
    x = np.log(p) - np.log1p(-p)
    if np.ptp(x) == 0:
        return None, None, "undefined: every image has the same score"
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(max_iter):
        eta = np.clip(design @ beta, -35, 35)
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        grad = design.T @ (y - mu)
        hess = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            if np.max(np.abs(beta)) > 50:  # converged towards infinity: separation
                break
            return float(beta[1]), float(beta[0]), None
    return None, None, "undefined: the scores separate the classes perfectly (no finite fit)"


def ece_if_calibrated(y_prob, observed=None, n_bins=10, n_resamples=2000, seed=0, chunk=250):
    """The ECE a perfectly calibrated model with these probabilities would show on this many images.

    Consistency resampling (Bröcker & Smith 2007): ``n_resamples`` sets of outcomes are drawn as
    ``y* ~ Bernoulli(p)``, each scored with :func:`expected_calibration_error`'s bins. Seeded, so
    a report is reproducible.

    Parameters
    ----------
    y_prob : array (n,)
    observed : float, optional
        The ECE measured on the real outcomes; gives ``p_value``, the share of draws at or above it
        (small: more miscalibration than sampling alone explains).

    Returns
    -------
    dict or None
        ``{"median", "p95", "p_value", "n_resamples", "seed"}``; None without images or resamples.
    """
    p = np.asarray(y_prob, dtype=float)
    if p.size == 0 or n_resamples <= 0:
        return None
    which = bin_index(p, n_bins)
    count = np.bincount(which, minlength=n_bins)
    used = count > 0
    mean_p = np.bincount(which, weights=p, minlength=n_bins)[used] / count[used]
    member = np.zeros((p.size, n_bins))
    member[np.arange(p.size), which] = 1.0
    member = member[:, used]
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, chunk):  # in chunks: n_resamples × n draws at once can be large
        outcomes = rng.random((min(chunk, n_resamples - start), p.size)) < p
        share = (outcomes @ member) / count[used]
        draws.append(np.abs(share - mean_p) @ (count[used] / p.size))
    draws = np.concatenate(draws)
    return {
        "median": float(np.median(draws)),
        "p95": float(np.quantile(draws, 0.95)),
        "p_value": None if observed is None else float(np.mean(draws >= observed - 1e-12)),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
    }


def calibration_summary(y_true, y_prob, n_bins=10, n_resamples=2000, seed=0):
    """``{"ece", "ece_if_calibrated", "brier", "slope", "intercept", "n_bins", "binning", "note"}``
    for one task (``ece_if_calibrated``: :func:`ece_if_calibrated`, ``n_resamples`` seeded draws)."""
    slope, intercept, note = calibration_slope_intercept(y_true, y_prob)
    ece = expected_calibration_error(y_true, y_prob, n_bins)
    return {
        "ece": ece,
        "ece_if_calibrated": ece_if_calibrated(y_prob, ece, n_bins, n_resamples, seed),
        "brier": brier_score(y_true, y_prob),
        "slope": slope,
        "intercept": intercept,
        "n_bins": int(n_bins),
        "binning": f"{n_bins} equal-width bins of the predicted probability, weighted by images",
        "note": note,
    }
