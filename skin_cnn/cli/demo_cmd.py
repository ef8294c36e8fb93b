"""``skin-cnn demo``: generate the synthetic demo set, train and evaluate end to end.

The demo and the run-folder code (pandas, TensorFlow) are imported inside the command, so
``skin-cnn demo --help`` answers at once.
"""
from __future__ import annotations

import os

import click


@click.command(context_settings={"show_default": True})
@click.option("-o", "--out", default="runs/demo", type=click.Path(file_okay=False),
              help="Folder for the synthetic data (OUT/data) and the run (OUT/run).")
@click.option("--weights", default=None,
              help="VGG-16 notop ImageNet weights (.h5). Default: $SKIN_CNN_VGG16_WEIGHTS or Keras' "
                   "cache; without them a small VGG-16N is trained instead.")
@click.option("--patients", type=int, default=None, help="Synthetic patients per disease (default 12).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (default 40 for VGG-16P, 12 for VGG-16N).")
@click.option("--image-size", type=int, default=None, help="Model input size (default 128 for P, 64 for N).")
@click.option("--seed", type=int, default=0, help="Seed for the data, split and training.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier demo in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(out, weights, patients, epochs, image_size, seed, overwrite, quiet):
    """Run the whole pipeline offline on SYNTHETIC images: generate, validate, split, crop,
    train, evaluate; then print where the report is. A few minutes on a 2-core CPU.

    The images are drawn by a program; the results say nothing about real photos.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import shutil

    from skin_cnn.app.demo import DemoSettings, run_demo

    if os.path.exists(os.path.join(out, "run", "config.json")) or os.path.exists(os.path.join(out, "demo.json")):
        if not overwrite:
            raise click.UsageError(f"{out} already holds a demo; add --overwrite to replace it, or choose "
                                   "another -o folder")
        for name in ("run", "data", "demo.json"):
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    sizes = {"n_patients_per_disease": patients, "epochs": epochs, "image_size": image_size}
    settings = DemoSettings(seed=seed, **{name: value for name, value in sizes.items() if value is not None})
    run_demo(out, weights, settings, progress=not quiet, echo=click.echo)
