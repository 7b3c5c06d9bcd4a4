"""Deforum's video input: frames of a local video file, decoded with PyAV, as the animation's init images.

Which frames: Deforum's `vid2frames` keeps source frame i when `extract_from_frame ≤ i ≤ extract_to_frame` (−1:
to the end) and `i % extract_nth_frame == 0`; animation frame k uses the k-th kept frame, resized to the
animation's size. Deforum then sets `max_frames` to the number of frames kept; Salon keeps the smaller of the
two (`fit_max_frames`, when the job is accepted).

The file is untrusted (it may come with a Discord user's settings file), so:
- only a local file in the data folder's `videos/` folder is read (`video_file`): no URL, no other path;
- the file's size, the stream's declared frame size (before anything is decoded) and every decoded frame's size
  are bounded, and counting frames reads packets only (no decoding), never more than the animation needs;
- a truncated or damaged file, or one that is not a video, is refused with the reason, naming the option.
Frames are decoded once, into `frames-input/` beside the animation's `frames/`, so memory holds one frame at a
time and a resumed job does not decode them again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.errors import InvalidRequest
from core.files import atomic_write

OPTION = "video_init_path"
VIDEOS_FOLDER = "videos"  # under the data folder: the only place input videos are read from
MAX_VIDEO_BYTES = 4 << 30
MAX_SOURCE_PIXELS = 4096 * 4096  # a source frame's declared and decoded size
MAX_SCANNED_FRAMES = 200_000  # source frames read to reach the last one an animation uses
MAX_NTH = 1000
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|\\\\)")


def check_video_options(settings) -> None:
    """The extraction options in range (InvalidRequest names the option); the file is checked by `video_file`."""
    nth, start, stop = settings.extract_nth_frame, settings.extract_from_frame, settings.extract_to_frame
    for option, value in (
        ("extract_nth_frame", nth),
        ("extract_from_frame", start),
        ("extract_to_frame", stop),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(option, f"{value!r} is not a whole number")
    if not 1 <= nth <= MAX_NTH:
        raise InvalidRequest("extract_nth_frame", f"{nth} is not from 1 to {MAX_NTH}")
    if not 0 <= start < MAX_SCANNED_FRAMES:
        raise InvalidRequest("extract_from_frame", f"{start} is not from 0 to {MAX_SCANNED_FRAMES - 1}")
    if stop != -1 and stop <= start:
        raise InvalidRequest("extract_to_frame", f"{stop} is not −1 (the end) or after extract_from_frame")
    if not isinstance(settings.video_init_path, str) or not settings.video_init_path.strip():
        raise InvalidRequest(OPTION, "give the video file (in the data folder's videos/ folder)")
    if _URL.match(settings.video_init_path.strip()):
        raise InvalidRequest(
            OPTION, "is a URL; Salon reads local files only: put the video in the videos/ folder"
        )


def video_file(text: str, data_dir: Path) -> Path:
    """The real path of the input video named by `text` (relative to `<data_dir>/videos`, or absolute within
    it); InvalidRequest naming `video_init_path` for a URL, a path elsewhere, a missing or oversized file."""
    text = text.strip()
    if _URL.match(text):
        raise InvalidRequest(
            OPTION, "is a URL; Salon reads local files only: put the video in the videos/ folder"
        )
    folder = (data_dir / VIDEOS_FOLDER).resolve()
    path = (folder / Path(text).expanduser()).resolve()
    if not path.is_relative_to(folder):
        raise InvalidRequest(OPTION, f"{text!r} is not in {folder}: input videos are read from there only")
    if not path.is_file():
        raise InvalidRequest(OPTION, f"there is no file {text!r} in {folder}")
    if path.stat().st_size > MAX_VIDEO_BYTES:
        raise InvalidRequest(OPTION, f"{text!r} is larger than {MAX_VIDEO_BYTES >> 30} GiB")
    return path


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # source frames counted (packets), at most the number asked for


def probe(path: Path, enough: int = MAX_SCANNED_FRAMES) -> VideoInfo:
    """The video stream's declared size (bounded before anything is decoded) and its frames counted from its
    packets, stopping at `enough`."""
    import av

    enough = min(enough, MAX_SCANNED_FRAMES)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _stream(container)
            counted = 0
            for packet in container.demux(stream):
                if packet.size:
                    counted += 1
                    if counted >= enough:
                        break
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, counted)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidRequest(OPTION, f"{path.name} is not a readable video ({_reason(exc)})") from None


def _stream(container):
    if not container.streams.video:
        raise InvalidRequest(OPTION, f"{Path(container.name).name} has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise InvalidRequest(OPTION, "the video does not declare its frame size")
    if width * height > MAX_SOURCE_PIXELS:
        raise InvalidRequest(OPTION, f"its frames are {width}×{height}, over {MAX_SOURCE_PIXELS:,} pixels")
    return stream


def kept(index: int, nth: int, start: int, stop: int) -> bool:
    """Whether source frame `index` is one Deforum's `vid2frames` keeps."""
    return index >= start and (stop == -1 or index <= stop) and index % nth == 0


