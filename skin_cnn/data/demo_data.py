"""A small synthetic, clearly labelled demo set: drawn skin with disease-like lesion patterns.

The package's end-to-end demo and many tests need images that look enough like clinical photos
to exercise every stage (hue crop, cleansing, training, evaluation) and that a small CNN can tell
apart, yet may be shipped and regenerated anywhere. These are drawn procedurally: a patch of skin
in one of six Fitzpatrick-like tones, a lesion pattern per disease, and, on some images, a blue
clinical backdrop or clutter at the edges (a clothing-like border, a coloured strip, a ruler) for
the hue crop to remove.

They are **not** medical images. Every file set carries the word *synthetic*: the folder's
``README.txt``, the manifest's ``source`` (``synthetic-demo``) and ``synthetic`` (``true``)
columns, and patient ids starting with ``demo-``. Results on them say nothing about real skin.

Lesion patterns (caricatures of the textbook picture, chosen to be learnable, not realistic):

* acne: many small red papules, some pustules with a white-yellow centre;
* rosacea: diffuse central redness with fine red telangiectasia lines;
* psoriasis: a few sharply bordered red plaques covered in silvery-white scale;
* eczema: ill-defined pink patches with fine texture and short dark excoriation scratches;
* ctcl: one to three large irregular patches in varied salmon to violet-brown colours.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from skin_cnn.core.progress import progress_bar

from skin_cnn.core import io as atomic
from skin_cnn.core.tasks import DISEASES

SOURCE = "synthetic-demo"
README = """SYNTHETIC DEMO DATA - NOT MEDICAL IMAGES

Every image in this folder was drawn by a program (skin_cnn.data.demo_data): a patch of skin-coloured
texture with a caricature of a lesion pattern for acne, rosacea, psoriasis, eczema or cutaneous
T-cell lymphoma. No image shows a real person. Patient ids (demo-p...) are invented.

The set exists to run and test the skin-cnn pipeline end to end. Accuracy measured on it says
nothing about any real diagnostic task. Regenerate it with:

    python -c "from skin_cnn.data.demo_data import generate_demo_dataset; generate_demo_dataset('{folder}')"

