"""Grad-CAM: which part of the photo pushed a task's prediction, as a heat map.

Grad-CAM (Selvaraju et al., ICCV 2017) weighs each channel of a convolutional layer's output by
the mean gradient of the class score with respect to that channel, sums the weighted channels,
keeps the positive part and scales it to [0, 1]. Here the class score is the *logit* of the
task's sigmoid head (the input of the sigmoid), not the probability: the gradient of a
saturated probability (0.9999) vanishes and would give an empty map, while the logit's gradient
points the same way (``dp/dz = p(1 - p) > 0``) without vanishing.

The default layer is the last ``Conv2D`` of the model (``block5_conv3`` for the VGG-16 trunk), the
coarsest map that still has a spatial layout (``H/16 × W/16`` cells), upsampled bilinearly to the
input's resolution. Each task has its own head, so each task has its own map.

By default the map explains the *predicted* class of each task: the positive class when its
probability is at least the task's threshold (0.5 unless one was fitted and stored; score
``+logit``), the negative class otherwise (score ``-logit``), so the map always shows the
evidence for what the page or table reports.

:func:`gradcam_figure` draws a map for people: on the whole photo at its own resolution (the map
mapped back through the resize into the crop box it was computed on), with the question, the
answer, its probability and threshold written under it and a colour bar saying what the colours
mean. A heat map shown on the 250-pixel model input alone loses the photo's detail and its
context, and one without a legend cannot be read.

Models with a spatial transformer (VGG-16PS/NS) warp the image before the trunk; their heat map
lives in the warped frame and is drawn over the unwarped input as if the two frames were the same.
It is still a picture of what the trunk attended to, but its position on the photo is only
approximate where the transformer zoomed or shifted a lot.

Models that average a photo with its mirror image (:mod:`skin_cnn.models.views`) produce two
maps per photo in the conv layer; the mirror's map is flipped back and the two weighted sums are
added before the ReLU, which is Grad-CAM of the averaged score.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image

from skin_cnn.data.preprocessing import heatmap_on_photo

TARGETS = ("predicted", "positive", "negative")
#: Narrowest caption of :func:`gradcam_figure`, in pixels; narrower photos get white beside them.
MIN_CAPTION_WIDTH = 360

# keras.Model -> {(layer_name, tasks): gradient model}; built once per model and layer.
_GRAD_MODELS = weakref.WeakKeyDictionary()


def last_conv_layer(model):
    """Name of the last ``Conv2D`` layer of ``model`` (``block5_conv3`` for VGG-16).

    Only the model's own layers are searched: a spatial transformer's localisation network lives
    inside its layer and is never picked, and it runs before the trunk anyway.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer.name
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    hint = (
        f" (nested models {', '.join(nested)} are not searched; pass layer_name)" if nested else ""
    )
    raise ValueError(f"model {model.name!r} has no Conv2D layer for Grad-CAM{hint}")


def _output_tensors(model):
    """The model's outputs as a dict ``{task: KerasTensor}``."""
    outputs = model.output
    if isinstance(outputs, dict):
        return dict(outputs)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return dict(zip(model.output_names, outputs))


def _score_tensor(tensor):
    """The tensor to differentiate for one task head, and how to turn it into the logit.

    Returns ``(tensor, kind, layer)`` where ``kind`` is ``"dense"`` (``tensor`` is the input of
    a sigmoid ``Dense`` layer: logit = ``tensor @ kernel + bias``), ``"logit"`` (``tensor`` is
    the input of a sigmoid ``Activation``) or ``"probability"`` (the head is something else; the
    logit is computed from the probability, which saturates near 0 and 1).
    """
    layer = tensor._keras_history.operation
    activation = getattr(layer, "activation", None)
    is_sigmoid = (
        activation is keras.activations.sigmoid or getattr(activation, "__name__", "") == "sigmoid"
    )
    if isinstance(layer, keras.layers.Dense) and is_sigmoid:
        return layer.input, "dense", layer
    if isinstance(layer, keras.layers.Activation) and is_sigmoid:
        return layer.input, "logit", layer
    return tensor, "probability", layer


def _grad_model(model, layer_name, tasks):
    """A model mapping the input to the conv layer's output and each task's score tensor."""
    key = (layer_name, tuple(tasks))
    cache = _GRAD_MODELS.setdefault(model, {})
    if key not in cache:
        try:
            conv = model.get_layer(layer_name)
        except ValueError:
            raise ValueError(f"model {model.name!r} has no layer named {layer_name!r}") from None
        outputs = _output_tensors(model)
        scores, kinds = {}, {}
        for task in tasks:
            tensor, kind, layer = _score_tensor(outputs[task])
            scores[task], kinds[task] = tensor, (kind, layer)
        sub = keras.Model(model.inputs, [conv.output, scores], name=f"{model.name}_gradcam")
        cache[key] = (sub, kinds)
    return cache[key]


