"""The study's heads trained to convergence: schedules compared by patient-grouped cross-validation.

Each schedule is one ``skin-cnn cv`` run (variant P, the study's heads, hue crop, 250², the
study's augmentation with 4 stored views) on the same photos and folds; every run reads the
trunk features from one shared cache, so only the heads are trained again. For every schedule
the script prints, per fold, the best epoch and the epochs run (the best must come before the
last: training stopped because validation stopped improving, not because the budget ran out),
and the pooled out-of-fold AUC per task::

    python docs/experiments/study_schedule.py --manifest ../shared/data/public-derm/manifest.csv \
        --weights ../shared/weights/vgg16_imagenet_notop_caffe_input.h5 --cache-dir runs/conv/cache \
        -o runs/conv --schedules default lr1e-3 lr3e-4

A finished schedule is read back, not run again (``--resume`` of ``skin-cnn cv``).
"""
import argparse
import json
from pathlib import Path

import pandas as pd

#: Head-training schedules (``skin-cnn train`` settings; the rest are the defaults). ``default``
#: is whatever TrainConfig's defaults are when the script runs.
SCHEDULES = {
    "study-published": {"learning_rate": 1e-4, "epochs": 60, "patience": 10, "lr_patience": 5, "lr_factor": 0.5},
    "default": {},
    "lr1e-3": {"learning_rate": 1e-3, "epochs": 200, "patience": 20, "lr_patience": 5, "lr_factor": 0.5},
    "lr3e-4": {"learning_rate": 3e-4, "epochs": 200, "patience": 20, "lr_patience": 5, "lr_factor": 0.5},
    "lr1e-4-long": {"learning_rate": 1e-4, "epochs": 300, "patience": 30, "lr_patience": 10, "lr_factor": 0.5},
    "lr3e-3": {"learning_rate": 3e-3, "epochs": 200, "patience": 20, "lr_patience": 5, "lr_factor": 0.5},
}


def fold_epochs(cv_dir):
    """Per fold: best epoch, epochs run, and the learning rate at the end (from ``history.csv``)."""
    rows = []
    for fold_dir in sorted(Path(cv_dir).glob("fold[0-9]*/"), key=lambda p: int(p.name[4:])):
        status = json.loads((fold_dir / "status.json").read_text())
        history = pd.read_csv(fold_dir / "history.csv")
        last_lr = float(history["learning_rate"].iloc[-1]) if "learning_rate" in history else float("nan")
        rows.append({"fold": int(fold_dir.name[4:]), "best_epoch": int(status["best_epoch"]),
                     "epochs_run": int(status["epochs_run"]), "last_lr": last_lr})
    return pd.DataFrame(rows)


def pooled_aucs(cv_dir):
    """Pooled out-of-fold AUC per task (``eval_oof/metrics.json``)."""
    metrics = json.loads((Path(cv_dir) / "eval_oof" / "metrics.json").read_text())
    return {task: entry["auc"]["value"] for task, entry in metrics["tasks"].items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("-o", "--out", required=True, help="folder of the CV runs (one per schedule)")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=sorted(SCHEDULES))
    parser.add_argument("--n-bootstrap", type=int, default=200)
    args = parser.parse_args(argv)

    from skin_cnn.training.config import TrainConfig
    from skin_cnn.app.cv_run import CVOptions, run_cv

    out = Path(args.out)
    table = []
    for name in args.schedules:
        settings = dict(SCHEDULES[name], weights=args.weights, cache_dir=args.cache_dir, tensorboard=False)
        cv_dir = out / name
        if not (cv_dir / "eval_oof" / "metrics.json").is_file():
            run_cv(args.manifest, cv_dir, 5, settings, resume=(cv_dir / "folds.csv").is_file(),
                   progress=False, echo=print, options=CVOptions(n_bootstrap=args.n_bootstrap))
        resolved = TrainConfig(**{k: v for k, v in settings.items()})
        epochs = fold_epochs(cv_dir)
        aucs = pooled_aucs(cv_dir)
        print(f"\n## {name}: Adam {resolved.learning_rate:g}, up to {resolved.epochs} epochs, early stop after "
              f"{resolved.patience}, learning rate x{resolved.lr_factor:g} after {resolved.lr_patience} without "
              "a better validation mean AUC")
        print(epochs.to_string(index=False))
        stopped = int((epochs["best_epoch"] < epochs["epochs_run"]).sum())
        print(f"folds whose best epoch comes before their last: {stopped} of {len(epochs)}")
        print("pooled out-of-fold AUC: " + ", ".join(f"{t} {v:.3f}" for t, v in aucs.items())
              + f"; mean {sum(aucs.values()) / len(aucs):.3f}")
        table.append({"schedule": name, "learning_rate": resolved.learning_rate, "epochs": resolved.epochs,
                      "patience": resolved.patience, "lr_patience": resolved.lr_patience,
                      "best_before_last": f"{stopped}/{len(epochs)}",
                      "best_epochs": " ".join(str(b) for b in epochs["best_epoch"]),
                      "epochs_run": " ".join(str(e) for e in epochs["epochs_run"]),
                      **{t: round(v, 3) for t, v in aucs.items()},
                      "mean": round(sum(aucs.values()) / len(aucs), 3)})
    frame = pd.DataFrame(table).astype(str)
    print("\n| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