def needed_source_frames(frames: int, nth: int, start: int, stop: int) -> int:
    """How many source frames must be read to keep `frames` of them (the last kept one's index + 1)."""
    first = start + (-start) % nth
    last = first + (frames - 1) * nth
    return last + 1 if stop == -1 or last <= stop else stop + 1


def fit_max_frames(settings, data_dir: Path) -> int:
    """The animation's frame count with this video: `max_frames`, or fewer when the video keeps fewer frames."""
    path = video_file(settings.video_init_path, data_dir)
    nth, start, stop = settings.extract_nth_frame, settings.extract_from_frame, settings.extract_to_frame
    info = probe(path, needed_source_frames(settings.max_frames, nth, start, stop))
    available = sum(kept(i, nth, start, stop) for i in range(info.frames))
    if available == 0:
        raise InvalidRequest(OPTION, f"{path.name} has no frame from extract_from_frame {start} on")
    return min(settings.max_frames, available)


def decode_frames(
    path: Path, count: int, nth: int, start: int, stop: int, on_frame: Callable[[int, Image.Image], None]
) -> int:
    """Decode the kept frames in order, handing each (its animation frame number, RGB image) to `on_frame`, until
    `count` are kept; returns how many were (fewer when the file ends early)."""
    import av

    done = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _stream(container)
            for index, frame in enumerate(container.decode(stream)):
                if index >= MAX_SCANNED_FRAMES or (stop != -1 and index > stop):
                    break
                if frame.width * frame.height > MAX_SOURCE_PIXELS:
                    raise InvalidRequest(OPTION, f"frame {index} is {frame.width}×{frame.height}, too large")
                if kept(index, nth, start, stop):
                    on_frame(done, frame.to_image().convert("RGB"))
                    done += 1
                    if done >= count:
                        break
    except (av.FFmpegError, OSError, ValueError) as exc:
        if done == 0:
            raise InvalidRequest(OPTION, f"{path.name} is not a readable video ({_reason(exc)})") from None
    return done


class VideoFrames:
    """The input frames of one animation, decoded once into `folder` (PNG, the animation's size)."""

    def __init__(self, settings, data_dir: Path, folder: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.folder = folder
        self._done = folder / "extracted.json"

    def frame(self, index: int) -> Image.Image:
        """Animation frame `index`'s input frame (decoding the video first if that has not been done)."""
        self.extract()
        with Image.open(self.folder / f"{index:05d}.png") as image:
            return image.convert("RGB")

    def extract(self) -> None:
        if self._done.is_file():
            return
        s = self.settings
        path = video_file(s.video_init_path, self.data_dir)
        self.folder.mkdir(parents=True, exist_ok=True)

        def save(index: int, image: Image.Image) -> None:
            image = image.resize((s.width, s.height), Image.Resampling.LANCZOS)
            atomic_write(self.folder / f"{index:05d}.png", _png(image))

        count = decode_frames(
            path, s.max_frames, s.extract_nth_frame, s.extract_from_frame, s.extract_to_frame, save
        )
        if count < s.max_frames:
            raise InvalidRequest(
                OPTION,
                f"only {count} of the {s.max_frames} frames needed could be decoded from {path.name} "
                "(the file is truncated or damaged)",
            )
        atomic_write(self._done, json.dumps({"frames": count, "video": str(path)}))


def mark_video_frame(infotext: str, index: int) -> str:
    """A video input frame's infotext, saying it was made from the input video's frame, not the previous one."""
    from engine.infotext import format_infotext, parse_infotext

    info = parse_infotext(infotext)
    for key in ("Animation motion", "Animation border"):
        info.params.pop(key, None)
    version = info.params.pop("Version", None)
    params = {
        **info.params,
        "Animation init": f"input video frame {index}",
        **({"Version": version} if version else {}),
    }
    return format_infotext(info.prompt, info.negative_prompt, params)


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _reason(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
