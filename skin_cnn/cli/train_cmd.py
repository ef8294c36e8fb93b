"""``skin-cnn train SPLIT.csv -o runs/NAME``: train a VGG-16 variant into a run folder."""
from __future__ import annotations


import click

from skin_cnn.cli.options import refuse_overwriting
from skin_cnn.cli.options import MaskBox, precision_option
from skin_cnn.core.specs import CROP_METHODS
from skin_cnn.training.config import (CALIBRATIONS, FIELD_NAMES, HEADS, OPTIMIZERS, POOL_BLOCKS, RECIPES,
                                     STRATEGIES, VARIANTS, TrainConfig)

D = TrainConfig()

#: Where a parameter's value came from when the user gave it (not click's default).
TYPED = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def user_settings(ctx, params):
    """The settings the user typed on the command line (not click's defaults).

    Every parameter named like a :class:`TrainConfig` field is a setting (the options of
    :func:`recipe_options` are all named so; ``tests/test_cli_options.py`` checks it), so a new
    option cannot be left out of the run's settings by a forgotten mapping.
    """
    return {name: value for name, value in params.items()
            if name in FIELD_NAMES and ctx.get_parameter_source(name) in TYPED}


def recipe_options(function):
    """The training-recipe options, shared by ``skin-cnn train`` and ``skin-cnn cv``."""
    decorators = [
        click.option("--variant", type=click.Choice(VARIANTS, case_sensitive=False), default=D.variant,
            help="P: ImageNet frozen trunk; N: random trunk trained; PS/NS: with a spatial transformer."),
        click.option("--weights", default=D.weights,
            help="Trunk weights of P/PS: imagenet (Keras cache or $SKIN_CNN_VGG16_WEIGHTS), none, or a .h5 path."),
        click.option("--image-size", type=int, default=D.image_size,
            help="Square model input size in pixels (study: 250)."),
        click.option("--crop/--no-crop", default=D.crop, help="Hue-crop background away before resizing."),
        click.option("--crop-method", type=click.Choice(CROP_METHODS), default=D.crop_method,
            help="study: the study's hue clustering (faithful); circular: hue as a circle, grey, dark "
                 "and bright pixels left out."),
        click.option("--mask-border", type=float, default=D.mask_border,
            help="Paint this fraction of every side of each photo with the ImageNet mean colour "
                 "(0 = off), so the model cannot read frames or captions there."),
        click.option("--mask-box", "mask_boxes", type=MaskBox(), multiple=True, default=D.mask_boxes,
            help="Paint this part of every photo the same way: LEFT,TOP,RIGHT,BOTTOM fractions, or "
                 "dermnet-watermark (DermNet NZ's logo). Repeatable."),
        click.option("--balanced/--no-balanced", default=D.balanced,
            help="Epochs of the same size with an equal share per disease (docs/training.md)."),
        click.option("--zoom", type=float, default=D.zoom, help="Random zoom strength (0 = off)."),
        click.option("--rotation", type=float, default=D.rotation,
            help="Random rotation, fraction of a full turn (0 = off)."),
        click.option("--translation", type=float, default=D.translation,
            help="Random shift, fraction of the size (0 = off)."),
        click.option("--flip/--no-flip", default=D.flip, help="Random horizontal and vertical flips."),
        click.option("--epochs", type=int, default=D.epochs, help="Maximum number of epochs."),
        click.option("--batch-size", type=int, default=D.batch_size, help="Images per step (try 32 on a small CPU)."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=D.optimizer, help="Optimizer."),
        click.option("--learning-rate", type=float, default=None,
            show_default="1e-3 with a frozen trunk, 2e-5 when it trains",
            help="Initial learning rate (1e-3 for heads on a frozen trunk, chosen by cross-validation; "
                 "2e-5 when the trunk trains: --variant N/NS or --fine-tune-blocks, the rate of the "
                 "study's predecessor script, not tuned here)."),
        click.option("--fine-tune-blocks", type=int, default=D.fine_tune_blocks,
            help="P/PS: let the last N VGG-16 blocks train (0: whole trunk frozen, as in the paper)."),
        click.option("--patience", type=int, default=D.patience,
            help="Early stopping: epochs without a better val mean AUC."),
        click.option("--seed", type=int, default=D.seed, help="Seed for weights, shuffling and augmentation."),
        click.option("--feature-cache", type=click.Choice(["auto", "on", "off"]), default=D.feature_cache,
            help="Train heads on stored trunk features (auto: whenever the trunk is frozen, variant P)."),
        click.option("--no-feature-cache", "feature_cache", flag_value="off", help="Same as --feature-cache off."),
        click.option("--cache-views", type=int, default=D.cache_views,
            help="Augmented views per training image in the cache."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
            help="Feature-cache folder, shared by every run (default: $SKIN_CNN_CACHE_DIR, else "
                 "~/.cache/skin-cnn/features)."),
        click.option("--head", type=click.Choice(HEADS), default=D.head,
            help="mlp: the study's heads, trained by epochs; linear: a logistic regression per task "
                 "on train + val (variant P, frozen trunk).")
        ,
        click.option("--pool-blocks", type=click.Choice(POOL_BLOCKS), default=D.pool_blocks,
            help="Pooled features: block 5 (the study), blocks 4 and 5, or blocks 3, 4 and 5."),
        click.option("--mirror/--no-mirror", default=D.mirror,
            help="Average each photo with its mirror image inside the model (test-time augmentation)."),
        click.option("--sqrt-features/--no-sqrt-features", default=D.sqrt_features,
            help="Square-root the pooled features before the heads (power normalisation)."),
        click.option("--second-scale", type=int, default=D.second_scale,
            help="Also pool the trunk on the input resized to N×N inside the model (0: off)."),
        click.option("--calibration", type=click.Choice(CALIBRATIONS), default="auto",
            help="sigmoid: Platt scaling folded into each task's sigmoid layer, fitted on the "
                 "inner out-of-fold probabilities (--head linear) or on the validation "
                 "predictions of the best epoch (the study's heads); auto: sigmoid for the "
                 "study's heads, none for --head linear."),
        click.option("--threshold", default=D.threshold,
            help="Decision threshold stored in the model: a number, youden, sens:0.9, spec:0.9 or "
                 "study (the widest margin over the study's sensitivity and specificity), fitted "
                 "on validation predictions."),
        click.option("--recipe", type=click.Choice(sorted(RECIPES)), default=None,
            help="A named set of the settings above (docs/training.md); flags you type still win."),
        click.option("--tensorboard/--no-tensorboard", default=D.tensorboard,
            help="Write TensorBoard logs to RUN/tensorboard."),
        precision_option(D.precision),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@click.command(context_settings={"show_default": True})
@click.argument("split_csv", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Run folder to create (runs/NAME).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True),
              help="Continue an interrupted run folder with its saved settings.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="YAML or JSON file of settings; flags given on the command line override it.")
@recipe_options
@click.option("--strategy", type=click.Choice(STRATEGIES), default=D.strategy,
              help="tf.distribute strategy; multi-worker reads TF_CONFIG (docs/distributed.md).")
@click.option("--evaluate-test/--no-evaluate-test", "evaluate", default=D.evaluate,
              help="Also evaluate the best model on the test split (a deliberate look; "
                   "normally `skin-cnn evaluate RUN` once the model is final).")
@click.option("--save-last/--no-save-last", default=D.save_last,
              help="Also write last.keras, the model after the last epoch (about 60 MB).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def command(ctx, split_csv, out, resume_dir, config_file, quiet, recipe, **params):
    """Train a multi-task VGG-16 on SPLIT_CSV (from `skin-cnn split`) into the run folder -o.

    Defaults follow the study: VGG-16P (ImageNet trunk, frozen), hue crop, 250×250, the study's
    heads, batch 64; Adam at 1e-3, halved after 5 and stopped after 20 epochs without a better
    validation mean AUC, up to 200 epochs (chosen by cross-validation so the heads converge), the
    epoch with the best validation mean AUC kept (best.keras). With a frozen trunk
    the trunk features are computed once (feature cache), which makes CPU training practical.
    --recipe frozen-linear instead fits a logistic regression per task on frozen block-4 + 5
    features of train and val (chosen by cross-validation on public photos; docs/training.md).
    Training reports validation results only and never reads the test split.

    \b
    Examples:
      skin-cnn train data/split.csv -o runs/p250
      skin-cnn train data/split.csv -o runs/fl --recipe frozen-linear
      skin-cnn train data/split.csv -o runs/n128 --variant N --image-size 128
      skin-cnn train --config exp.yaml data/split.csv -o runs/exp --epochs 10
      skin-cnn train --resume runs/p250
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from skin_cnn.core.run_paths import RunPaths
    from skin_cnn.evaluation.flow import flow_path
    from skin_cnn.training.config import load_config_file, resolve_config
    from skin_cnn.app.train_run import train
    from skin_cnn.training.trainer import load_resume_config

    params["variant"] = params["variant"].upper()
    overrides = user_settings(ctx, params)
    if resume_dir:
        if split_csv or out or config_file or overrides or recipe:
            raise click.UsageError("--resume takes only the run folder; its saved settings are used")
        config = load_resume_config(resume_dir)
        resume = True
    else:
        if not split_csv or not out:
            raise click.UsageError("give SPLIT_CSV and -o/--out (or --resume RUN)")
        refuse_overwriting([split_csv, config_file, flow_path(split_csv)],
                           list(RunPaths(out).training_files))
        file_settings = load_config_file(config_file) if config_file else {}
        file_settings.update(RECIPES[recipe] if recipe else {})
        overrides.update(split=split_csv, out=out)
        source = config_file or "command line"
        config = resolve_config(file_settings, overrides, source=source)
        resume = False
    try:
        train(config, resume=resume, progress=not quiet, echo=click.echo)
    except KeyboardInterrupt:
        from skin_cnn.cli.options import interrupted
        from skin_cnn.core.run_paths import RunPaths

        started = RunPaths(config.out).config.is_file()
        raise interrupted(started, f"skin-cnn train --resume {config.out}") from None
