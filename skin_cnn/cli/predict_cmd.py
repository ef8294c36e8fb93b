"""``skin-cnn predict``: run a trained model on photos or manifests, optionally with Grad-CAM.

NumPy, pandas, Pillow and the model code (TensorFlow) are imported inside the command, so
``skin-cnn predict --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.atomic import atomic_path, write_csv, write_text
from skin_cnn.diseases import resolve_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")


@click.command("predict")
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--task",
    default="all",
    show_default=True,
    help="A task (psoriasis_vs_eczema, acne_vs_rosacea, ctcl_vs_eczema) or 'all'.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the table to OUT.csv or OUT.json instead of printing it.",
)
@click.option(
    "--gradcam",
    "gradcam_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write Grad-CAM overlays <stem>_<task>_gradcam.png into this folder.",
)
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Images per model call.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(model, inputs, task, out, gradcam_dir, batch_size, quiet):
    """Predict photos (files or folders) or manifests (.csv) with MODEL.

    MODEL is a run folder (its best.keras and the preprocessing in its config.json) or a .keras
    file (outside a run folder: the model's input size, hue crop on, stretched resize).

    \b
    Photos give one row per (image, task): the predicted class, its probability and y_prob,
    the probability of the task's positive class (threshold 0.5).
    A manifest gives the predictions CSV of the evaluation (image_path, patient_id, task,
    y_true, y_prob and the manifest's other columns), one row per task the image's diagnosis
    belongs to. Give either photos or manifests, not both.

    Unreadable files are reported one by one on stderr and skipped; the exit status is non-zero
    only when no image at all could be predicted.
    """
    tasks = resolve_task(task)
    paths = [Path(p) for p in inputs]
    manifests = [p for p in paths if p.suffix.lower() == ".csv"]
    photos = [p for p in paths if p.suffix.lower() != ".csv"]
    if manifests and photos:
        raise click.UsageError("give either photos or manifests (.csv), not both in one call")
    if out is not None and Path(out).suffix.lower() not in (".csv", ".json"):
        raise click.UsageError(f"-o {out}: the output must end in .csv or .json")

    from skin_cnn.predict import load_predictor

    predictor = load_predictor(model)
    missing = [t for t in tasks if t not in predictor.tasks]
    if missing:
        raise click.UsageError(f"the model has no output for {', '.join(missing)}")

    if manifests:
        table, skipped, frame, ok = _predict_manifests(
            predictor, manifests, tasks, batch_size, quiet
        )
    else:
        table, skipped, frame, ok = _predict_photos(predictor, photos, tasks, batch_size, quiet)

    for item in skipped:
        click.echo(f"skipped {item['image_path']}: {item['reason']}", err=True)
    n_done = int(ok.sum()) if ok is not None else 0
    if n_done == 0:
        raise click.ClickException(f"no image could be predicted ({len(skipped)} unreadable)")

    if gradcam_dir is not None:
        written = _write_gradcams(
            predictor, frame[ok].reset_index(drop=True), table, gradcam_dir, quiet
        )
        click.echo(f"Grad-CAM: {written} overlay(s) in {gradcam_dir}", err=True)

    if out is None:
        click.echo(_format_table(table))
    else:
        _write_table(table, out)
        click.echo(f"{len(table)} row(s) for {n_done} image(s) written to {out}", err=True)
    if skipped:
        click.echo(f"{len(skipped)} file(s) skipped, {n_done} predicted", err=True)


def _expand_photos(paths):
    """Files as given; folders expanded to the image files below them (sorted)."""
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        else:
            files.append(path)
    return files


def _predict_photos(predictor, paths, tasks, batch_size, quiet):
    import numpy as np
    import pandas as pd

    from skin_cnn.predict import predict_frame, predicted_class

    files = _expand_photos(paths)
    if not files:
        raise click.UsageError("no image files found in the given folders")
    frame = pd.DataFrame({"image_path": [str(p) for p in files]})
    result = predict_frame(predictor, frame, batch_size=batch_size, progress=not quiet)
    rows = []
    for i in np.flatnonzero(result.ok):
        for task in tasks:
            p = float(result[task][i])
            cls = predicted_class(task, p)
            rows.append(
                {
                    "image_path": frame.at[i, "image_path"],
                    "task": task,
                    "predicted": cls,
                    "probability": p if p >= 0.5 else 1.0 - p,
                    "y_prob": p,
                }
            )
    table = pd.DataFrame(rows, columns=["image_path", "task", "predicted", "probability", "y_prob"])
    return table, result.skipped, frame, result.ok


def _predict_manifests(predictor, manifests, tasks, batch_size, quiet):
    import numpy as np
    import pandas as pd

    from skin_cnn.manifest import load_manifest
    from skin_cnn.predict import predict_frame
    from skin_cnn.predictions import predictions_frame

    frame = pd.concat([load_manifest(p) for p in manifests], ignore_index=True)
    result = predict_frame(predictor, frame, batch_size=batch_size, progress=not quiet)
    kept, probs = result.kept(frame)
    table = predictions_frame(kept.reset_index(drop=True), probs, tasks=tasks)
    ok = np.asarray(result.ok)
    return table, result.skipped, frame, ok


def _write_gradcams(predictor, frame, table, folder, quiet):
    """One overlay per row of ``table`` (image × task), named ``<stem>_<task>_gradcam.png``."""
    from PIL import Image
    from tqdm.auto import tqdm

    from skin_cnn.explain import overlay

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tasks_by_image = table.groupby("image_path", sort=False)["task"].apply(list).to_dict()
    used, written = {}, 0
    for path in tqdm(frame["image_path"], desc="grad-cam", unit="img", disable=quiet):
        tasks = tasks_by_image.get(path)
        if not tasks:
            continue
        stem = Path(path).stem
        used[stem] = used.get(stem, 0) + 1
        if used[stem] > 1:  # two photos with the same name in different folders
            stem = f"{stem}-{used[stem]}"
        tensor, _ = predictor.preprocess(predictor.read(path))
        heatmaps, _ = predictor.explain(tensor[None], tasks)
        for task in tasks:
            with atomic_path(folder / f"{stem}_{task}_gradcam.png") as tmp:
                Image.fromarray(overlay(tensor, heatmaps[task][0])).save(tmp, format="PNG")
            written += 1
    return written


def _write_table(table, out):
    if Path(out).suffix.lower() == ".json":
        write_text(out, table.to_json(orient="records", indent=2) + "\n")
    else:
        write_csv(out, table)


def _format_table(table):
    """A plain-text table: image, task, predicted class, probability of that class."""
    if "predicted" in table.columns:
        shown = table[["image_path", "task", "predicted", "probability"]].copy()
    else:  # manifest predictions: show the class the probability points to
        from skin_cnn.predict import predicted_class

        shown = table[["image_path", "task"]].copy()
        shown["predicted"] = [predicted_class(t, p) for t, p in zip(table["task"], table["y_prob"])]
        shown["probability"] = [p if p >= 0.5 else 1 - p for p in table["y_prob"]]
        shown["true"] = [predicted_class(t, y) for t, y in zip(table["task"], table["y_true"])]
    shown["image_path"] = [_short(p) for p in shown["image_path"]]
    shown["probability"] = [f"{p:.3f}" for p in shown["probability"]]
    return shown.to_string(index=False)


def _short(path, width=40):
    path = str(path)
    return path if len(path) <= width else "…" + path[-(width - 1) :]
