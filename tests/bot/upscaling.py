"""What the `/upscale` tests through the fake Discord share: tiny random-weight upscalers installed in the
session's models folder for one test, a small PNG to attach, and the messages an interaction shows."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from PIL import Image

from tests.tiny_upscalers import save_upscaler


@contextlib.contextmanager
def installed(salon, models: dict) -> Iterator[list[str]]:
    """`models` (file name: tiny model) saved in the models folder's ESRGAN/ for the block; their names."""
    folder = salon.settings.models_path / "ESRGAN"
    paths = [save_upscaler(model, folder / name) for name, model in models.items()]
    try:
        yield [path.stem for path in paths]
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
        salon.engine.registry.refresh()


def png(size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "green").save(buffer, format="PNG")
    return buffer.getvalue()


def shown(interaction) -> list:
    """The interaction's messages still shown (its reply and follow-ups, not deleted)."""
    return [m for m in (interaction.original, *interaction.followups) if m is not None and not m.deleted]
