"""Safe image input: decide from the file header whether to decode at all, then decode with clear errors.

Uploaded images are hostile until checked (SPEC §10): the type comes from the content, never the name; the
byte size and the declared pixel count are checked before Pillow decodes anything, so a decompression bomb
costs a header read. Only stdlib, Pillow and numpy; no torch.

Files on disk (`salon import`, the catalog's integrity repair, `salon pnginfo`) are checked the same way by
`check_image_file`, which reads only the header and the chunk/segment headers (a few KB, never the pixel data
or a whole text chunk): the type, the byte size, the declared pixels, and the size of the metadata a decoder
would read into memory before the pixels (PNG text chunks, JPEG segments, WebP chunks).
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from core.errors import InvalidImage, InvalidRequest

MIN_SIDE = 8  # smaller images cannot be encoded to a single latent pixel (VAE factor 8)
ACCEPTED = "PNG, JPEG, WebP, GIF or BMP"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_GRAY16_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# JPEG frame headers: SOF0-3, 5-7, 9-11, 13-15 (0xC4 DHT, 0xC8 JPG and 0xCC DAC share the range).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_REGION = re.compile(r"\s*([0-9]{1,6})\s*,\s*([0-9]{1,6})\s*,\s*([0-9]{1,6})\s*,\s*([0-9]{1,6})\s*")
# What a decoder reads into memory before (or besides) the pixels, checked from the chunk headers:
MAX_TEXT_CHUNK_BYTES = 1 << 20  # one PNG text chunk (an A1111 infotext is a few KB; Pillow's cap is 1 MiB)
MAX_METADATA_BYTES = 16 << 20  # all PNG chunks, JPEG segments or WebP chunks that are not pixel data
MAX_WEBP_BYTES = 64 << 20  # Pillow reads a WebP file whole before decoding it
MAX_STRUCTURE_ITEMS = 100_000  # PNG chunks, or JPEG markers before the scan, walked before giving up
_PNG_TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_PNG_PIXEL_DATA = frozenset({b"IDAT", b"fdAT"})
_WEBP_PIXEL_DATA = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANMF"})


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says: its type (a Pillow format name) and declared size."""

    kind: str
    width: int
    height: int


def open_image_checked(
    source: bytes | Path,
    *,
    max_pixels: int,
    max_bytes: int,
    option: str = "image",
    keep_alpha: bool = False,
) -> Image.Image:
    """Check size, type and declared pixels from the header, then decode the first frame fully.

    Returns RGB (transparency flattened onto white, as A1111's img2img does) or, with `keep_alpha`, RGBA when
    the image has transparency. Raises InvalidImage naming `option` with the reason and the limit.
    """
    data = _read_limited(source, max_bytes, option)
    kind = sniff_format(data)
    if kind is None:
        message = f"is not a {ACCEPTED} image (the type is read from the content, not the name)"
        raise InvalidImage(option, message)
    _check_dimensions(*_declared_size(data, kind, option), max_pixels=max_pixels, option=option)
    check_structure(data, kind, option)
    image = _decode(data, kind, max_pixels=max_pixels, option=option)
    return _to_rgb(image, keep_alpha=keep_alpha)


def check_image_file(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None,
    max_bytes: int | None,
    option: str = "image",
    known_type: bool = True,
    min_side: int = 1,
) -> ImageHeader | None:
    """Decide from a file's header alone whether decoding it is safe; reads a few KB, never the pixel data.

    Checks the byte size, the type from the content, the declared pixels (at most `max_pixels`, None: no
    limit, for readers of metadata that decode nothing; at least `min_side` on a side) and the metadata
    sizes (`check_structure`). Raises InvalidImage naming `option` with the reason; a missing file raises
    FileNotFoundError. With `known_type=False` a file of a type not sniffed here (TIFF) passes unchecked
    and None is returned.
    """
    with Path(path).open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        _check_byte_size(size, max_bytes, option)
        data = _FileBytes(file.fileno(), size)
        kind = sniff_format(data[:16])
        if kind is None:
            if not known_type:
                return None
            message = f"is not a {ACCEPTED} image (the type is read from the content, not the name)"
            raise InvalidImage(option, message)
        width, height = _declared_size(data, kind, option)
        if max_pixels is not None:
            _check_dimensions(width, height, max_pixels=max_pixels, option=option, min_side=min_side)
        check_structure(data, kind, option)
        return ImageHeader(kind, width, height)


