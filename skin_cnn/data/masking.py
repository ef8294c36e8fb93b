"""Border and box masks: paint fixed parts of a photo so a model cannot read what is there.

A source can stamp its logo at the same place of every photo (DermNet NZ's watermark,
:data:`~skin_cnn.core.specs.DERMNET_WATERMARK_BOX`) and frame its photos its own way; a model
may learn the source from them instead of the skin. A :class:`~skin_cnn.core.specs.Preprocessing`
with ``mask_border`` or ``mask_boxes`` paints those rectangles of **every** photo (the source is
not known when a new photo is predicted) with :data:`~skin_cnn.core.specs.MASK_FILL`, the
ImageNet mean colour, which VGG-16's normalisation turns into zero input.

The same pixels are masked in training, the feature cache, ``predict``, ``serve`` and an exported
SavedModel: :func:`mask_photo` (NumPy) and :func:`mask_photo_tf` (TensorFlow ops, TFLite
built-ins only) decide each pixel with the same integer arithmetic
(:func:`~skin_cnn.core.specs.mask_rectangles`), and the fill is a constant.
"""
from __future__ import annotations

import numpy as np

from skin_cnn.core.specs import MASK_FILL, MASK_RESOLUTION, Preprocessing, mask_rectangles


def _inside(index, size, low, high):
    """Whether the centre of pixel ``index`` (of ``size``) lies in ``[low, high)`` resolution units.

    ``(index + 0.5) / size * R`` compared with ``low`` and ``high`` after multiplying through by
    ``2 * size``: whole numbers only, so NumPy and TensorFlow agree on every pixel.
    """
    centre = (2 * index + 1) * MASK_RESOLUTION
    return (2 * low * size <= centre) & (centre < 2 * high * size)


def mask_photo(image: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """The uint8 RGB photo with its masked pixels set to :data:`MASK_FILL` (a copy; the photo
    itself when ``preprocessing`` masks nothing)."""
    if not preprocessing.masked:
        return image
    out = np.array(image, dtype=np.uint8, copy=True)
    rows = np.arange(out.shape[0], dtype=np.int64)
    cols = np.arange(out.shape[1], dtype=np.int64)
    for left, top, right, bottom in mask_rectangles(preprocessing.mask_border, preprocessing.mask_boxes):
        inside = np.ix_(_inside(rows, len(rows), top, bottom), _inside(cols, len(cols), left, right))
        out[inside] = MASK_FILL
    return out


def mask_photo_tf(photo, preprocessing: Preprocessing):
    """:func:`mask_photo` in TensorFlow ops on a uint8 ``(H, W, 3)`` tensor of any size."""
    import tensorflow as tf

    if not preprocessing.masked:
        return photo
    shape = tf.shape(photo, out_type=tf.int64)
    height, width = shape[0], shape[1]
    rows = tf.range(height, dtype=tf.int64)[:, None]
    cols = tf.range(width, dtype=tf.int64)[None, :]
    masked = tf.zeros(tf.stack([height, width]), tf.bool)
    for left, top, right, bottom in mask_rectangles(preprocessing.mask_border, preprocessing.mask_boxes):
        masked = masked | (_inside(rows, height, top, bottom) & _inside(cols, width, left, right))
    fill = tf.constant(MASK_FILL, tf.uint8)[None, None, :]
    return tf.where(masked[:, :, None], fill, photo)
