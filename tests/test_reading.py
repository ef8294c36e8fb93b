"""read_image gives upright 8-bit RGB for every kind of file and names the file when it cannot."""
import io
import pickle
import time

import broken_files as bf
import numpy as np
import pytest
from PIL import Image

from skin_cnn.data.reading import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    check_image,
    open_rgb,
    read_image,
)


def test_png_pixels_come_back_exactly(tmp_path):
    array = bf.gradient_rgb(30, 40)
    out = read_image(bf.valid_png(tmp_path / "a.png", array))
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, array)


def test_jpeg_is_close_to_its_source(tmp_path):
    array = bf.gradient_rgb(48, 64)
    out = read_image(bf.valid_jpeg(tmp_path / "a.jpg", array, quality=98))
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - array).mean() < 4


@pytest.mark.parametrize("fmt, suffix", [("BMP", ".bmp"), ("TIFF", ".tif"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_lossless_formats_round_trip(tmp_path, fmt, suffix):
    array = bf.gradient_rgb(20, 24, seed=3)
    path = tmp_path / f"img{suffix}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(array).save(path, fmt, **kwargs)
    np.testing.assert_array_equal(read_image(path), array)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.array([[0, 17, 200], [255, 128, 1]], dtype=np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(gray, mode="L").save(path)
    out = read_image(path)
    assert out.shape == (2, 3, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_bilevel_image_is_black_and_white(tmp_path):
    image = Image.new("1", (4, 2), 0)
    image.putpixel((1, 0), 1)
    path = tmp_path / "b.png"
    image.save(path)
    out = read_image(path)
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 3].tolist() == [0, 0, 0]


def test_palette_image_uses_its_palette_colours(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.putdata([2, 0, 1])
    path = tmp_path / "p.png"
    image.save(path)
    assert read_image(path)[0].tolist() == [[0, 255, 0], [10, 20, 30], [200, 100, 50]]


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.putdata([0, 1])
    path = tmp_path / "pt.png"
    image.save(path, transparency=1)
    assert read_image(path)[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_rgba_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 40, 0, 255], [200, 40, 0, 0], [200, 40, 0, 128]]], dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = read_image(path)[0].astype(int)
    assert out[0].tolist() == [200, 40, 0]  # opaque: the colour itself
    assert out[1].tolist() == [255, 255, 255]  # transparent: white
    # half transparent: c * a + 255 * (1 - a) with a = 128 / 255
    expected = [round(c * 128 / 255 + 255 * 127 / 255) for c in (200, 40, 0)]
    assert np.abs(out[2] - expected).max() <= 1


def test_gray_with_alpha_is_composited_on_white(tmp_path):
    la = np.array([[[50, 255], [50, 0]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    assert read_image(path)[0].tolist() == [[50, 50, 50], [255, 255, 255]]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 257 * 100, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "16.png"
    Image.fromarray(values).save(path)
    out = read_image(path)
    # 65535 -> 255, 257 * k -> k, 32768 / 257 = 127.5 -> 128 (a clipping convert would give 255)
    assert out[0, :, 0].tolist() == [0, 1, 100, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_sixteen_bit_tiff_is_scaled(tmp_path):
    values = np.array([[65535, 0], [257 * 200, 257 * 7]], dtype=np.uint16)
    path = tmp_path / "16.tif"
    Image.fromarray(values).save(path)
    assert read_image(path)[..., 1].tolist() == [[255, 0], [200, 7]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # pure cyan, magenta, yellow and 50% black blocks; CMYK -> RGB is R = (255 - C)(255 - K) / 255
    blocks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 128)]
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (127, 127, 127)]
    image = Image.new("CMYK", (64 * len(blocks), 64))
    for i, colour in enumerate(blocks):
        image.paste(colour, (64 * i, 0, 64 * (i + 1), 64))
    path = tmp_path / "cmyk.jpg"
    image.save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = read_image(path).astype(int)
    assert out.shape == (64, 64 * len(blocks), 3)
    for i, colour in enumerate(expected):
        centre = out[24:40, 64 * i + 24 : 64 * i + 40].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - colour).max() < 12, (i, centre, colour)


def _marked_jpeg(path, orientation):
    """A 40 wide × 20 high JPEG, red 10×10 block in the top-left corner, rest green."""
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[..., 1] = 200
    array[:10, :10] = (230, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, "JPEG", quality=95, exif=exif)
    return path


def _is_red(pixel):
    return pixel[0] > 180 and pixel[1] < 60


@pytest.mark.parametrize(
    "orientation, shape, red_corner",
    [
        (1, (20, 40), (0, 0)),  # as stored
        (3, (20, 40), (-1, -1)),  # rotated 180°: the top-left corner goes bottom-right
        (6, (40, 20), (0, -1)),  # shown turned 90° clockwise: top-left goes top-right
        (8, (40, 20), (-1, 0)),  # shown turned 90° anticlockwise: top-left goes bottom-left
        (2, (20, 40), (0, -1)),  # mirrored left-right
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, shape, red_corner):
    out = read_image(_marked_jpeg(tmp_path / f"o{orientation}.jpg", orientation))
    assert out.shape[:2] == shape
    rows = {0: slice(0, 5), -1: slice(-5, None)}[red_corner[0]]
    cols = {0: slice(0, 5), -1: slice(-5, None)}[red_corner[1]]
    assert _is_red(out[rows, cols].reshape(-1, 3).mean(axis=0))
    corners = [out[2, 2], out[2, -3], out[-3, 2], out[-3, -3]]
    assert sum(_is_red(c) for c in corners) == 1


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert read_image(path)[4, 4].tolist() == [255, 0, 0]


def test_bytes_and_file_objects_read_like_paths(tmp_path):
    path = bf.valid_png(tmp_path / "a.png")
    data = path.read_bytes()
    expected = read_image(path)
    np.testing.assert_array_equal(read_image(data, name="upload.png"), expected)
    np.testing.assert_array_equal(read_image(io.BytesIO(data)), expected)
    assert open_rgb(data).mode == "RGB"


@pytest.mark.parametrize(
    "make, reason_part",
    [
        (bf.zero_byte, "empty file"),
        (bf.text_as_jpg, "not an image"),
        (bf.truncated_jpeg, "truncated"),
        (bf.corrupt_jpeg, "corrupt"),
        (bf.png_bad_crc, "corrupt"),
    ],
)
def test_broken_files_raise_with_path_and_reason(tmp_path, make, reason_part):
    path = make(tmp_path / "broken.jpg")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: ")
    assert reason_part in info.value.reason
    assert info.value.path == str(path)
    assert check_image(path) == info.value.reason


def test_missing_file_and_folder_are_reported(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_bytes_errors_use_the_given_name():
    with pytest.raises(ImageReadError, match=r"^upload\.jpg: not an image"):
        read_image(b"GIF? no, just text", name="upload.jpg")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(b"", name="upload.jpg")


def test_image_read_error_is_a_value_error_and_pickles():
    err = ImageReadError("a/b.jpg", "empty file (0 bytes)")
    assert isinstance(err, ValueError)
    assert str(err) == "a/b.jpg: empty file (0 bytes)"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = bf.png_bomb(tmp_path / "bomb.png", 100_000, 100_000)
    assert path.stat().st_size < 200
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path)
    # just above the default limit, below Pillow's own hard error: refused by our check
    side = int(DEFAULT_MAX_PIXELS**0.5) + 10
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_image(bf.png_bomb(tmp_path / "bomb2.png", side, side))


def test_max_pixels_limit_applies_to_genuine_images(tmp_path):
    path = bf.valid_png(tmp_path / "a.png", bf.gradient_rgb(30, 40))  # 1200 pixels
    assert check_image(path, max_pixels=1200) is None
    reason = check_image(path, max_pixels=1199)
    assert reason is not None and "1,200 pixels exceeds the limit of 1,199" in reason
    assert read_image(path, max_pixels=None).shape == (30, 40, 3)


def test_check_image_passes_good_files(tmp_path):
    assert check_image(bf.valid_jpeg(tmp_path / "a.jpg")) is None
    assert check_image(bf.valid_png(tmp_path / "b.png")) is None


def test_32_bit_integer_and_float_tiffs_follow_the_documented_ranges(tmp_path):
    ints = np.array([[0, 257 * 50, 65535, 100000]], dtype=np.int32)  # "I": 16-bit range, clipped above
    Image.fromarray(ints, mode="I").save(tmp_path / "i.tif")
    assert read_image(tmp_path / "i.tif")[0, :, 0].tolist() == [0, 50, 255, 255]
    floats = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)  # "F": 0..1
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255, 255]


# ---------------------------------------------------------------------------------------------
# accepted formats only, and only the first frame


def _minimal_eps():
    """A valid EPS file (a 10 × 10 point black square) that Pillow's EPS plugin would open."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
        b"0 0 moveto 10 0 lineto 10 10 lineto 0 10 lineto closepath fill\nshowpage\n%%EOF\n"
    )


def test_eps_never_reaches_pillows_postscript_plugin_or_the_disk(tmp_path, monkeypatch):
    # Pillow's EPS plugin opens this file (reading its header) and, to decode it, runs
    # Ghostscript on a temporary copy: neither may happen for an upload or a manifest image.
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))

    def no_disk(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", no_disk)
    monkeypatch.setattr(subprocess, "Popen", no_disk)
    path = tmp_path / "photo.jpg"
    path.write_bytes(_minimal_eps())
    for source in (path, _minimal_eps()):
        with pytest.raises(ImageReadError) as info:
            read_image(source, name="photo.jpg")
        assert "PostScript" in info.value.reason and "damaged" not in info.value.reason
    assert check_image(path) is not None
    assert opened == []


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "ICO", "SGI"])
def test_formats_outside_the_raster_allow_list_are_refused(fmt):
    # Pillow reads each of these; skin-cnn accepts only JPEG, PNG, WebP, BMP, TIFF and GIF.
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format=fmt)
    assert Image.open(io.BytesIO(buffer.getvalue())).format == fmt  # Pillow alone would read it
    with pytest.raises(ImageReadError, match="JPEG, PNG, WebP, BMP, TIFF or GIF"):
        read_image(buffer.getvalue(), name=f"x.{fmt.lower()}")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_accepted_format_still_reads(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    pixel = read_image(buffer.getvalue())[8, 8].astype(int)
    assert np.abs(pixel - [200, 10, 10]).max() <= 3  # JPEG rounds a little


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),  # iPhone photo
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "AVIF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
    ],
)
def test_heic_and_other_known_formats_say_convert_not_damaged(head, kind):
    data = head + bytes(2000)
    with pytest.raises(ImageReadError) as info:
        read_image(data, name="IMG_0001.HEIC")
    assert kind in info.value.reason and "not supported" in info.value.reason
    assert "convert" in info.value.reason or "export" in info.value.reason
    assert "damaged" not in info.value.reason


def _many_frame_gif(n_frames):
    """A GIF of ``n_frames`` 1×1 frames, 15 bytes each: frame 0 red (palette 0), all others blue."""
    import struct

    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\xff\x00\x00" + b"\x00\x00\xff"
    # image descriptor (1×1 at 0,0) + LZW minimum code size 2 + one sub-block coding index 0
    red = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    blue = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x4c\x01\x00"
    return header + red + blue * (n_frames - 1) + b"\x3b"


def test_a_gif_with_660000_frames_is_read_from_its_first_frame_only(monkeypatch):
    # 9.9 MB, the size of a largest upload: counting its frames walks all 660,000 headers
    # (seconds of CPU per request); only the first frame is needed.
    from PIL import GifImagePlugin

    data = _many_frame_gif(660_000)
    assert len(data) == 9_900_020
    seeks = []
    original = GifImagePlugin.GifImageFile._seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", lambda self, frame, *a, **k: (
        seeks.append(frame), original(self, frame, *a, **k))[1])
    started = time.perf_counter()
    out = read_image(data, name="anim.gif")
    elapsed = time.perf_counter() - started
    assert out.shape == (1, 1, 3) and out[0, 0].tolist() == [255, 0, 0]
    assert max(seeks) == 0  # no frame header after the first was parsed
    assert elapsed < 1.0  # first frame only: milliseconds (walking every frame took 2–8 s)


# ---------------------------------------------------------------------------------------------
# sniffed before read: a huge non-image is never read whole


def _sparse(path, size, head=b""):
    """A file of ``size`` bytes that takes no disk space beyond ``head`` (a sparse file)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


@pytest.mark.parametrize("head, words", [
    (b"", "not an image file"),                              # 3 GB of zeros named .jpg
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "larger than any image"),  # a JPEG signature, then zeros
])
def test_a_3_gb_file_named_jpg_is_refused_without_being_read(tmp_path, head, words):
    import tracemalloc

    from skin_cnn.data.reading import check_image, sniff_file
    from skin_cnn.data.manifest import validate_manifest

    big = _sparse(tmp_path / "photo.jpg", 3_000_000_000, head)
    manifest = tmp_path / "m.csv"
    manifest.write_text("image_path,patient_id,diagnosis\nphoto.jpg,p1,acne\n")
    tracemalloc.start()
    try:
        reasons = [sniff_file(big), check_image(big)]
        with pytest.raises(ImageReadError, match=words):
            read_image(big)
        report = validate_manifest(manifest, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(words in r for r in reasons)
    assert any(words in m for m in report.problems["message"])
    assert peak < 50e6, f"peak {peak / 1e6:.0f} MB"


def test_the_size_bound_leaves_room_for_every_genuine_image():
    from skin_cnn.data.reading import DEFAULT_MAX_PIXELS, max_file_bytes

    # an uncompressed 16-bit RGBA TIFF at the pixel limit is the largest file that can be a photo
    assert max_file_bytes(DEFAULT_MAX_PIXELS) > DEFAULT_MAX_PIXELS * 8
    assert max_file_bytes(None) is None


def test_files_are_decoded_from_disk_not_read_whole_first(tmp_path, monkeypatch):
    # a photo reads the same pixels as before, from a file handle that is closed afterwards
    import builtins

    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    opened = []
    real_open = builtins.open

    def spy(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(builtins, "open", spy)
    image = read_image(path)
    assert np.array_equal(image, pixels)
    assert opened and all(h.closed for h in opened)
