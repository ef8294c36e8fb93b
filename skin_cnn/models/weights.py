"""Where the ImageNet VGG-16 weights come from: a local file, Keras' cache, or a download.

Keras downloads ``weights="imagenet"`` on first use and keeps the file in
``$KERAS_HOME/models/``. Machines without internet access (hospital networks, CI runners) need a
local copy instead; this module resolves the choice in one place and turns a failed download
into one error that says what to do:

1. ``weights=PATH``: that notop ``.h5`` file (Keras' own layout, ``block1_conv1`` …
   ``block5_conv3``).
2. ``weights="imagenet"`` with the environment variable ``SKIN_CNN_VGG16_WEIGHTS`` set: that
   file; no network is tried.
3. ``weights="imagenet"`` otherwise: Keras' cached file when present and intact, else a
   download, with a socket timeout so a network that drops packets fails instead of hanging.

:func:`imagenet_weights_available` tells, without touching the network, whether the weights can be
served locally, so the demo can fall back to VGG-16N up front.
"""

import hashlib
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import h5py
import keras

WEIGHTS_ENV_VAR = "SKIN_CNN_VGG16_WEIGHTS"
# The file keras.applications.VGG16(weights="imagenet", include_top=False) downloads.
KERAS_NOTOP_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + KERAS_NOTOP_FILENAME
)
KERAS_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
# Seconds a connection attempt or a single read may block during the download.
DOWNLOAD_TIMEOUT_S = 20.0

VGG16_CONV_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
)

_HOW_TO = (
    "Pass a local copy of Keras' VGG-16 notop weights ({name}) with --weights PATH "
    "(weights=PATH in Python) or set the environment variable {env}=PATH; or place the file in "
    "Keras' cache folder {cache}; or use a variant with random initialisation (N or NS)."
)


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither local nor downloadable."""


class WeightsFileError(ValueError):
    """A weights file exists but is not a VGG-16 notop weights file."""


def _how_to():
    return _HOW_TO.format(
        name=KERAS_NOTOP_FILENAME, env=WEIGHTS_ENV_VAR, cache=keras_cache_dir() / "models"
    )


def keras_cache_dir():
    """Keras' download cache: ``$KERAS_HOME``, else ``~/.keras`` (or ``/tmp/.keras``).

    Mirrors where ``keras.utils.get_file`` puts its files.
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        # get_file falls back to /tmp/.keras when the cache folder is not writable.
        return Path("/tmp") / ".keras"
    return Path(home)


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keras_cached_weights():
    """Path of Keras' cached ImageNet notop file when it is present and intact, else None.

    Keras checks the same MD5 before using its cache; a file that fails it would be downloaded
    again.
    """
    path = keras_cache_dir() / "models" / KERAS_NOTOP_FILENAME
    if path.is_file() and _md5(path) == KERAS_NOTOP_MD5:
        return path
    return None


def env_weights_path():
    """The path in ``$SKIN_CNN_VGG16_WEIGHTS``, or None when the variable is unset or empty."""
    value = os.environ.get(WEIGHTS_ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def imagenet_weights_available():
    """Whether ``weights="imagenet"`` can be honoured without touching the network.

    True when ``$SKIN_CNN_VGG16_WEIGHTS`` names an existing file or Keras' cache holds an intact
    copy. Cheap (no Keras import, no download), so callers can fall back to a randomly
    initialised variant up front.
    """
    env = env_weights_path()
    if env is not None:
        return env.is_file()
    return keras_cached_weights() is not None


def resolve_weights(weights):
    """Turn the user's ``weights`` argument into what VGG-16 construction needs.

    Parameters
    ----------
    weights : None, "imagenet", str or Path
        None for random initialisation, ``"imagenet"``, or a path to a notop weights file.

    Returns
    -------
    None, "imagenet" or str
        ``"imagenet"`` only when the environment variable does not name a file: then Keras' cache
        or a download supplies the weights (see :func:`fetch_imagenet_weights`).

    Raises
    ------
    FileNotFoundError
        The path (or the one in ``$SKIN_CNN_VGG16_WEIGHTS``) does not exist.
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        env = env_weights_path()
        if env is None:
            return "imagenet"
        if not env.is_file():
            raise FileNotFoundError(
                f"{env}: VGG-16 weights file not found (named by the environment variable "
                f"{WEIGHTS_ENV_VAR}); unset it to use Keras' download"
            )
        return os.fspath(env)
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: VGG-16 weights file not found (weights must be 'imagenet', None, or the "
            f"path of a notop weights file such as {KERAS_NOTOP_FILENAME})"
        )
    return os.fspath(path)


@contextmanager
def _socket_timeout(seconds):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_imagenet_weights(timeout=None, origin=None):
    """Local path of Keras' ImageNet notop file: from the cache, else downloaded into it.

    Parameters
    ----------
    timeout : float, optional
        Socket timeout in seconds for the download, default ``DOWNLOAD_TIMEOUT_S`` (Keras sets
        none, so a silent network could block forever).
    origin : str, optional
        Download URL, default ``KERAS_NOTOP_URL`` (Keras' own).

    Raises
    ------
    WeightsUnavailableError
        The file is not cached and the download failed, with the reason and what to do instead.
    """
    cached = keras_cached_weights()
    if cached is not None:
        return os.fspath(cached)
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    origin = KERAS_NOTOP_URL if origin is None else origin
    try:
        with _socket_timeout(timeout):
            return keras.utils.get_file(
                KERAS_NOTOP_FILENAME,
                origin,
                cache_dir=os.fspath(keras_cache_dir()),
                cache_subdir="models",
                file_hash=KERAS_NOTOP_MD5,
            )
    except Exception as exc:  # Keras raises a bare Exception for URL failures
        raise WeightsUnavailableError(
            f"could not download the ImageNet VGG-16 weights from {origin}: {exc}. {_how_to()}"
        ) from exc


def check_weights_file(path):
    """Check that ``path`` is a Keras VGG-16 notop weights file before loading it.

    Raises
    ------
    WeightsFileError
        Not HDF5, not Keras' legacy weights layout, or not the 13 VGG-16 conv layers (a file with
        the classifier top, for instance), with the file name and the reason.
    """
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsFileError(f"{path}: not an HDF5 weights file ({exc})") from exc
    with fh:
        group = fh.get("model_weights", fh)
        names = group.attrs.get("layer_names")
        if names is None:
            raise WeightsFileError(
                f"{path}: no 'layer_names' attribute; expected Keras' legacy .h5 weights layout "
                f"(the file keras.applications.VGG16 uses, {KERAS_NOTOP_FILENAME})"
            )
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        with_weights = [n for n in names if len(group[n].attrs.get("weight_names", [])) > 0]
    if tuple(with_weights) != VGG16_CONV_LAYERS:
        extra = sorted(set(with_weights) - set(VGG16_CONV_LAYERS))
        missing = [n for n in VGG16_CONV_LAYERS if n not in with_weights]
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra:
            detail.append(f"unexpected layers {extra} (a file with the classifier top?)")
        raise WeightsFileError(
            f"{path}: not VGG-16 notop weights: "
            f"{'; '.join(detail) or 'layers in a different order'}"
        )
