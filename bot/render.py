"""What a Discord user reads and sees: progress lines, result captions, grids and attachment files."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord
from PIL import Image, ImageDraw

from catalog.records import ImageRecord
from jobs.records import WARMING_UP, JobEvent, JobKind, JobRecord

BAR_CELLS = 16
RATE_HINT = "react 1️⃣–5️⃣ to rate · ⭐ favourite · ✉️ DM me · 🗑 delete"
MAX_CONTENT = 2000  # characters of one Discord message


@dataclass(frozen=True)
class Upload:
    """A file to attach; made into a fresh `discord.File` for every try (a sent one is closed)."""

    filename: str
    data: bytes
    spoiler: bool = False

    def file(self) -> discord.File:
        return discord.File(io.BytesIO(self.data), filename=self.filename, spoiler=self.spoiler)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_bar(fraction: float) -> str:
    filled = max(0, min(BAR_CELLS, round(fraction * BAR_CELLS)))
    return "█" * filled + "░" * (BAR_CELLS - filled)


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def job_title(job: JobRecord) -> str:
    if job.kind is JobKind.ANIMATE:
        prompts = job.request.get("settings", {}).get("prompts", {})
        first = str(next(iter(prompts.values()), "")) if isinstance(prompts, dict) else ""
        return f"**🎞️ {discord.utils.escape_markdown(clip(first.replace(chr(10), ' '), 280))}**"
    if job.kind is JobKind.XYZ:  # a plot: its script and first cell's prompt
        cells = job.request.get("cells") or [{}]
        prompt = str(cells[0].get("params", {}).get("prompt", ""))
        title = f"{job.request.get('script', 'plot')}: {prompt}"
        return f"**📊 {discord.utils.escape_markdown(clip(title.replace(chr(10), ' '), 300))}**"
    if job.kind is JobKind.UPSCALE:  # the Extras tab (/upscale)
        return f"**⬆️ upscale ×{float(job.request.get('scale', 0)):g} with {job.request.get('upscaler', '')}**"
    if job.kind.long:
        trainer, name = job.request.get("trainer", job.kind.value), job.request.get("name", "")
        return f"**{trainer} {discord.utils.escape_markdown(str(name))}**"
    prompt = str(job.request.get("params", {}).get("prompt", "")) or job.kind.value
    return f"**{discord.utils.escape_markdown(clip(prompt.replace(chr(10), ' '), 300))}**"


def status_line(job: JobRecord, event: JobEvent | None) -> str:
    """One line saying where the job stands: place in line, or a bar with step/total and ETA."""
    if event is None or event.kind == "queued":
        position = event.position if event is not None else None
        where = f"position {position} in the queue" if position else "waiting in the queue"
        if event is not None and event.phase == WARMING_UP:
            where += " · the GPU is warming up (compiling; minutes on a first start, seconds after)"
        return f"⏳ job {job.id} · {where}"
    if event.kind == "started" or event.step is None or not event.total:
        return f"⚙️ job {job.id} · starting"
    fraction = event.step / event.total
    eta = f" · ETA {duration(event.eta_s)}" if event.eta_s is not None else ""
    phase = f" · {event.phase}" if event.phase and event.phase not in ("sampling", "running") else ""
    return f"⚙️ job {job.id} · `{progress_bar(fraction)}` {event.step}/{event.total}{eta}{phase}"


def progress_content(job: JobRecord, user_id: str, event: JobEvent | None) -> str:
    return clip(f"{job_title(job)} · <@{user_id}>\n{status_line(job, event)}", MAX_CONTENT)


def result_content(job: JobRecord, images: Sequence[ImageRecord], user_id: str) -> str:
    """The caption of a finished job: prompt, who asked, the settings a user would want to see."""
    lines = [f"{job_title(job)} · <@{user_id}>"]
    first = images[0] if images else None
    if first is not None:
        seeds = ", ".join(str(image.seed) for image in images[:8] if image.seed is not None)
        details = [
            f"seed {seeds}" if seeds else "",
            f"{first.steps} steps" if first.steps else "",
            first.sampler or "",
            f"CFG {first.cfg:g}" if first.cfg is not None else "",
            f"{first.width}×{first.height}",
            first.model or "",
        ]
        lines.append(" · ".join(part for part in details if part))
        relation = f" · {first.relation.value} of image #{first.parent_id}" if first.parent_id else ""
        ids = " ".join(f"#{image.id}" for image in images)
        lines.append(f"job {job.id} · images {ids}{relation}")
    lines.append(RATE_HINT)
    return clip("\n".join(lines), MAX_CONTENT)


def trained_content(job: JobRecord, user_id: str) -> str:
    """The announcement of a finished training job: what it is called and how to use it."""
    name = str(job.request.get("name", ""))
    images = len(job.request.get("images", []))
    return clip(
        f"✅ {job_title(job)} · <@{user_id}>\ntrained on {images} images in {job.request.get('steps', '?')} steps "
        f"(job {job.id}); everyone here can use it now: "
        + {
            "lora": f"`<lora:{name}:1>`",
            "hypernetwork": f"`<hypernet:{name}:1>`",
            "dreambooth": f"`/imagine model:{name}`, with `"
            + str(job.request.get("instance_prompt") or "a photo of [name]").replace("[name]", name)
            + "` in the prompt",
        }.get(str(job.request.get("trainer")), f"`{name}` in a prompt"),
        MAX_CONTENT,
    )


def animation_content(job: JobRecord, user_id: str, note: str = "") -> str:
    """The caption of a finished animation: what it is and how it was made."""
    from commands.animation import describe
    from engine.animation.animate import AnimationSettings

    settings = AnimationSettings.from_json(job.request.get("settings", {}))
    lines = [f"{job_title(job)} · <@{user_id}>", describe(settings, int(job.request.get("seed", 0)))]
    lines.append(f"job {job.id} · frames and Deforum settings.txt kept with the video")
    if note:
        lines.append(f"ℹ️ {note}")
    return clip("\n".join(lines), MAX_CONTENT)


def animation_files(job: JobRecord, limit: int) -> tuple[list[Upload], str]:
    """The videos of a finished animation that fit the upload limit (an MP4 over it re-encoded smaller, with
    a note saying so), and the settings file."""
    from engine.animation.video import shrink_mp4

    files: list[Upload] = []
    notes: list[str] = []
    total = 0
    for name in job.results:
        path = Path(name)
        if not path.is_file():
            continue
        size = path.stat().st_size
        if path.suffix == ".mp4" and size > limit:
            smaller = shrink_mp4(path, limit)
            if smaller is not None:
                path, note = smaller
                notes.append(f"the MP4 was {note}")
                size = path.stat().st_size
        if size > limit or total + size > limit:
            notes.append(
                f"{path.name} ({size / 1e6:.1f} MB) is over the upload limit and stays on the server"
            )
            continue
        total += size
        files.append(Upload(path.name, path.read_bytes()))
    return files, "; ".join(notes)


def failure_content(job: JobRecord, user_id: str, kept: str = "") -> str:
    """A cancelled or failed job; `kept` says what a training left installed (its last saved file)."""
    tail = f"\n{kept}" if kept else ""
    if job.status.value == "cancelled":
        return f"{job_title(job)} · <@{user_id}>\n🚫 job {job.id} was cancelled{tail}"
    return clip(
        f"{job_title(job)} · <@{user_id}>\n❌ job {job.id} failed: {job.error or 'unknown error'}{tail}", 2000
    )


def kept_content(job: JobRecord, settings) -> str:
    """For a training job that ended early: the result it saved last, still installed (or "")."""
    from engine.models.trained_files import output_paths, owner_of
    from jobs.records import JobKind

    if job.kind is not JobKind.TRAIN:
        return ""
    name, trainer = str(job.request.get("name", "")), str(job.request.get("trainer", ""))
    for path in output_paths(settings, trainer, name):
        made = owner_of(path) if path.exists() else None
        if made and made.get("job") == job.id:
            return f"its last saved result stays installed: `{name}` from step {made.get('step')}"
    return ""


def grid(paths: Sequence[str]) -> Image.Image:
    """A1111-style grid: images in rows of ceil(sqrt(n)) columns, on black."""
    images = [Image.open(path).convert("RGB") for path in paths]
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = max(i.width for i in images), max(i.height for i in images)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % columns) * width, (index // columns) * height))
    return sheet


def contact_sheet(paths: Sequence[str | None], cell: int = 160) -> Image.Image:
    """A numbered thumbnail sheet for a `/browse` page (missing files drawn as grey cells)."""
    columns = min(3, max(1, len(paths))) if len(paths) <= 9 else 5
    rows = max(1, math.ceil(len(paths) / columns))
    sheet = Image.new("RGB", (columns * cell, rows * cell), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    for index, path in enumerate(paths):
        x, y = (index % columns) * cell, (index // columns) * cell
        if path is not None and Path(path).is_file():
            with Image.open(path) as opened:
                thumb = opened.convert("RGB")
            thumb.thumbnail((cell - 8, cell - 8))
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        else:
            draw.rectangle((x + 4, y + 4, x + cell - 5, y + cell - 5), fill=(70, 70, 70))
        draw.rectangle((x + 4, y + 4, x + 30, y + 22), fill=(0, 0, 0))
        draw.text((x + 8, y + 6), str(index + 1), fill=(255, 255, 255))
    return sheet


def infotext_block(image: ImageRecord) -> str:
    """An image's id, file name and full infotext as a Discord code block (``` inside it defused)."""
    return f"**#{image.id}** `{image.filename}`\n```\n{image.infotext.replace('```', chr(39) * 3)}\n```"


