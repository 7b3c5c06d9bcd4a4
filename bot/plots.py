"""What a finished plot job (kind `xyz`: X/Y/Z plot, prompt matrix, prompts from file) posts: its grids, as
many as fit the upload limit (the cells when there is no grid, up to Discord's ten files), and a line saying
how many images were made and kept in the gallery."""

from __future__ import annotations

from pathlib import Path

from bot.render import Upload, clip, job_title
from jobs.records import JobRecord

MAX_FILES = 10  # attachments per Discord message


def plot_files(job: JobRecord, limit: int) -> tuple[list[Upload], str]:
    """The grids (else the first cells) that fit `limit` bytes in all, and a note on those left out."""
    grids = len(job.request.get("grids", []))
    paths = [Path(name) for name in job.results[: grids or MAX_FILES]]
    files: list[Upload] = []
    total, left = 0, 0
    for path in paths:
        if not path.is_file():
            continue
        size = path.stat().st_size
        if len(files) >= MAX_FILES or total + size > limit:
            left += 1
            continue
        total += size
        files.append(Upload(path.name, path.read_bytes()))
    note = f"{left} file(s) over the upload limit stay on the server" if left else ""
    return files, note


def plot_content(job: JobRecord, user_id: str, note: str) -> str:
    """The announcement of a finished plot."""
    grids = len(job.request.get("grids", []))
    cells = len(job.results) - grids
    script = job.request.get("script", "plot")
    text = f"✅ {job_title(job)} · <@{user_id}>\n{script}: {cells} image(s)"
    text += f" on {grids} grid(s)" if grids else ""
    text += f", kept in the gallery (job {job.id})"
    return clip(text + (f"\nℹ️ {note}" if note else ""), 2000)
