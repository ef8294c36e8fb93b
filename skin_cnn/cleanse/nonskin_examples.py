"""Generate photographs of the non-skin things that end up in clinical image folders.

Hospital photo archives hold, besides skin, pictures of what was in front of the camera before and
after the patient: the yellow patient-identification slip photographed first so the series can be
filed, patch-test reading sheets, request forms, letters, a coloured sheet used as a background,
and the odd unrelated photo. The skin/non-skin filter (:mod:`skin_cnn.cleanse.classifier`) needs a
few hundred such images to learn from, and real ones cannot be shared (they carry patient details),
so this module draws them:

``document``
    A page with a heading and lines of text.
``form``
    A page with a coloured header bar, a ruled table with labels, and tick boxes.
``id_slip``
    A yellow identification label with name, date of birth, hospital number and a barcode.
``sheet``
    A plain coloured or beige sheet of paper with a few pen marks or a ruler scale.
``patch_test``
    A white or beige patch-test sheet: a grid of numbered circles or squares (the allergen
    chambers) with allergen names and a heading.
``photo``
    A random crop of a real everyday photo shipped inside scikit-image's wheel, rotated, flipped
    and colour-jittered. Only sample photos whose scikit-image documentation states CC0, public
    domain or no known copyright restrictions are used (:data:`PHOTO_SOURCES`), so the examples,
    and a filter trained on them, carry no licence terms of their own.

Each drawn page is then "photographed": placed on a desk-coloured background at a random angle and
scale, lit unevenly, blurred slightly and given sensor noise, so the filter learns what the
objects look like in a camera image rather than as perfect renderings.

Everything is deterministic for a seed: image ``i`` comes from its own random generator seeded with
``(seed, i)``, so the first ten images of ``n=200`` are the ten images of ``n=10``.

Photos of faces (scikit-image's *astronaut*, matplotlib's *grace_hopper*) are deliberately not used:
acne and rosacea photos are mostly faces, and teaching the filter that a face is "non-skin" would
make it throw real patient photos away. Reddish tissue photos (a retina, a stained histology slide)
are left out for the same reason.
"""
from __future__ import annotations

import colorsys
import functools
import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps
from skin_cnn.core.progress import progress_bar

from skin_cnn.core.io import atomic_path, write_csv
from skin_cnn.data.reading import open_rgb

logger = logging.getLogger(__name__)

KINDS = ("document", "form", "id_slip", "sheet", "patch_test", "photo")

#: Name of the index written beside the generated images.
INDEX_FILENAME = "examples.csv"

#: Everyday photos bundled in scikit-image's wheel (no download needed): ``(package, file name)``.
#: Only those whose ``skimage.data`` docstring states CC0, public domain or no known copyright
#: restrictions; sample images without a stated licence (motorcycle, colour wheel, moon, page,
#: matplotlib's sample data) are left out.
PHOTO_SOURCES = (
    ("skimage", "chelsea.png"),  # CC0, Stefan van der Walt
    ("skimage", "coffee.png"),  # CC0, Rachel Michetti
    ("skimage", "rocket.jpg"),  # SpaceX, public domain
    ("skimage", "hubble_deep_field.jpg"),  # NASA, public domain
    ("skimage", "camera.png"),  # CC0, Lav Varshney
    ("skimage", "coins.png"),  # Brooklyn Museum, no known copyright restrictions
    ("skimage", "brick.png"),  # CC0 (CC0Textures)
    ("skimage", "grass.png"),  # CC0
    ("skimage", "gravel.png"),  # CC0 (CC0Textures)
    ("skimage", "text.png"),  # Wikipedia, public domain
    ("skimage", "clock_motion.png"),  # public domain, Stefan van der Walt
    ("skimage", "horse.png"),  # CC0, Andreas Preuss (openclipart)
)

