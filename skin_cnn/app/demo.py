"""``skin-cnn demo``: the whole pipeline on a synthetic demo set, offline, in a few minutes.

Steps: generate the synthetic images (:mod:`skin_cnn.data.demo_data`) → validate the manifest →
split by patient → hue-crop boxes → train → evaluate on the test split → print where the report
is. Everything it writes is labelled *synthetic*: the images are drawn by a program and its
numbers say nothing about real photos.

Model choice: VGG-16P (ImageNet trunk, frozen, trained through the feature cache) whenever
ImageNet weights are at hand (``--weights PATH``, ``$SKIN_CNN_VGG16_WEIGHTS`` or Keras' cache);
otherwise one line says so and a small-input VGG-16N (random trunk, trained end to end) keeps the
pipeline running from start to end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.core.io import PathLike
from skin_cnn.core.specs import resolve_crop_params
from skin_cnn.data.crop import BOX_COLUMNS, hue_crop_box
from skin_cnn.data.reading import read_image
from skin_cnn.data.demo_data import generate_demo_dataset
from skin_cnn.data.manifest import load_manifest, validate_manifest
from skin_cnn.models.weights import imagenet_weights_available
from skin_cnn.data.split import patient_split, write_split
from skin_cnn.training.config import resolve_config
from skin_cnn.app.train_run import train

#: Settings of the default demo, measured to finish in a few minutes on a 2-core CPU.
DEMO_DEFAULTS: dict[str, Any] = {
    "n_patients_per_disease": 12,
    "images_per_patient": (2, 4),
    "source_image_size": (192, 256),
    "p_image_size": 128,
    "p_epochs": 40,
    "p_cache_views": 2,
    "n_image_size": 64,
    "n_epochs": 12,
}


@dataclass
class DemoResult:
    out: Path
    manifest: Path
    split: Path
    run_dir: Path
    report: Path | None
    variant: str
    steps: dict = field(default_factory=dict)


def crop_boxes_frame(frame, params=None, progress=True):
    """Add hue-crop box columns to a frame (one decode per image; progress shown)."""
    params = resolve_crop_params(params)
    boxes = []
    for path in progress_bar(frame["image_path"], desc="hue crop", unit="img", disable=not progress):
        boxes.append(hue_crop_box(read_image(path), **params))
    out = frame.copy()
    for i, column in enumerate(BOX_COLUMNS):
        out[column] = [int(b[i]) for b in boxes]
    return out


#: Fewest synthetic patients per disease that fill train, val and test.
MIN_DEMO_PATIENTS = 3


def run_demo(out: PathLike = "runs/demo", weights: str | None = None, *, n_patients_per_disease: int | None = None,
             images_per_patient: tuple[int, int] | None = None, source_image_size: tuple[int, int] | None = None,
             image_size: int | None = None, epochs: int | None = None, cache_views: int | None = None,
             batch_size: int = 32, seed: int = 0, progress: bool = True,
             echo: Callable[[str], object] = print) -> DemoResult:
    """Run the demo pipeline into ``out`` and return a :class:`DemoResult`.

    Parameters
    ----------
    out : path
        Folder for the synthetic data (``out/data``) and the run (``out/run``).
    weights : str, optional
        A VGG-16 notop weights file; default: ImageNet weights if available, else VGG-16N.
    n_patients_per_disease, images_per_patient, source_image_size, image_size, epochs,
    cache_views : optional
        Override :data:`DEMO_DEFAULTS` (tests use the smallest values).
    """
    out = Path(out)
    d = DEMO_DEFAULTS
    if n_patients_per_disease is None:
        n_patients_per_disease = d["n_patients_per_disease"]
    if int(n_patients_per_disease) < MIN_DEMO_PATIENTS:
        raise ValueError(f"--patients {n_patients_per_disease}: the demo needs at least {MIN_DEMO_PATIENTS} "
                         "patients per disease (one each for train, val and test)")
    steps = {}
    t = time.time()
    echo("skin-cnn demo: SYNTHETIC images drawn by a program; the numbers say nothing about real photos.")
    manifest = generate_demo_dataset(
        out / "data", n_patients_per_disease=int(n_patients_per_disease),
        images_per_patient=images_per_patient or d["images_per_patient"],
        image_size=source_image_size or d["source_image_size"], seed=seed, progress=progress)
    steps["generate_s"] = time.time() - t
    echo(f"[1/5] synthetic demo set: {manifest}")

    t = time.time()
    report = validate_manifest(manifest, check_images=True, progress=progress)
    if not report.ok:
        raise ValueError(f"{manifest}: the generated demo manifest has {report.n_errors} error(s):\n"
                         f"{report.table()}")
    steps["validate_s"] = time.time() - t
    echo(f"[2/5] manifest checked: {report.n_rows} images, {report.n_errors} errors, {report.n_warnings} warnings")

    t = time.time()
    frame = patient_split(load_manifest(manifest), seed=seed)
    frame = crop_boxes_frame(frame, progress=progress)
    split_path = write_split(frame, out / "data" / "split.csv")
    steps["split_crop_s"] = time.time() - t
    counts = frame["split"].value_counts()
    echo(f"[3/5] split by patient and hue-cropped: train {counts.get('train', 0)}, "
         f"val {counts.get('val', 0)}, test {counts.get('test', 0)} images -> {split_path}")

    explicit = weights not in (None, "", "imagenet")
    if explicit or imagenet_weights_available():
        settings = {"variant": "P", "weights": weights if explicit else "imagenet",
                    "image_size": image_size or d["p_image_size"], "epochs": epochs or d["p_epochs"],
                    "cache_views": d["p_cache_views"] if cache_views is None else cache_views,
                    "learning_rate": 1e-3}
    else:
        echo("ImageNet VGG-16 weights not found (give --weights PATH or set SKIN_CNN_VGG16_WEIGHTS); "
             "falling back to a small-input VGG-16N trained from scratch.")
        settings = {"variant": "N", "weights": "none", "image_size": image_size or d["n_image_size"],
                    "epochs": epochs or d["n_epochs"], "learning_rate": 1e-4}
    # The demo is the whole path, so it evaluates the test split once, right after training.
    settings.update(split=str(split_path), out=str(out / "run"), batch_size=batch_size, seed=seed,
                    patience=max(5, (epochs or 10) // 2), lr_patience=3, evaluate=True)
    config = resolve_config(settings, source="skin-cnn demo")
    echo(f"[4/5] training VGG-16{config.variant} at {config.image_size}x{config.image_size} "
         f"for up to {config.epochs} epochs")
    t = time.time()
    result = train(config, progress=progress, echo=echo, synthetic=True)
    steps["train_and_evaluate_s"] = time.time() - t
    report_path = result.eval_dir / "report.html" if result.eval_dir else None
    atomic.write_json(out / "demo.json", {"synthetic": True, "variant": config.variant,
                                          "image_size": config.image_size, "steps_s": steps,
                                          "run": str(result.run_dir),
                                          "report": str(report_path) if report_path else None})
    echo(f"[5/5] done. SYNTHETIC demo report: {report_path or result.run_dir / 'model_card.md'}")
    return DemoResult(out, Path(manifest), Path(split_path), Path(result.run_dir), report_path,
                      config.variant, steps)