async def read_file(path: str) -> bytes | None:
    """A stored image's bytes, read off the event loop; None when the file is gone."""
    import asyncio

    def read() -> bytes | None:
        try:
            return Path(path).read_bytes()
        except OSError:
            return None

    return await asyncio.to_thread(read)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def result_files(images: Sequence[ImageRecord], limit_bytes: int, spoiler: bool = False) -> list[Upload]:
    """The result PNGs as sent: a grid first for batches, then each image (infotext inside) while they fit
    the upload limit; an image over the limit alone is re-encoded as JPEG with its infotext in EXIF."""
    files: list[tuple[str, bytes]] = []
    present = [image for image in images if Path(image.path).is_file()]
    if len(present) > 1:
        files.append(("grid.png", png_bytes(grid([image.path for image in present]))))
    for image in present[: 10 - len(files)]:
        data = Path(image.path).read_bytes()
        name = Path(image.path).name
        if len(data) > limit_bytes:
            name, data = _as_jpeg(image)
        files.append((name, data))
    kept, total = [], 0
    for name, data in files:
        if total + len(data) <= limit_bytes:
            kept.append((name, data))
            total += len(data)
    return [Upload(name, data, spoiler) for name, data in kept]


def _as_jpeg(image: ImageRecord) -> tuple[str, bytes]:
    import tempfile

    from engine.infotext_files import save_image_with_infotext

    with tempfile.TemporaryDirectory() as folder:
        with Image.open(image.path) as opened:
            target = save_image_with_infotext(
                opened.convert("RGB"), Path(folder) / (Path(image.path).stem + ".jpg"), image.infotext
            )
        return target.name, target.read_bytes()


def preview_file(png: bytes | None) -> list[Upload]:
    """The preview to attach: a PNG from this process's worker, a JPEG from one on another host."""
    if png is None:
        return []
    return [Upload("preview.jpg" if png.startswith(b"\xff\xd8") else "preview.png", png)]
