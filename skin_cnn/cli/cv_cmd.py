"""``skin-cnn cv MANIFEST_OR_SPLIT -o runs/NAME --folds 5``: patient-grouped cross-validation."""
from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.cli.options import gathered, quiet_option, refuse_overwriting

from skin_cnn.cli.train_cmd import TYPED, recipe_options, user_settings


@click.command(context_settings={"show_default": True})
@click.argument("source", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="CV folder (runs/NAME).")
@click.option("--folds", type=click.IntRange(2, 20), default=5, help="Number of folds.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML or JSON file of training settings; flags typed here override it.")
@click.option("--resume", is_flag=True, help="Keep finished folds and complete the rest, with the recorded settings "
              "and folds (a different setting or SOURCE is refused).")
@click.option("--n-bootstrap", type=int, default=2000, help="Bootstrap resamples of the pooled evaluation.")
@click.option("--group-near-duplicates/--no-group-near-duplicates", default=True,
              help="Keep perceptually near-identical images, and the patients sharing them, in one fold "
              "(a split SOURCE's split_group is kept instead).")
@recipe_options
@quiet_option()
@click.pass_context
@gathered("folding", dict, ("folds", "resume", "n_bootstrap", "group_near_duplicates"))
def command(ctx, source, out, config_file, quiet, recipe, folding, **params):
    """Cross-validate a training recipe on SOURCE (a manifest or split CSV) by patient.

    Folds come from scikit-learn's StratifiedGroupKFold over patients joined with their
    near-duplicate photos (any patient id; --no-group-near-duplicates turns that off),
    stratified by disease. Each fold trains on the others, with a
    grouped validation part of them choosing the epoch, and predicts its held-out fold, so every
    image gets one out-of-fold prediction. With a frozen trunk (variant P) the trunk features of
    every image are extracted once for all folds. Writes folds.csv, oof_predictions.csv,
    cv_folds.csv, cv_summary.md, eval_oof/ (pooled evaluation with intervals) and ensemble.keras
    (the fold models' mean, usable by predict, serve and export). A split column in SOURCE is
    ignored.

    \b
    Examples:
      skin-cnn cv data/manifest.csv -o runs/cv-p250 --folds 5 --weights vgg16_notop.h5
      skin-cnn cv data/manifest.csv -o runs/cv-p250 --resume
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from skin_cnn.training.config import RECIPES, load_config_file
    from skin_cnn.app.cv_run import CV_FILES, CVOptions, run_cv

    refuse_overwriting([source, config_file], [Path(out) / name for name in CV_FILES])
    params["variant"] = params["variant"].upper()
    settings = load_config_file(config_file) if config_file else {}
    settings.update(RECIPES[recipe] if recipe else {})
    settings.update(user_settings(ctx, params))
    typed = {name: folding[name] if ctx.get_parameter_source(name) in TYPED else None
             for name in ("folds", "group_near_duplicates")}  # None: the recorded value on --resume
    try:
        run_cv(source, out, typed["folds"], settings, resume=folding["resume"], progress=not quiet,
               echo=click.echo, options=CVOptions(n_bootstrap=folding["n_bootstrap"],
                                                  group_near_duplicates=typed["group_near_duplicates"]))
    except KeyboardInterrupt:
        from skin_cnn.cli.options import interrupted

        raise interrupted((Path(out) / "cv.json").is_file(),
                          f"skin-cnn cv {source} -o {out} --resume (with the same settings)") from None
