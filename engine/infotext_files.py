"""Reading and writing infotext in image files: PNG `parameters` chunks, EXIF UserComment, `.txt` sidecars.

Split from `engine.infotext` (the text format itself). Pure Python and Pillow; nothing here imports torch.
Reading never decodes pixels where it can avoid it and turns every malformed file into `InvalidImage`;
writing goes through a temporary file and a rename, so a crash never leaves half an image.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from core.errors import InvalidImage, InvalidRequest
from core.files import atomic_write_with
from engine.image_io import check_image_file

# EXIF UserComment: 8-byte character-code prefix, then the text (EXIF 2.3 §4.6.5).
_UNICODE_PREFIX = b"UNICODE\0"
_ASCII_PREFIX = b"ASCII\0\0\0"
_JIS_PREFIX = b"JIS\0\0\0\0\0"
_USER_COMMENT = int(ExifTags.Base.UserComment)
_EXIF_IFD = int(ExifTags.IFD.Exif)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT_BYTES = 1 << 20  # like Pillow's MAX_TEXT_CHUNK: a bigger text chunk or sidecar is ignored
_READ_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes MPO
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
SAVE_QUALITY = 90  # JPEG/WebP quality Salon writes; A1111's default is 80
_JPEG_EXIF_LIMIT = 65533  # one APP1 segment


# --- reading files


def read_infotext(path: str | os.PathLike[str]) -> str | None:
    """Infotext of an image file: PNG `parameters`, else EXIF UserComment, else a `.txt` sidecar.

    Reads headers and metadata only, never pixels. Raises InvalidImage for a file that is not a readable
    image, or whose metadata is hostile (a text chunk over 1 MiB: `image_io.check_structure`, checked from
    the chunk headers before Pillow reads any of it); a missing file raises FileNotFoundError.
    """
    path = Path(path)
    check_image_file(path, max_pixels=None, max_bytes=None, known_type=False)
    with path.open("rb") as file:
        image = _open_for_metadata(file)
        with image:
            if image.format == "PNG":
                text, exif_data = _png_metadata(file)
                text = text or _user_comment_from_exif_bytes(exif_data)
            else:
                text = _exif_user_comment(image)
    return text or _read_sidecar(path)


def read_infotext_from_image(image: Image.Image) -> str | None:
    """Infotext of an opened image: PNG `parameters` text, else EXIF UserComment; None when it has none."""
    value = image.info.get("parameters")
    if value is None and image.format == "PNG" and _needs_load(image):
        _load_checked(image)  # Pillow only sees chunks after IDAT (text, eXIf) once the pixels are read
        value = image.info.get("parameters")
    return _clean_text(value) or _exif_user_comment(image)


def _open_for_metadata(file: BinaryIO) -> Image.Image:
    """Open an image header with Pillow, turning any decoder complaint into InvalidImage."""
    if file.seek(0, os.SEEK_END) == 0:
        raise InvalidImage("image", "the file is empty")
    file.seek(0)
    # Pillow raises many types (OSError, SyntaxError, ValueError, struct.error, DecompressionBombError…)
    # on malformed input; all mean "not an image we can read".
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(file, formats=_READ_FORMATS)
    except UnidentifiedImageError as error:
        raise InvalidImage("image", "is not a PNG, JPEG, WebP, GIF, BMP or TIFF image") from error
    except Image.DecompressionBombError as error:
        raise InvalidImage("image", f"declares too many pixels ({error})") from error
    except Exception as error:
        raise InvalidImage("image", f"the image header is damaged ({_describe(error)})") from error


def _needs_load(image: Image.Image) -> bool:
    """Whether a lazily opened file image has not read its pixel data (and trailing chunks) yet."""
    return getattr(image, "fp", None) is not None and bool(getattr(image, "tile", None))


def _load_checked(image: Image.Image) -> None:
    """Read the pixel data, turning truncation and decoder errors into InvalidImage."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Exception as error:  # see _open_for_metadata
        raise InvalidImage("image", f"the image data is damaged ({_describe(error)})") from error


def _describe(error: Exception) -> str:
    """A short reason from a Pillow exception, without a traceback."""
    return str(error) or type(error).__name__


