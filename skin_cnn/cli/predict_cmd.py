"""``skin-cnn predict``: run a trained model on photos or manifests, optionally with Grad-CAM.

NumPy, pandas, Pillow and the model code (TensorFlow) are imported inside the command, so
``skin-cnn predict --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.core.io import atomic_path, write_csv, write_text
from skin_cnn.cli.options import precision_option, quiet_option, refuse_overwriting
from skin_cnn.core.tasks import resolve_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
#: Printed above the table (the same words as skin_cnn.inference.predictor.CONDITIONAL_NOTE, without
#: importing the model code before it is needed).
CONDITIONAL_NOTE_TEXT = (
    "Each task answers only: if the photo shows one of these two diseases, which one? It does not\n"
    "say whether either is present; read only the task that matches your question (--task)."
)
PHOTO_COLUMNS = ["image_path", "task", "question", "predicted", "probability", "y_prob",
                 "threshold", "threshold_rule", "reading"]


@click.command("predict")
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--task", default="all", show_default=True,
              help="The question you are asking: psoriasis_vs_eczema, acne_vs_rosacea, ctcl_vs_eczema, "
              "or 'all' to compare (each task still answers only its own question).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Write the table to OUT.csv or OUT.json instead of printing it.")
@click.option("--gradcam", "gradcam_dir", type=click.Path(file_okay=False), default=None,
              help="Write Grad-CAM pictures <stem>_<task>_gradcam.png into this folder: the heat map on "
              "the whole photo at its own resolution, with question, answer, probability, threshold and "
              "a colour bar.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Images per model call.")
@precision_option()
@quiet_option("bar")
def command(model, inputs, task, out, gradcam_dir, batch_size, precision, quiet):
    """Predict photos (files or folders) or manifests (.csv) with MODEL.

    MODEL is a run folder (its best.keras) or a .keras file. The model's own record gives the
    preprocessing (crop, size, resize) and each task's threshold; models saved without one use
    their run folder's config.json (else: input size, hue crop, stretch) and 0.5.

    Each task answers only "if the photo shows one of these two diseases, which one?"; it never
    says whether either is present. Pick the task that matches your question with --task.

    \b
    Photos: printed, a note saying the above, then one row per image and task:
      image_path   the file, as given (never shortened)
      task         e.g. psoriasis_vs_eczema
      answer       the class predicted, IF the photo shows one of the two
      probability  P(first class) against the model's cut-off, e.g.
                   P(Psoriasis) 30% — above this model's cut-off of 29% for psoriasis
                   (the answer is the first class when P >= cut-off)
    and a last line saying where each cut-off comes from, as stored in the model (e.g. fitted
    at training by `skin-cnn train --threshold youden`, or by `skin-cnn evaluate --threshold
    youden|sens:X|spec:X`), or the default 0.5.
    With -o OUT.csv/.json: columns image_path, task, question, predicted, probability (of
    the predicted class), y_prob (of the first class), threshold, threshold_rule, reading
    (the probability against the cut-off, as printed).

    \b
    Manifests: the predictions CSV of the evaluation (image_path, patient_id, task, y_true,
    y_prob and the manifest's other columns), one row per task the image's diagnosis belongs
    to; printed, the answer at the model's threshold and the true class. Give either photos
    or manifests, not both.

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
    refuse_overwriting([model, *paths], [out])

    from skin_cnn.inference.predictor import load_predictor

    predictor = load_predictor(model, precision=precision)
    _announce(predictor)
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
        click.echo(f"Grad-CAM: {written} picture(s) in {gradcam_dir}", err=True)

    if out is None:
        click.echo(CONDITIONAL_NOTE_TEXT)
        click.echo(_format_table(table, predictor))
        click.echo(_threshold_line(predictor, tasks))
    else:
        _write_table(table, out)
        click.echo(f"{len(table)} row(s) for {n_done} image(s) written to {out}", err=True)
    if skipped:
        click.echo(f"{len(skipped)} file(s) skipped, {n_done} predicted", err=True)


def _announce(predictor):
    """What the model computes in and, for a model trained on the demo's synthetic images, that its
    answers say nothing about real photos (on stderr, above the table)."""
    from skin_cnn.inference.predictor import SYNTHETIC_MODEL_WARNING

    click.echo(predictor.precision.describe(), err=True)
    if predictor.synthetic:
        click.echo(f"warning: {SYNTHETIC_MODEL_WARNING}", err=True)


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

    from skin_cnn.inference.predictor import cutoff_reading, predict_frame

    files = _expand_photos(paths)
    if not files:
        raise click.UsageError("no image files found in the given folders")
    frame = pd.DataFrame({"image_path": [str(p) for p in files]})
    result = predict_frame(predictor, frame, batch_size=batch_size, progress=not quiet)
    rows = []
    for i in np.flatnonzero(result.ok):
        for task in tasks:
            p = float(result[task][i])
            threshold = predictor.thresholds[task]
            positive = p >= threshold.value
            rows.append(
                {
                    "image_path": frame.at[i, "image_path"],
                    "task": task,
                    "question": predictor.question(task),
                    "predicted": predictor.predicted_class(task, p),
                    "probability": p if positive else 1.0 - p,
                    "y_prob": p,
                    "threshold": threshold.value,
                    "threshold_rule": threshold.rule,
                    "reading": cutoff_reading(p, threshold.value, predictor.classes[task][0]),
                }
            )
    table = pd.DataFrame(rows, columns=PHOTO_COLUMNS)
    return table, result.skipped, frame, result.ok


def _predict_manifests(predictor, manifests, tasks, batch_size, quiet):
    import numpy as np
    import pandas as pd

    from skin_cnn.data.crop import fitting_crop_boxes
    from skin_cnn.data.manifest import load_manifest
    from skin_cnn.inference.predictor import predict_frame
    from skin_cnn.core.predictions import predictions_frame

    frame = pd.concat([load_manifest(p) for p in manifests], ignore_index=True)
    frame, note = fitting_crop_boxes(frame, predictor.preprocessing, ", ".join(str(p) for p in manifests))
    if note:
        click.echo(note, err=True)
    result = predict_frame(predictor, frame, batch_size=batch_size, progress=not quiet)
    kept, probs = result.kept(frame)
    table = predictions_frame(kept.reset_index(drop=True), probs, tasks=tasks)
    ok = np.asarray(result.ok)
    return table, result.skipped, frame, ok


def _write_gradcams(predictor, frame, table, folder, quiet):
    """One picture per row of ``table`` (image × task), named ``<stem>_<task>_gradcam.png``."""
    from PIL import Image
    from skin_cnn.core.progress import progress_bar

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tasks_by_image = table.groupby("image_path", sort=False)["task"].apply(list).to_dict()
    used, written = {}, 0
    for path in progress_bar(frame["image_path"], desc="grad-cam", unit="img", disable=quiet):
        tasks = tasks_by_image.get(path)
        if not tasks:
            continue
        stem = Path(path).stem
        used[stem] = used.get(stem, 0) + 1
        if used[stem] > 1:  # two photos with the same name in different folders
            stem = f"{stem}-{used[stem]}"
        pictures, _ = predictor.explain_photo(predictor.read(path), tasks, name=Path(path).name)
        for task, picture in pictures.items():
            with atomic_path(folder / f"{stem}_{task}_gradcam.png") as tmp:
                Image.fromarray(picture).save(tmp, format="PNG")
            written += 1
    return written


def _write_table(table, out):
    if Path(out).suffix.lower() == ".json":
        write_text(out, table.to_json(orient="records", indent=2) + "\n")
    else:
        write_csv(out, table)


def _format_table(table, predictor):
    """A plain-text table: image (in full), task, answer, and P(first class) read against the
    model's cut-off (:func:`skin_cnn.inference.predictor.cutoff_reading`)."""
    import pandas as pd

    from skin_cnn.inference.predictor import cutoff_reading, display_class

    shown = pd.DataFrame({"image_path": [str(p) for p in table["image_path"]],
                          "task": list(table["task"])})
    shown["answer"] = [display_class(predictor.predicted_class(t, p))
                       for t, p in zip(table["task"], table["y_prob"])]
    shown["probability"] = [
        f"P({display_class(predictor.classes[t][0])}) "
        + cutoff_reading(p, predictor.thresholds[t].value, predictor.classes[t][0])
        for t, p in zip(table["task"], table["y_prob"])
    ]
    if "y_true" in table.columns:  # manifest predictions: the true class too
        positive = {t: predictor.classes[t] for t in set(table["task"])}
        shown["true"] = [display_class(positive[t][0] if y else positive[t][1])
                         for t, y in zip(table["task"], table["y_true"])]
    columns = list(shown.columns)
    cells = [columns] + shown.astype(str).values.tolist()
    widths = [max(len(row[k]) for row in cells) for k in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def _threshold_line(predictor, tasks):
    """Where each task's threshold comes from, tasks with the same one grouped."""
    groups = {}
    for task in tasks:
        groups.setdefault(predictor.thresholds[task].describe(), []).append(task)
    parts = [f"{', '.join(names)} {text}" for text, names in groups.items()]
    return "cut-off (answer = first class when P >= cut-off): " + "; ".join(parts)
