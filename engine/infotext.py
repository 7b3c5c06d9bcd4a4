"""A1111 infotext: write, parse and store the text that describes how an image was made (SPEC §8).

Pure functions over str and Pillow images; nothing here imports torch, so the catalog can use it.

Format (A1111 `create_infotext` / `parse_generation_parameters`)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>          (omitted when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

Limits of the format that Salon enforces when writing (A1111 itself writes ambiguous text here):
- no line of the prompt or negative prompt may start with "Negative prompt:" (the reader would split there);
- parameter keys must match `\\w[\\w \\-/]+` and there must be at least 3 parameters (the reader only takes a
  last line with 3 or more `key: value` items as the parameter line);
- values that are empty, contain `,` `:` or a newline, start with `"` or have surrounding whitespace are
  JSON-quoted, so every value reads back exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
import tempfile
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, PngImagePlugin, UnidentifiedImageError

from engine.errors import InvalidImage, InvalidRequest

# Keys of A1111 v1.9/1.10 `create_infotext`, in the order it writes them; extra keys go between Tiling and
# Version. `Clip skip` is written by A1111 only when > 1: callers pass None for 1.
# fmt: off
INFOTEXT_KEY_ORDER: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight",
    "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG",
    "Tiling",
)
# fmt: on
_LAST_KEYS: tuple[str, ...] = ("Version", "User")

# A1111's `re_param`, kept verbatim as the definition of the parameter line; `_find_params` computes the same
# matches in linear time (this pattern is quadratic on long lines, and infotexts come from uploaded files).
PARAM_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_AT = re.compile(r"\s*+(\w[\w \-/]*+)?")
_SPACES = re.compile(r"\s*+")
_KEY_FULL = re.compile(r"\w[\w \-/]+")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_NEGATIVE_PREFIX = "Negative prompt:"
_MIN_PARAMS = 3

# A1111 >= 1.9 schedule labels (modules/sd_schedulers.py); lower-case names and aliases map to the label.
# fmt: off
SCHEDULE_LABELS: tuple[str, ...] = (
    "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
    "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
)
# fmt: on
_SCHEDULE_ALIASES: dict[str, str] = {
    **{label.lower(): label for label in SCHEDULE_LABELS},
    "sgm_uniform": "SGM Uniform",
    "sgmuniform": "SGM Uniform",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
}
# Longest first, so "X SGM Uniform" is not read as "X SGM" + "Uniform".
_SCHEDULE_SUFFIXES: tuple[str, ...] = tuple(sorted(_SCHEDULE_ALIASES, key=len, reverse=True))

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


# --- writing


def quote(value: object) -> str:
    """Write one value as A1111 does, JSON-quoting whenever the bare text would not read back the same."""
    text = str(value)
    if not text or text != text.strip() or text.startswith('"') or any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def normalize_prompt(text: str) -> str:
    """Unify newlines and strip every line and the whole, so a prompt reads back from infotext unchanged.

    A line that then starts with "Negative prompt:" cannot be represented; `format_infotext` refuses it.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.strip() for line in lines).strip()


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """Build A1111 infotext: prompt, optional negative line, then `key: value` items in A1111's key order."""
    check_prompt("prompt", prompt)
    check_prompt("negative_prompt", negative_prompt)
    items = [(key, value) for key, value in _ordered_items(params) if value is not None]
    if len(items) < _MIN_PARAMS:
        raise ValueError(f"infotext needs at least {_MIN_PARAMS} parameters to be readable, got {len(items)}")
    for key, _ in items:
        if not _KEY_FULL.fullmatch(key):
            raise ValueError(f"infotext key {key!r} does not match \\w[\\w \\-/]+")
    params_text = ", ".join(f"{key}: {quote(value)}" for key, value in items)
    negative_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{params_text}".strip()


