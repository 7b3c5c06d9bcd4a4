"""The Extras tab's upscale, without torch: the scale's bounds, the output size, A1111's postprocessing infotext
and the PNG that carries it.

A1111 (scripts/postprocessing_upscale.py, modules/postprocessing.py) upscales to `int(width × scale)` ×
`int(height × scale)`: the model runs (again, up to three passes, while the image is still smaller) and the
result is resized to that size with Lanczos. It keeps the input's own `parameters` text and adds two text
chunks, `postprocessing` and `extras`, each "Postprocess upscale by: 4, Postprocess upscaler: 4x-UltraSharp".
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, PngImagePlugin

from core.errors import InvalidRequest
from core.files import atomic_write

MIN_SCALE, MAX_SCALE = 1.0, 8.0  # A1111's "Resize" slider in the Extras tab
MAX_SIDE = 8192  # A1111's largest "scale to" side
DEFAULT_SCALE = 4.0
MODEL_PASSES = 3  # A1111 runs the model at most this many times to reach the size asked for
POSTPROCESS_KEYS = ("Postprocess upscale by", "Postprocess upscaler")


def format_number(value: float) -> str:
    """4.0 → "4", 2.5 → "2.5" (as A1111 writes the slider's values)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_scale(scale: float, size: tuple[int, int] | None = None) -> float:
    """The scale if it lies in A1111's bounds (and the output, for an input of `size`, within MAX_SIDE)."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise InvalidRequest("scale", f"{scale:g} is outside {MIN_SCALE:g}..{MAX_SCALE:g}")
    if size is not None:
        width, height = target_size(size, scale)
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(
                "scale",
                f"{size[0]}x{size[1]} × {scale:g} is {width}x{height}; the largest side allowed is {MAX_SIDE}",
            )
    return scale


def target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size A1111's Extras tab makes: each side times the scale, rounded down."""
    return int(size[0] * scale), int(size[1] * scale)


def postprocess_infotext(scale: float, upscaler: str) -> str:
    """A1111's postprocessing text for one upscale."""
    return f"Postprocess upscale by: {format_number(scale)}, Postprocess upscaler: {upscaler}"


def save_extras_png(
    image: Image.Image,
    path: Path,
    parameters: str | None,
    postprocessing: str,
    carried: dict[str, str] | None = None,
) -> Path:
    """Write `image` as PNG (atomically) with the input's other text chunks (`carried`), its `parameters`
    (when it had any) and A1111's `postprocessing` and `extras` chunks, as A1111's Extras keeps them."""
    info = PngImagePlugin.PngInfo()
    texts = {
        **(carried or {}),
        "parameters": parameters,
        "postprocessing": postprocessing,
        "extras": postprocessing,
    }
    for key, text in texts.items():
        if text:
            info.add_text(key, text)  # iTXt when not Latin-1, as A1111
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return atomic_write(path, buffer.getvalue())


def read_postprocessing(path: Path) -> str | None:
    """The `postprocessing` text of a PNG Salon or A1111 wrote (None when absent)."""
    with Image.open(path) as image:
        image.load()
        value = image.info.get("postprocessing")
    return value if isinstance(value, str) else None
