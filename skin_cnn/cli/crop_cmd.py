"""``skin-cnn crop``: hue-crop boxes for every image of a manifest or split, with a contact sheet."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from skin_cnn.cli.options import gathered, icd10_map_option, out_option, quiet_option, refuse_overwriting, seed_option


def _copy_destination(image_path, base, folder, index):
    """Where the cropped copy of ``image_path`` goes: its path below the CSV's folder, kept."""
    image_path, base = os.path.abspath(image_path), os.path.abspath(base)
    try:
        inside = os.path.commonpath([image_path, base]) == base
    except ValueError:  # other drive
        inside = False
    relative = os.path.relpath(image_path, base) if inside else f"{index:06d}_{os.path.basename(image_path)}"
    return Path(folder) / "images" / relative


def _flow_step(frame, cropped, errors):
    """The ``crop`` step of the flow record: the rows cropped, and the unreadable ones by reason
    (per split for a split CSV), listed one by one in ``crop_errors.csv``."""
    from skin_cnn.evaluation.flow import excluded_by_reason, make_step

    if "split" in frame.columns:
        errors = errors.merge(frame[["image_path", "split"]].astype({"image_path": str}),
                              on="image_path", how="left")
    return make_step("crop", cropped, excluded_by_reason(errors), details="crop_errors.csv")


@dataclass(frozen=True)
class SheetSample:
    """Which images the before/after contact sheet draws: ``size`` of them, drawn with ``seed``."""

    size: int = 16
    seed: int = 0


@click.command(name="crop")
@click.argument("manifest", type=click.Path(dir_okay=False, exists=True))
@out_option
@click.option("--copies/--no-copies", default=False, show_default=True,
              help="Also save cropped copies under OUT/images/ and a manifest pointing at them, its "
                   "hue_cropped column marking them (train on it with --no-crop).")
@click.option("--sample", default=16, show_default=True, type=click.IntRange(0, 200),
              help="Images drawn on the before/after contact sheet (0: none).")
@click.option("--method", type=click.Choice(("study", "circular")), default="study", show_default=True,
              help="study: the study's hue clustering (faithful); circular: hue as a circle, grey, dark and "
                   "bright pixels left out. Only a model trained with the same --crop-method uses "
                   "these boxes.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes computing boxes (about 5 ms per photo each).")
@seed_option
@icd10_map_option
@quiet_option("bar")
@gathered("sheet", lambda sample, seed: SheetSample(sample, seed), ("sample", "seed"))
def command(manifest, out, copies, method, workers, icd10_map, quiet, sheet):
    """Compute the hue-clustering crop box of every image in MANIFEST (or a split CSV).

    Writes into the folder OUT: crop_boxes.csv (image_path, crop_left, crop_top, crop_right,
    crop_bottom, crop_method, width, height), crop_errors.csv (every unreadable image and why;
    these rows are left out of the outputs and counted on screen), manifest.csv or split.csv (the
    input rows plus the box columns, for `skin-cnn train`, `predict`, `preview` and `cv`; a model
    uses a box only when it crops with the method in crop_method, and otherwise recomputes its
    own box from the photo, saying so in one line) with its flow record beside it (the input's
    record plus a crop step: manifest.flow.json or split.flow.json), and contact_sheet.png (a
    sample before and after). Boxes are in pixels of the upright image (EXIF orientation
    applied), right/bottom exclusive. Exit status 1 when no image at all could be read.
    """
    from skin_cnn.core import io as atomic
    from skin_cnn.data.crop import compute_crop_boxes
    from skin_cnn.evaluation.flow import flow_path

    out = Path(out)
    if out.suffix.lower() in (".csv", ".png"):
        raise click.BadParameter(f"{out}: -o takes a folder, not a file", param_hint="-o/--out")
    refuse_overwriting([manifest, icd10_map, flow_path(manifest)], [out / n for n in _WRITTEN_NAMES])
    frame, is_split = _read_rows(manifest, icd10_map)
    destinations = None
    if copies:
        base = Path(manifest).resolve().parent
        destinations = [_copy_destination(p, base, out, i) for i, p in enumerate(frame["image_path"])]
        for image, copy in zip(frame["image_path"], destinations):
            refuse_overwriting([image], [copy], "--copies")
    out.mkdir(parents=True, exist_ok=True)
    boxes, errors = compute_crop_boxes(frame["image_path"], params={"method": method}, copies_to=destinations,
                                       workers=workers, progress=not quiet)
    atomic.write_csv(out / "crop_boxes.csv", boxes)
    atomic.write_csv(out / "crop_errors.csv", errors)

    written = [out / "crop_boxes.csv", out / "crop_errors.csv"]
    written += _write_cropped(manifest, frame, is_split, (boxes, errors), out, (destinations, method))
    if sheet.size and len(boxes):
        written += _contact_sheet(boxes, sheet, out / "contact_sheet.png")
    _echo_summary(frame, boxes, errors, out)
    click.echo("wrote " + ", ".join(str(p) for p in written))
    if len(frame) and not len(boxes):
        # Nothing to train on: a pipeline must stop here, not on an empty manifest later.
        raise SystemExit(1)