def _logit_cut(threshold):
    """The logit at which the probability reaches ``threshold`` (±inf at 0 and 1)."""
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]; got {threshold!r}")
    if t <= 0.0:
        return -np.inf
    if t >= 1.0:
        return np.inf
    return float(np.log(t) - np.log1p(-t))


def gradcam_batch(model, images, tasks=None, layer_name=None, target="predicted", thresholds=None):
    """Grad-CAM maps and probabilities for a batch of model-ready images and several tasks.

    One forward pass serves every task (the gradients of each task's score are taken from the
    same recorded pass), so explaining all three tasks costs about one prediction plus three
    cheap backward passes through the heads and the last conv block.

    Parameters
    ----------
    model : keras.Model
        A skin-cnn model (dict of sigmoid outputs) or any model with sigmoid outputs.
    images : array of shape (batch, H, W, 3) or (H, W, 3)
        What the model takes: float RGB in [0, 255] at the model's input size.
    tasks : sequence of str, optional
        Output names to explain; default every output.
    layer_name : str, optional
        Convolutional layer whose activations are weighed; default :func:`last_conv_layer`.
    target : {"predicted", "positive", "negative"}
        Which class each map explains (see the module notes).
    thresholds : dict of str -> float, optional
        With ``target="predicted"``: the threshold deciding each task's predicted class
        (default 0.5), so the map explains the class that is reported.

    Returns
    -------
    heatmaps : dict of str -> numpy.ndarray of shape (batch, H, W)
        float32 in [0, 1], 1 at each map's maximum; all zeros when no location speaks for the
        target class.
    probabilities : dict of str -> numpy.ndarray of shape (batch,)
        The positive-class probability of each task, from the same forward pass.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    images = _model_ready(model, images)
    all_tasks = tuple(_output_tensors(model))
    tasks = all_tasks if tasks is None else tuple(tasks)
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        raise ValueError(f"model has no output {', '.join(unknown)}; it has {', '.join(all_tasks)}")
    layer_name = layer_name or last_conv_layer(model)
    sub, kinds = _grad_model(model, layer_name, tasks)
    cuts = {task: _logit_cut((thresholds or {}).get(task, 0.5)) for task in tasks}

    x = tf.convert_to_tensor(images)
    with tf.GradientTape(persistent=True) as tape:
        conv, scores = sub(x, training=False)
        logits = {task: _task_logit(scores[task], *kinds[task]) for task in tasks}
        targets = {task: logits[task] * tf.stop_gradient(_target_sign(logits[task], target, cuts[task]))
                   for task in tasks}

    heatmaps, probabilities = {}, {}
    activations = tf.cast(conv, tf.float32)  # bfloat16 or float16 when the trunk computes in it
    for task in tasks:
        grads = tf.cast(tape.gradient(targets[task], conv), tf.float32)
        heatmaps[task] = _class_activation_map(grads, activations, images.shape[:3])
        probabilities[task] = tf.math.sigmoid(logits[task]).numpy().astype(np.float32)
    del tape
    return heatmaps, probabilities


def _model_ready(model, images):
    """``images`` as a float32 batch, once its shape is known to be what ``model`` takes."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (batch, H, W, 3); got {images.shape}")
    expected = tuple(model.inputs[0].shape[1:3])
    if None not in expected and tuple(images.shape[1:3]) != expected:
        raise ValueError(
            f"images are {images.shape[1]}×{images.shape[2]} but the model takes "
            f"{expected[0]}×{expected[1]}; preprocess them first "
            "(skin_cnn.inference.predictor.Predictor.preprocess)"
        )
    return images


def _task_logit(score, kind, layer):
    """A task's logit, shape (batch,), from the tensor :func:`_grad_model` records for it.

    ``"dense"``: the input of the sigmoid Dense layer (its kernel is applied here);
    ``"probability"``: a probability, turned back into its logit; otherwise already the logit.
    """
    if kind == "dense":
        score = tf.matmul(score, layer.kernel) + (layer.bias if layer.use_bias else 0.0)
    elif kind == "probability":
        p = tf.clip_by_value(score, 1e-7, 1.0 - 1e-7)
        score = tf.math.log(p) - tf.math.log1p(-p)
    return tf.reshape(score, (-1,))


