"""``skin-cnn preview``: a grid of augmented training images with their diagnoses."""
from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.cli.options import out_option, seed_option


@click.command(name="preview")
@click.argument("split", type=click.Path(dir_okay=False, exists=True))
@out_option
@click.option("--n", "n", default=16, show_default=True, type=click.IntRange(1, 256), help="Images in the grid.")
@seed_option
@click.option("--image-size", default=250, show_default=True, type=click.IntRange(8, 2048),
              help="Model input size (square).")
@click.option("--crop", type=click.Choice(["auto", "boxes", "hue", "none"]), default="auto", show_default=True,
              help="auto: use crop_* columns when the CSV has them; hue: compute boxes on the fly.")
@click.option("--resize", type=click.Choice(["stretch", "pad"]), default="stretch", show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True, help="Apply the training augmentation.")
@click.option("--icd10-map", type=click.Path(dir_okay=False), default=None,
              help="ICD-10 → category CSV for an icd10 column.")
def command(split, out, n, seed, image_size, crop, resize, augment, icd10_map):
    """Draw N training images of SPLIT (a split or manifest CSV) as the network sees them.

    Rows of the train split are sampled (all rows of a manifest without a split column),
    cropped and resized like training batches and augmented once at random. OUT is a PNG (a
    folder gets preview.png).
    """
    from skin_cnn.data.augment import AugmentConfig
    from skin_cnn.data.pipeline import PipelineConfig
    from skin_cnn.data.preview import preview_grid
    from skin_cnn.manifest import load_manifest

    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out / "preview.png"
    frame = load_manifest(split, icd10_map=icd10_map)
    if "split" in frame.columns:
        from skin_cnn.split import load_split

        frame = load_split(split, icd10_map=icd10_map)
    aug = AugmentConfig() if augment else AugmentConfig(0, 0, 0, False, False)
    config = PipelineConfig(image_size=(image_size, image_size), crop=crop, resize=resize, augment=aug, seed=seed)
    rows = preview_grid(frame, config, out, n=n, seed=seed)
    counts = rows["diagnosis"].value_counts().to_dict()
    click.echo(f"{len(rows)} images ({', '.join(f'{k} {v}' for k, v in counts.items())}); wrote {out}")