#: Every name ``skin-cnn crop`` may write into its folder (none may replace an input).
_WRITTEN_NAMES = ("crop_boxes.csv", "crop_errors.csv", "manifest.csv", "split.csv", "manifest.flow.json",
                  "split.flow.json", "contact_sheet.png", "manifest_copies.csv", "split_copies.csv",
                  "manifest_copies.flow.json", "split_copies.flow.json")


def _read_rows(manifest, icd10_map):
    """The manifest's (or split's) rows without earlier box columns, and whether it is a split."""
    from skin_cnn.data.crop import BOX_COLUMNS, CROP_METHOD_COLUMN
    from skin_cnn.data.manifest import load_manifest

    frame = load_manifest(manifest, icd10_map=icd10_map)
    is_split = "split" in frame.columns
    if is_split:
        from skin_cnn.data.split import load_split

        frame = load_split(manifest, icd10_map=icd10_map)
    earlier = (*BOX_COLUMNS, CROP_METHOD_COLUMN, "width", "height")
    return frame.drop(columns=[c for c in earlier if c in frame.columns]), is_split


def _write_cropped(manifest, frame, is_split, found, out, copies):
    """Write the rows with their boxes (manifest.csv or split.csv) and, with copies, the manifest
    of the cropped copies, each with its flow record; the paths written.

    ``found`` is ``(boxes, errors)`` from :func:`~skin_cnn.data.crop.compute_crop_boxes`;
    ``copies`` is ``(destinations, method)``, destinations None without copies.
    """
    from skin_cnn.core import io as atomic
    from skin_cnn.data.crop import CROPPED_COLUMN
    from skin_cnn.evaluation.flow import extend_record

    boxes, errors = found
    destinations, method = copies
    cropped = frame.merge(boxes, on="image_path", how="inner", validate="one_to_one")
    name = "split.csv" if is_split else "manifest.csv"
    if is_split:
        from skin_cnn.data.split import write_split

        write_split(cropped, out / name)
    else:
        from skin_cnn.data.manifest import write_manifest

        write_manifest(cropped, out / name)
    step = _flow_step(frame, cropped, errors)
    written = [out / name, extend_record(manifest, out / name, step, input_frame=frame)]
    if destinations is not None:
        ok_paths = set(boxes["image_path"])
        keep = [p in ok_paths for p in frame["image_path"]]
        copied = frame[keep].copy()
        copied["image_path"] = [os.path.relpath(d, out) for d, k in zip(destinations, keep) if k]
        copied[CROPPED_COLUMN] = method  # never cropped again: training with the crop on refuses it
        copies_name = f"{Path(name).stem}_copies.csv"
        atomic.write_csv(out / copies_name, copied)
        written += [out / "images", out / copies_name]
        written.append(extend_record(manifest, out / copies_name, step, input_frame=frame))
    return written


def _contact_sheet(boxes, sheet, path):
    """Draw ``sheet.size`` boxed images (seeded draw) before and after cropping; the paths written."""
    import numpy as np

    from skin_cnn.data.crop import BOX_COLUMNS, draw_contact_sheet
    from skin_cnn.data.reading import ImageReadError, read_image

    rng = np.random.default_rng(sheet.seed)
    picks = np.sort(rng.choice(len(boxes), size=min(sheet.size, len(boxes)), replace=False))
    items = []
    for row in boxes.iloc[picks].itertuples(index=False):
        try:
            image = read_image(row.image_path)
        except ImageReadError as exc:  # changed since the boxes were computed
            click.echo(f"contact sheet: {exc}")
            continue
        box = tuple(int(getattr(row, c)) for c in BOX_COLUMNS)
        items.append((image, box, Path(row.image_path).name[:28]))
    if not items:
        return []
    draw_contact_sheet(items, path)
    return [path]


def _echo_summary(frame, boxes, errors, out):
    """How many images were cropped, the mean area kept, and the unreadable ones (first 10)."""
    area = ((boxes["crop_right"] - boxes["crop_left"]) * (boxes["crop_bottom"] - boxes["crop_top"])
            / (boxes["width"] * boxes["height"]))
    untouched = int((area >= 1.0).sum())
    click.echo(f"{len(boxes)} of {len(frame)} images cropped; mean kept area {area.mean():.1%}"
               f" ({untouched} left whole)" if len(boxes) else f"0 of {len(frame)} images could be read")
    if len(errors):
        click.echo(f"{len(errors)} unreadable images left out (listed in {out / 'crop_errors.csv'}):")
        for row in errors.head(10).itertuples(index=False):
            click.echo(f"  {row.image_path}: {row.reason}")
        if len(errors) > 10:
            click.echo(f"  … {len(errors) - 10} more")