class _FileBytes:
    """A read-only bytes-like view of an open file, read on demand with pread (the header readers index it).

    Not mmap: a file cut short while it is read must give an error, not kill the process with SIGBUS."""

    _PREFIX = 64 * 1024

    def __init__(self, descriptor: int, size: int) -> None:
        self._descriptor = descriptor
        self._size = size
        self._prefix = os.pread(descriptor, min(size, self._PREFIX), 0)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: int | slice) -> bytes | int:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("only contiguous slices")
            if stop <= len(self._prefix):
                return self._prefix[start:stop]
            return os.pread(self._descriptor, max(0, stop - start), start) if stop > start else b""
        index = key + self._size if key < 0 else key
        if not 0 <= index < self._size:
            raise IndexError("read past the end of the file")
        if index < len(self._prefix):
            return self._prefix[index]
        byte = os.pread(self._descriptor, 1, index)
        if not byte:
            raise IndexError("the file became shorter while it was read")
        return byte[0]


def check_structure(data, kind: str, option: str = "image") -> None:
    """Refuse what a decoder would read into memory besides the pixels, from the chunk headers: a PNG text
    chunk over MAX_TEXT_CHUNK_BYTES, more than MAX_METADATA_BYTES of metadata, a WebP over MAX_WEBP_BYTES, or
    more than MAX_STRUCTURE_ITEMS chunks. `data` is bytes or a file view; formats without such parts pass."""
    checks = {"PNG": _png_structure, "JPEG": _jpeg_structure, "WEBP": _webp_structure}
    if kind in checks:
        try:
            checks[kind](data, option)
        except (struct.error, IndexError) as error:
            raise InvalidImage(option, f"the {kind} structure is damaged or truncated") from error


def _png_structure(data, option: str) -> None:
    """Walk the chunk headers (8 bytes each, the data skipped) to IEND or the end of the file."""
    position, metadata = len(b"\x89PNG\r\n\x1a\n"), 0
    for _ in range(MAX_STRUCTURE_ITEMS):
        if position + 8 > len(data):
            return  # truncated: the decoder says so, with what it could read
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if length > 0x7FFFFFFF:
            raise InvalidImage(option, "the PNG chunk structure is damaged (a chunk longer than 2 GiB)")
        if kind == b"IEND":
            return
        if kind not in _PNG_PIXEL_DATA:
            name = kind.decode("latin-1", errors="replace")
            if kind in _PNG_TEXT and length > MAX_TEXT_CHUNK_BYTES:
                raise InvalidImage(
                    option,
                    f"has a text chunk ({name}) of {_bytes_text(length)}, more than the limit of "
                    f"{_bytes_text(MAX_TEXT_CHUNK_BYTES)}; it is not read",
                )
            metadata += length
            _check_metadata(metadata, option)
        position += 12 + length
    raise InvalidImage(option, f"has more than {MAX_STRUCTURE_ITEMS:,} PNG chunks")


def _jpeg_structure(data, option: str) -> None:
    """Sum the marker segments before the scan (APPn, COM, tables), which Pillow keeps in memory."""
    metadata = 0
    for _marker, _position, length in _jpeg_segments(data, option):
        metadata += length
        _check_metadata(metadata, option)


def _webp_structure(data, option: str) -> None:
    """Refuse a WebP bigger than MAX_WEBP_BYTES (read whole), or with too much metadata (EXIF, XMP, ICCP)."""
    if len(data) > MAX_WEBP_BYTES:
        raise InvalidImage(
            option,
            f"is a WebP of {_bytes_text(len(data))}, more than the limit of {_bytes_text(MAX_WEBP_BYTES)}",
        )
    position, metadata = 12, 0
    for _ in range(MAX_STRUCTURE_ITEMS):
        if position + 8 > len(data):
            return
        kind, length = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        if kind not in _WEBP_PIXEL_DATA:
            metadata += length
            _check_metadata(metadata, option)
        position += 8 + length + (length & 1)
    raise InvalidImage(option, f"has more than {MAX_STRUCTURE_ITEMS:,} WebP chunks")


def _check_metadata(total: int, option: str) -> None:
    if total > MAX_METADATA_BYTES:
        raise InvalidImage(
            option,
            f"has more than {_bytes_text(MAX_METADATA_BYTES)} of metadata besides the pixels; it is not read",
        )


def _read_limited(source: bytes | Path, max_bytes: int, option: str) -> bytes:
    """The file's bytes, refusing an empty file or one over max_bytes (a file by its size, before reading)."""
    if isinstance(source, bytes | bytearray | memoryview):
        _check_byte_size(len(source), max_bytes, option)
        return bytes(source)
    path = Path(source)
    try:
        _check_byte_size(path.stat().st_size, max_bytes, option)
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise InvalidImage(option, f"cannot read the file ({error.strerror or error})") from error
    _check_byte_size(len(data), max_bytes, option)  # it may have changed since stat
    return data


def _check_byte_size(size: int, max_bytes: int | None, option: str) -> None:
    """Refuse an empty file and one over the byte limit (None: no limit)."""
    if size == 0:
        raise InvalidImage(option, "the file is empty")
    if max_bytes is not None and size > max_bytes:
        limit = _bytes_text(max_bytes)
        raise InvalidImage(option, f"the file is {_bytes_text(size)}, more than the limit of {limit}")


