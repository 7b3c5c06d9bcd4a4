"""What a finished upscale job (kind `upscale`, the Extras tab) posts: the PNG when it fits the upload limit,
and a line naming the upscaler(s) and the scale or the size asked for, and the face restorers that ran."""

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
    to = params.get("to")
    how = f"to {to[0]}x{to[1]}" if to else f"×{float(params.get('scale', 0)):g}"
    if to and params.get("crop"):
        how += " (cropped)"
    second = f" + {params['upscaler_2']}" if params.get("upscaler_2") else ""
    faces = " and ".join(n for n in ("GFPGAN", "CodeFormer") if params.get(f"{n.lower()}_visibility"))
    if params.get("upscaler", "?"):
        done = f"upscaled {how} with {params.get('upscaler', '?')}{second}"
        done += f", faces with {faces}" if faces else ""
    else:  # A1111's upscaler None: the faces restored alone
        done = f"faces restored with {faces}"
    text = f"✅ **{done}** · <@{user_id}> (job {job.id}, kept in the gallery)"
    return clip(text + (f"\nℹ️ {note}" if note else ""), 2000)
