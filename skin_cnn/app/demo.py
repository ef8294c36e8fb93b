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

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.core.io import PathLike
from skin_cnn.core.run_paths import RunPaths
from skin_cnn.core.specs import resolve_crop_params
from skin_cnn.data.crop import BOX_COLUMNS, CROP_METHOD_COLUMN, box_method_label, hue_crop_box
from skin_cnn.data.reading import read_image
from skin_cnn.data.demo_data import generate_demo_dataset
from skin_cnn.data.manifest import counted, load_manifest, validate_manifest
from skin_cnn.models.weights import imagenet_weights_available
from skin_cnn.data.split import patient_split, write_split
from skin_cnn.training.config import TrainConfig, resolve_config
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

#: Fewest synthetic patients per disease that fill train, val and test.
MIN_DEMO_PATIENTS = 3


@dataclass(frozen=True)
class DemoSettings:
    """The sizes of a demo: the defaults (:data:`DEMO_DEFAULTS`) take a few minutes on a CPU, tests
    use the smallest.

    Attributes
    ----------
    n_patients_per_disease : int
        Synthetic patients per disease; at least :data:`MIN_DEMO_PATIENTS` (one each for train,
        val and test).
    images_per_patient : int or (int, int)
        Photos per patient (a range is drawn from per patient).
    source_image_size : (int, int)
        Height and width of the generated photos.
    image_size : int, optional
        Model input size; default 128 for VGG-16P, 64 for VGG-16N.
    epochs : int, optional
        Most epochs; default 40 for VGG-16P, 12 for VGG-16N.
    cache_views : int, optional
        Augmented views cached per training photo (VGG-16P); default 2.
    batch_size : int
    seed : int
        Seed of the data, the split and the training.
    """

    n_patients_per_disease: int = DEMO_DEFAULTS["n_patients_per_disease"]
    images_per_patient: int | tuple[int, int] = DEMO_DEFAULTS["images_per_patient"]
    source_image_size: tuple[int, int] = DEMO_DEFAULTS["source_image_size"]
    image_size: int | None = None
    epochs: int | None = None
    cache_views: int | None = None
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.n_patients_per_disease) < MIN_DEMO_PATIENTS:
            raise ValueError(f"--patients {self.n_patients_per_disease}: the demo needs at least "
                             f"{MIN_DEMO_PATIENTS} patients per disease (one each for train, val and test)")

    def train_settings(self, variant: str, weights: str) -> dict[str, Any]:
        """The ``skin-cnn train`` settings of the demo's run for ``variant`` (P or N)."""
        d = DEMO_DEFAULTS
        if variant == "P":
            return {"variant": "P", "weights": weights, "image_size": self.image_size or d["p_image_size"],
                    "epochs": self.epochs or d["p_epochs"],
                    "cache_views": d["p_cache_views"] if self.cache_views is None else self.cache_views,
                    "learning_rate": 1e-3}
        return {"variant": "N", "weights": "none", "image_size": self.image_size or d["n_image_size"],
                "epochs": self.epochs or d["n_epochs"], "learning_rate": 1e-4}


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
    """Add hue-crop box columns to a frame (one decode per image; progress shown), with the
    ``crop_method`` column naming the method that made them, as ``skin-cnn crop`` writes it."""
    params = resolve_crop_params(params)
    boxes = []
    for path in progress_bar(frame["image_path"], desc="hue crop", unit="img", disable=not progress):
        boxes.append(hue_crop_box(read_image(path), **params))
    out = frame.copy()
    for i, column in enumerate(BOX_COLUMNS):
        out[column] = [int(b[i]) for b in boxes]
    out[CROP_METHOD_COLUMN] = box_method_label(params)
    return out