def _clean_text(value: object) -> str | None:
    """A stripped str, or None when empty or not text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    return value.strip("\0").strip() or None


def _png_metadata(file: BinaryIO) -> tuple[str | None, bytes | None]:
    """The `parameters` text and eXIf data of a PNG, wherever they sit (also after IDAT), pixels unread."""
    text: str | None = None
    exif: bytes | None = None
    file.seek(len(_PNG_SIGNATURE))
    while text is None and (header := file.read(8)) and len(header) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"IEND":
            break
        if length > MAX_TEXT_BYTES or (kind not in _PNG_TEXT_CHUNKS and kind != b"eXIf"):
            file.seek(length + 4, os.SEEK_CUR)
            continue
        data = file.read(length)
        file.seek(4, os.SEEK_CUR)  # CRC
        if kind == b"eXIf":
            exif = exif or data
        else:
            text = _png_text_chunk(kind, data, "parameters")
    return text, exif


def _png_text_chunk(kind: bytes, data: bytes, wanted: str) -> str | None:
    """The text of a tEXt/zTXt/iTXt chunk if its keyword is `wanted` (PNG spec §11.3.4)."""
    keyword, _, rest = data.partition(b"\0")
    if keyword.decode("latin-1") != wanted:
        return None
    try:
        if kind == b"tEXt":
            return _clean_text(rest.decode("latin-1"))
        if kind == b"zTXt":
            return _clean_text(_inflate(rest[1:]).decode("latin-1"))
        compressed, method = rest[:1] == b"\1", rest[1:2]
        _language, _, rest = rest[2:].partition(b"\0")
        _translated, _, payload = rest.partition(b"\0")
        if compressed and method != b"\0":
            return None
        return _clean_text((_inflate(payload) if compressed else payload).decode("utf-8", errors="replace"))
    except (zlib.error, ValueError):
        return None


def _inflate(data: bytes) -> bytes:
    """zlib-decompress at most MAX_TEXT_BYTES (a text chunk must not be a decompression bomb)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def _exif_user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment of an opened image, decoded; None when absent or unreadable."""
    try:
        exif = image.getexif()
    except Exception:  # a damaged EXIF block must not hide the image; see _open_for_metadata
        return None
    return _user_comment(exif)


def _user_comment_from_exif_bytes(data: bytes | None) -> str | None:
    """The UserComment of raw EXIF (TIFF) bytes, as found in a PNG eXIf chunk."""
    if not data:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # see _exif_user_comment
        return None
    return _user_comment(exif)


def _user_comment(exif: Image.Exif) -> str | None:
    """UserComment from the Exif IFD (or IFD0, where some writers put it), decoded."""
    try:
        value = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT, exif.get(_USER_COMMENT))
    except Exception:  # see _exif_user_comment
        return None
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, bytes | bytearray):
        return _clean_text(decode_user_comment(bytes(value)))
    return None


def decode_user_comment(data: bytes) -> str:
    """Decode an EXIF UserComment by its 8-byte prefix: UNICODE = UTF-16, ASCII, JIS; else UTF-8."""
    prefix, payload = data[:8], data[8:]
    if prefix == _UNICODE_PREFIX:
        return _decode_utf16(payload)
    if prefix == _ASCII_PREFIX:
        return payload.decode("ascii", errors="replace")
    if prefix == _JIS_PREFIX:
        return payload.decode("shift_jis", errors="replace")
    if prefix == b"\0" * 8:
        return payload.decode("utf-8", errors="replace")
    return data.decode("utf-8", errors="ignore")  # as A1111 when piexif cannot read it


def _decode_utf16(payload: bytes) -> str:
    """UTF-16 of either byte order: a BOM decides, else where the zero bytes of ASCII text sit; BE first."""
    if payload[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return payload.decode("utf-16", errors="replace")
    payload = payload[: len(payload) - len(payload) % 2]
    little = payload[1::2].count(0) > payload[0::2].count(0)
    return payload.decode("utf-16-le" if little else "utf-16-be", errors="replace")


def _read_sidecar(path: Path) -> str | None:
    """The `.txt` file with the image's stem (A1111 `save_txt`), if present and small."""
    sidecar = path.with_suffix(".txt")
    if sidecar == path or not sidecar.is_file() or sidecar.stat().st_size > MAX_TEXT_BYTES:
        return None
    return _clean_text(sidecar.read_bytes().decode("utf-8", errors="replace"))


# --- writing files


def save_image_with_infotext(image: Image.Image, path: str | os.PathLike[str], infotext: str) -> Path:
    """Save `image` with its infotext (PNG text chunk, JPEG/WebP EXIF UserComment), atomically."""
    path = Path(path)
    image_format = _SAVE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        allowed = ", ".join(sorted(_SAVE_FORMATS))
        raise InvalidRequest("format", f"cannot save {path.name!r}; use one of {allowed}")
    options = _png_options(infotext) if image_format == "PNG" else _exif_options(image_format, infotext)
    image = _savable(image, image_format)

    def write(temp: Path) -> None:
        with open(temp, "wb") as file:
            image.save(file, format=image_format, **options)

    return atomic_write_with(path, write)  # mode 0644: the gallery server must read the file


def _png_options(infotext: str) -> dict[str, object]:
    """Pillow save options for a PNG: a `parameters` text chunk (iTXt when not Latin-1), as A1111."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    return {"pnginfo": info}


def _exif_options(image_format: str, infotext: str) -> dict[str, object]:
    """Pillow save options for JPEG/WebP: EXIF UserComment "UNICODE\\0" + UTF-16-BE, as piexif writes."""
    data = exif_with_user_comment(_UNICODE_PREFIX + infotext.encode("utf-16-be"))
    if image_format == "JPEG" and len(data) > _JPEG_EXIF_LIMIT:
        raise InvalidRequest("infotext", f"{len(infotext)} characters is too long for JPEG EXIF; save as PNG")
    return {"exif": data, "quality": SAVE_QUALITY}


def exif_with_user_comment(comment: bytes) -> bytes:
    """EXIF block "Exif\\0\\0" + big-endian TIFF: IFD0 -> Exif IFD -> UserComment, the layout piexif writes.

    Built by hand because Pillow's Exif writer stores UserComment as type BYTE, which A1111 (piexif) then
    reads as a tuple of ints and fails on; EXIF requires UNDEFINED (7).
    """
    exif_ifd_offset = 8 + 2 + 12 + 4  # after the TIFF header and IFD0 (one entry, next-IFD link)
    comment_offset = exif_ifd_offset + 2 + 12 + 4
    return b"".join(
        (
            b"Exif\0\0MM\0*" + struct.pack(">I", 8),
            struct.pack(">HHHII", 1, _EXIF_IFD, 4, 1, exif_ifd_offset) + struct.pack(">I", 0),  # LONG
            struct.pack(">HHHII", 1, _USER_COMMENT, 7, len(comment), comment_offset) + struct.pack(">I", 0),
            comment,
        )
    )


def _savable(image: Image.Image, image_format: str) -> Image.Image:
    """Convert modes the target format cannot store (JPEG has no alpha or palette)."""
    if image_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        return image.convert("RGB")
    if image_format == "WEBP" and image.mode not in ("RGB", "RGBA"):
        return image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return image
