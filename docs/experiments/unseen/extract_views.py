"""Frozen VGG-16 features of every photo under several test-time views, for the lever study.

Each photo goes through skin-cnn's one input path (:func:`skin_cnn.data.model_input`) at
each (size, crop) setting; the model input and its left-right mirror image each go through the
ImageNet VGG-16 trunk once. Per view it stores three pooled 512-d vectors:

- ``b5_gap``: global average of ``block5_pool`` (what VGG-16P's heads see),
- ``b5_gmp``: global maximum of ``block5_pool``,
- ``b4_gap``: global average of ``block4_pool``,

and, for the 250² crop views, the ``block4_pool`` maps (float16) for the block-5 fine-tuning
lever. One ``views_<size>_<crop|nocrop>.npz`` per setting; an existing file is reused.

    python docs/experiments/unseen/extract_views.py --manifest DATA/manifest.csv \
        --weights vgg16_notop.h5 -o runs/unseen/views
"""
import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

SETTINGS = ((250, True), (250, False), (224, False), (224, True))


def trunk_outputs(size, weights):
    import keras

    from skin_cnn.models import build_model

    model = build_model("P", input_shape=(size, size, 3), weights=weights)
    b4 = model.get_layer("block4_pool").output
    b5 = model.get_layer("block5_pool").output
    outputs = [keras.layers.GlobalAveragePooling2D()(b5), keras.layers.GlobalMaxPooling2D()(b5),
               keras.layers.GlobalAveragePooling2D()(b4), b4]
    return keras.Model(model.inputs[0], outputs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from skin_cnn.core.specs import Preprocessing
    from skin_cnn.data.preprocessing import load_model_input

    frame = pd.read_csv(args.manifest)
    root = Path(args.manifest).parent
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame[["image_path", "sha256"]].to_csv(out / "images.csv", index=False)
    for size, crop in SETTINGS:
        target = out / f"views_{size}_{'crop' if crop else 'nocrop'}.npz"
        if target.is_file():
            continue
        pre = Preprocessing(image_size=(size, size), crop=crop)
        model = trunk_outputs(size, args.weights)
        keep_maps = size == 250 and crop
        n = len(frame)
        feats = {k: np.zeros((2, n, 512), np.float32) for k in ("b5_gap", "b5_gmp", "b4_gap")}
        maps = np.zeros((2, n, size // 16, size // 16, 512), np.float16) if keep_maps else None
        started = time.perf_counter()
        for start in tqdm(range(0, n, args.batch_size), desc=f"{size} {'crop' if crop else 'nocrop'}"):
            rows = frame.iloc[start:start + args.batch_size]
            pixels = np.stack([load_model_input(root / p, pre)[0] for p in rows["image_path"]])
            for flip in (0, 1):
                batch = pixels[:, :, ::-1] if flip else pixels
                b5g, b5m, b4g, b4 = model.predict_on_batch(batch.astype(np.float32))
                sl = slice(start, start + len(rows))
                feats["b5_gap"][flip, sl], feats["b5_gmp"][flip, sl], feats["b4_gap"][flip, sl] = b5g, b5m, b4g
                if keep_maps:
                    maps[flip, sl] = np.asarray(b4, np.float16)
        seconds = time.perf_counter() - started
        np.savez(target.with_suffix(".tmp.npz"), seconds=seconds, **feats)
        target.with_suffix(".tmp.npz").rename(target)
        if keep_maps:
            np.save(out / "block4_maps_250_crop.npy", maps)
        print(f"{target.name}: {n} photos × 2 views in {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
