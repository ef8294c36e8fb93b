"""Where the benchmarks find the real photos and ImageNet weights they time.

Both live in ``../shared`` beside the checkout (never in the repository); every benchmark that
times real inputs takes them as ``--data`` and ``--weights`` with these defaults, so a benchmark
run from another layout needs only the two options.
"""
from __future__ import annotations

import argparse
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: The public photos: a folder holding ``manifest.csv`` and the images it names.
DEFAULT_DATA = SHARED / "data" / "public-derm"
#: VGG-16's ImageNet weights without the top, for Caffe-style input (see their README).
DEFAULT_WEIGHTS = SHARED / "weights" / "vgg16_imagenet_notop_caffe_input.h5"


def add_real_inputs(parser: argparse.ArgumentParser, data: bool = True) -> None:
    """Add ``--data`` (unless ``data`` is False) and ``--weights`` with the defaults above."""
    if data:
        parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                            help="folder with manifest.csv and the photos it names [default: %(default)s]")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                        help="VGG-16 ImageNet weights, no top (.h5) [default: %(default)s]")
