"""Diagnostic accuracy with confidence intervals, bootstrap, DeLong tests and a STARD report.

Public API::

    from skin_cnn.evaluation import evaluate_predictions, write_evaluation, compare_predictions

* :func:`evaluate_predictions` — ``metrics.json`` content for a predictions table;
* :func:`write_evaluation` — the same plus ``metrics.csv``, figures and ``report.md``/``.html``;
* :func:`evaluate_run` — predict a run's test split with its model, then :func:`write_evaluation`;
* :func:`choose_threshold` — a threshold fitted on validation predictions;
* :func:`compare_predictions` — AUC and accuracy of several models with paired DeLong tests.

The CI methods are documented in ``docs/statistics.md``. Only :func:`evaluate_run` loads
TensorFlow (through ``skin_cnn.predict``), and only when called.
"""

from skin_cnn.evaluation.bootstrap import bootstrap_intervals
from skin_cnn.evaluation.compare import compare_predictions, write_comparison
from skin_cnn.evaluation.delong import delong_ci, delong_test
from skin_cnn.evaluation.intervals import clopper_pearson, npv, ppv
from skin_cnn.evaluation.metrics import (
    evaluate_predictions,
    metrics_by,
    metrics_table,
    task_metrics,
)
from skin_cnn.evaluation.report import evaluate_run, write_evaluation
from skin_cnn.evaluation.threshold import choose_threshold, parse_threshold, resolve_thresholds

__all__ = [
    "bootstrap_intervals",
    "choose_threshold",
    "clopper_pearson",
    "compare_predictions",
    "delong_ci",
    "delong_test",
    "evaluate_predictions",
    "evaluate_run",
    "metrics_by",
    "metrics_table",
    "npv",
    "parse_threshold",
    "ppv",
    "resolve_thresholds",
    "task_metrics",
    "write_comparison",
    "write_evaluation",
]