def _bytes_text(size: int) -> str:
    """A byte count for people: 512 bytes, 1.5 KiB, 8.0 MiB."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name from the file's magic bytes (PNG, JPEG, WEBP, GIF, BMP), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _declared_size(data: bytes, kind: str, option: str) -> tuple[int, int]:
    """(width, height) as the header declares it, read without decoding any pixels."""
    readers = {"PNG": _png_size, "JPEG": _jpeg_size, "WEBP": _webp_size, "GIF": _gif_size, "BMP": _bmp_size}
    try:
        size = readers[kind](data)
    except (struct.error, IndexError):
        size = None
    if size is None:
        raise InvalidImage(option, f"the {kind} header is damaged or truncated")
    return size


def _png_size(data: bytes) -> tuple[int, int] | None:
    """IHDR width and height (the first chunk of every PNG)."""
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif_size(data: bytes) -> tuple[int, int]:
    """Logical screen size (what Pillow reports as the image size)."""
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _bmp_size(data: bytes) -> tuple[int, int]:
    """Width and height from the DIB header (OS/2 core or Windows; a negative height means top-down)."""
    if int.from_bytes(data[14:18], "little") == 12:
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """Canvas size from the VP8X, VP8L or VP8 header that follows the RIFF header."""
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOF marker segment, walking the marker segments before it."""
    try:
        for marker, pos, _length in _jpeg_segments(data, "image"):
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return width, height
    except InvalidImage:
        return None
    return None


def _jpeg_segments(data, option: str):
    """(marker, position, length) of each marker segment with a length, up to the start of the scan.

    Stops at the end of the data, at a byte that is not a marker, at EOI or SOS; refuses a file with more
    than MAX_STRUCTURE_ITEMS markers or fill bytes (each costs a step here and in the decoder)."""
    pos = 2
    for _ in range(MAX_STRUCTURE_ITEMS):
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        elif marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        else:
            length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            yield marker, pos, length
            pos += 2 + length
    raise InvalidImage(option, f"has more than {MAX_STRUCTURE_ITEMS:,} JPEG markers before its image data")


def _check_dimensions(
    width: int, height: int, *, max_pixels: int, option: str, min_side: int = MIN_SIDE
) -> None:
    """Refuse too many pixels (a decompression bomb) and images smaller than `min_side` on a side."""
    if width * height > max_pixels:
        raise InvalidImage(
            option,
            f"is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,} pixels",
        )
    if width < min_side or height < min_side:
        raise InvalidImage(option, f"is {width}x{height}; the minimum is {min_side}x{min_side} pixels")


def _decode(data: bytes, kind: str, *, max_pixels: int, option: str) -> Image.Image:
    """Decode the first frame with only the sniffed format's decoder; damage becomes InvalidImage."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
            # Pillow's idea of the size (e.g. a GIF frame) must pass the same limits as the header did.
            _check_dimensions(*image.size, max_pixels=max_pixels, option=option)
            image.load()  # the first frame only: later frames of a GIF/WebP/APNG are never decoded
    except InvalidImage:
        raise
    except Image.DecompressionBombError as error:
        raise InvalidImage(option, f"has more pixels than the decoder allows ({error})") from error
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error… on damage
        reason = str(error) or type(error).__name__
        raise InvalidImage(option, f"the {kind} data is damaged or truncated ({reason})") from error
    _apply_orientation(image)
    return image


def _apply_orientation(image: Image.Image) -> None:
    """Turn the pixels as the EXIF Orientation tag says (phone photos), as A1111 does for img2img input."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # a damaged EXIF block only costs the orientation, not the image
        return


def _to_rgb(image: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """RGB, or RGBA when asked and the image has transparency; dropped alpha is flattened onto white."""
    if image.mode in _GRAY16_MODES:
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    if keep_alpha:
        return rgba
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    return flat.convert("RGB")


def mask_from_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An inpainting mask ("L", white = repaint) from any image, resized with NEAREST to `size`."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"mask size must be positive, got {width}x{height}")
    mask = image.convert("L")
    return mask if mask.size == (width, height) else mask.resize((width, height), Image.Resampling.NEAREST)


def parse_region(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Parse "x,y,w,h" in pixels and check that the rectangle lies inside a width x height image."""
    example = f"e.g. 0,0,{max(1, width // 2)},{max(1, height // 2)}"
    match = _REGION.fullmatch(text)
    if match is None:
        raise InvalidRequest("region", f"{text!r} is not x,y,w,h in whole pixels ({example})")
    x, y, w, h = (int(group) for group in match.groups())
    if w < 1 or h < 1:
        raise InvalidRequest("region", f"width and height must be at least 1 pixel ({example})")
    if x + w > width or y + h > height:
        raise InvalidRequest(
            "region", f"{x},{y},{w},{h} reaches outside the {width}x{height} image ({example})"
        )
    return x, y, w, h
