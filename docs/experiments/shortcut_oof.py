"""Out-of-fold shortcut audit of a ``skin-cnn cv`` run: where each fold model looks on photos it never saw.

For every fold, ``--per-fold`` seeded photos of its held-out fold are explained by that fold's
model (Grad-CAM of the reported class, at the model's stored threshold) and the map's mass is
split over the watermark, border, lesion (hue box) and other regions
(:mod:`skin_cnn.evaluation.shortcut`). Printed per task, pooled and within DermNet NZ::

    python docs/experiments/shortcut_oof.py --cv runs/conv/lr1e-3 --manifest DATA/manifest.csv --per-fold 12
"""
import argparse
from pathlib import Path

import pandas as pd


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", required=True, help="a skin-cnn cv folder")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--per-fold", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default=None, help="CSV of the per-image table")
    args = parser.parse_args(argv)

    from skin_cnn.evaluation.shortcut import REGIONS, audit_predictor, summarise_audit
    from skin_cnn.inference.predictor import load_predictor

    cv = Path(args.cv)
    manifest = pd.read_csv(args.manifest)
    root = Path(args.manifest).parent.resolve()
    manifest["image_path"] = [str((root / p).resolve()) for p in manifest["image_path"]]
    oof = pd.read_csv(cv / "oof_predictions.csv")
    oof["image_path"] = [str(Path(p).resolve()) for p in oof["image_path"]]
    parts = []
    for fold, held in oof.groupby("fold"):
        predictor = load_predictor(cv / f"fold{fold}")
        frame = manifest[manifest["image_path"].isin(set(held["image_path"]))]
        table = audit_predictor(predictor, held, frame, n_images=args.per_fold, seed=args.seed + int(fold))
        parts.append(table.assign(fold=int(fold)))
    table = pd.concat(parts, ignore_index=True)
    source = dict(zip(manifest["image_path"], manifest["original_dataset"]))
    table["dermnet"] = table["image_path"].map(source).str.contains("DermNet", na=False)
    if args.out:
        table.to_csv(args.out, index=False)
    columns = ["task", "n_images", "with_watermark"] + [f"{k}_{r}" for r in REGIONS for k in ("mass", "area")]
    for name, part in (("all photos", table), ("DermNet NZ photos", table[table["dermnet"]])):
        print(f"\n{cv.name}, {name}: mean share of Grad-CAM mass (area) per region")
        print(summarise_audit(part)[columns].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
