"""Diagnostic accuracy with confidence intervals, bootstrap, DeLong tests and a STARD report.

Public API::

    from skin_cnn.evaluation import evaluate_predictions, write_evaluation, compare_predictions

* :class:`EvalSettings` — the interval settings every function below takes as ``settings``;
* :func:`evaluate_predictions` — ``metrics.json`` content for a predictions table;
* :func:`write_evaluation` — the same plus ``metrics.csv``, figures and ``report.md``/``.html``
  (what else to report, such as subgroup columns, in a :class:`ReportInputs`);
* :func:`choose_threshold` — a threshold fitted on validation predictions;
* :func:`check_disjoint` — refuse threshold-fitting predictions that overlap the evaluated ones;
* :func:`fairness_analysis` — per-group AUC, sensitivity, specificity and the largest gaps;
* :func:`calibration_summary` — ECE, Brier score, calibration slope and intercept;
* :func:`run_context` — what a run folder tells the report and its reporting checklists;
* :func:`compare_predictions` — AUC and accuracy of several models with paired DeLong tests and
  a paired cluster bootstrap of the AUC differences.

The CI methods are documented in ``docs/statistics.md``. This package works on predictions
tables only and never loads a model; evaluating a run folder's split with its model is
:func:`skin_cnn.inference.evaluate_run.evaluate_run`.
"""

from skin_cnn.core.specs import EvalSettings
from skin_cnn.evaluation.bootstrap import bootstrap_intervals, paired_auc_difference
from skin_cnn.evaluation.calibration import calibration_summary
from skin_cnn.evaluation.checklist import run_context
from skin_cnn.evaluation.compare import compare_predictions, write_comparison
from skin_cnn.evaluation.delong import auc_interval, delong_ci, delong_test
from skin_cnn.evaluation.fairness import fairness_analysis
from skin_cnn.evaluation.intervals import clopper_pearson, npv, ppv
from skin_cnn.evaluation.metrics import (
    evaluate_predictions,
    metrics_by,
    metrics_table,
    task_metrics,
)
from skin_cnn.evaluation.leakage import check_disjoint
from skin_cnn.evaluation.report import ReportInputs, write_evaluation
from skin_cnn.evaluation.threshold import choose_threshold, parse_threshold, resolve_thresholds

__all__ = [
    "EvalSettings",
    "ReportInputs",
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
    "run_context",
    "task_metrics",
    "write_comparison",
    "write_evaluation",
]
