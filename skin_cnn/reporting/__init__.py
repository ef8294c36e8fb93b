"""What an evaluation writes: ``metrics.json`` and ``metrics.csv``, the figures, the STARD flow
diagram, the failure gallery and ``report.md``/``report.html``, and ``compare.md``.

Public API::

    from skin_cnn.reporting import ReportInputs, write_evaluation, write_comparison

* :func:`write_evaluation` — evaluate a predictions table and write every output into a folder;
  :class:`ReportInputs` holds what it reports beside the metrics (subgroup and fairness
  columns, the flow, the run folder, the audits);
* :func:`write_comparison` — ``compare.md``, ``compare.csv`` and ``compare_delong.csv``;
* :func:`run_context` — what a run folder tells the report and its reporting checklists;
* :data:`EVALUATION_FILES` — the files every evaluation writes.

The numbers come from :mod:`skin_cnn.evaluation`; names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skin_cnn.core.lazy_exports import lazy_exports

#: Public name -> the module that defines it.
_EXPORTS = {
    "EVALUATION_FILES": "skin_cnn.reporting.report",
    "ReportInputs": "skin_cnn.reporting.report",
    "run_context": "skin_cnn.reporting.checklist",
    "write_comparison": "skin_cnn.reporting.comparison",
    "write_evaluation": "skin_cnn.reporting.report",
}

__all__ = [
    "EVALUATION_FILES",
    "ReportInputs",
    "run_context",
    "write_comparison",
    "write_evaluation",
]

if TYPE_CHECKING:
    from skin_cnn.reporting.checklist import run_context
    from skin_cnn.reporting.comparison import write_comparison
    from skin_cnn.reporting.report import EVALUATION_FILES, ReportInputs, write_evaluation


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
