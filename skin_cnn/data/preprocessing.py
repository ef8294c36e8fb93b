"""Photo → model-ready tensor: the one place that decodes, crops and resizes for a model.

Training, the feature cache, evaluation, ``predict``, ``serve``, ``export`` checks and
``preview`` all turn a photo into the model's input through :func:`model_input`, with the
settings of one :class:`Preprocessing` value that a run writes into ``config.json`` and every
consumer reads back. A photo's path::

    file ─► read_image (Pillow: EXIF orientation, any mode → 8-bit RGB, bombs refused)
         ─► crop box (the frame's crop_* columns, else the hue-clustering box, when crop is on)
         ─► border and box masks painted, when set (:mod:`skin_cnn.data.masking`)
         ─► resize to image_size (antialiased bilinear, stretched or padded)
         ─► rounded to uint8 (H, W, 3)

The result is **uint8**: that is what training stores once per image (:func:`prepare_images`,
a quarter of the bytes of float32) and what every consumer feeds, as float32 in [0, 255], to the
model, whose first layer does the VGG-16 normalisation. Because rounding happens in one place,
a photo gives the same model input in training, evaluation and prediction, bit for bit.

Many photos are prepared by :func:`prepare_images` into an :class:`ImageStore`: one raw file of
fixed-size uint8 rows per split, written sequentially and read back row by row with
``os.pread``. Rows go through the page cache instead of the process's memory, so preparing and
training on 8,000 photos needs about the memory of 1,000.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skin_cnn.core.progress import progress_bar

from skin_cnn.data.crop import BOX_COLUMNS, CROP_METHOD_COLUMN, box_fits_crop, crop_image, hue_crop_box
from skin_cnn.data.masking import mask_photo
from skin_cnn.data.reading import DEFAULT_MAX_PIXELS, ImageReadError, read_image

_OPEN_LOCK = threading.Lock()
#: Columns of every list of images left out (``skipped_images.csv`` and friends).
SKIPPED_COLUMNS = ("image_path", "split", "reason")


# ----------------------------------------------------------------------------------------------
# One photo

#: The most a photo may be enlarged to reach the model's input size, and the most its shape may
#: differ from the input's (longer side over shorter side, relative to the input's own). Beyond
#: either, what the model is shown is a few pixels smeared over the input, or a strip squeezed
#: into a square: not a clinical photo, and an answer about it would be confident and meaningless.
#: The 942 public photos reach 5.4× at 250² and 8.3× at 384² (a 46-pixel side) and 3.3:1.
MAX_ENLARGEMENT = 10.0
MAX_SHAPE_RATIO = 8.0


class PhotoSizeError(ValueError):
    """A photo too small, or too long and thin, for the model to be shown anything meaningful."""


def photo_size_problem(height: int, width: int, preprocessing) -> str:
    """Why a ``height`` × ``width`` photo cannot be given to a model of ``preprocessing``, or ``""``.

    A 1×1-pixel image stretched to 250×250 is one colour; a 20000×3 strip stretched to a square
    is smeared lines: a model answers both as confidently as a photo. Both are refused here, by
    the enlargement the resize would apply (above :data:`MAX_ENLARGEMENT`) and by how much longer
    than wide the photo is compared with the model's input (above :data:`MAX_SHAPE_RATIO`). The
    whole photo is judged, not the crop box: a small lesion in a large photo is fine. The reason
    starts with the cause and puts the sizes in brackets, so that a flow diagram counts all such
    photos under one cause (:func:`skin_cnn.evaluation.flow.short_reason`).
    """
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        return f"empty photo ({width}×{height} pixels)"
    model_h, model_w = (int(v) for v in preprocessing.image_size)
    factors = (model_h / height, model_w / width)
    enlargement = min(factors) if preprocessing.resize == "pad" else max(factors)
    if enlargement > MAX_ENLARGEMENT:
        return (f"too small for the model (photo {width}×{height} pixels: its {model_w}×{model_h} input "
                f"would enlarge it {_times(enlargement)}×, more than {MAX_ENLARGEMENT:g}×; use the original photo)")
    ratio = max(height * model_w / (width * model_h), width * model_h / (height * model_w))
    if ratio > MAX_SHAPE_RATIO:
        return (f"too long and thin for the model (photo {width}×{height} pixels: {_times(ratio)} times longer "
                f"than wide next to its {model_w}×{model_h} input, more than {MAX_SHAPE_RATIO:g}; crop it to the skin)")
    return ""


def _times(factor):
    """A factor with the digits that tell it from the limit: ``10.4``, ``8.01``, ``250``."""
    text = f"{factor:.{0 if factor >= 100 else 1 if factor >= 10 else 2}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def photo_size_limits() -> dict:
    """The limits of :func:`photo_size_problem` as JSON, for an export's entry: an app that runs an
    exported model without skin-cnn applies them itself."""
    return {"max_enlargement": MAX_ENLARGEMENT, "max_shape_ratio": MAX_SHAPE_RATIO,
            "rule": ("refuse a photo that the resize to the model's input would enlarge more than "
                     "max_enlargement times (the shorter side's factor when stretched, the longer side's "
                     "when padded), or that is more than max_shape_ratio times longer than wide next to "
                     "the input's own shape; skin-cnn predict and serve refuse it")}


def check_photo_size(image, preprocessing):
    """Raise :class:`PhotoSizeError` when :func:`photo_size_problem` finds one."""
    problem = photo_size_problem(image.shape[0], image.shape[1], preprocessing)
    if problem:
        raise PhotoSizeError(problem)


def _cell(row, column):
    return row.get(column) if hasattr(row, "get") else getattr(row, column, None)


def box_from_row(row, preprocessing=None):
    """The crop box ``(left, top, right, bottom)`` in a frame row, or None when it has none.

    The one parser of ``crop_*`` columns: empty or NaN cells mean "no box" (the hue box is then
    computed on the fly); a box that is not four integers with ``left < right`` and
    ``top < bottom`` is a ValueError naming it.

    Parameters
    ----------
    row : mapping or named tuple
        A frame row.
    preprocessing : Preprocessing, optional
        The crop the box is for. A box made by another crop (the row's ``crop_method``, the
        study's when empty, or that method with other settings: :func:`~skin_cnn.data.crop.box_fits_crop`)
        counts as none, so the model's own box is computed. Every path that cuts a photo passes
        it; without it the box is returned as written (the feature cache's identity of a row).
    """
    values = [_cell(row, c) for c in BOX_COLUMNS]
    if any(v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))
           for v in values):
        return None
    if preprocessing is not None and preprocessing.crop and not box_fits_crop(
            _cell(row, CROP_METHOD_COLUMN), preprocessing.crop_params):
        return None
    try:
        box = tuple(int(float(v)) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"crop box {tuple(values)} is not four integers") from None
    left, top, right, bottom = box
    if right <= left or bottom <= top or min(left, top) < 0:
        raise ValueError(f"invalid crop box {box} (needs 0 <= left < right and 0 <= top < bottom)")
    return box


def crop_box(image, preprocessing, box=None):
    """The box :func:`model_input` cuts: ``box`` if given, the hue box, or the whole photo."""
    height, width = image.shape[:2]
    if not preprocessing.crop:
        return (0, 0, int(width), int(height))
    if box is not None:
        return tuple(int(v) for v in box)
    return hue_crop_box(image, **preprocessing.crop_params)


def resize_tensor(image, preprocessing):
    """:func:`resize_to_model` in TensorFlow ops: uint8 ``(h, w, 3)`` tensor → uint8 at the model size.

    The one resize of every path (eager here, inside ``tf.data`` in :func:`photo_batches`,
    inside an exported graph), so all give the same pixels, bit for bit.
    """
    import tensorflow as tf

    height, width = preprocessing.image_size
    pixels = tf.cast(image, tf.float32)
    if preprocessing.resize == "pad":
        out = tf.image.resize_with_pad(pixels, height, width, method="bilinear",
                                       antialias=preprocessing.antialias)
    else:
        out = tf.image.resize(pixels, (height, width), method="bilinear", antialias=preprocessing.antialias)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def resize_to_model(image, preprocessing):
    """An (already cropped) uint8 RGB photo at the model size, as uint8.

    TensorFlow's antialiased bilinear resize, rounded half to even and clipped to 0..255.
    """
    import tensorflow as tf

    return np.asarray(resize_tensor(tf.convert_to_tensor(np.asarray(image)), preprocessing))


def model_input(image, preprocessing, box=None):
    """Turn a decoded photo into the model's input.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB (H, W, 3), the whole photo as :func:`~skin_cnn.data.reading.read_image`
        returns it.
    preprocessing : Preprocessing
    box : tuple of 4 int, optional
        A crop box computed earlier (a frame's ``crop_*`` columns); computed here when cropping
        is on and none is given, ignored when cropping is off.

    Returns
    -------
    pixels : numpy.ndarray
        uint8 (height, width, 3) at the model's input size.
    box : tuple of 4 int
        ``(left, top, right, bottom)`` cut from the photo (the whole photo when crop is off).

    Raises
    ------
    PhotoSizeError
        A photo too small or too long and thin for the model (:func:`photo_size_problem`).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image of shape (H, W, 3); got {image.dtype} {image.shape}")
    check_photo_size(image, preprocessing)
    box = crop_box(image, preprocessing, box)
    return resize_to_model(crop_image(mask_photo(image, preprocessing), box), preprocessing), box


def load_model_input(path, preprocessing, box=None, *, max_pixels=DEFAULT_MAX_PIXELS):
    """:func:`model_input` of the photo at ``path``; :class:`ImageReadError` when unreadable."""
    return model_input(read_image(path, max_pixels=max_pixels), preprocessing, box)


# ----------------------------------------------------------------------------------------------
# Many photos, decoded in parallel on tf.data while the model runs
#
# Once the VGG-16 trunk computes in bfloat16, decoding a photo, finding its hue crop box and the
# antialiased resize (about 10 ms per photo and core) are a large share of the time; run one after
# the other with the forward pass they leave the trunk waiting. :func:`photo_batches` makes them a
# ``tf.data`` pipeline: a parallel ``map`` (``deterministic=True``, so batches keep the frame's
# order) decodes and crops each photo in Python (Pillow and NumPy release the GIL for the heavy
# parts) and resizes it with :func:`resize_tensor` in TensorFlow ops; batches are prefetched, so
# the next ones are prepared while the model works on the current one. The pixels are those of
# :func:`model_input`, bit for bit. :func:`run_over_photos` drives it for ``predict``, ``evaluate``
# and :func:`prepare_images`.

#: Batches prepared ahead of the one the model is working on.
PREFETCH_BATCHES = 2


def parallel_calls():
    """Photos decoded at once: the CPUs this process may use (at least 2, so one decodes while
    the other runs the model's Python side)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 2
    return max(2, cpus)


def _cropped_photo(row, preprocessing, max_pixels):
    """``(cropped uint8 photo, "")`` of a frame row, or ``(1×1×3 zeros, reason)`` when unreadable."""
    try:
        image = read_image(str(row["image_path"]), max_pixels=max_pixels)
        check_photo_size(image, preprocessing)
        box = crop_box(image, preprocessing, box_from_row(row, preprocessing))
        return crop_image(mask_photo(image, preprocessing), box), ""
    except (ImageReadError, ValueError, OSError) as exc:
        return np.zeros((1, 1, 3), np.uint8), getattr(exc, "reason", None) or str(exc)


def photo_batches(rows, preprocessing, *, batch_size=32, max_pixels=DEFAULT_MAX_PIXELS, parallel=None):
    """A ``tf.data.Dataset`` of ``(index, pixels, reason)`` batches over ``rows``, in their order.

    Parameters
    ----------
    rows : list of dict
        Frame records: ``image_path`` and optional ``crop_*`` columns (used as the crop box when
        cropping is on and ``crop_method`` names the crop of ``preprocessing``, as everywhere else).
    preprocessing : Preprocessing
    batch_size : int
    max_pixels : int or None
        Photos with more pixels are refused before decoding.
    parallel : int, optional
        Photos prepared at once (default :func:`parallel_calls`).

    Returns
    -------
    tf.data.Dataset
        ``index`` int64 ``(B,)`` (positions in ``rows``), ``pixels`` uint8 ``(B, H, W, 3)`` (zeros
        for an unreadable photo), ``reason`` string ``(B,)`` (empty when the photo was read).
    """
    import tensorflow as tf

    rows = list(rows)

    def load_python(i):
        photo, reason = _cropped_photo(rows[int(i)], preprocessing, max_pixels)
        return photo, np.bytes_(reason.encode("utf-8"))

    def load(i):
        photo, reason = tf.numpy_function(load_python, [i], (tf.uint8, tf.string), stateful=False)
        photo = tf.ensure_shape(photo, (None, None, 3))
        return i, resize_tensor(photo, preprocessing), tf.ensure_shape(reason, ())

    dataset = tf.data.Dataset.range(len(rows)).map(
        load, num_parallel_calls=int(parallel or parallel_calls()), deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.batch(int(batch_size)).prefetch(PREFETCH_BATCHES).with_options(options)


def run_over_photos(rows, preprocessing, function, *, batch_size=32, max_pixels=DEFAULT_MAX_PIXELS,
                    parallel=None, progress=None):
    """Call ``function(indices, pixels)`` on every readable photo of ``rows``, batch by batch, in order.

    The next batches are decoded while ``function`` works on the current one.

    Parameters
    ----------
    function : callable
        Receives the positions in ``rows`` (int64 array, increasing) and their model inputs,
        uint8 ``(n, H, W, 3)``; called only for non-empty batches.
    progress : progress bar (skin_cnn.core.progress.progress_bar), optional
        Advanced by the photos of each batch, read or not.

    Returns
    -------
    list of (int, str)
        ``(position, reason)`` of every photo that could not be read, in order.
    """
    unreadable = []
    for index, pixels, reason in photo_batches(rows, preprocessing, batch_size=batch_size, max_pixels=max_pixels,
                                               parallel=parallel).as_numpy_iterator():
        failed = reason != b""
        unreadable.extend((int(i), r.decode("utf-8")) for i, r in zip(index[failed], reason[failed]))
        if (~failed).any():
            function(index[~failed], pixels[~failed])
        if progress is not None:
            progress.update(len(index))
    return unreadable


# ----------------------------------------------------------------------------------------------
# Many photos


class ImageStore:
    """Fixed-shape rows in one raw file, read back with ``os.pread`` (page cache, not RSS).

    Used for a split's prepared uint8 images and, with a byte ``offset`` past a ``.npy``
    header, for feature-cache arrays too large to hold in memory.

    Parameters
    ----------
    path : path
    shape : tuple
        Shape of one row.
    dtype : numpy dtype
    rows : int
        Number of rows in the file.
    offset : int
        Bytes before the first row.
    """

    def __init__(self, path, shape, dtype, rows, offset=0):
        self.path = Path(path)
        self.row_shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = int(rows)
        self.offset = int(offset)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._fd = None

    @classmethod
    def from_npy(cls, path, leading_axes=1):
        """A store over a ``.npy`` file whose first ``leading_axes`` axes index the rows.

        With ``leading_axes=2`` an array of shape (views, n, ...) becomes ``views * n`` rows,
        row ``v * n + i`` holding view ``v`` of image ``i``.
        """
        array = np.load(path, mmap_mode="r")
        rows = int(np.prod(array.shape[:leading_axes]))
        store = cls(path, array.shape[leading_axes:], array.dtype, rows, offset=array.offset)
        del array
        return store

    @property
    def shape(self):
        return (self.rows,) + self.row_shape

    @property
    def ndim(self):
        return 1 + len(self.row_shape)

    @property
    def nbytes(self):
        return self.rows * self.row_bytes

    def __len__(self):
        return self.rows

    def _descriptor(self):
        with _OPEN_LOCK:  # tf.data reads rows from several threads at once
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def read(self, indices):
        """Rows at ``indices`` (any order, repeats allowed) as one array."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices),) + self.row_shape, dtype=self.dtype)
        if len(indices) == 0:
            return out
        flat = out.reshape(len(indices), -1).view(np.uint8)
        fd = self._descriptor()
        for k, i in enumerate(indices):
            if not 0 <= i < self.rows:
                raise IndexError(f"{self.path}: row {i} outside 0..{self.rows - 1}")
            flat[k] = np.frombuffer(os.pread(fd, self.row_bytes, self.offset + int(i) * self.row_bytes), np.uint8)
        return out

    def __getitem__(self, item):
        if isinstance(item, slice):
            return self.read(np.arange(self.rows)[item])
        return self.read(item)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@dataclass
class PreparedSplit:
    """The prepared images of one split: a uint8 :class:`ImageStore` and whose rows they are.

    Attributes
    ----------
    store : ImageStore
        Row ``i`` is the model input of the frame row labelled ``positions[i]``.
    positions : numpy.ndarray of int
        Frame row labels of the readable images, in frame order.
    """

    store: ImageStore
    positions: np.ndarray


def _asked_rows(rows, split, n):
    """Positions ``0..n-1`` of a split to prepare: all, or those ``rows`` names."""
    return list(range(n)) if rows is None else sorted(set(rows.get(split, ())) & set(range(n)))


def prepare_images(frame, preprocessing, folder, *, splits=("train", "val"), progress=True, workers=None,
                   rows=None, on_batch=None):
    """Decode, crop and resize the images of ``splits`` once, into uint8 stores under ``folder``.

    Photos are decoded in parallel on ``tf.data`` (:func:`run_over_photos`)
    and written in frame order as they come; ``on_batch`` sees each batch at once, so a model can
    run on the images while the next ones are decoded.

    Parameters
    ----------
    frame : pandas.DataFrame
        A split frame (``image_path`` absolute, ``split``, optional ``crop_*`` columns).
    preprocessing : Preprocessing
    folder : path
        Where the raw ``<split>.u8`` files go (a run's temporary preparation folder).
    splits : tuple of str
        Which splits to prepare; training never prepares ``test``.
    workers : int, optional
        Photos decoded at once (default: one per CPU).
    rows : dict of split -> set of int, optional
        Prepare only these positions within each split (``preview`` needs one batch); the other
        rows stay zero and are never read.
    on_batch : callable, optional
        ``on_batch(split, store_rows, pixels)`` after each batch is written: ``store_rows`` the rows
        of the split's store (int64), ``pixels`` their uint8 images ``(n, H, W, 3)``.

    Returns
    -------
    prepared : dict of split -> PreparedSplit
    skipped : list of dict
        ``{"image_path", "split", "reason"}`` (:data:`SKIPPED_COLUMNS`) of every unreadable image.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = preprocessing.image_size
    blank = bytes(height * width * 3)
    prepared, skipped = {}, []
    parts = {s: frame[frame["split"] == s] for s in splits}
    total = sum(len(_asked_rows(rows, s, len(p))) for s, p in parts.items())
    bar = progress_bar(total=total, desc="prepare images", unit="img", disable=not progress)
    for split, part in parts.items():
        records, labels = part.to_dict("records"), part.index
        wanted = _asked_rows(rows, split, len(records))
        asked = set(wanted)
        path = folder / f"{split}.u8"
        positions = []
        with open(path, "wb") as fh:
            following = [0]  # the next frame row not yet written or skipped

            def blanks_up_to(stop):
                for k in range(following[0], stop):
                    if k not in asked:  # a row not asked for: zeros, never read
                        fh.write(blank)
                        positions.append(int(labels[k]))
                following[0] = max(following[0], stop)

            def write(idx, pixels, split=split):
                store_rows = []
                for j, image in zip(idx, pixels):
                    blanks_up_to(wanted[j])
                    store_rows.append(len(positions))
                    fh.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
                    positions.append(int(labels[wanted[j]]))
                    following[0] = wanted[j] + 1
                if on_batch is not None:
                    on_batch(split, np.asarray(store_rows, dtype=np.int64), pixels)

            unreadable = run_over_photos([records[i] for i in wanted], preprocessing, write, parallel=workers,
                                         progress=bar)
            blanks_up_to(len(records))
        skipped.extend({"image_path": str(records[wanted[j]]["image_path"]), "split": split, "reason": reason}
                       for j, reason in unreadable)
        store = ImageStore(path, (height, width, 3), np.uint8, len(positions))
        prepared[split] = PreparedSplit(store, np.asarray(positions, dtype=np.int64))
    bar.close()
    return prepared, skipped


def heatmap_on_photo(heatmap, photo_shape, box, resize="stretch"):
    """Map a heat map of the model input back onto the photo it was computed from.

    The model input is the crop box of the photo, stretched (or, with ``resize="pad"``, scaled
    and centred with black borders, as ``tf.image.resize_with_pad`` does) to the model's size.
    This undoes that: the borders are cut off and the map is resized bilinearly to the box.
    It is the inverse of :func:`model_input`'s geometry, so Grad-CAM overlays and the shortcut
    audit place a map on the photo the same way.

    Parameters
    ----------
    heatmap : array of shape (h, w)
        At the model input's resolution.
    photo_shape : tuple
        ``(H, W, ...)`` of the photo.
    box : tuple of 4 int
        ``(left, top, right, bottom)`` cut from the photo (right and bottom exclusive).
    resize : {"stretch", "pad"}

    Returns
    -------
    numpy.ndarray
        float32 (H, W): the map inside the box, NaN outside it (the model never saw there).
    """
    from PIL import Image

    heat = np.asarray(heatmap, dtype=np.float32)
    height, width = int(photo_shape[0]), int(photo_shape[1])
    left, top = max(0, int(box[0])), max(0, int(box[1]))
    right, bottom = min(width, int(box[2])), min(height, int(box[3]))
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {tuple(box)} lies outside the {width}×{height} photo")
    box_w, box_h = int(box[2]) - int(box[0]), int(box[3]) - int(box[1])
    if resize == "pad":
        in_h, in_w = heat.shape
        ratio = max(box_w / in_w, box_h / in_h)
        used_h, used_w = int(box_h / ratio), int(box_w / ratio)
        pad_top, pad_left = int((in_h - box_h / ratio) / 2), int((in_w - box_w / ratio) / 2)
        heat = heat[pad_top : pad_top + max(1, used_h), pad_left : pad_left + max(1, used_w)]
    region = np.asarray(Image.fromarray(heat).resize((box_w, box_h), Image.BILINEAR))
    out = np.full((height, width), np.nan, dtype=np.float32)
    out[top:bottom, left:right] = region[top - int(box[1]) : bottom - int(box[1]),
                                         left - int(box[0]) : right - int(box[0])]
    return out