def _target_sign(z, target, cut):
    """+1 where the map explains the positive class, -1 where the negative, per image."""
    if target == "predicted":  # p >= threshold exactly when the logit >= its logit
        return tf.where(z >= tf.constant(cut, z.dtype), 1.0, -1.0)
    return tf.fill(tf.shape(z), 1.0 if target == "positive" else -1.0)


def _class_activation_map(grads, activations, batch_shape):
    """Grad-CAM from a task's gradients and the layer's activations: (batch, H, W) in [0, 1].

    Channels are weighed by their mean gradient, summed, clipped at 0 (only what speaks for the
    target) and scaled to 1 at the peak, then resized to the images' ``(batch, H, W)``. With
    mirror views inside the model the mirror's map is flipped back and added.
    """
    n = batch_shape[0]
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.reduce_sum(weights * activations, axis=-1)
    if cam.shape[0] == 2 * n:  # mirror views inside the model: map the mirror back
        cam = cam[:n] + tf.reverse(cam[n:], axis=[2])
    cam = tf.nn.relu(cam)[..., None]
    peak = tf.reduce_max(cam, axis=(1, 2, 3), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    cam = tf.image.resize(cam, batch_shape[1:3], method="bilinear")
    return np.clip(cam.numpy()[..., 0], 0.0, 1.0).astype(np.float32)


def gradcam(model, image, task, layer_name=None, target="predicted"):
    """Grad-CAM heat map of one task for one model-ready image.

    Parameters
    ----------
    model : keras.Model
    image : array of shape (H, W, 3)
        Float RGB in [0, 255] at the model's input size (the output of
        :meth:`skin_cnn.inference.predictor.Predictor.preprocess`).
    task : str
        The task (output name) to explain.
    layer_name : str, optional
        Default: the last ``Conv2D`` layer (``block5_conv3``).
    target : {"predicted", "positive", "negative"}
        Which class to explain; default the one the model predicts.

    Returns
    -------
    numpy.ndarray
        float32 (H, W) in [0, 1] at the image's resolution.
    """
    heatmaps, _ = gradcam_batch(model, image, (task,), layer_name=layer_name, target=target)
    return heatmaps[task][0]


def overlay(image, heatmap, alpha=0.45, colormap="jet"):
    """Blend a heat map over an image with a colour map, for people to look at.

    Parameters
    ----------
    image : array of shape (H, W, 3)
        RGB, uint8 or float in [0, 255].
    heatmap : array of shape (h, w)
        Values in [0, 1]; resized bilinearly to the image when the sizes differ.
    alpha : float
        Weight of the coloured heat map (0: the image alone, 1: the heat map alone).
    colormap : str
        A matplotlib colour map name.

    Returns
    -------
    numpy.ndarray
        uint8 RGB of the image's shape: ``round((1 - alpha) * image + alpha * 255 * cmap(heat))``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3); got {image.shape}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected a heat map of shape (h, w); got {heat.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha!r}")
    height, width = image.shape[:2]
    if heat.shape != (height, width):
        heat = np.asarray(Image.fromarray(heat).resize((width, height), Image.BILINEAR))
    colours = colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * np.clip(image.astype(np.float32), 0, 255) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# the heat map on the photo, for people


def _font(size, bold=False):
    from matplotlib import font_manager

    path = font_manager.findfont(
        font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    )
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _wrap(draw, text, font, width):
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


@dataclass(frozen=True)
class Caption:
    """The text under a Grad-CAM figure.

    Attributes
    ----------
    title : str
        First line, in bold (the question and its answer).
    lines : sequence of str
        Further lines (probability, threshold, …); wrapped to the picture's width.
    bar_label : str
        Written just above the colour bar: what the colours measure.
    """

    title: str = ""
    lines: tuple = ()
    bar_label: str = "Grad-CAM"


def gradcam_figure(photo, heatmap, box, *, resize="stretch", caption=Caption(), alpha=0.45, colormap="jet",
                   max_side=None):
    """The Grad-CAM map drawn on the whole photo at its own resolution, with text and a colour bar.

    Parameters
    ----------
    photo : array of shape (H, W, 3)
        The decoded photo, uint8 RGB (what :meth:`skin_cnn.inference.predictor.Predictor.read` returns).
    heatmap : array of shape (h, w)
        The map at the model input's resolution (:func:`gradcam_batch`).
    box : tuple of 4 int
        The crop box the model input was cut from (``Predictor.preprocess``).
    resize : {"stretch", "pad"}
        How the box was resized to the model input (the run's ``preprocessing.resize``).
    caption : Caption
        The title, further lines and colour bar label under the picture.
    alpha : float
        Weight of the colours inside the crop box.
    colormap : str
        A matplotlib colour map name.
    max_side : int, optional
        Shrink photos whose longer side exceeds this first (the web page's previews); None keeps
        the photo's resolution.

    Returns
    -------
    numpy.ndarray
        uint8 RGB: the photo at the top left, pixel for pixel, with the map blended inside the
        crop box and the box outlined when it is not the whole photo; the caption below it. As
        wide as the photo, or :data:`MIN_CAPTION_WIDTH` for narrower photos (white beside them).
    """
    from PIL import ImageDraw

    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"expected an RGB photo of shape (H, W, 3); got {photo.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha!r}")
    photo, box = _shrunk(photo, tuple(int(v) for v in box), max_side)
    height, width = photo.shape[:2]
    heat = heatmap_on_photo(heatmap, photo.shape, box, resize)
    inside = ~np.isnan(heat)
    colours = colormaps[colormap](np.nan_to_num(np.clip(heat, 0.0, 1.0)))[..., :3] * 255.0
    picture = photo.astype(np.float32)
    picture[inside] = (1.0 - alpha) * picture[inside] + alpha * colours[inside]
    canvas_photo = Image.fromarray(np.clip(np.rint(picture), 0, 255).astype(np.uint8))
    if box != (0, 0, width, height):
        line = max(1, width // 400)
        ImageDraw.Draw(canvas_photo).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=(255, 255, 255),
                                               width=line)
    return _with_caption(canvas_photo, caption, alpha, colormap)


def _shrunk(photo, box, max_side):
    """``photo`` and its crop ``box`` scaled down so the longer side is ``max_side`` (None: as is).

    The box keeps at least one pixel on each side.
    """
    height, width = photo.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return photo, box
    scale = max_side / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    photo = np.asarray(Image.fromarray(photo.astype(np.uint8)).resize((new_w, new_h), Image.LANCZOS))
    box = (int(box[0] * new_w / width), int(box[1] * new_h / height),
           max(int(box[0] * new_w / width) + 1, round(box[2] * new_w / width)),
           max(int(box[1] * new_h / height) + 1, round(box[3] * new_h / height)))
    return photo, box


def _with_caption(canvas_photo, caption, alpha, colormap):
    """``canvas_photo`` (PIL) over a white caption: the wrapped text, then the colour bar from 0 to 1.

    The caption is at least :data:`MIN_CAPTION_WIDTH` wide; its font grows with the width.
    """
    from PIL import ImageDraw

    width, height = canvas_photo.size
    canvas_w = max(width, MIN_CAPTION_WIDTH)  # a caption narrower than this cannot be read
    size = max(11, round(canvas_w / 55))
    regular, bold = _font(size), _font(size, bold=True)
    margin = max(4, size // 2)
    text_width = canvas_w - 2 * margin
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [(t, bold) for t in _wrap(measure, caption.title, bold, text_width)]
    for extra in (*caption.lines, caption.bar_label):
        wrapped += [(t, regular) for t in _wrap(measure, extra, regular, text_width)]
    line_h = round(size * 1.3)
    bar_h = max(8, size)
    caption_h = margin + line_h * len(wrapped) + margin // 2 + bar_h + line_h + margin
    canvas = Image.new("RGB", (canvas_w, height + caption_h), (255, 255, 255))
    canvas.paste(canvas_photo, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = height + margin
    for text, font in wrapped:
        draw.text((margin, y), text, fill=(20, 20, 20), font=font)
        y += line_h
    y += margin // 2
    bar_w = max(20, min(text_width, round(canvas_w * 0.6)))
    ramp = colormaps[colormap](np.linspace(0.0, 1.0, bar_w))[:, :3] * 255.0
    ramp = (1.0 - alpha) * 255.0 + alpha * ramp  # as blended over a white photo
    bar = np.repeat(np.clip(np.rint(ramp), 0, 255).astype(np.uint8)[None], bar_h, axis=0)
    canvas.paste(Image.fromarray(bar), (margin, y))
    draw.rectangle((margin, y, margin + bar_w - 1, y + bar_h - 1), outline=(90, 90, 90))
    y += bar_h + 2
    draw.text((margin, y), "0 (none)", fill=(60, 60, 60), font=regular)
    high = "1 (strongest)"
    draw.text((margin + bar_w - draw.textlength(high, font=regular), y), high, fill=(60, 60, 60),
              font=regular)
    return np.asarray(canvas)