_WORDS = (
    "patient name date birth hospital dermatology clinic ward outpatient referral consultant "
    "review history examination diagnosis treatment plan topical emollient steroid cream ointment "
    "twice daily weeks follow up letter results reading allergen chamber positive negative "
    "nickel cobalt chromate fragrance mix balsam peru thiuram lanolin formaldehyde colophony "
    "paraben neomycin benzocaine the and of with for to in on at left right upper lower arm leg "
    "back chest face scalp hand foot photograph consent signature telephone address department"
).split()
_ALLERGENS = (
    "Nickel sulfate", "Cobalt chloride", "Potassium dichromate", "Fragrance mix I", "Fragrance mix II",
    "Balsam of Peru", "Thiuram mix", "Wool alcohols", "Formaldehyde", "Colophony", "Paraben mix",
    "Neomycin sulfate", "Benzocaine", "Epoxy resin", "Carba mix", "Mercapto mix", "PPD",
    "Methylisothiazolinone", "Budesonide", "Sesquiterpene lactone",
)
_SURNAMES = ("SMITH", "JONES", "MÜLLER", "GARCIA", "NGUYEN", "KOWALSKI", "ROSSI", "DUBOIS", "SINGH",
             "TANAKA", "HANSEN", "OKAFOR", "EVANS", "LARSEN", "COHEN")
_GIVEN = ("Anna", "John", "Maria", "Peter", "Sara", "David", "Eva", "Tom", "Lena", "Omar", "Mia",
          "Jan", "Ruth", "Ali", "Kim")
# Desk, tray, drape and wall colours the sheets lie on.
_BACKGROUNDS = ((120, 120, 125), (95, 70, 50), (150, 110, 75), (200, 200, 198), (60, 60, 65),
                (40, 90, 130), (70, 120, 110), (225, 225, 230), (30, 30, 30), (160, 165, 175))


@dataclass(frozen=True)
class Example:
    """One generated image and what it shows."""

    image: Image.Image
    kind: str
    source: str = ""


# ---------------------------------------------------------------------------------------------
# small drawing helpers


def _font(size):
    """Pillow's bundled scalable font, so text renders the same on every machine."""
    size = max(6, int(size))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def _jitter(rgb, rng, amount):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _words(rng, n):
    return " ".join(rng.choice(_WORDS, size=n))


def _ink(rng):
    return _jitter(((20, 20, 25), (25, 35, 110), (40, 40, 40))[rng.integers(3)], rng, 15)


def _paper(rng):
    base = ((250, 250, 248), (245, 242, 232), (238, 238, 238), (252, 248, 236))[rng.integers(4)]
    return _jitter(base, rng, 6)


def _text_lines(draw, rng, box, size, ink, spacing=1.6):
    """Fill ``box`` with left-aligned lines of words, ragged right, with paragraph breaks."""
    x0, y0, x1, y1 = box
    font = _font(size)
    y = y0
    while y + size <= y1:
        if rng.random() < 0.12:  # paragraph break
            y += size * spacing
            continue
        line = _words(rng, int(rng.integers(3, 12)))
        width = draw.textlength(line, font=font)
        while width > (x1 - x0) and " " in line:
            line = line.rsplit(" ", 1)[0]
            width = draw.textlength(line, font=font)
        draw.text((x0, y), line, fill=ink, font=font)
        y += size * spacing


def _barcode(draw, rng, box, ink):
    x0, y0, x1, y1 = box
    x = x0
    while x < x1:
        bar = int(rng.integers(1, 4))
        if rng.random() < 0.55:
            draw.rectangle((x, y0, min(x + bar - 1, x1), y1), fill=ink)
        x += bar + int(rng.integers(1, 3))


def _person(rng):
    day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(1930, 2015)
    return (f"{rng.choice(_SURNAMES)}, {rng.choice(_GIVEN)}", f"{day:02d}.{month:02d}.{year}",
            f"{rng.integers(10**7, 10**8)}")


