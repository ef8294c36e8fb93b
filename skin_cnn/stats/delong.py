"""DeLong's AUC variance and the paired DeLong test, in the fast midrank form of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the variance of the empirical AUC
from its structural components: for each positive ``i`` the share of negatives it outscores,
``V10[i] = mean_j ψ(x_i, y_j)``, and for each negative ``j`` the share of positives that outscore
it, ``V01[j] = mean_i ψ(x_i, y_j)``, with ``ψ = 1`` for a higher score, ``0.5`` for a tie.
Then ``var(AUC) = S10/m + S01/n`` with ``S10``, ``S01`` the sample (co)variances of the
components over ``m`` positives and ``n`` negatives. Sun & Xu showed that the components follow
from three midrankings (positives alone, negatives alone, both together), so the cost is a sort
instead of ``m × n`` comparisons. Several classifiers scored on the same cases are ranked in one
call, which gives the covariance needed for the paired test of two AUCs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats


def _as_binary(y_true, name="y_true"):
    y = np.asarray(y_true).reshape(-1)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return y.astype(bool)


def structural_components(y_true, scores):
    """AUCs and DeLong structural components of one or more score vectors on the same cases.

    Parameters
    ----------
    y_true : array of shape (n_cases,)
        1 for positive cases, 0 for negative ones.
    scores : array of shape (n_cases,) or (k, n_cases)
        Scores of ``k`` classifiers; higher means more likely positive.

    Returns
    -------
    auc : array of shape (k,)
    v10 : array of shape (k, m)
        For each positive, the share of negatives it outscores (ties count one half).
    v01 : array of shape (k, n)
        For each negative, the share of positives that outscore it.
    """
    y = _as_binary(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} cases, y_true has {y.size}")
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("the AUC needs at least one positive and one negative case")
    both = np.concatenate([pos, neg], axis=1)
    rank_all = stats.rankdata(both, axis=1)  # midranks: ties share their mean rank
    rank_pos = stats.rankdata(pos, axis=1)
    rank_neg = stats.rankdata(neg, axis=1)
    # negatives below positive i (ties as 1/2) = its rank among all minus its rank among positives
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    auc = v10.mean(axis=1)
    return auc, v10, v01


def delong_covariance(y_true, scores):
    """AUCs and their DeLong covariance matrix (k × k) for scores of shape (k, n_cases).

    Needs at least two positives and two negatives (the components' sample covariance divides by
    ``m − 1`` and ``n − 1``).
    """
    auc, v10, v01 = structural_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong's variance needs at least two positive and two negative cases")
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return auc, s10 / m + s01 / n


AUC_SCALES = ("wald", "logit")


def delong_ci(y_true, y_score, confidence=0.95, scale="wald"):
    """AUC with a DeLong interval on the AUC scale (``wald``) or the logit scale (``logit``).

    ``wald``: ``AUC ± z·sqrt(var)`` clipped to [0, 1], as in the study's Table 3 (symmetric
    around the AUC). When all positives outscore all negatives the variance is zero and the
    interval is ``[1, 1]``.

    ``logit``: ``expit(logit(AUC) ± z·sqrt(var) / (AUC·(1 − AUC)))`` (delta method), which stays
    inside (0, 1) and is asymmetric near 1. Where the logit does not exist (AUC of 0 or 1, or a
    zero DeLong variance) the score interval of Newcombe (2006, method 5,
    :func:`newcombe_score_interval`) is used instead, so perfect separation of a few images gives
    a wide interval rather than ``[1, 1]``. :func:`auc_interval` also says which was used.

    Returns
    -------
    auc : float
    ci : tuple of float, or None when there are fewer than two positives or negatives
    variance : float or None
        The DeLong variance (on the AUC scale).
    """
    auc, ci, var, _ = auc_interval(y_true, y_score, confidence, scale)
    return auc, ci, var


def auc_interval(y_true, y_score, confidence=0.95, scale="wald"):
    """:func:`delong_ci` plus the name of the interval used: ``delong``, ``delong-logit`` or
    ``newcombe-score`` (the logit fallback)."""
    if scale not in AUC_SCALES:
        raise ValueError(f"AUC interval scale must be one of {', '.join(AUC_SCALES)}, got {scale!r}")
    y = _as_binary(y_true)
    auc, _, _ = structural_components(y, y_score)
    method = "delong" if scale == "wald" else "delong-logit"
    if y.sum() < 2 or (~y).sum() < 2:
        return float(auc[0]), None, None, method
    auc, cov = delong_covariance(y, y_score)
    var = float(max(cov[0, 0], 0.0))
    a = float(auc[0])
    z = float(special.ndtri(0.5 + confidence / 2))
    if scale == "wald":
        half = z * math.sqrt(var)
        return a, (max(0.0, a - half), min(1.0, a + half)), var, method
    if 0 < a < 1 and var > 0:
        centre, half = special.logit(a), z * math.sqrt(var) / (a * (1 - a))
        return a, (float(special.expit(centre - half)), float(special.expit(centre + half))), var, method
    m, n = int(y.sum()), int((~y).sum())
    return a, newcombe_score_interval(a, m, n, confidence), var, "newcombe-score"


def hanley_mcneil_variance(theta, m, n):
    """Variance of the AUC at ``theta`` by Hanley & McNeil (1982), with Newcombe's (2006)
    ``m − 1`` and ``n − 1`` both replaced by ``(m + n)/2 − 1``.

    ``θ(1−θ)/(mn) · [1 + (N* − 1)·((1−θ)/(2−θ) + θ/(1+θ))]``, ``N* = (m + n)/2``; it depends on
    θ only, not on the data, which is what the score interval needs.
    """
    n_star = (m + n) / 2
    return theta * (1 - theta) / (m * n) * (
        1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))
    )


def newcombe_score_interval(auc, m, n, confidence=0.95):
    """Score interval for an AUC (Newcombe 2006, Stat Med 25:559–573, method 5).

    The bounds are the θ for which ``(AUC − θ)² = z²·V(θ)`` with the variance
    :func:`hanley_mcneil_variance` *at θ* (as the Wilson interval of a proportion), so it exists
    at an AUC of 0 or 1 and stays within [0, 1].
    """
    from scipy.optimize import brentq

    z2 = float(special.ndtri(0.5 + confidence / 2)) ** 2

    def f(theta):
        return (auc - theta) ** 2 - z2 * hanley_mcneil_variance(theta, m, n)

    # f > 0 at the far ends (θ = 0 or 1, unless the AUC is there) and < 0 just beside the AUC
    near_low, near_high = max(auc - 1e-12, 0.0), min(auc + 1e-12, 1.0)
    low, high = min(max(auc, 0.0), 1.0), min(max(auc, 0.0), 1.0)
    if auc > 0 and f(near_low) < 0:
        low = brentq(f, 0.0, near_low)
    if auc < 1 and f(near_high) < 0:
        high = brentq(f, near_high, 1.0)
    return float(low), float(high)


def delong_test(y_true, score_a, score_b, confidence=0.95):
    """Paired DeLong test of two AUCs measured on the same cases.

    The difference ``AUC_a − AUC_b`` has variance ``var_a + var_b − 2·cov_ab``; the two-sided
    p-value is from ``z = diff / sqrt(var)`` against the standard normal.

    Returns
    -------
    dict
        ``auc_a, auc_b, difference, ci`` (of the difference, not clipped), ``se``, ``z``,
        ``p_value``. When the difference has zero variance (e.g. identical scores), ``z`` is
        ``None`` and ``p_value`` is ``None`` if the difference is zero, else 0.
    """
    s = np.vstack([np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)])
    auc, cov = delong_covariance(y_true, s)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    var = max(var, 0.0)
    se = math.sqrt(var)
    zq = float(special.ndtri(0.5 + confidence / 2))
    if se > 0:
        z = diff / se
        p = float(2 * special.ndtr(-abs(z)))
    elif diff == 0:
        z, p = None, None
    else:
        z, p = None, 0.0
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "difference": diff,
        "ci": (diff - zq * se, diff + zq * se),
        "se": se,
        "z": z,
        "p_value": p,
    }
