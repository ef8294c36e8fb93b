"""Read any clinical photo into 8-bit RGB, or say exactly which file is wrong and why.

Clinical image databases hold whatever cameras, scanners and export tools produced: phone JPEGs
with an EXIF orientation tag, CMYK scans, 16-bit TIFFs, grayscale and palette PNGs, PNGs with
transparency, and now and then a truncated upload or an HTML error page saved as ``.jpg``. Every
part of skin-cnn reads images through :func:`read_image` so that all of them see the same pixels
and a bad file fails with one message naming the file and the reason (:class:`ImageReadError`),
never a Pillow traceback in the middle of a training run.

Conversions, chosen once here:

* EXIF orientation is applied (``ImageOps.exif_transpose``), so a portrait phone photo is upright.
* Transparent pixels (RGBA, LA, palette with transparency) are composited on **white**, the way an
  image viewer or web page shows them; the alpha channel is then dropped.
* 16-bit images (``I;16`` and relatives, and ``I``, which Pillow uses for 16-bit PNG and TIFF) are
  scaled from 0..65535 to 0..255 (``round(v / 257)``, so 65535 → 255 and 32768 → 128) rather than
  clipped at 255 as a plain ``convert("L")`` would do. 32-bit float images (``F``) are read as
  values in 0..1.
* Grayscale, bilevel, palette, CMYK, YCbCr, LAB and HSV images are converted by Pillow to RGB.
* Multi-frame files (animated GIF, multi-page TIFF) give their first frame, and only the first
  frame is ever parsed: counting the frames of a 10 MB GIF can mean walking 660,000 of them.
* Images with more than ``max_pixels`` pixels are refused before decoding, so a small file that
  claims enormous dimensions (a decompression bomb) cannot exhaust memory.
* A file is sniffed before it is read: its first bytes must be the signature of an accepted
  format (Pillow's own ``_accept`` tests), and it may not be larger than an image of
  ``max_pixels`` pixels can be (:func:`max_file_bytes`). Files are then decoded from disk, never
  read whole into memory first, so a 3 GB file named ``.jpg`` costs 64 bytes of reading.

Only the raster formats in :data:`ACCEPTED_FORMATS` are ever handed to Pillow. Pillow would
otherwise try every plugin it has, including EPS, which runs Ghostscript (a PostScript
interpreter) on the file and writes it to a temporary file: an uploaded photo must reach neither
an interpreter nor the disk. Files in a recognisable but refused format (HEIC from an iPhone,
PDF, PostScript, SVG, Photoshop) are named as such, with the advice to convert them, instead of
being called damaged.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Pillow's own default limit (about 89.5 megapixels, a 9459 × 9459 image).
DEFAULT_MAX_PIXELS = 89_478_485

#: Pillow format names read by skin-cnn: camera and scanner raster formats. The multi-picture
#: JPEGs (MPO) many phones write open through the JPEG plugin and give their main picture.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")

#: Human-readable list for messages and documentation.
ACCEPTED_NAMES = "JPEG, PNG, WebP, BMP, TIFF or GIF"

# ISO base-media "ftyp" brands of HEIF containers (HEIC photos, AVIF).
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageReadError(ValueError):
    """An image that cannot be read; ``str(err)`` is ``"PATH: reason"``.

    Attributes
    ----------
    path : str
        The file path, or the name given for in-memory data.
    reason : str
        What is wrong, in words (``"empty file (0 bytes)"``, ``"truncated or corrupt image
        data: ..."``).
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.path, self.reason))


#: Bytes per pixel of the largest raster an accepted format stores (16-bit RGBA), and room for
#: metadata (EXIF, ICC profiles, thumbnails) on top: :func:`max_file_bytes`.
_MAX_BYTES_PER_PIXEL = 8
_METADATA_BYTES = 64 * 1024 * 1024
#: Bytes read to sniff a file's format.
_HEAD_BYTES = 64


def max_file_bytes(max_pixels=DEFAULT_MAX_PIXELS):
    """Largest file that can hold one image of at most ``max_pixels`` pixels (None: no limit).

    Uncompressed 16-bit RGBA is the most bytes per pixel any accepted format stores; a larger
    file is not a photo skin-cnn would decode, whatever its name, and is refused before it is
    read (a 3 GB file named ``.jpg`` once cost 3 GB of memory before its header was looked at).
    """
    if max_pixels is None:
        return None
    return int(max_pixels) * _MAX_BYTES_PER_PIXEL + _METADATA_BYTES