def check_prompt(option: str, text: str) -> None:
    """Refuse a prompt with a line the reader would take for the negative prompt (call it before queuing)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip().startswith(_NEGATIVE_PREFIX):
            raise InvalidRequest(
                option, f'line {number} starts with "{_NEGATIVE_PREFIX}", which A1111 infotext cannot hold'
            )


def _ordered_items(params: Mapping[str, object]) -> list[tuple[str, object]]:
    """Known keys in A1111 order, then the others as given, then Version and User."""
    known = [(key, params[key]) for key in INFOTEXT_KEY_ORDER if key in params]
    extra = [(k, v) for k, v in params.items() if k not in INFOTEXT_KEY_ORDER and k not in _LAST_KEYS]
    last = [(key, params[key]) for key in _LAST_KEYS if key in params]
    return known + extra + last


# --- parsing


def split_sampler_name(name: str) -> tuple[str, str | None]:
    """Split a pre-1.9 combined name ("DPM++ 2M Karras") into sampler and schedule label, or (name, None)."""
    for suffix in _SCHEDULE_SUFFIXES:
        cut = len(name) - len(suffix)
        if cut > 1 and name[cut - 1] == " " and name[cut:].lower() == suffix:
            prefix = name[: cut - 1].rstrip()
            if prefix:
                return prefix, _SCHEDULE_ALIASES[suffix]
    return name, None


def _to_int(text: str | None) -> int | None:
    """An int from infotext text ("20", "20.0"), or None when absent or not a whole number."""
    if text is None:
        return None
    try:
        return int(text)  # exact, also for seeds beyond float precision
    except ValueError:
        number = _to_float(text)
    return int(number) if number is not None and number.is_integer() else None


def _to_float(text: str | None) -> float | None:
    """A finite float from infotext text, or None when absent or not a number."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Infotext:
    """One parsed infotext: the texts and raw `key: value` strings, with typed views and A1111 defaults."""

    prompt: str
    negative_prompt: str
    params: dict[str, str]

    def to_text(self) -> str:
        """Write this infotext back: values as read, re-quoted where needed (limits of format_infotext)."""
        return format_infotext(self.prompt, self.negative_prompt, self.params)

    @property
    def steps(self) -> int | None:
        """Sampling steps."""
        return _to_int(self.params.get("Steps"))

    @property
    def sampler(self) -> str | None:
        """Sampler name, with a legacy schedule suffix ("DPM++ 2M Karras") removed."""
        raw = self.params.get("Sampler")
        return None if raw is None else split_sampler_name(raw)[0]

    @property
    def schedule_type(self) -> str:
        """The `Schedule type` key, else the legacy sampler suffix, else A1111's default "Automatic"."""
        explicit = self.params.get("Schedule type")
        if explicit:
            return _SCHEDULE_ALIASES.get(explicit.lower(), explicit)
        legacy = split_sampler_name(self.params.get("Sampler", ""))[1]
        return legacy or "Automatic"

    @property
    def cfg_scale(self) -> float | None:
        """Classifier-free guidance scale."""
        return _to_float(self.params.get("CFG scale"))

    @property
    def seed(self) -> int | None:
        """Seed of the first image."""
        return _to_int(self.params.get("Seed"))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) from `Size: WxH`."""
        match = _SIZE.match(self.params.get("Size", ""))
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def width(self) -> int | None:
        """Width in pixels from `Size`."""
        return self.size[0] if self.size else None

    @property
    def height(self) -> int | None:
        """Height in pixels from `Size`."""
        return self.size[1] if self.size else None

    @property
    def model(self) -> str | None:
        """Checkpoint name as written."""
        return self.params.get("Model")

    @property
    def model_hash(self) -> str | None:
        """A1111 short hash of the checkpoint (10 hex)."""
        return self.params.get("Model hash")

    @property
    def clip_skip(self) -> int:
        """CLIP layers skipped; A1111 default 1 (the key is only written when > 1)."""
        return _to_int(self.params.get("Clip skip")) or 1

    @property
    def denoising_strength(self) -> float | None:
        """img2img / hires denoising strength."""
        return _to_float(self.params.get("Denoising strength"))

    @property
    def variation_seed(self) -> int | None:
        """A1111 subseed."""
        return _to_int(self.params.get("Variation seed"))

    @property
    def variation_seed_strength(self) -> float | None:
        """A1111 subseed strength."""
        return _to_float(self.params.get("Variation seed strength"))

    @property
    def version(self) -> tuple[int, ...] | None:
        """Writer version as numbers ("v1.9.0" -> (1, 9, 0)); None when absent or not a version number."""
        match = _VERSION.match(self.params.get("Version", ""))
        if match is None:
            return None
        return tuple(int(part) for part in match.groups() if part is not None)


def parse_infotext(text: str) -> Infotext:
    """Read infotext exactly as A1111's `parse_generation_parameters`; never raises on any str."""
    *lines, last_line = text.strip().split("\n")
    found = _find_params(last_line)
    if len(found) < _MIN_PARAMS:
        lines.append(last_line)
        found = []
    prompt, negative_prompt = _split_prompts(lines)
    params: dict[str, str] = {}
    for key, value in found:
        if value:  # A1111 drops an empty value (its `v[0]` raises and the item is skipped)
            params[key] = _unquote(value)
    return Infotext(prompt, negative_prompt, params)


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """Lines before the first "Negative prompt:" line are the prompt, the rest the negative prompt."""
    prompt: list[str] = []
    negative: list[str] = []
    done_with_prompt = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            done_with_prompt = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        (negative if done_with_prompt else prompt).append(line)
    return _join_like_a1111(prompt), _join_like_a1111(negative)