Settings used: {settings}
"""

# Approximate skin colours for Fitzpatrick types I..VI (sRGB).
SKIN_TONES = {
    1: (246, 218, 196),
    2: (232, 190, 160),
    3: (206, 156, 118),
    4: (170, 118, 80),
    5: (122, 80, 52),
    6: (82, 54, 38),
}


def _blend(canvas, mask, colour, strength=1.0):
    """Paint ``colour`` over ``canvas`` (float H×W×3) where ``mask`` (0..1, H×W) is high."""
    alpha = np.clip(mask * strength, 0.0, 1.0)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * np.asarray(colour, dtype=np.float32)


def _mask(size, draw_fn, blur=0.0):
    """Draw onto a blank 8-bit mask with ``draw_fn(ImageDraw)``; return it as float 0..1."""
    image = Image.new("L", size, 0)
    draw_fn(ImageDraw.Draw(image))
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(image, dtype=np.float32) / 255.0


def _smooth_noise(rng, height, width, scale):
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.standard_normal((max(2, height // scale), max(2, width // scale))).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(image) / 1.5


def _tone(skin, darker):
    """A lesion colour adapted to the skin: redness shows less and browner on dark skin."""
    skin = np.asarray(skin, dtype=np.float32)
    return np.clip(skin * (1 - darker) + np.array([150, 20, 30], np.float32) * darker, 0, 255)


def _random_polygon(rng, cx, cy, radius, points=12, jitter=0.35):
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radii = radius * (1 + rng.uniform(-jitter, jitter, points))
    return [(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for a, r in zip(angles, radii)]


# ---------------------------------------------------------------------------------------------
# lesion painters: each takes (canvas, skin mask, rng, skin colour, darkness 0..1)


def _acne(canvas, skin, rng, tone, dark):
    h, w = skin.shape
    red = np.array([200, 45, 50]) * (1 - 0.45 * dark) + np.array([90, 30, 30]) * 0.45 * dark
    spots = rng.integers(18, 45)
    ys, xs = np.nonzero(skin > 0.9)
    pick = rng.integers(0, len(ys), spots)
    papules = _mask((w, h), lambda d: [
        d.ellipse((x - r, y - r, x + r, y + r), fill=255)
        for x, y, r in zip(xs[pick], ys[pick], rng.uniform(1.6, 4.5, spots))
    ], blur=1.2)
    _blend(canvas, papules * skin, red, 0.9)
    pustules = pick[: max(1, spots // 4)]
    heads = _mask((w, h), lambda d: [
        d.ellipse((xs[i] - 1.6, ys[i] - 1.6, xs[i] + 1.6, ys[i] + 1.6), fill=255) for i in pustules
    ], blur=0.4)
    _blend(canvas, heads * skin, (250, 240, 195), 1.0)


def _rosacea(canvas, skin, rng, tone, dark):
    h, w = skin.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    sx, sy = w * rng.uniform(0.18, 0.28), h * rng.uniform(0.18, 0.3)
    flush = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
    _blend(canvas, flush * skin, _tone((215, 70, 75), 0.3 * dark), 0.65)

    def vessels(d):
        for _ in range(rng.integers(10, 22)):
            x, y = cx + rng.normal(0, sx * 0.8), cy + rng.normal(0, sy * 0.8)
            angle = rng.uniform(0, 2 * np.pi)
            points = [(x, y)]
            for _ in range(rng.integers(5, 12)):
                angle += rng.normal(0, 0.6)
                x, y = x + 3 * np.cos(angle), y + 3 * np.sin(angle)
                points.append((x, y))
            d.line(points, fill=255, width=1)

    _blend(canvas, _mask((w, h), vessels, blur=0.4) * skin, (185, 25, 45), 0.8)


def _psoriasis(canvas, skin, rng, tone, dark):
    h, w = skin.shape
    plaques = _mask((w, h), lambda d: [
        d.polygon(_random_polygon(rng, rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.75) * h,
                                  rng.uniform(0.07, 0.16) * min(w, h) * 2, points=10, jitter=0.25), fill=255)
        for _ in range(rng.integers(2, 5))
    ], blur=0.8)
    plaques *= skin
    _blend(canvas, plaques, _tone((205, 60, 65), 0.5 * dark), 0.9)
    flakes = (rng.random((h, w)) < 0.45).astype(np.uint8) * 255
    scale = np.asarray(Image.fromarray(flakes).filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255
    scale *= np.clip(0.8 + 0.5 * _smooth_noise(rng, h, w, 10), 0, 1)
    _blend(canvas, plaques * scale, (236, 234, 230), 1.4)


def _eczema(canvas, skin, rng, tone, dark):
    h, w = skin.shape
    patches = _mask((w, h), lambda d: [
        d.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=255)
        for x, y, r in zip(rng.uniform(0.15, 0.85, 4) * w, rng.uniform(0.2, 0.8, 4) * h,
                           rng.uniform(0.1, 0.2, 4) * min(w, h))
    ], blur=9.0)
    patches *= np.clip(0.6 + 0.6 * _smooth_noise(rng, h, w, 12), 0, 1) * skin
    _blend(canvas, patches, _tone((225, 120, 125), 0.4 * dark), 0.7)
    texture = rng.standard_normal((h, w)).astype(np.float32) * 14 * patches
    canvas += texture[..., None]

    def scratches(d):
        ys, xs = np.nonzero(patches > 0.3)
        if len(ys) == 0:
            return
        for i in rng.integers(0, len(ys), rng.integers(6, 16)):
            angle, length = rng.uniform(0, np.pi), rng.uniform(5, 14)
            d.line((xs[i], ys[i], xs[i] + length * np.cos(angle), ys[i] + length * np.sin(angle)), fill=255, width=1)

    _blend(canvas, _mask((w, h), scratches) * skin, (120, 25, 30), 0.85)


def _ctcl(canvas, skin, rng, tone, dark):
    h, w = skin.shape
    for _ in range(rng.integers(1, 4)):
        colour = np.array([(225, 130, 110), (180, 90, 110), (160, 95, 70), (200, 110, 90)][rng.integers(0, 4)])
        patch = _mask((w, h), lambda d: d.polygon(
            _random_polygon(rng, rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h,
                            rng.uniform(0.22, 0.38) * min(w, h), points=16, jitter=0.45), fill=255), blur=2.5)
        patch *= np.clip(0.75 + 0.4 * _smooth_noise(rng, h, w, 16), 0, 1) * skin
        _blend(canvas, patch, colour * (1 - 0.35 * dark), 0.75)
    wrinkles = _smooth_noise(rng, h, w, 3) * 8
    canvas += (wrinkles * skin)[..., None]


PAINTERS = {"acne": _acne, "rosacea": _rosacea, "psoriasis": _psoriasis, "eczema": _eczema, "ctcl": _ctcl}


# ---------------------------------------------------------------------------------------------
# scene


def _clutter(canvas, rng, h, w):
    """Cover one or two edges with things a hue crop should remove."""
    for _ in range(rng.integers(1, 3)):
        side = rng.integers(0, 4)
        depth = int(rng.uniform(0.08, 0.2) * (h if side in (0, 1) else w))
        region = [slice(0, depth), slice(h - depth, h)][side] if side < 2 else None
        kind = rng.integers(0, 3)
        if side < 2:
            area = (region, slice(0, w))
            shape = (depth, w)
        else:
            area = (slice(0, h), [slice(0, depth), slice(w - depth, w)][side - 2])
            shape = (h, depth)
        if kind == 0:  # clothing: a saturated colour with woven stripes
            colour = np.array(
                [(40, 60, 160), (30, 120, 60), (150, 30, 120), (60, 60, 60)][rng.integers(0, 4)], np.float32
            )
            stripes = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) // 3 % 2).astype(np.float32)
            canvas[area] = colour * (0.8 + 0.25 * stripes[..., None])
        elif kind == 1:  # a plain coloured strip (a sheet, a towel)
            canvas[area] = np.array([(90, 170, 210), (240, 240, 235), (80, 150, 90)][rng.integers(0, 3)], np.float32)
        else:  # a ruler with tick marks
            ruler = np.ones(shape + (3,), np.float32) * np.array([240, 225, 120], np.float32)
            along = 1 if side < 2 else 0
            ticks = np.arange(shape[along]) % 8 == 0
            if along == 1:
                ruler[: shape[0] // 2, ticks] = 20
            else:
                ruler[ticks, : shape[1] // 2] = 20
            canvas[area] = ruler


def draw_image(diagnosis, rng, image_size=(192, 256), skin_tone=3, backdrop=False, clutter=False):
    """Draw one synthetic image of ``diagnosis`` as a uint8 (H, W, 3) array.

    Parameters
    ----------
    diagnosis : str
        One of ``DISEASES``.
    rng : numpy.random.Generator
    image_size : (int, int)
        Height and width.
    skin_tone : int
        Fitzpatrick-like type 1..6.
    backdrop : bool
        Show the skin as a rounded region on a blue clinical backdrop.
    clutter : bool
        Add clothing, a strip or a ruler at one or two edges.
    """
    if diagnosis not in PAINTERS:
        raise ValueError(f"unknown diagnosis {diagnosis!r}; expected one of {', '.join(DISEASES)}")
    h, w = image_size
    base = np.asarray(SKIN_TONES[int(skin_tone)], np.float32) * rng.uniform(0.93, 1.05, 3)
    shading = 1 + 0.08 * _smooth_noise(rng, h, w, 48) + 0.06 * np.linspace(-1, 1, w)[None, :] * rng.choice([-1, 1])
    canvas = base[None, None, :] * shading[..., None]
    canvas += rng.normal(0, 3, (h, w, 1)).astype(np.float32)  # fine skin grain
    if backdrop:
        inset = rng.uniform(0.06, 0.16, 4) * np.array([w, h, w, h])
        skin = _mask((w, h), lambda d: d.rounded_rectangle(
            (inset[0], inset[1], w - inset[2], h - inset[3]), radius=min(w, h) * 0.3, fill=255), blur=1.5)
    else:
        skin = np.ones((h, w), np.float32)
    dark = (int(skin_tone) - 1) / 5.0
    PAINTERS[diagnosis](canvas, skin, rng, base, dark)
    if backdrop:
        blue = np.array([40, 95, 170], np.float32) * (1 + 0.05 * _smooth_noise(rng, h, w, 32))[..., None]
        canvas = canvas * skin[..., None] + blue * (1 - skin[..., None])
    if clutter:
        _clutter(canvas, rng, h, w)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def generate_demo_dataset(
    out_dir,
    n_patients_per_disease=12,
    images_per_patient=(2, 4),
    image_size=(192, 256),
    seed=0,
    diseases=DISEASES,
    progress=False,
):
    """Write the synthetic demo set and its manifest into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to create (existing demo files are overwritten).
    n_patients_per_disease : int
        Invented patients per disease, each with one skin tone and one set of habits (backdrop,
        clutter) across their images.
    images_per_patient : (int, int)
        Inclusive range of images per patient.
    image_size : (int, int)
        Height and width in pixels.
    seed : int
        Same seed, same files.
    diseases : sequence of str
        Which diseases to draw.

    Returns
    -------
    Path
        ``out_dir/manifest.csv`` with ``image_path`` (relative), ``patient_id``, ``diagnosis``,
        ``source`` (``synthetic-demo``), ``fitzpatrick_type`` and ``synthetic`` (``true``).
    """
    out_dir = Path(out_dir)
    lo, hi = _check_demo_settings(n_patients_per_disease, images_per_patient, diseases)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows, number = [], 0
    total = len(diseases) * int(n_patients_per_disease)
    bar = progress_bar(total=total, desc="drawing demo patients", unit="patient", disable=not progress, leave=False)
    for diagnosis in diseases:
        for p in range(int(n_patients_per_disease)):
            number += 1
            rng = np.random.default_rng([int(seed), DISEASES.index(diagnosis), p])
            rows += _draw_patient(out_dir, f"demo-p{number:03d}", diagnosis, rng, (lo, hi), image_size)
            bar.update(1)
    bar.close()
    settings = (
        f"n_patients_per_disease={n_patients_per_disease}, images_per_patient=({lo}, {hi}), "
        f"image_size={tuple(image_size)}, seed={seed}, diseases={','.join(diseases)}"
    )
    atomic.write_text(out_dir / "README.txt", README.format(folder=os.fspath(out_dir), settings=settings))
    manifest = out_dir / "manifest.csv"
    with atomic.atomic_path(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _check_demo_settings(n_patients_per_disease, images_per_patient, diseases):
    """The inclusive range of images per patient as ``(low, high)``, once the settings are checked."""
    lo, hi = (images_per_patient, images_per_patient) if np.isscalar(images_per_patient) else images_per_patient
    if not 1 <= int(lo) <= int(hi):
        raise ValueError(f"images_per_patient must be a range 1 <= low <= high, got {images_per_patient!r}")
    if int(n_patients_per_disease) < 1:
        raise ValueError(f"n_patients_per_disease must be at least 1, got {n_patients_per_disease}")
    unknown = [d for d in diseases if d not in PAINTERS]
    if unknown:
        raise ValueError(f"unknown diseases {unknown}; expected some of {', '.join(DISEASES)}")
    return lo, hi


def _draw_patient(out_dir, patient, diagnosis, rng, images_range, image_size):
    """Draw and save one invented patient's images; their manifest rows.

    The patient keeps one skin tone and one chance of a backdrop and of clutter across their
    images, all drawn from ``rng`` (the patient's own generator), so a patient's photos look alike
    as real ones do.
    """
    lo, hi = images_range
    tone = int(rng.integers(1, 7))
    backdrop_rate, clutter_rate = rng.uniform(0, 0.7), rng.uniform(0, 0.6)
    rows = []
    for k in range(int(rng.integers(int(lo), int(hi) + 1))):
        array = draw_image(
            diagnosis,
            rng,
            image_size=image_size,
            skin_tone=tone,
            backdrop=bool(rng.random() < backdrop_rate),
            clutter=bool(rng.random() < clutter_rate),
        )
        relative = f"images/{patient}_{diagnosis}_{k + 1}.jpg"
        with atomic.atomic_path(out_dir / relative) as tmp:
            Image.fromarray(array).save(tmp, "JPEG", quality=90)
        rows.append(
            {
                "image_path": relative,
                "patient_id": patient,
                "diagnosis": diagnosis,
                "source": SOURCE,
                "fitzpatrick_type": tone,
                "synthetic": "true",
            }
        )
    return rows
