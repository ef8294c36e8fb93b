"""``skin-cnn export``: photo-in SavedModel or TFLite, checked against ``skin-cnn predict``."""

from __future__ import annotations

import click

from skin_cnn.core.compute_precision import POLICIES


@click.command("export")
@click.argument("model", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "tflite"]), required=True,
              help="savedmodel: a folder for TF Serving; tflite: one .tflite file.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Output folder (savedmodel) or file (tflite).")
@click.option("--check-images", default=8, show_default=True, type=click.IntRange(0, 10_000),
              help="Photos on which the export is compared with skin-cnn predict (0: no check).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of random check photos.")
@click.option("--precision", type=click.Choice(list(POLICIES)), default="float32", show_default=True,
              help="What the export computes in. float32: portable. bfloat16: SavedModel only (CPUs with "
              "AVX512-BF16/AMX). float16: TFLite float16 weights, or a SavedModel for GPUs.")
def command(model, fmt, out, check_images, seed, precision):
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
    the tolerance (float32: 1e-4 SavedModel, 1e-2 TFLite; bfloat16 and float16: 5e-2) or a
    crop box differs. The comparison is always with skin-cnn predict in float32.

    Each export also records the model's tasks, thresholds and whether it was trained on
    synthetic images (skin-cnn demo): in a TFLite file's metadata 'skin_cnn', in a SavedModel's
    assets.extra/skin_cnn.json. For a model trained on synthetic images a warning line is
    printed, and the check file holds it under 'synthetic_model'.
    """
    from skin_cnn.cli.options import refuse_overwriting
    from skin_cnn.cli.quiet_tf import quiet_native_lines
    from skin_cnn.inference.export import describe_check, export_model

    refuse_overwriting([model], [out, f"{out}.check.json"])
    with quiet_native_lines():  # the TFLite check's interpreter announces its delegate from C++
        check = export_model(model, fmt, out, check_images=check_images, seed=seed, precision=precision)
    click.echo(describe_check(check))
    if check["passed"] is False:
        raise click.ClickException(
            "the export does not reproduce skin-cnn predict (probabilities or crop boxes)"
        )
