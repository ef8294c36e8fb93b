"""``skin-cnn export``: photo-in SavedModel or TFLite, checked against ``skin-cnn predict``."""

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
    help="Photos on which the export is compared with skin-cnn predict (0: no check).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of random check photos.")
def command(model, fmt, out, check_images, seed):
    """Export MODEL (a run folder or .keras file) to --format at OUT.

    \b
    The export takes a photo: uint8 RGB of any size (H, W, 3) under the input name 'photo', in
    the signature 'serving_default', and returns one probability (shape (1,)) per task under
    the task's name. It repeats the preprocessing skin-cnn predict uses for MODEL: a SavedModel
    crops (hue crop, output 'crop_box'), resizes and rounds like skin-cnn predict; a TFLite file
    resizes only (the exact crop needs float64 ops TFLite lacks), so send it the photo cut to
    the crop box when the run crops. A SavedModel also has the batch signature
    'predict_images' for serving systems: 'images', a 1-D string tensor of encoded photos
    (JPEG/PNG bytes), decoded and preprocessed the same way; one probability per photo (n,).
    The export is compared with skin-cnn predict on the run's test photos (else seeded random
    photos); the largest probability difference and, for a SavedModel, the crop boxes that
    match are printed and written to OUT.check.json. Exit status 1 when the difference exceeds
    the tolerance (1e-4 SavedModel, 1e-2 TFLite) or a crop box differs.
    """
    from skin_cnn.cli.options import refuse_overwriting
    from skin_cnn.inference.export import describe_check, export_model

    refuse_overwriting([model], [out, f"{out}.check.json"])
    check = export_model(model, fmt, out, check_images=check_images, seed=seed)
    click.echo(describe_check(check))
    if check["passed"] is False:
        raise click.ClickException(
            "the export does not reproduce skin-cnn predict (probabilities or crop boxes)"
        )
