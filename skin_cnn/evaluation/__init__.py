"""Diagnostic accuracy of a predictions table: metrics with intervals, subgroups, fairness gaps,
model comparison, threshold choice and the leakage checks.

Public API::

    from skin_cnn.evaluation import EvalSettings, evaluate_predictions, compare_predictions

* :class:`EvalSettings` — the interval settings every function below takes as ``settings``;
* :func:`evaluate_predictions` — ``metrics.json`` content for a predictions table;
* :func:`metrics_table`, :func:`metrics_by` — the same as rows, and per subgroup of a column;
* :func:`choose_threshold` — a threshold fitted on validation predictions;
* :func:`check_disjoint` — refuse threshold-fitting predictions that overlap the evaluated ones;
* :func:`fairness_analysis` — per-group AUC, sensitivity, specificity and the largest gaps;
* :func:`compare_predictions` — AUC and accuracy of several models with paired DeLong tests and
  a paired cluster bootstrap of the AUC differences;
* the statistics they use (:mod:`skin_cnn.stats`): :func:`bootstrap_intervals`,
  :func:`clopper_pearson`, :func:`ppv`, :func:`npv`, :func:`auc_interval`, :func:`delong_test`,
  :func:`calibration_summary`.

Writing the files (``metrics.json`` and the figures and report of ``skin-cnn evaluate``,
``compare.md``) is :mod:`skin_cnn.reporting`: :func:`skin_cnn.reporting.write_evaluation`,
:func:`skin_cnn.reporting.write_comparison`, :func:`skin_cnn.reporting.run_context`.

Names load on first use, so ``import skin_cnn.evaluation`` costs nothing until one is taken.
The CI methods are documented in ``docs/statistics.md``. This package works on predictions
tables only and never loads a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skin_cnn.core.lazy_exports import lazy_exports

#: Public name -> the module that defines it.
_EXPORTS = {
    "EvalSettings": "skin_cnn.core.specs",
    "auc_interval": "skin_cnn.stats.delong",
    "bootstrap_intervals": "skin_cnn.stats.bootstrap",
    "calibration_summary": "skin_cnn.stats.calibration",
    "check_disjoint": "skin_cnn.evaluation.leakage",
    "choose_threshold": "skin_cnn.stats.threshold",
    "clopper_pearson": "skin_cnn.stats.intervals",
    "compare_predictions": "skin_cnn.evaluation.compare",
    "delong_ci": "skin_cnn.stats.delong",
    "delong_test": "skin_cnn.stats.delong",
    "evaluate_predictions": "skin_cnn.evaluation.metrics",
    "fairness_analysis": "skin_cnn.evaluation.fairness",
    "metrics_by": "skin_cnn.evaluation.metrics",
    "metrics_table": "skin_cnn.evaluation.metrics",
    "npv": "skin_cnn.stats.intervals",
    "paired_auc_difference": "skin_cnn.stats.bootstrap",
    "parse_threshold": "skin_cnn.evaluation.threshold",
    "ppv": "skin_cnn.stats.intervals",
    "resolve_thresholds": "skin_cnn.evaluation.threshold",
    "task_metrics": "skin_cnn.evaluation.metrics",
}

#: Names that moved to the reporting stage, which writes files (evaluation sits below it).
_MOVED = {name: "skin_cnn.reporting"
          for name in ("write_evaluation", "ReportInputs", "write_comparison", "run_context")}

__all__ = [
    "EvalSettings",
    "auc_interval",
    "bootstrap_intervals",
    "calibration_summary",
    "check_disjoint",
    "choose_threshold",
    "clopper_pearson",
    "compare_predictions",
    "delong_ci",
    "delong_test",
    "evaluate_predictions",
    "fairness_analysis",
    "metrics_by",
    "metrics_table",
    "npv",
    "paired_auc_difference",
    "parse_threshold",
    "ppv",
    "resolve_thresholds",
    "task_metrics",
]

if TYPE_CHECKING:
    from skin_cnn.core.specs import EvalSettings
    from skin_cnn.evaluation.compare import compare_predictions
    from skin_cnn.evaluation.fairness import fairness_analysis
    from skin_cnn.evaluation.leakage import check_disjoint
    from skin_cnn.evaluation.metrics import evaluate_predictions, metrics_by, metrics_table, task_metrics
    from skin_cnn.evaluation.threshold import parse_threshold, resolve_thresholds
    from skin_cnn.stats.bootstrap import bootstrap_intervals, paired_auc_difference
    from skin_cnn.stats.calibration import calibration_summary
    from skin_cnn.stats.delong import auc_interval, delong_ci, delong_test
    from skin_cnn.stats.intervals import clopper_pearson, npv, ppv
    from skin_cnn.stats.threshold import choose_threshold


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, moved=_MOVED)
