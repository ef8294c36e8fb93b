"""Where DermNet NZ stamps its watermark: the box of pixels that are near-white unusually often.

Every DermNet NZ photo of the public set is shrunk to 320 × 240; a pixel counts when every
channel exceeds 200. Pixels near-white in more than 6% of the photos (the median pixel: 2%)
in the bottom-left quarter of the frame give the watermark's box, printed as fractions of the
photo (``skin_cnn.evaluation.shortcut.DEFAULT_WATERMARKS`` pads it by about 1%).

    python docs/experiments/watermark_region.py --manifest ../shared/data/public-derm/manifest.csv
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--share", type=float, default=0.06, help="near-white in more than this share of photos")
    args = parser.parse_args()
    manifest = pd.read_csv(args.manifest)
    rows = manifest[manifest["original_dataset"].str.contains("dermnet", case=False, na=False)]
    width, height = 320, 240
    count = np.zeros((height, width))
    for path in rows["image_path"]:
        pixels = np.asarray(Image.open(Path(args.manifest).parent / path).convert("RGB").resize((width, height)))
        count += pixels.min(axis=2) > 200
    share = count / len(rows)
    ys, xs = np.nonzero(share > args.share)
    keep = (ys > height / 2) & (xs < width * 0.6)
    print(f"{len(rows)} DermNet NZ photos; median near-white share {np.median(share):.3f}")
    print(f"watermark box: x {xs[keep].min() / width:.3f}-{(xs[keep].max() + 1) / width:.3f}, "
          f"y {ys[keep].min() / height:.3f}-{(ys[keep].max() + 1) / height:.3f}")


if __name__ == "__main__":
    main()
