"""What a finished upscale job (kind `upscale`, the Extras tab) posts: the PNG when it fits the upload limit,
and a line naming the upscaler, the scale and the size."""

from __future__ import annotations

from pathlib import Path

from bot.render import Upload, clip
from jobs.records import JobRecord


def upscaled_files(job: JobRecord, limit: int) -> tuple[list[Upload], str]:
    """The result file if it fits `limit` bytes, and a note when it does not."""
    path = Path(job.results[0]) if job.results else None
    if path is None or not path.is_file():
        return [], "the file is gone"
    if path.stat().st_size > limit:
        return [], f"{path.stat().st_size:,} bytes: over the upload limit, kept in the gallery"
    return [Upload(path.name, path.read_bytes())], ""


def upscaled_content(job: JobRecord, user_id: str, note: str) -> str:
    """The announcement of a finished upscale."""
    params = job.request
    text = (
        f"✅ **upscaled ×{float(params.get('scale', 0)):g} with {params.get('upscaler', '?')}** · <@{user_id}>"
        f" (job {job.id}, kept in the gallery)"
    )
    return clip(text + (f"\nℹ️ {note}" if note else ""), 2000)
