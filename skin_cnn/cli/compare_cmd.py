"""``skin-cnn compare``: several runs or prediction CSVs in one table, with paired DeLong tests."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="compare")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default="compare",
    show_default=True,
    help="Output folder for compare.md, compare.csv and compare_delong.csv.",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Threshold for accuracy (y_prob >= threshold is positive).",
)
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0.5, 0.999),
    help="Confidence level of the intervals.",
)
def command(sources, out, threshold, confidence):
    """Compare SOURCES (run folders evaluated with `skin-cnn evaluate`, or predictions CSVs).

    All models must have been evaluated on the same images (matched by image_path and task).
    Writes AUC (DeLong CI) and accuracy (Clopper-Pearson CI) per task and model, and the paired
    DeLong test of every pair of models per task (p-values raw and Holm-adjusted).
    """
    from skin_cnn.evaluation.compare import write_comparison

    if len(sources) < 2:
        raise click.UsageError("give at least two runs or predictions CSVs to compare")
    table, tests = write_comparison(sources, out, threshold=threshold, confidence=confidence)
    click.echo((Path(out) / "compare.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {Path(out) / 'compare.md'}, compare.csv and compare_delong.csv")
