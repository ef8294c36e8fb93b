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


def delong_ci(y_true, y_score, confidence=0.95):
    """AUC with DeLong's Wald interval ``AUC ± z·sqrt(var)``, clipped to [0, 1].

    The interval is on the AUC scale, as in the study's Table 3 (symmetric around the AUC). When
    all positives outscore all negatives the variance is zero and the interval is ``[1, 1]``;
    the bootstrap interval is the more honest statement of uncertainty then.

    Returns
    -------
    auc : float
    ci : tuple of float, or None when there are fewer than two positives or negatives
    variance : float or None
    """
    y = _as_binary(y_true)
    auc, _, _ = structural_components(y, y_score)
    if y.sum() < 2 or (~y).sum() < 2:
        return float(auc[0]), None, None
    auc, cov = delong_covariance(y, y_score)
    var = float(max(cov[0, 0], 0.0))
    z = float(special.ndtri(0.5 + confidence / 2))
    half = z * math.sqrt(var)
    a = float(auc[0])
    return a, (max(0.0, a - half), min(1.0, a + half)), var


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
