"""Safe image input: limits decided from the header, damaged files refused clearly, masks and regions."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import InvalidImage, InvalidRequest
from engine.image_io import (
    _declared_size,
    mask_from_image,
    open_image_checked,
    parse_region,
    sniff_format,
)

MB = 1024 * 1024
LIMITS = {"max_pixels": 4096 * 4096, "max_bytes": 20 * MB}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height RGB pixels, followed by a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    """The image saved to bytes in the given format."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Incompressible pixels, so a cut file really misses image data."""
    return Image.frombytes(
        mode, size, random.Random(size[0] * 10007 + size[1]).randbytes(size[0] * size[1] * len(mode))
    )


def refused(source: bytes | Path, **limits: int) -> InvalidImage:
    """The InvalidImage that open_image_checked raises for source."""
    with pytest.raises(InvalidImage) as caught:
        open_image_checked(source, **(LIMITS | limits))
    assert caught.value.option == "image"
    return caught.value


# --- limits decided before decoding


def test_bomb_is_refused_from_the_header_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = declared_png(65535, 65535)
    assert len(bomb) < 200

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow must not be asked to open a bomb")

    monkeypatch.setattr(Image, "open", no_decoding)
    started = time.perf_counter()
    error = refused(bomb)
    assert time.perf_counter() - started < 5.0  # decoding 4 G pixels would take minutes
    assert "65535x65535" in error.message and "4,294,836,225 pixels" in error.message
    assert "limit of 16,777,216 pixels" in error.message


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_pixel_limit_applies_to_every_format(image_format: str) -> None:
    data = encoded(Image.new("RGB", (100, 60), "blue"), image_format)
    assert "100x60 = 6,000 pixels" in refused(data, max_pixels=5999).message
    assert open_image_checked(data, max_pixels=6000, max_bytes=MB).size == (100, 60)


