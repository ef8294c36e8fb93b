"""Photo → model-ready tensor: the one place that decodes, crops and resizes for a model.

Training, the feature cache, evaluation, ``predict``, ``serve``, ``export`` checks and
``preview`` all turn a photo into the model's input through :func:`model_input`, with the
settings of one :class:`Preprocessing` value that a run writes into ``config.json`` and every
consumer reads back. A photo's path::

    file ─► read_image (Pillow: EXIF orientation, any mode → 8-bit RGB, bombs refused)
         ─► crop box (the frame's crop_* columns, else the hue-clustering box, when crop is on)
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skin_cnn.core.progress import progress_bar

from skin_cnn.data.crop import BOX_COLUMNS, crop_image, hue_crop_box
from skin_cnn.data.reading import DEFAULT_MAX_PIXELS, ImageReadError, read_image

#: Columns of every list of images left out (``skipped_images.csv`` and friends).
SKIPPED_COLUMNS = ("image_path", "split", "reason")


# ----------------------------------------------------------------------------------------------
# One photo


def box_from_row(row):
    """The crop box ``(left, top, right, bottom)`` in a frame row, or None when it has none.

    The one parser of ``crop_*`` columns: empty or NaN cells mean "no box" (the hue box is then
    computed on the fly); a box that is not four integers with ``left < right`` and
    ``top < bottom`` is a ValueError naming it.
    """
    values = [row.get(c) if hasattr(row, "get") else getattr(row, c, None) for c in BOX_COLUMNS]
    if any(v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))
           for v in values):
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


def resize_to_model(image, preprocessing):
    """An (already cropped) uint8 RGB photo at the model size, as uint8.

    TensorFlow's antialiased bilinear resize, rounded half to even and clipped to 0..255.
    """
    import tensorflow as tf

    height, width = preprocessing.image_size
    pixels = tf.cast(tf.convert_to_tensor(np.asarray(image)), tf.float32)
    if preprocessing.resize == "pad":
        out = tf.image.resize_with_pad(pixels, height, width, method="bilinear",
                                       antialias=preprocessing.antialias)
    else:
        out = tf.image.resize(pixels, (height, width), method="bilinear", antialias=preprocessing.antialias)
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8))


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
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image of shape (H, W, 3); got {image.dtype} {image.shape}")
    box = crop_box(image, preprocessing, box)
    return resize_to_model(crop_image(image, box), preprocessing), box


def load_model_input(path, preprocessing, box=None, *, max_pixels=DEFAULT_MAX_PIXELS):
    """:func:`model_input` of the photo at ``path``; :class:`ImageReadError` when unreadable."""
    return model_input(read_image(path, max_pixels=max_pixels), preprocessing, box)


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


def _prepare_one(row, preprocessing):
    try:
        pixels, _ = load_model_input(str(row["image_path"]), preprocessing, box_from_row(row))
        return pixels, None
    except (ImageReadError, ValueError, OSError) as exc:
        return None, getattr(exc, "reason", None) or str(exc)


def prepare_images(frame, preprocessing, folder, *, splits=("train", "val"), progress=True, workers=2,
                   rows=None):
    """Decode, crop and resize the images of ``splits`` once, into uint8 stores under ``folder``.

    Parameters
    ----------
    frame : pandas.DataFrame
        A split frame (``image_path`` absolute, ``split``, optional ``crop_*`` columns).
    preprocessing : Preprocessing
    folder : path
        Where the raw ``<split>.u8`` files go (a run's temporary preparation folder).
    splits : tuple of str
        Which splits to prepare; training never prepares ``test``.
    rows : dict of split -> set of int, optional
        Prepare only these positions within each split (``preview`` needs one batch); the other
        rows stay zero and are never read.

    Returns
    -------
    prepared : dict of split -> PreparedSplit
    skipped : list of dict
        ``{"image_path", "split", "reason"}`` (:data:`SKIPPED_COLUMNS`) of every unreadable image.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = preprocessing.image_size
    row_bytes = height * width * 3
    prepared, skipped = {}, []
    parts = {s: frame[frame["split"] == s] for s in splits}
    total = sum(len(p) if rows is None else len(rows.get(s, ())) for s, p in parts.items())
    bar = progress_bar(total=total, desc="prepare images", unit="img", disable=not progress)
    blank = bytes(row_bytes)
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        for split, part in parts.items():
            wanted = None if rows is None else set(rows.get(split, ()))
            records = part.to_dict("records")
            todo = [r if wanted is None or i in wanted else None for i, r in enumerate(records)]
            results = pool.map(lambda r: (None, None) if r is None else _prepare_one(r, preprocessing), todo)
            path = folder / f"{split}.u8"
            positions = []
            with open(path, "wb") as fh:
                for label, record, (pixels, reason) in zip(part.index, todo, results):
                    if record is not None and pixels is None:
                        skipped.append({"image_path": str(record["image_path"]), "split": split, "reason": reason})
                    else:
                        fh.write(blank if pixels is None else pixels.tobytes())
                        positions.append(int(label))
                    if record is not None:
                        bar.update(1)
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
