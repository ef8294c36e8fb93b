"""``skin-cnn compare``: several runs or prediction CSVs in one table, with paired tests of AUC differences."""

from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.cli.options import interval_options, refuse_overwriting


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
    default="0.5",
    show_default=True,
    help="Threshold for accuracy (y_prob >= threshold is positive), or 'youden' / 'study' / 'sens:0.90' / "
    "'spec:0.90' chosen per model on its validation predictions.",
)
@click.option(
    "--val-predictions",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Validation predictions for a fitted threshold, once per source in order [default for a "
    "run folder: its val_predictions.csv].",
)
@interval_options(
    n_bootstrap_help="Resamples of the paired cluster bootstrap of AUC differences (0: none).",
    auc_ci_help="DeLong AUC interval on the logit scale or on the AUC scale (as the study).",
    confidence_help="Confidence level of the intervals.",
)
def command(sources, out, threshold, val_predictions, settings):
    """Compare SOURCES (run folders evaluated with `skin-cnn evaluate`, or predictions CSVs).

    All models must have been evaluated on the same images (matched by image_path and task), with
    the same labels and patients (an id one file leaves empty is taken from another). Writes AUC
    and accuracy per task and model, and for every pair of models per task a paired bootstrap of
    the AUC difference that resamples patients (or split groups) within each class, and the
    paired DeLong test. When the images come from fewer patients (split groups) than
    images the cluster bootstrap is the primary test, Holm-adjusted over the pairs of a task, and
    DeLong's test (which treats images as independent) is secondary; otherwise DeLong's is
    primary.
    """
    from skin_cnn.reporting.comparison import write_comparison
    from skin_cnn.evaluation.threshold import parse_threshold

    if len(sources) < 2:
        raise click.UsageError("give at least two runs or predictions CSVs to compare")
    refuse_overwriting([*sources, *val_predictions],
                       [Path(out) / n for n in ("compare.md", "compare.csv", "compare_delong.csv")])
    write_comparison(
        sources,
        out,
        threshold=parse_threshold(threshold),
        val_predictions=val_predictions,
        settings=settings,
    )
    click.echo((Path(out) / "compare.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {Path(out) / 'compare.md'}, compare.csv and compare_delong.csv")
