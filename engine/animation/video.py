"""Frames to files people can post: MP4 (H.264 through PyAV's FFmpeg), GIF and animated WebP (Pillow).

MP4 is what Deforum writes (libx264, CRF 17, yuv420p so every player reads it); `shrink_mp4` re-encodes one
that is too large for a Discord upload at a higher CRF and, if needed, a smaller size.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from PIL import Image

from core.files import atomic_write_with

FORMATS = ("mp4", "gif", "webp")
DEFAULT_CRF = 17  # Deforum's default quality


def write_mp4(
    frames: Sequence[Image.Image], path: Path, fps: float, crf: int = DEFAULT_CRF, scale: float = 1.0
) -> Path:
    """H.264 in an MP4 at `fps` (written to a temporary name, then moved into place)."""
    import av

    width, height = _even(frames[0].width * scale), _even(frames[0].height * scale)
    rate = Fraction(fps).limit_denominator(1001)

    def encode(partial: Path) -> None:
        with av.open(str(partial), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for image in frames:
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.LANCZOS)
                for packet in stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_write_with(path, encode)


def write_gif(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    """An endlessly looping GIF (frame time rounded to 10 ms, GIF's unit)."""
    duration = max(20, round(1000 / fps / 10) * 10)
    return _save_animated(frames, path, "GIF", duration=duration, loop=0, optimize=False)


def write_webp(frames: Sequence[Image.Image], path: Path, fps: float) -> Path:
    """An endlessly looping animated WebP."""
    return _save_animated(frames, path, "WEBP", duration=round(1000 / fps), loop=0, quality=85)


def _save_animated(frames: Sequence[Image.Image], path: Path, fmt: str, **options) -> Path:
    first, *rest = [frame.convert("RGB") for frame in frames]
    return atomic_write_with(
        path, lambda partial: first.save(partial, format=fmt, save_all=True, append_images=rest, **options)
    )


def write_videos(
    frames: Sequence[Image.Image], folder: Path, stem: str, fps: float, formats: Sequence[str]
) -> list[Path]:
    """The animation in each of `formats` (mp4, gif, webp) as `<folder>/<stem>.<format>`."""
    writers = {"mp4": write_mp4, "gif": write_gif, "webp": write_webp}
    return [writers[fmt](frames, folder / f"{stem}.{fmt}", fps) for fmt in formats]


def shrink_mp4(path: Path, limit_bytes: int) -> tuple[Path, str] | None:
    """A smaller copy of an MP4 that fits `limit_bytes` (higher CRF, then half size), with what was changed;
    None when even the smallest try does not fit."""
    frames, fps = read_video(path)
    for crf, scale in ((28, 1.0), (35, 1.0), (30, 0.5), (38, 0.5)):
        target = path.with_name(f"{path.stem}-small.mp4")
        write_mp4(frames, target, fps, crf=crf, scale=scale)
        if target.stat().st_size <= limit_bytes:
            size = (
                f", {_even(frames[0].width * scale)}×{_even(frames[0].height * scale)}" if scale != 1 else ""
            )
            return target, f"re-encoded smaller to fit the upload limit (CRF {crf}{size})"
    target.unlink(missing_ok=True)
    return None


def read_video(path: Path) -> tuple[list[Image.Image], float]:
    """Every frame of a video file as RGB images, and its frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        return [frame.to_image() for frame in container.decode(stream)], fps


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)
