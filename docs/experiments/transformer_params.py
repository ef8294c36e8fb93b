"""What the spatial transformers of a cross-validated VGG-16PS or NS learnt: the zoom and shift
each fold model applies to the photos it did not train on.

The transformer (``skin_cnn.models.SpatialTransformer``) predicts ``s_x, s_y, t_x, t_y`` per
photo and starts as the identity (1, 1, 0, 0). The sampled window is ``s`` of the photo's width
or height (below 1 zooms in, above 1 zooms out, edge pixels filling the margin) and ``t`` shifts
its centre, in half-widths; its area is ``s_x · s_y`` of the photo's. Prints per fold and pooled the mean, standard
deviation and 5th/95th percentiles of each, and the share of photos whose window keeps under 90%
of the area; writes them as JSON.

    python docs/experiments/transformer_params.py --cv runs/t3/ps128 -o runs/t3/transformer_ps128.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

NAMES = ("s_x", "s_y", "t_x", "t_y")


def held_out_parameters(fold_dir: Path, split_csv: Path, batch_size: int = 32) -> np.ndarray:
    """``(n, 4)`` transformer parameters of the test rows of ``split_csv`` under ``fold_dir``'s model."""
    import keras

    from skin_cnn.data.preprocessing import box_from_row
    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.models.spatial_transformer import SpatialTransformer

    predictor = load_predictor(fold_dir)
    layers = [layer for layer in predictor.model.layers if isinstance(layer, SpatialTransformer)]
    if not layers:
        raise SystemExit(f"{fold_dir}: the model has no spatial transformer (not a PS or NS variant)")
    transformer = layers[0]
    to_transformer = keras.Model(predictor.model.inputs[0], transformer.input)
    frame = pd.read_csv(split_csv)
    rows = frame[frame["split"] == "test"].to_dict("records")
    parts = []
    for start in range(0, len(rows), batch_size):
        batch = np.stack([predictor.preprocess(predictor.read(str(row["image_path"])),
                                               box_from_row(row, predictor.preprocessing))[0]
                          for row in rows[start:start + batch_size]])
        parts.append(np.asarray(transformer.affine_parameters(to_transformer(batch, training=False)), np.float64))
    return np.concatenate(parts)


def summary(parameters: np.ndarray) -> dict:
    """Mean, SD and 5th/95th percentiles of each parameter and of the sampled area."""
    columns = dict(zip(NAMES, parameters.T))
    columns["area"] = parameters[:, 0] * parameters[:, 1]
    out = {name: {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                  "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}
           for name, v in columns.items()}
    out["n"] = int(len(parameters))
    out["share_area_below_0.9"] = float((columns["area"] < 0.9).mean())
    return out


def line(name: str, entry: dict) -> str:
    cells = [f"{k} {entry[k]['mean']:.3f} ± {entry[k]['sd']:.3f} ({entry[k]['p5']:.3f} to {entry[k]['p95']:.3f})"
             for k in (*NAMES, "area")]
    below = 100 * entry["share_area_below_0.9"]
    return f"{name} (n = {entry['n']}): " + "; ".join(cells) + f"; area < 0.9: {below:.1f}%"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, required=True, help="a `skin-cnn cv` folder of a PS or NS variant")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    folds = sorted(p for p in args.cv.glob("fold*") if p.is_dir())
    if not folds:
        raise SystemExit(f"{args.cv}: no fold folders")
    result, pooled = {}, []
    for fold_dir in folds:
        parameters = held_out_parameters(fold_dir, args.cv / f"{fold_dir.name}_split.csv")
        pooled.append(parameters)
        result[fold_dir.name] = summary(parameters)
        print(line(fold_dir.name, result[fold_dir.name]), flush=True)
    result["pooled"] = summary(np.concatenate(pooled))
    print(line("pooled", result["pooled"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
