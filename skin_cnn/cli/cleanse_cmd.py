"""``skin-cnn cleanse``: generate non-skin examples, train the skin/non-skin filter, apply it.

The filter's classifier, and with it TensorFlow, is imported inside the ``train`` and ``apply``
subcommands, so ``skin-cnn cleanse --help`` and ``make-examples`` never load it.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from skin_cnn.cleanse.nonskin_examples import INDEX_FILENAME, KINDS, make_examples
from skin_cnn.cli.options import gathered, seed_option
from skin_cnn.data.manifest import load_manifest


@click.group(name="cleanse")
def command():
    """Train or apply the skin/non-skin image filter.

    Clinical photo folders also hold photos of patient-ID slips, patch-test sheets and forms.
    The filter is a small CNN giving P(non-skin) for each image, trained on your own
    training-split photos and generated non-skin examples (no model ships with skin-cnn).
    `apply` first writes a review of what it would remove (contact sheet and CSV), estimates from
    the filter's held-out skin photos how many real skin photos removal would cost (overall and
    per disease, with exact 95% intervals), says whether --apply is advisable (at most 1%), and
    changes nothing; with --apply it removes those images and lists every removed or unreadable
    one. When --apply is not advisable, keep using the input split.

    \b
    skin-cnn cleanse train --skin split.csv -o cleanse_model/
    skin-cnn cleanse apply split.csv -o clean.csv --model cleanse_model/           # review and advice
    skin-cnn cleanse apply split.csv -o clean.csv --model cleanse_model/ --apply   # remove, if advised
    """


@command.command("make-examples")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--n", "n", default=200, show_default=True, type=click.IntRange(min=1), help="Number of images.")
@seed_option
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=32), help="Longer side in pixels.")
@click.option(
    "--kind", "kinds", multiple=True, type=click.Choice(KINDS),
    help="Kinds to generate (repeat the option); all kinds, in turn, by default.",
)
def make_examples_command(out, n, seed, size, kinds):
    """Generate photos of ID slips, patch-test sheets, forms, documents, sheets and objects.

    Writes OUT/nonskin_NNNN_KIND.jpg and an index OUT/examples.csv; the same seed gives the same
    images.
    """
    index = make_examples(out, n, seed=seed, kinds=kinds or KINDS, size=size)
    counts = Counter(index["kind"])
    by_kind = ", ".join(f"{k} {v}" for k, v in counts.items())
    click.echo(f"wrote {len(index)} non-skin examples to {out} ({by_kind})")
    click.echo(f"index: {Path(out) / INDEX_FILENAME}")


def _filter_training(**values):
    """The filter's training settings from the command's options (imports the trainer lazily)."""
    from skin_cnn.cleanse.classifier import FilterTraining

    return FilterTraining(**values)


@command.command("train")
@click.option(
    "--skin", "skin", required=True, type=click.Path(exists=True),
    help="Split CSV (its train rows are used), manifest CSV or folder of skin photos.",
)
@click.option(
    "--non-skin", "non_skin", default=None, type=click.Path(exists=True, file_okay=False),
    help="Folder of non-skin photos. Default: generate --n-nonskin examples into OUT/nonskin_examples.",
)
@click.option(
    "--n-nonskin", default=None, type=click.IntRange(min=2),
    help="Non-skin examples to generate when --non-skin is not given.  [default: as many as skin photos]",
)
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--input-size", default=64, show_default=True, type=click.IntRange(min=16), help="Square input side.")
@click.option(
    "--holdout", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Fraction held out (stratified) to measure accuracy.",
)
@click.option(
    "--max-per-class", default=None, type=click.IntRange(min=2),
    help="Use a seeded random sample of at most this many images of each class.",
)
@click.option("--learning-rate", default=1e-3, show_default=True, type=float)
@seed_option
@gathered("training", _filter_training,
          ("input_size", "epochs", "batch_size", "holdout", "learning_rate", "seed"))
def train_command(skin, non_skin, n_nonskin, out, max_per_class, training):
    """Train the filter on your own skin photos; report the held-out false-removal rate.

    Skin photos come from --skin: of a split CSV only the train rows, so validation and test
    photos stay unseen. Non-skin photos come from --non-skin or are generated. Writes
    OUT/skin_classifier.keras, OUT/metrics.json, OUT/holdout_predictions.csv and
    OUT/training_curve.png. Positive class: non-skin.
    """
    from skin_cnn.cleanse import classifier
    from skin_cnn.cli.options import refuse_overwriting

    refuse_overwriting([skin], [Path(out) / name for name in (
        classifier.MODEL_FILENAME, classifier.METRICS_FILENAME, classifier.PREDICTIONS_FILENAME,
        classifier.HISTORY_PLOT_FILENAME)])
    seed = training.seed
    skin_paths = classifier.image_paths_from(skin, max_images=max_per_class, seed=seed)
    if non_skin is None:
        non_skin = Path(out) / "nonskin_examples"
        count = n_nonskin or len(skin_paths)
        click.echo(f"generating {count} non-skin examples in {non_skin}")
        make_examples(non_skin, count, seed=seed)
    nonskin_paths = classifier.image_paths_from(non_skin, max_images=max_per_class, seed=seed)
    click.echo(f"skin: {len(skin_paths)} images from {skin}; non-skin: {len(nonskin_paths)} images from {non_skin}")
    result = classifier.train_skin_classifier(skin_paths, nonskin_paths, out, training)
    m = result.metrics
    h = m["holdout"]
    acc = h["accuracy"]
    click.echo(f"trained on {m['n_train']} images, held out {m['n_holdout']} ({m['holdout_fraction']:.0%})")
    auc = f", AUC {h['auc']['value']:.3f}" if h["auc"]["value"] is not None else ""
    click.echo(f"held-out accuracy {acc['value']:.3f} (95% CI {acc['ci'][0]:.3f}-{acc['ci'][1]:.3f}){auc}")
    fr = h["skin_false_removal"]
    click.echo(
        f"held-out skin photos it would remove: {h['fp']} of {h['n_skin']} = {fr['value']:.3f} "
        f"(95% CI {fr['ci'][0]:.3f}-{fr['ci'][1]:.3f}, Clopper-Pearson)"
    )
    click.echo("                    predicted non-skin  predicted skin")
    click.echo(f"  true non-skin     {h['tp']:>18d}  {h['fn']:>14d}")
    click.echo(f"  true skin         {h['fp']:>18d}  {h['tn']:>14d}")
    if m["unreadable"]:
        click.echo(f"skipped {len(m['unreadable'])} unreadable images (listed in metrics.json)")
    click.echo(f"model: {result.model_path}")
    click.echo(f"metrics: {Path(out) / classifier.METRICS_FILENAME}")


@command.command("apply")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="Filtered manifest CSV.")
@click.option(
    "--model", "model_dir", required=True, type=click.Path(exists=True),
    help="Model folder (or .keras file) from `skin-cnn cleanse train`.",
)
@click.option(
    "--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
    help="Remove images with P(non-skin) at or above this.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--apply", "apply_", is_flag=True,
    help="Remove the images and write OUT. Without it only the review is written.",
)
def apply_command(manifest, out, model_dir, threshold, batch_size, apply_):
    """Review, then remove, the non-skin images of MANIFEST.

    Always writes the review: OUT's name with .review.png (contact sheet of the images that would
    be removed, with their p_nonskin) and .review.csv (those rows and the unreadable ones, with
    the reason). Without --apply nothing else is written. With --apply: OUT (the kept rows),
    .removed.csv (removed rows with p_nonskin) and .unreadable.csv; when MANIFEST has a flow JSON
    beside it (MANIFEST's name with .flow.json), a "cleansing" step is appended and written as
    OUT's name with .flow.json.
    """
    from skin_cnn.cleanse.apply import cleanse_frame, output_paths, write_cleansed, write_review
    from skin_cnn.cleanse.classifier import load_skin_classifier
    from skin_cnn.cleanse.review import review_advice
    from skin_cnn.cli.options import refuse_overwriting
    from skin_cnn.evaluation.flow import flow_path

    refuse_overwriting([manifest, flow_path(manifest), model_dir], output_paths(out).values())
    frame = load_manifest(manifest)
    model = load_skin_classifier(model_dir)
    result = cleanse_frame(frame, model, threshold=threshold, batch_size=batch_size)
    review = write_review(result, manifest, out)
    click.echo(result.summary(applied=apply_))
    click.echo(f"{'review:':<11} {review['review']}")
    for sheet in review["sheets"]:
        click.echo(f"{'sheet:':<11} {sheet}")
    advice = review_advice(model_dir, frame, threshold)
    if not apply_:
        for line in advice.lines(manifest, out):
            click.echo(line)
        return
    if not advice.advisable:
        click.echo(f"removing although --apply is not advisable: {advice.shortfall()}")
    written = write_cleansed(result, manifest, out)
    for key in ("kept", "removed", "unreadable", "flow"):
        if key in written:
            click.echo(f"{key + ':':<11} {written[key]}")
    if len(result.unreadable):
        shown = result.unreadable.head(5)
        for path, reason in zip(shown["image_path"], shown["reason"]):
            click.echo(f"  unreadable: {path}: {reason}")
        if len(result.unreadable) > 5:
            click.echo(f"  ... and {len(result.unreadable) - 5} more (see {written['unreadable']})")
