"""Shared fixtures. Keras and matplotlib write their caches into a temporary folder.

The few tests on real data find it through environment variables — ``SKIN_CNN_PUBLIC_DERM``
(a folder with ``manifest.csv``), ``SKIN_CNN_VGG16_WEIGHTS`` (a ``.h5`` file) or
``SKIN_CNN_SHARED`` (a folder holding ``data/public-derm/`` and ``weights/``) — or, without
them, in a ``shared`` folder beside the checkout; they are skipped when it is absent.
"""
import os
import tempfile
from pathlib import Path

_cache = tempfile.mkdtemp(prefix="skin-cnn-tests-")
os.environ.setdefault("KERAS_HOME", os.path.join(_cache, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_cache, "mpl"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# the per-user feature cache stays in the temporary folder (each test gets its own: see below)
os.environ["SKIN_CNN_CACHE_DIR"] = os.path.join(_cache, "features")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _shared_folder():
    """``$SKIN_CNN_SHARED``, else a ``shared`` folder beside the checkout (the CI layout)."""
    return Path(os.environ.get("SKIN_CNN_SHARED") or ROOT.parent / "shared").expanduser()


SHARED = _shared_folder()
#: Real public clinical photos with their manifest.csv: $SKIN_CNN_PUBLIC_DERM, else under SHARED.
PUBLIC_DERM = Path(os.environ.get("SKIN_CNN_PUBLIC_DERM") or SHARED / "data" / "public-derm").expanduser()
#: ImageNet VGG-16 notop weights: $SKIN_CNN_VGG16_WEIGHTS (the variable the CLI reads), else under SHARED.
VGG16_WEIGHTS = Path(
    os.environ.get("SKIN_CNN_VGG16_WEIGHTS") or SHARED / "weights" / "vgg16_imagenet_notop_caffe_input.h5"
).expanduser()


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto`` (setup.cfg): one per CPU this process may run on, at most 4.

    Each worker imports TensorFlow and builds its own VGG-16 models (a few GiB at peak), and
    TensorFlow already spreads one test's arithmetic over every core; the gain of a second worker
    is the time tests spend in Python, on files and waiting for the processes they start.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


@pytest.fixture(scope="session")
def public_derm():
    """The folder of real public clinical photos (skip when absent)."""
    if not (PUBLIC_DERM / "manifest.csv").is_file():
        pytest.skip(f"{PUBLIC_DERM / 'manifest.csv'} not found: set SKIN_CNN_PUBLIC_DERM or SKIN_CNN_SHARED")
    return PUBLIC_DERM


@pytest.fixture(scope="session")
def vgg16_weights():
    """The ImageNet VGG-16 notop weights file (skip when absent)."""
    if not VGG16_WEIGHTS.is_file():
        pytest.skip(f"{VGG16_WEIGHTS} not found: set SKIN_CNN_VGG16_WEIGHTS or SKIN_CNN_SHARED")
    return VGG16_WEIGHTS


@pytest.fixture(autouse=True)
def feature_cache_dir(tmp_path_factory, monkeypatch):
    """A fresh default feature cache per test (``$SKIN_CNN_CACHE_DIR``), so no test reuses another's features.

    Module-scoped fixtures run before it and share the session's folder; tests that check what
    they built pass ``cache_dir`` themselves.
    """
    folder = tmp_path_factory.mktemp("feature-cache")
    monkeypatch.setenv("SKIN_CNN_CACHE_DIR", str(folder))
    return folder