@pytest.mark.parametrize(
    ("image_format", "options"),
    [
        ("PNG", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("WEBP", {"lossless": True}),  # VP8L
        ("WEBP", {"quality": 50}),  # VP8
        ("WEBP", {"exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0\0\0\0\0"}),  # VP8X
        ("GIF", {}),
        ("BMP", {}),
    ],
)
def test_declared_size_is_read_from_each_header(image_format: str, options: dict[str, object]) -> None:
    data = encoded(Image.new("RGB", (37, 23)), image_format, **options)
    assert sniff_format(data) == image_format
    assert _declared_size(data, image_format, "image") == (37, 23)


def test_top_down_bmp_declares_a_positive_height() -> None:
    data = bytearray(encoded(Image.new("RGB", (37, 23)), "BMP"))
    data[22:26] = struct.pack("<i", -23)  # negative height: rows stored top to bottom
    assert _declared_size(bytes(data), "BMP", "image") == (37, 23)
    assert open_image_checked(bytes(data), **LIMITS).size == (37, 23)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    assert "empty" in refused(b"").message
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in refused(tmp_path / "empty.png").message


def test_byte_limit_is_checked_before_reading(tmp_path: Path) -> None:
    data = encoded(noise((64, 64)), "PNG")
    assert "more than the limit of 1.0 KiB" in refused(data, max_bytes=1024).message
    path = tmp_path / "big.png"
    path.write_bytes(data)
    assert "more than the limit" in refused(path, max_bytes=1024).message
    assert open_image_checked(path, max_pixels=64 * 64, max_bytes=len(data)).size == (64, 64)


def test_text_named_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_text("definitely not an image\n")
    message = refused(path).message
    assert "PNG, JPEG, WebP, GIF or BMP" in message and "not the name" in message


def test_the_name_is_never_trusted(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encoded(Image.new("RGB", (16, 16), "green"), "PNG"))
    assert open_image_checked(path, **LIMITS).getpixel((0, 0)) == (0, 128, 0)


@pytest.mark.parametrize("size", [(1, 1), (7, 100), (100, 7)])
def test_tiny_images_are_refused_with_the_minimum(size: tuple[int, int]) -> None:
    message = refused(encoded(Image.new("RGB", size), "PNG")).message
    assert f"{size[0]}x{size[1]}" in message and "minimum is 8x8" in message


def test_unsupported_formats_are_refused_even_if_pillow_reads_them() -> None:
    assert "not a PNG" in refused(encoded(Image.new("RGB", (16, 16)), "TIFF")).message


def test_missing_path_is_an_invalid_image(tmp_path: Path) -> None:
    assert "cannot read" in refused(tmp_path / "gone.png").message


# --- damaged data


def test_truncated_png_is_refused() -> None:
    data = encoded(noise((64, 64)), "PNG")
    message = refused(data[: len(data) // 2]).message
    assert "PNG data is damaged or truncated" in message


def test_truncated_jpeg_is_refused() -> None:
    data = encoded(noise((64, 64)), "JPEG", quality=95)
    assert "damaged or truncated" in refused(data[: len(data) // 2]).message


def test_header_cut_short_is_refused() -> None:
    data = encoded(Image.new("RGB", (16, 16)), "PNG")
    assert "header is damaged or truncated" in refused(data[:14]).message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_files_raise_only_invalid_image(data: st.DataObject) -> None:
    image_format = data.draw(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP"]))
    raw = bytearray(encoded(noise((16, 16)), image_format))
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    try:
        image = open_image_checked(bytes(raw), max_pixels=1 << 20, max_bytes=MB)
    except InvalidImage:
        return
    assert image.mode == "RGB" and image.width * image.height <= 1 << 20


# --- decoding


def test_gif_with_two_frames_returns_the_first() -> None:
    frames = [Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 2
    image = open_image_checked(data, **LIMITS)
    assert (image.mode, image.size, image.getpixel((5, 5))) == ("RGB", (16, 16), (255, 0, 0))


def test_animated_webp_returns_the_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")]
    data = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert open_image_checked(data, **LIMITS).getpixel((5, 5)) == (255, 0, 0)


def test_alpha_is_flattened_on_white_or_kept_on_request() -> None:
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 8, 16))
    data = encoded(image, "PNG")
    flat = open_image_checked(data, **LIMITS)
    assert flat.mode == "RGB"
    assert (flat.getpixel((2, 2)), flat.getpixel((12, 2))) == ((0, 0, 255), (255, 255, 255))
    kept = open_image_checked(data, **LIMITS, keep_alpha=True)
    assert kept.mode == "RGBA" and kept.getpixel((12, 2))[3] == 0
    opaque = open_image_checked(encoded(Image.new("RGB", (16, 16)), "PNG"), **LIMITS, keep_alpha=True)
    assert opaque.mode == "RGB"


def test_palette_transparency_and_grayscale_become_rgb() -> None:
    palette = Image.new("P", (16, 16), 1)
    gif = encoded(palette, "GIF", transparency=1)
    assert open_image_checked(gif, **LIMITS).getpixel((0, 0)) == (255, 255, 255)
    assert open_image_checked(encoded(Image.new("L", (16, 16), 77), "PNG"), **LIMITS).getpixel((0, 0)) == (
        77,
        77,
        77,
    )


def test_sixteen_bit_grayscale_keeps_its_brightness() -> None:
    deep = Image.new("I;16", (16, 16), 65535)
    image = open_image_checked(encoded(deep, "PNG"), **LIMITS)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encoded(Image.new("RGB", (32, 16)), "JPEG", exif=exif)
    assert open_image_checked(data, **LIMITS).size == (16, 32)


def test_result_is_fully_loaded_and_detached_from_the_source(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encoded(Image.new("RGB", (16, 16), "red"), "PNG"))
    image = open_image_checked(path, **LIMITS)
    path.unlink()
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_custom_option_name_is_used() -> None:
    with pytest.raises(InvalidImage) as caught:
        open_image_checked(b"", **LIMITS, option="mask")
    assert caught.value.option == "mask"


# --- masks


def test_mask_is_l_mode_resized_nearest() -> None:
    source = Image.new("RGB", (8, 8), "black")
    source.paste((255, 255, 255), (0, 0, 4, 8))
    mask = mask_from_image(source, (64, 32))
    assert (mask.mode, mask.size) == ("L", (64, 32))
    assert set(mask.getdata()) == {0, 255}  # NEAREST: no grey edges
    assert (mask.getpixel((10, 10)), mask.getpixel((50, 10))) == (255, 0)


def test_mask_of_same_size_is_a_new_image() -> None:
    source = Image.new("L", (16, 16), 255)
    mask = mask_from_image(source, (16, 16))
    assert mask is not source and mask.getpixel((0, 0)) == 255


# --- regions


def test_parse_region() -> None:
    assert parse_region("0,0,256,256", 512, 512) == (0, 0, 256, 256)
    assert parse_region(" 10 , 20 , 30 , 40 ", 512, 512) == (10, 20, 30, 40)
    assert parse_region("256,256,256,256", 512, 512) == (256, 256, 256, 256)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("abc", "x,y,w,h"),
        ("1,2,3", "x,y,w,h"),
        ("-1,0,5,5", "x,y,w,h"),
        ("0.5,0,5,5", "x,y,w,h"),
        ("0,0,0,5", "at least 1"),
        ("0,0,600,10", "outside the 512x512 image"),
        ("500,500,20,20", "outside"),
        ("", "x,y,w,h"),
    ],
)
def test_bad_regions_name_the_option(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_region(text, 512, 512)
    assert caught.value.option == "region"
    assert fragment in caught.value.message
    assert "e.g. 0,0,256,256" in caught.value.message