def _join_like_a1111(lines: list[str]) -> str:
    """A1111 joins with "\\n" but adds no separator while the text so far is empty (leading blanks vanish)."""
    first = next((index for index, line in enumerate(lines) if line), len(lines))
    return "\n".join(lines[first:])


def _unquote(value: str) -> str:
    """JSON-decode a quoted value, keeping the raw text when it is not valid JSON."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _find_params(line: str) -> list[tuple[str, str]]:
    """`PARAM_PATTERN.findall(line)` in linear time.

    A start inside a run of key characters fails exactly when the run's first start fails (the run ends at
    the same place), so a failed start jumps past the run instead of retrying every position.
    """
    found: list[tuple[str, str]] = []
    closing: list[int] | None = None
    pos, size = 0, len(line)
    while pos < size:
        key_match = _KEY_AT.match(line, pos)
        key, key_end = key_match.group(1), key_match.end()
        if key is None:
            pos = key_end + 1
            continue
        if len(key) < 2 or key_end >= size or line[key_end] != ":":
            pos = key_end
            continue
        start = _SPACES.match(line, key_end + 1).end()
        if start < size and line[start] == '"':
            closing = closing if closing is not None else _closing_quotes(line)
            close = closing[start + 1]
            if close > start + 1 and _ends_item(line, close + 1):
                found.append((key, line[start : close + 1]))
                pos = close + 2
                continue
        comma = line.find(",", start)
        end = size if comma < 0 else comma
        found.append((key, line[start:end]))
        pos = end + 1
    return found


def _ends_item(line: str, index: int) -> bool:
    """`(?:,|$)` at index: a comma, the end, or (as `$` does) a final newline."""
    return index == len(line) or line[index] == "," or (index == len(line) - 1 and line[index] == "\n")


def _closing_quotes(line: str) -> list[int]:
    """For each index, where `(?:\\\\.|[^\\\\"])*"` starting there ends (the closing quote), or -1."""
    closing = [-1] * (len(line) + 2)
    for index in range(len(line) - 1, -1, -1):
        char = line[index]
        if char == '"':
            closing[index] = index
        elif char == "\\":
            escapable = index + 1 < len(line) and line[index + 1] != "\n"
            closing[index] = closing[index + 2] if escapable else -1
        else:
            closing[index] = closing[index + 1]
    return closing


# --- reading files


def read_infotext(path: str | os.PathLike[str]) -> str | None:
    """Infotext of an image file: PNG `parameters`, else EXIF UserComment, else a `.txt` sidecar.

    Reads headers and metadata only, never pixels. Raises InvalidImage for a file that is not a readable
    image; a missing file raises FileNotFoundError.
    """
    path = Path(path)
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
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp makes 0600; the gallery server must read the file
            image.save(file, format=image_format, **options)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return path


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