def run_demo(out: PathLike = "runs/demo", weights: str | None = None, settings: DemoSettings | None = None, *,
             progress: bool = True, echo: Callable[[str], object] = print) -> DemoResult:
    """Run the demo pipeline into ``out`` and return a :class:`DemoResult`.

    Parameters
    ----------
    out : path
        Folder for the synthetic data (``out/data``) and the run (``out/run``).
    weights : str, optional
        A VGG-16 notop weights file; default: ImageNet weights if available, else VGG-16N.
    settings : DemoSettings, optional
        The demo's sizes (default :class:`DemoSettings`: a few minutes on a CPU).
    progress : bool
        Progress bars.
    echo : callable
        Where the one-line messages go.
    """
    out = Path(out)
    settings = settings or DemoSettings()
    steps: dict[str, float] = {}
    echo("skin-cnn demo: SYNTHETIC images drawn by a program; the numbers say nothing about real photos.")
    with timed(steps, "generate_s"):
        manifest = generate_demo_dataset(
            out / "data", n_patients_per_disease=int(settings.n_patients_per_disease),
            images_per_patient=settings.images_per_patient, image_size=settings.source_image_size,
            seed=settings.seed, progress=progress)
    echo(f"[1/5] synthetic demo set: {manifest}")
    with timed(steps, "validate_s"):
        report = checked_manifest(manifest, progress)
    echo(f"[2/5] manifest checked: {counted(report.n_rows, 'image')}, {counted(report.n_errors, 'error')}, "
         f"{counted(report.n_warnings, 'warning')}")
    with timed(steps, "split_crop_s"):
        frame = crop_boxes_frame(patient_split(load_manifest(manifest), seed=settings.seed), progress=progress)
        split_path = write_split(frame, out / "data" / "split.csv")
    counts = frame["split"].value_counts()
    echo(f"[3/5] split by patient and hue-cropped: train {counts.get('train', 0)}, "
         f"val {counts.get('val', 0)}, test {counts.get('test', 0)} images -> {split_path}")
    config = demo_config(out, split_path, weights, settings, echo)
    echo(f"[4/5] training VGG-16{config.variant} at {config.image_size}x{config.image_size} "
         f"for up to {config.epochs} epochs")
    with timed(steps, "train_and_evaluate_s"):
        result = train(config, progress=progress, echo=echo, synthetic=True)
    report_path = result.eval_dir / "report.html" if result.eval_dir else None
    atomic.write_json(out / "demo.json", {"synthetic": True, "variant": config.variant,
                                          "image_size": config.image_size, "steps_s": steps,
                                          "run": str(result.run_dir),
                                          "report": str(report_path) if report_path else None})
    echo(f"[5/5] done. SYNTHETIC demo report: {report_path or RunPaths(result.run_dir).model_card}")
    return DemoResult(out, Path(manifest), Path(split_path), Path(result.run_dir), report_path,
                      config.variant, steps)


@contextlib.contextmanager
def timed(steps: dict[str, float], name: str) -> Iterator[None]:
    """Record the seconds the block took as ``steps[name]`` (the demo's ``demo.json``)."""
    start = time.time()
    yield
    steps[name] = time.time() - start


def checked_manifest(manifest: PathLike, progress: bool) -> Any:
    """The manifest check of the generated set, which must find no error."""
    report = validate_manifest(manifest, check_images=True, progress=progress)
    if not report.ok:
        raise ValueError(f"{manifest}: the generated demo manifest has {report.n_errors} error(s):\n"
                         f"{report.table()}")
    return report


def demo_config(out: Path, split_path: PathLike, weights: str | None, settings: DemoSettings,
                echo: Callable[[str], object]) -> TrainConfig:
    """The demo run's settings: VGG-16P on ImageNet weights when at hand, else a small VGG-16N
    (said in one line); the test split is evaluated once, right after training."""
    explicit = weights not in (None, "", "imagenet")
    if explicit or imagenet_weights_available():
        chosen = settings.train_settings("P", str(weights) if explicit else "imagenet")
    else:
        echo("ImageNet VGG-16 weights not found (give --weights PATH or set SKIN_CNN_VGG16_WEIGHTS); "
             "falling back to a small-input VGG-16N trained from scratch.")
        chosen = settings.train_settings("N", "none")
    # The demo is the whole path, so it evaluates the test split once, right after training.
    chosen.update(split=str(split_path), out=str(out / "run"), batch_size=settings.batch_size, seed=settings.seed,
                  patience=max(5, (settings.epochs or 10) // 2), lr_patience=3, evaluate=True)
    return resolve_config(chosen, source="skin-cnn demo")