# ---------------------------------------------------------------------------------------------
# the drawn objects (returned at page resolution, before being photographed)


def _blank_page(rng, size, margin, text_size):
    """A portrait page ``size`` wide, its drawing context, ink colour, margin and text height.

    ``margin`` and ``text_size`` are ranges, as fractions of the width, that the margin and the
    text height are drawn from (in this order, after the page's height, paper and ink).
    """
    w, h = size, int(size * rng.uniform(1.25, 1.45))
    page = Image.new("RGB", (w, h), _paper(rng))
    draw = ImageDraw.Draw(page)
    ink = _ink(rng)
    m = int(w * rng.uniform(*margin))
    text = w * rng.uniform(*text_size)
    return page, draw, ink, m, text


def draw_document(rng, size=512):
    """A letter or report page: heading, optional letterhead rule, lines of text."""
    page, draw, ink, m, text = _blank_page(rng, size, (0.07, 0.12), (0.022, 0.04))
    w, h = page.size
    head = text * rng.uniform(1.5, 2.2)
    draw.text((m, m), _words(rng, 3).title(), fill=ink, font=_font(head))
    y = m + head * 1.8
    if rng.random() < 0.5:
        colour = _jitter((30, 80, 150), rng, 40)
        draw.line((m, y, w - m, y), fill=colour, width=max(1, w // 150))
        y += text
    _text_lines(draw, rng, (m, y, w - m, h - m), text, ink)
    return page


def draw_form(rng, size=512):
    """A request or consent form: coloured header bar, ruled table, tick boxes."""
    page, draw, ink, m, text = _blank_page(rng, size, (0.05, 0.09), (0.022, 0.032))
    w, h = page.size
    bar = _jitter(((30, 80, 150), (0, 120, 100), (140, 30, 40), (90, 90, 90))[rng.integers(4)], rng, 30)
    bar_h = int(text * 2.4)
    draw.rectangle((m, m, w - m, m + bar_h), fill=bar)
    draw.text((m + text, m + text * 0.6), _words(rng, 3).upper(), fill=(255, 255, 255), font=_font(text * 1.2))
    rows, cols = int(rng.integers(6, 14)), int(rng.integers(2, 5))
    top, bottom = m + bar_h + text, int(h * rng.uniform(0.6, 0.8))
    row_h = (bottom - top) / rows
    line = max(1, w // 300)
    for r in range(rows + 1):
        y = top + r * row_h
        draw.line((m, y, w - m, y), fill=ink, width=line)
    xs = np.linspace(m, w - m, cols + 1)
    for x in xs:
        draw.line((x, top, x, bottom), fill=ink, width=line)
    font = _font(min(text, row_h * 0.5))
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.7:
                draw.text((xs[c] + text * 0.4, top + r * row_h + row_h * 0.25), _words(rng, 2).capitalize(),
                          fill=ink, font=font)
    box = text * 0.9
    y = bottom + text
    while y + box < h - m:
        x = m
        for _ in range(int(rng.integers(2, 5))):
            draw.rectangle((x, y, x + box, y + box), outline=ink, width=line)
            if rng.random() < 0.3:
                draw.line((x, y, x + box, y + box), fill=ink, width=line + 1)
                draw.line((x, y + box, x + box, y), fill=ink, width=line + 1)
            draw.text((x + box * 1.4, y - box * 0.1), _words(rng, 1), fill=ink, font=_font(text))
            x += w * 0.25
        y += box * 2.2
    return page


def draw_id_slip(rng, size=512):
    """A yellow patient-identification label: name, birth date, hospital number, barcode."""
    w, h = size, int(size * rng.uniform(0.45, 0.7))
    yellow = _jitter((250, 225, 70), rng, 22)
    slip = Image.new("RGB", (w, h), yellow)
    draw = ImageDraw.Draw(slip)
    ink = _ink(rng)
    m = int(w * rng.uniform(0.04, 0.08))
    text = h * rng.uniform(0.075, 0.11)
    name, born, number = _person(rng)
    lines = [name, f"b. {born}", f"Hosp. no. {number}", _words(rng, 2).title()]
    y = m
    for i, line in enumerate(lines):
        draw.text((m, y), line, fill=ink, font=_font(text * (1.25 if i == 0 else 1.0)))
        y += text * 1.5
    code_top = max(y, h * 0.62)
    _barcode(draw, rng, (m, int(code_top), int(w * rng.uniform(0.55, 0.9)), h - m), ink)
    if rng.random() < 0.5:  # the slip sometimes lies on a white request card
        card = Image.new("RGB", (int(w * 1.25), int(h * 1.6)), _paper(rng))
        card.paste(slip, (int(w * 0.12), int(h * rng.uniform(0.1, 0.5))))
        cdraw = ImageDraw.Draw(card)
        _text_lines(cdraw, rng, (int(w * 0.05), int(h * 1.15), int(w * 1.2), int(h * 1.55)), text * 0.8, ink)
        return card
    return slip


def draw_sheet(rng, size=512):
    """A plain coloured, beige or white sheet with a few pen marks or a ruler scale."""
    w, h = size, int(size * rng.uniform(0.7, 1.45))
    if rng.random() < 0.6:
        hue = rng.random()
        sat = rng.uniform(0.15, 0.8)
        val = rng.uniform(0.6, 0.98)
        colour = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))
    else:
        colour = _jitter(((240, 228, 200), (250, 250, 250), (225, 215, 190))[rng.integers(3)], rng, 10)
    sheet = Image.new("RGB", (w, h), colour)
    draw = ImageDraw.Draw(sheet)
    ink = _ink(rng)
    for _ in range(int(rng.integers(0, 6))):  # pen strokes
        pts = np.cumsum(rng.normal(0, w * 0.03, size=(int(rng.integers(3, 9)), 2)), axis=0)
        pts += rng.uniform(0.2, 0.8, size=2) * (w, h)
        draw.line([tuple(p) for p in pts], fill=ink, width=max(1, w // 200), joint="curve")
    if rng.random() < 0.4:  # ruler scale along one edge
        y = int(h * rng.uniform(0.75, 0.9))
        step = w / rng.integers(15, 30)
        for i, x in enumerate(np.arange(w * 0.05, w * 0.95, step)):
            draw.line((x, y, x, y + (w * 0.04 if i % 5 == 0 else w * 0.02)), fill=ink, width=max(1, w // 250))
    if rng.random() < 0.4:
        _text_lines(draw, rng, (int(w * 0.1), int(h * 0.08), int(w * 0.9), int(h * 0.25)), w * 0.03, ink)
    return sheet


def draw_patch_test(rng, size=512):
    """A patch-test reading sheet: heading, and a numbered grid of circle or square chambers."""
    w, h = size, int(size * rng.uniform(0.9, 1.4))
    paper = ((248, 248, 246), (240, 230, 205), (235, 238, 240))[rng.integers(3)]
    sheet = Image.new("RGB", (w, h), _jitter(paper, rng, 8))
    draw = ImageDraw.Draw(sheet)
    ink = _ink(rng)
    m = int(w * rng.uniform(0.05, 0.1))
    text = w * rng.uniform(0.022, 0.032)
    draw.text((m, m), rng.choice(["Patch test", "Epicutaneous test", "Baseline series", "Patch test reading"]),
              fill=ink, font=_font(text * 1.8))
    rows, cols = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    top = m + text * 3.5
    cell_w, cell_h = (w - 2 * m) / cols, (h - top - m) / rows
    radius = min(cell_w, cell_h) * rng.uniform(0.22, 0.34)
    square = rng.random() < 0.4
    outline = _jitter((90, 90, 95), rng, 40)
    fill = None if rng.random() < 0.6 else _jitter((215, 225, 235), rng, 15)
    font = _font(text)
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c + 1
            cx, cy = m + (c + 0.5) * cell_w, top + (r + 0.45) * cell_h
            bbox = (cx - radius, cy - radius, cx + radius, cy + radius)
            if square:
                draw.rectangle(bbox, outline=outline, fill=fill, width=max(1, w // 200))
            else:
                draw.ellipse(bbox, outline=outline, fill=fill, width=max(1, w // 200))
            draw.text((cx - radius - text * 1.6, cy - radius - text * 0.2), str(k), fill=ink, font=font)
            if rng.random() < 0.7:
                label = _ALLERGENS[int(rng.integers(len(_ALLERGENS)))]
                draw.text((cx - radius, cy + radius + text * 0.2), label[:14], fill=ink, font=_font(text * 0.7))
    return sheet


# ---------------------------------------------------------------------------------------------
# real photos


def photo_source_path(package, name):
    """Path of a bundled sample photo, or ``None`` when the package is not installed.

    Only files inside the installed package folders are used; nothing is ever downloaded.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "data" / name if package == "skimage" else root / "mpl-data" / "sample_data" / name
    return path if path.is_file() else None


def available_photo_sources():
    """The ``(label, path)`` pairs of :data:`PHOTO_SOURCES` present in this environment."""
    found = []
    for package, name in PHOTO_SOURCES:
        path = photo_source_path(package, name)
        if path is not None:
            found.append((f"{package}:{name}", path))
    return found


@functools.lru_cache(maxsize=None)
def _load_photo(path):
    return open_rgb(path)


def draw_photo(rng, size=512, sources=None):
    """A random crop of a bundled everyday photo, rotated, flipped and colour-jittered.

    Returns ``(image, source_label)``.
    """
    sources = available_photo_sources() if sources is None else sources
    if not sources:
        raise RuntimeError(
            "no sample photos found: install scikit-image (python -m pip install scikit-image), "
            "whose wheel ships them, or leave 'photo' out of the kinds"
        )
    label, path = sources[int(rng.integers(len(sources)))]
    image = _load_photo(os.fspath(path))
    w, h = image.size
    frac = rng.uniform(0.45, 1.0)
    cw, ch = max(8, int(w * frac)), max(8, int(h * frac * rng.uniform(0.8, 1.25)))
    ch = min(ch, h)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = image.rotate(90 * int(rng.integers(4)), expand=True)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    return image, label


# ---------------------------------------------------------------------------------------------
# photographing a drawn object


def photograph(obj, rng, out_size):
    """Place ``obj`` on a background at a random angle and scale, light it unevenly, add noise.

    Parameters
    ----------
    obj : PIL.Image.Image
        The drawn page, slip or sheet.
    out_size : tuple of int
        ``(width, height)`` of the returned photo.
    """
    ow, oh = out_size
    background = _jitter(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))], rng, 12)
    angle = float(rng.normal(0, 6)) + (90.0 if rng.random() < 0.15 else 0.0)
    rotated = obj.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=background)
    # The object fills 70-140% of the frame's shorter side: from "whole sheet on the desk" to
    # "close-up of part of it".
    fill = rng.uniform(0.7, 1.4)
    scale = fill * min(ow, oh) / min(rotated.size)
    rotated = rotated.resize((max(1, round(rotated.width * scale)), max(1, round(rotated.height * scale))),
                             Image.BILINEAR)
    frame = Image.new("RGB", (ow, oh), background)
    dx = int(rng.integers(min(0, ow - rotated.width), max(0, ow - rotated.width) + 1))
    dy = int(rng.integers(min(0, oh - rotated.height), max(0, oh - rotated.height) + 1))
    frame.paste(rotated, (dx, dy))
    return _camera(frame, rng)


def _camera(image, rng):
    """Uneven lighting, slight defocus, colour cast and sensor noise."""
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    arr = np.asarray(image, dtype=np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(direction) * (xx / w - 0.5) + np.sin(direction) * (yy / h - 0.5))
    light = 1.0 + rng.uniform(0.0, 0.45) * ramp
    cast = 1.0 + rng.normal(0, 0.04, size=3).astype(np.float32)
    arr = arr * light[..., None] * cast * rng.uniform(0.8, 1.08)
    arr += rng.normal(0, rng.uniform(1.0, 6.0), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


_DRAWERS = {
    "document": draw_document,
    "form": draw_form,
    "id_slip": draw_id_slip,
    "sheet": draw_sheet,
    "patch_test": draw_patch_test,
}


def generate_example(kind, rng, size=256, sources=None):
    """Draw one non-skin example of ``kind`` as it would appear in a clinical photo folder.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    rng : numpy.random.Generator
        Source of all randomness, so that the image is reproducible.
    size : int
        Length of the longer side of the returned image in pixels.
    sources : list of (str, Path), optional
        Photos to crop for ``kind="photo"``; :func:`available_photo_sources` by default.

    Returns
    -------
    Example
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    aspect = rng.choice([0.75, 1.0, 4 / 3])
    out = (size, int(round(size / aspect))) if aspect >= 1 else (int(round(size * aspect)), size)
    if kind == "photo":
        image, label = draw_photo(rng, size=max(out), sources=sources)
        image = ImageOps.fit(image, out, Image.BILINEAR)
        return Example(_camera(image, rng), kind, label)
    obj = _DRAWERS[kind](rng, size=2 * size)
    return Example(photograph(obj, rng, out), kind)


def generate_examples(n, *, seed=0, kinds=KINDS, size=256):
    """Yield ``n`` examples, cycling through ``kinds``; image ``i`` depends only on ``(seed, i)``."""
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError("kinds is empty: give at least one of " + ", ".join(KINDS))
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    sources = available_photo_sources() if "photo" in kinds else []
    if "photo" in kinds and not sources:
        if kinds != KINDS:
            raise RuntimeError(
                "photo examples need scikit-image's sample photos: python -m pip install scikit-image "
                "(or 'skin-cnn[photos]'), or leave 'photo' out of the kinds"
            )
        # The default set still trains a useful filter from the drawn kinds alone; say what is missing.
        logger.warning("scikit-image is not installed: no 'photo' examples (python -m pip install scikit-image)")
        kinds = tuple(k for k in kinds if k != "photo")
    elif "photo" in kinds and len(sources) < len(PHOTO_SOURCES):
        logger.warning("only %d of %d sample photos found; photo examples use those", len(sources), len(PHOTO_SOURCES))
    for i in range(int(n)):
        rng = np.random.default_rng([int(seed), i])
        yield generate_example(kinds[i % len(kinds)], rng, size=size, sources=sources)


def make_examples(out_dir, n=200, *, seed=0, kinds=KINDS, size=256, quality=92, progress=True):
    """Write ``n`` generated non-skin photos as JPEG files plus an index ``examples.csv``.

    Files are named ``nonskin_{i:04d}_{kind}.jpg``; the index has ``image_path`` (relative to
    ``out_dir``), ``kind`` and ``source`` (the bundled photo a ``photo`` example was cut from).

    Returns
    -------
    pandas.DataFrame
        The index, with ``image_path`` relative to ``out_dir``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    examples = generate_examples(n, seed=seed, kinds=kinds, size=size)
    for i, example in enumerate(progress_bar(examples, total=n, desc="non-skin examples", disable=not progress)):
        name = f"nonskin_{i:04d}_{example.kind}.jpg"
        with atomic_path(out_dir / name) as tmp:
            example.image.save(tmp, format="JPEG", quality=quality)
        rows.append({"image_path": name, "kind": example.kind, "source": example.source})
    index = pd.DataFrame(rows, columns=["image_path", "kind", "source"])
    write_csv(out_dir / INDEX_FILENAME, index)
    return index
