"""Confidence intervals for proportions from a 2×2 table.

Sensitivity, specificity and accuracy are plain binomial proportions, so they get the exact
Clopper–Pearson interval: it never undercovers and it is what the study's tables report. PPV and
NPV get the logit interval of Mercaldo, Lau & Zhou (Stat Med 2007) with the sample prevalence,
the interval MedCalc's diagnostic-test calculator reports: it reproduces the study's Table 2 to
the printed digits (e.g. acne vs rosacea PPV 69.49% (59.16–78.17%) from 41 TP, 7 FN, 154 TN,
18 FP).

Every function returns an :class:`Estimate`, whose :meth:`Estimate.as_dict` is the
``{"value", "ci", "method"}`` entry of ``metrics.json``. Undefined values (a proportion of zero
cases) are ``None`` with a ``note``, never NaN, so the JSON stays valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special, stats

CLOPPER_PEARSON = "clopper-pearson"
LOGIT = "logit"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval and how the interval was computed."""

    value: float | None
    ci: tuple | None
    method: str
    note: str | None = None

    def as_dict(self):
        out = {
            "value": _clean(self.value),
            "ci": None if self.ci is None else [_clean(self.ci[0]), _clean(self.ci[1])],
            "method": self.method,
        }
        if self.note:
            out["note"] = self.note
        return out


def _clean(x):
    """A float for JSON: None for missing or non-finite values."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _z(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return float(special.ndtri(0.5 + confidence / 2))


def clopper_pearson(k, n, confidence=0.95):
    """Exact Clopper–Pearson interval for ``k`` successes out of ``n``.

    The bounds are beta quantiles, ``Beta(α/2; k, n−k+1)`` and ``Beta(1−α/2; k+1, n−k)``, with
    the lower bound 0 when ``k = 0`` and the upper bound 1 when ``k = n``. They are computed by
    ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``, SciPy's maintained
    implementation, rather than by hand.

    Returns
    -------
    Estimate
        ``value`` is ``k / n``; ``None`` (with a note) when ``n = 0``.
    """
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    _z(confidence)
    if n == 0:
        return Estimate(None, None, CLOPPER_PEARSON, note="no cases in the denominator")
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return Estimate(k / n, (float(interval.low), float(interval.high)), CLOPPER_PEARSON)


def _logit_interval(value, variance, confidence):
    half = _z(confidence) * math.sqrt(variance)
    centre = math.log(value / (1 - value))
    return float(special.expit(centre - half)), float(special.expit(centre + half))


def predictive_value(tp, fn, tn, fp, which="ppv", confidence=0.95):
    """PPV or NPV with the Mercaldo–Lau–Zhou logit interval at the sample prevalence.

    With sample prevalence the predictive value is ``tp / (tp + fp)`` (PPV) or
    ``tn / (tn + fn)`` (NPV), and the delta-method variance of its logit, written in
    sensitivity ``se``, specificity ``sp``, ``n1`` diseased and ``n0`` non-diseased cases, is

    * PPV: ``(1 − se) / (se·n1) + sp / ((1 − sp)·n0)``  (= 1/tp − 1/n1 + 1/fp − 1/n0)
    * NPV: ``se / ((1 − se)·n1) + (1 − sp) / (sp·n0)``  (= 1/fn − 1/n1 + 1/tn − 1/n0)

    and the interval is ``expit(logit(pv) ± z·sqrt(var))``. Prevalence is treated as known, which
    is why the interval is narrower than a binomial interval on the predicted positives.

    The logit interval does not exist when the predictive value is 0 or 1 (a zero cell), and it
    collapses to a point when the variance is zero (e.g. every case predicted positive, so PPV
    equals the sample prevalence). In both cases the exact Clopper–Pearson interval on the
    predicted-positive (or predicted-negative) count is returned instead and ``method`` says so.
    With no predicted positives (negatives) the value itself is undefined: ``None`` and a note.
    """
    if which not in ("ppv", "npv"):
        raise ValueError(f"which must be 'ppv' or 'npv', got {which!r}")
    tp, fn, tn, fp = (int(v) for v in (tp, fn, tn, fp))
    if min(tp, fn, tn, fp) < 0:
        raise ValueError("2×2 counts must be non-negative")
    _z(confidence)
    n1, n0 = tp + fn, tn + fp
    hit, miss = (tp, fp) if which == "ppv" else (tn, fn)
    called = hit + miss
    if called == 0:
        side = "positive" if which == "ppv" else "negative"
        return Estimate(None, None, LOGIT, note=f"no case was predicted {side}")
    value = hit / called
    if hit == 0 or miss == 0:
        cp = clopper_pearson(hit, called, confidence)
        return Estimate(value, cp.ci, f"{CLOPPER_PEARSON} (logit undefined at 0 or 1)")
    # hit > 0 and miss > 0 imply n1 > 0 and n0 > 0
    if which == "ppv":
        variance = 1 / tp - 1 / n1 + 1 / fp - 1 / n0
    else:
        variance = 1 / fn - 1 / n1 + 1 / tn - 1 / n0
    if variance <= 0:
        cp = clopper_pearson(hit, called, confidence)
        return Estimate(value, cp.ci, f"{CLOPPER_PEARSON} (logit variance zero)")
    return Estimate(value, _logit_interval(value, variance, confidence), LOGIT)


def ppv(tp, fn, tn, fp, confidence=0.95):
    """Positive predictive value with its interval; see :func:`predictive_value`."""
    return predictive_value(tp, fn, tn, fp, "ppv", confidence)


def npv(tp, fn, tn, fp, confidence=0.95):
    """Negative predictive value with its interval; see :func:`predictive_value`."""
    return predictive_value(tp, fn, tn, fp, "npv", confidence)
