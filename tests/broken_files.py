"""Real broken (and awkward but valid) image files for tests, written into a folder the test owns.

Every helper writes one file and returns its path, so a test states the kind of damage in one
line: ``truncated_jpeg(tmp_path / "a.jpg")``. The files are genuinely broken the way files in a
clinical image export get broken (cut-off uploads, error pages saved under an image name, empty
placeholders), not mocks.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient_rgb(height=48, width=64, seed=0):
    """A small RGB uint8 array with smooth structure (so JPEG keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-8, 9, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def valid_jpeg(path, array=None, quality=95, **save_kwargs):
    """A readable JPEG of ``array`` (a gradient when omitted)."""
    path = Path(path)
    array = gradient_rgb() if array is None else array
    Image.fromarray(array).save(path, "JPEG", quality=quality, **save_kwargs)
    return path


def valid_png(path, array=None):
    """A readable (lossless) PNG of ``array``."""
    path = Path(path)
    array = gradient_rgb() if array is None else array
    Image.fromarray(array).save(path, "PNG")
    return path


def truncated_jpeg(path, keep=0.5):
    """A JPEG cut off after ``keep`` of its bytes, as an interrupted upload leaves it."""
    path = Path(path)
    buffer = io.BytesIO()
    Image.fromarray(gradient_rgb(96, 128)).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[: max(200, int(len(data) * keep))])
    return path


def corrupt_jpeg(path, seed=0):
    """A JPEG whose header is intact but whose compressed data has been overwritten with noise."""
    path = Path(path)
    buffer = io.BytesIO()
    Image.fromarray(gradient_rgb(96, 128)).save(buffer, "JPEG", quality=95)
    data = bytearray(buffer.getvalue())
    start = data.find(b"\xff\xda")  # start of scan: entropy-coded data follows its header
    noise = np.random.default_rng(seed).integers(0, 256, size=len(data) - start - 16, dtype=np.uint8)
    data[start + 14 : len(data) - 2] = bytes(noise)
    path.write_bytes(bytes(data))
    return path


def text_as_jpg(path, text="<html><body>404 Not Found</body></html>\n"):
    """A text file (an HTML error page) saved under an image name."""
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


def zero_byte(path):
    """An empty placeholder file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(path, width=100_000, height=100_000):
    """A valid-looking PNG of a few dozen bytes whose header claims ``width`` × ``height`` pixels.

    Decoding it would need width × height × 3 bytes; a reader must refuse it from the header.
    """
    path = Path(path)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 16)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def png_bad_crc(path):
    """A PNG whose image-data checksum does not match (bit rot in storage)."""
    path = Path(path)
    valid_png(path)
    data = bytearray(path.read_bytes())
    idat = data.find(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


BROKEN_KINDS = {
    "truncated_jpeg": truncated_jpeg,
    "corrupt_jpeg": corrupt_jpeg,
    "text_as_jpg": text_as_jpg,
    "zero_byte": zero_byte,
    "png_bomb": png_bomb,
    "png_bad_crc": png_bad_crc,
}


def write_all_broken(folder):
    """Write one file of every broken kind into ``folder``; return ``{kind: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"png_bomb": ".png", "png_bad_crc": ".png"}
    return {kind: make(folder / f"{kind}{suffix.get(kind, '.jpg')}") for kind, make in BROKEN_KINDS.items()}
