"""Shared fixtures. Keras and matplotlib write their caches into a temporary folder."""
import os
import tempfile
from pathlib import Path

_cache = tempfile.mkdtemp(prefix="skin-cnn-tests-")
os.environ.setdefault("KERAS_HOME", os.path.join(_cache, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_cache, "mpl"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PUBLIC_DERM = SHARED / "data" / "public-derm"
VGG16_WEIGHTS = SHARED / "weights" / "vgg16_imagenet_notop_caffe_input.h5"


@pytest.fixture(scope="session")
def public_derm():
    """The shared folder of real public clinical photos (skip when absent)."""
    if not (PUBLIC_DERM / "manifest.csv").is_file():
        pytest.skip("../shared/data/public-derm is not available")
    return PUBLIC_DERM


@pytest.fixture(scope="session")
def vgg16_weights():
    """The shared ImageNet VGG-16 notop weights file (skip when absent)."""
    if not VGG16_WEIGHTS.is_file():
        pytest.skip("../shared/weights/vgg16_imagenet_notop_caffe_input.h5 is not available")
    return VGG16_WEIGHTS