def _format_size(n):
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def sniff(head, name, size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuse, from its first bytes and its size alone, a file that is not an accepted image.

    Parameters
    ----------
    head : bytes
        The first bytes of the file (64 are enough for every accepted signature).
    size : int, optional
        The file's size in bytes, checked against :func:`max_file_bytes`.

    Raises
    ------
    ImageReadError
        A refused format named as such, a file no accepted format starts with, or a file larger
        than any image of ``max_pixels`` pixels.
    """
    refused = _refused_format(head)
    if refused is not None:
        raise ImageReadError(name, f"format not accepted: {refused}")
    Image.init()
    if not any(accept is None or accept(head) for accept in (Image.OPEN[f][1] for f in accepted_formats())):
        raise ImageReadError(
            name, f"not an image file skin-cnn reads (expected {ACCEPTED_NAMES}; unknown or damaged format)"
        )
    limit = max_file_bytes(max_pixels)
    if size is not None and limit is not None and size > limit:
        raise ImageReadError(
            name,
            f"file of {_format_size(size)} is larger than any image of at most {int(max_pixels):,} "
            f"pixels can be ({_format_size(limit)}); refused without reading it",
        )


def sniff_file(path, max_pixels=DEFAULT_MAX_PIXELS):
    """:func:`sniff` a file on disk, reading only its first bytes; the reason, or None when it
    may be an accepted image."""
    try:
        with open(path, "rb") as fh:
            sniff(fh.read(_HEAD_BYTES), os.fspath(path), os.fstat(fh.fileno()).st_size, max_pixels)
    except ImageReadError as exc:
        return exc.reason
    return None


def _source_and_name(source, name, max_pixels=DEFAULT_MAX_PIXELS):
    """Return ``(fp, name)``: something ``Image.open`` accepts and the name used in messages.

    A path is opened (the caller closes ``fp``) and sniffed (:func:`sniff`) before anything else
    is read from it.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "<bytes>"
        if not data:
            raise ImageReadError(name, "empty file (0 bytes)")
        return io.BytesIO(data), name
    if hasattr(source, "read"):
        data = source.read()
        return _source_and_name(data, name or getattr(source, "name", None) or "<stream>", max_pixels)
    path = Path(source)
    name = name or os.fspath(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(name, "file not found") from None
    except PermissionError:
        raise ImageReadError(name, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(name, f"cannot access file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageReadError(name, "is a folder, not an image file")
    if size == 0:
        raise ImageReadError(name, "empty file (0 bytes)")
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed by _open_decoded)
    except PermissionError:
        raise ImageReadError(name, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(name, f"cannot read file ({exc.strerror or exc})") from None
    try:
        sniff(fh.read(_HEAD_BYTES), name, size, max_pixels)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return fh, name


def accepted_formats():
    """The names in :data:`ACCEPTED_FORMATS` this Pillow build can open, for ``Image.open(...,
    formats=...)`` (WebP support is optional in Pillow, and an unknown name there is an error).

    Any other code that opens an image with Pillow directly should pass this list too, so that
    no plugin outside the allow-list ever parses a file.
    """
    Image.init()
    return [name for name in ACCEPTED_FORMATS if name in Image.OPEN]


def _refused_format(head):
    """Name the format of a file Pillow is not allowed to read, from its first bytes, or ``None``.

    Only signatures are compared; no parser sees the data. Used to replace "not an image" with
    advice the user can act on (an iPhone photo is HEIC and needs converting, not replacing).
    """
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        kind = "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIC/HEIF"
        return f"{kind} is not supported; convert it to JPEG or PNG"
    stripped = head.lstrip()
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS is not supported (never interpreted); convert it to PNG or JPEG"
    if head.startswith(b"%PDF"):
        return "PDF is not supported; export the page as PNG or JPEG"
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in head):
        return "SVG (vector drawing) is not supported; export it as PNG"
    if head.startswith(b"8BPS"):
        return "Photoshop PSD is not supported; export it as PNG or JPEG"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG 2000 is not supported; convert it to JPEG or PNG"
    return None


def _open_decoded(source, name, max_pixels):
    """Open, size-check and fully decode the first frame; return the loaded PIL image."""
    fp, name = _source_and_name(source, name, max_pixels)
    try:
        return _decode(fp, name, max_pixels)
    except OSError as exc:  # reading the file itself failed half-way
        raise ImageReadError(name, f"cannot read file ({exc.strerror or exc})") from None
    finally:
        fp.close()


def _decode(fp, name, max_pixels):
    head = fp.read(_HEAD_BYTES)
    fp.seek(0)
    sniff(head, name)
    try:
        with warnings.catch_warnings(record=True) as caught:
            # The max_pixels check below is the authority; Pillow's softer bomb warning and its
            # notes on damaged metadata would only repeat what the error or the log says.
            warnings.simplefilter("always")
            # ``formats`` restricts the plugins Pillow tries: nothing outside the raster
            # allow-list (EPS runs Ghostscript, for one) ever parses the data.
            image = Image.open(fp, formats=accepted_formats())
        for note in caught:
            if not issubclass(note.category, Image.DecompressionBombWarning):
                logger.debug("%s: %s", name, note.message)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(name, f"image too large, refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            name, f"not an image file skin-cnn reads (expected {ACCEPTED_NAMES}; unknown or damaged format)"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any header parser failure means a damaged file
        raise ImageReadError(name, f"damaged image header ({type(exc).__name__}: {exc})") from None

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageReadError(name, f"image has no pixels ({width}×{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            name,
            f"image too large: {width}×{height} = {width * height:,} pixels exceeds the limit of "
            f"{int(max_pixels):,} (refused as a possible decompression bomb; raise max_pixels if "
            "the image is genuine)",
        )
    try:
        # The file is positioned on its first frame after opening. ``n_frames`` or ``seek`` would
        # parse every frame header first (seconds for a GIF of 660,000 one-pixel frames), so
        # neither is called.
        image.load()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types for damaged data
        raise ImageReadError(name, f"truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    return image, name


def _to_rgb(image, name):
    """Apply EXIF orientation and convert any Pillow mode to an 8-bit RGB PIL image."""
    try:
        image = ImageOps.exif_transpose(image)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not make good pixels unreadable
        logger.warning("%s: EXIF orientation ignored (%s)", name, exc)

    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        gray = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        gray = np.rint(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    try:
        return image.convert("RGB")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported with the file name instead
        raise ImageReadError(name, f"cannot convert image mode {mode!r} to RGB ({exc})") from None


def open_rgb(source, *, name=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Like :func:`read_image` but return a PIL ``Image`` in mode ``RGB``.

    For code that goes on with Pillow operations (``reduce``, ``resize``, ``ImageDraw``) and would
    otherwise convert the array straight back.
    """
    image, name = _open_decoded(source, name, max_pixels)
    return _to_rgb(image, name)


def read_image(source, *, name=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Decode an image file or bytes into an upright 8-bit RGB array.

    Parameters
    ----------
    source : str, Path, bytes or binary file object
        A path, or the encoded file contents (an upload, a blob from a database).
    name : str, optional
        Name used in error messages; defaults to the path (``"<bytes>"`` for raw bytes).
    max_pixels : int or None
        Refuse images with more pixels than this before decoding them. The default is Pillow's
        own limit; ``None`` turns the check off (Pillow still refuses images over twice its own
        limit).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``, EXIF orientation applied.

    Raises
    ------
    ImageReadError
        Missing, empty, truncated, corrupt, non-image or too-large file; the message names the
        file and the reason.
    """
    array = np.asarray(open_rgb(source, name=name, max_pixels=max_pixels), dtype=np.uint8)
    return np.ascontiguousarray(array)


def check_image(source, *, name=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Fully decode an image without converting it; return ``None`` if it reads, else the reason.

    Used by manifest validation to find every unreadable file up front, so that a training run
    does not stop on the one broken file among thousands.
    """
    try:
        _open_decoded(source, name, max_pixels)
    except ImageReadError as exc:
        return exc.reason
    return None
