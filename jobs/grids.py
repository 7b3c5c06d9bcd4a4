"""Labelled image grids as A1111 draws them for its X/Y/Z plot and prompt matrix: the cells side by side in
rows, the X legends above the columns, the Y legends left of the rows, and (one grid per Z value) the Z legend
as a title above. Plain Pillow; the layout follows A1111's (a font of (w + h) / 25 px for w × h cells, a left
margin of ¾ of a cell's width when there are row legends, legends wrapped to fit), drawn with our own code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

TEXT = (0, 0, 0)


def image_grid(images: Sequence[Image.Image], columns: int) -> Image.Image:
    """The images in rows of `columns`, each in a cell the size of the first one."""
    width, height = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * width, rows * height), "black")
    for index, image in enumerate(images):
        grid.paste(image.convert("RGB"), (index % columns * width, index // columns * height))
    return grid


@dataclass(frozen=True)
class Legends:
    """What a grid's margins say: one text per column, one per row, and a title (empty: none)."""

    columns: tuple[str, ...]
    rows: tuple[str, ...]
    title: str = ""


def annotated_grid(images: Sequence[Image.Image], columns: int, legends: Legends) -> Image.Image:
    """The grid of `images` with its legends in white margins (no margin where there is no text)."""
    grid = image_grid(images, columns)
    width, height = images[0].size
    size = max(8, (width + height) // 25)
    font = _font(size)
    spacing = size // 2
    pad_left = width * 3 // 4 if any(legends.rows) else 0
    top_lines = [_wrap(text, font, width) for text in legends.columns]
    title_lines = _wrap(legends.title, font, grid.width + pad_left) if legends.title else []
    line_height = _line_height(font) + spacing // 2
    pad_top = (
        (max(len(lines) for lines in top_lines) * line_height + spacing * 2) if any(legends.columns) else 0
    )
    pad_title = len(title_lines) * line_height + spacing * 2 if title_lines else 0
    result = Image.new("RGB", (grid.width + pad_left, grid.height + pad_top + pad_title), "white")
    result.paste(grid, (pad_left, pad_top + pad_title))
    draw = ImageDraw.Draw(result)
    if title_lines:
        _draw_lines(draw, title_lines, font, result.width / 2, pad_title / 2, line_height)
    for column, lines in enumerate(top_lines):
        centre = pad_left + column * width + width / 2
        _draw_lines(draw, lines, font, centre, pad_title + pad_top / 2, line_height)
    for row, text in enumerate(legends.rows):
        lines = _wrap(text, font, max(pad_left - spacing, 1))
        _draw_lines(
            draw, lines, font, pad_left / 2, pad_title + pad_top + row * height + height / 2, line_height
        )
    return result


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return bottom - top


def _wrap(text: str, font, width: float) -> list[str]:
    """The text in lines no wider than `width` (a word longer than that stays whole on its line)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], font, x: float, y: float, height: int) -> None:
    """Lines centred on (x, y)."""
    top = y - len(lines) * height / 2
    for index, line in enumerate(lines):
        draw.text((x, top + index * height + height / 2), line, font=font, fill=TEXT, anchor="mm")
