"""``skin-cnn preview``: the batch training fed (a run) or would feed (a split), as a grid."""
from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.cli.options import gathered, out_option


#: The options that say how training would read a split (not a run folder, which has its own).
SPLIT_ONLY = ("variant", "image_size", "crop", "augment", "balanced", "seed", "batch_size")


def _split_settings(split_only):
    """The training settings the SPLIT-only options give (those not given are left to training).

    ``--no-augment`` turns every augmentation off.
    """
    augment = split_only.get("augment")
    settings = {k: v for k, v in split_only.items() if v is not None and k != "augment"}
    if "variant" in settings:
        settings["variant"] = settings["variant"].upper()
    if augment is False:
        settings.update(zoom=0, rotation=0, translation=0, flip=False)
    return settings


@click.command(name="preview")
@click.argument("source", type=click.Path(exists=True))
@out_option
@click.option("--epoch", default=1, show_default=True, type=click.IntRange(1), help="Epoch (1-based, as history.csv).")
@click.option("--batch", "batch_index", default=0, show_default=True, type=click.IntRange(0),
              help="Batch within the epoch (0-based).")
@click.option("--n", "n", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Images of the batch drawn in the grid.")
@click.option("--variant", default=None, help="SPLIT only: the variant training would use (default P).")
@click.option("--image-size", default=None, type=click.IntRange(32, 2048), help="SPLIT only: model input size.")
@click.option("--crop/--no-crop", default=None, help="SPLIT only: hue crop (training's default: on).")
@click.option("--augment/--no-augment", default=None, help="SPLIT only: the training augmentation (default on).")
@click.option("--balanced/--no-balanced", default=None, help="SPLIT only: balanced epochs.")
@click.option("--seed", default=None, type=int, help="SPLIT only: the run's seed (default 0).")
@click.option("--batch-size", default=None, type=click.IntRange(1), help="SPLIT only: images per batch.")
@gathered("split_only", dict, SPLIT_ONLY)
def command(source, out, epoch, batch_index, n, split_only):
    """Draw batch --batch of epoch --epoch as the network saw it.

    SOURCE is a run folder (its config.json, split.csv and skipped_images.csv: the exact batch
    training fed, same images, crop and augmentation, or with the feature cache the stored view
    of each image) or a split CSV (what `skin-cnn train SPLIT` with the given settings would
    feed). OUT is a PNG (a folder gets preview.png).
    """
    from skin_cnn.data.crop import fitting_crop_boxes
    from skin_cnn.data.split import load_split
    from skin_cnn.training.config import resolve_config
    from skin_cnn.training.preview import draw_training_batch, run_training_batch, training_batch

    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out / "preview.png"
    if Path(source).is_dir():
        if any(v is not None for v in split_only.values()):
            raise click.UsageError("a run folder's settings are used as they are; the SPLIT-only options do not apply")
        (images, rows), config = run_training_batch(source, epoch=epoch, batch=batch_index)
    else:
        config = resolve_config(dict(_split_settings(split_only), split=source, out=""), source="skin-cnn preview")
        frame, note = fitting_crop_boxes(load_split(source), config.preprocessing(), str(source))
        if note:
            click.echo(note)
        images, rows = training_batch(config, frame, epoch=epoch, batch=batch_index)
    draw_training_batch(images, rows, out, config=config, epoch=epoch, batch=batch_index, n=n)
    counts = rows["diagnosis"][:n].value_counts().to_dict()
    click.echo(f"epoch {epoch}, batch {batch_index}: {len(rows)} images; drew {min(n, len(rows))} "
               f"({', '.join(f'{k} {v}' for k, v in counts.items())}) to {out}")
