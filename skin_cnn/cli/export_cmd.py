"""``skin-cnn export``: SavedModel or TFLite, checked numerically against the Keras model."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("model", type=click.Path(exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["savedmodel", "tflite"]),
    required=True,
    help="savedmodel: a folder for TF Serving; tflite: one .tflite file.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(),
    help="Output folder (savedmodel) or file (tflite).",
)
@click.option(
    "--check-images",
    default=8,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Images on which the export is compared with the Keras model (0: no check).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of random check images.")
def command(model, fmt, out, check_images, seed):
    """Export MODEL (a run folder or .keras file) to --format at OUT.

    \b
    The export takes float32 RGB in [0, 255] of shape (batch, H, W, 3) under the input name
    'images' and returns one (batch, 1) probability per task under the task's name, in the
    signature 'serving_default'. Cropping and resizing are not part of it: repeat the run's
    preprocessing (config.json) before calling it.
    The export is compared with the Keras model on the run's test images (else seeded random
    images); the largest probability difference is printed and written to OUT.check.json.
    Exit status 1 when it exceeds the tolerance (1e-4 SavedModel, 1e-2 TFLite).
    """
    from skin_cnn.export import describe_check, export_model

    check = export_model(model, fmt, out, check_images=check_images, seed=seed)
    click.echo(describe_check(check))
    if check["passed"] is False:
        raise click.ClickException(
            "the export does not reproduce the Keras model within the tolerance"
        )
