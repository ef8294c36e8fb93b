"""The report's Markdown and HTML stay the documents kept in ``tests/data/report_golden``.

Three evaluations (:mod:`report_fixtures`: subgroups and fairness on synthetic images, fitted
thresholds, a run folder with flow and audits) are written and compared with the kept documents
after one normalisation only: the temporary folder reads ``<TMP>`` and each embedded PNG's base64
data reads ``<PNG>``. Everything else — every character of the text, tables, anchors, banner and
markup — must be identical.
"""
import pytest

from report_fixtures import CASES, GOLDEN, normalise, write_case


@pytest.mark.parametrize("case", CASES)
def test_the_report_documents_are_the_kept_ones(case, tmp_path):
    out = write_case(case, tmp_path)
    for ext in ("md", "html"):
        written = normalise((out / f"report.{ext}").read_text(encoding="utf-8"), tmp_path)
        kept = (GOLDEN / f"{case}.{ext}").read_text(encoding="utf-8")
        assert written == kept, f"report.{ext} of case {case} differs from {GOLDEN / f'{case}.{ext}'}"


def test_the_html_embeds_every_figure_the_markdown_links():
    """The normalisation hides the figures' bytes, not whether they are there."""
    for case in CASES:
        md = (GOLDEN / f"{case}.md").read_text(encoding="utf-8")
        page = (GOLDEN / f"{case}.html").read_text(encoding="utf-8")
        assert md.count("![") == page.count("data:image/png;base64,<PNG>") > 0, case
