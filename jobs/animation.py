"""Animation as a long queue job (kind `animate`): checked settings in JSON, frames rendered in slices.

The job's parameters are the animation's settings (Deforum's names, see engine/animation/animate.py), its start seed
(fixed when the job is accepted) and the output formats. Frames go straight into
`<outputs>/animations/<job>/frames` as PNGs with infotext, so a crash or a stop resumes after the last
finished unit of frames; the last slice writes the videos and the Deforum settings file beside them. A finished
animation goes into the catalog as one item with its frames (`catalogue_animation`, catalog/animations.py).
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest, JobCancelled
from core.files import atomic_write
from engine.requests import RunControl, StepProgress
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord

FORMATS = ("mp4", "gif", "webp")
log = logging.getLogger(__name__)


def animation_folder(settings, job: JobRecord) -> Path:
    """`<outputs>/animations/<job>-<when it was accepted>`: unique even if the queue's numbering starts over."""
    return settings.outputs_path / "animations" / f"{job.id:05d}-{int(job.created_at)}"


class AnimateTask:
    """The `animate` long job kind."""

    kind = JobKind.ANIMATE

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        from engine.animation.animate import AnimationSettings, check_settings, plan_frames, resolve_seed

        raw = params.get("settings")
        if not isinstance(raw, dict):
            raise InvalidRequest("settings", "the animation settings are missing")
        try:
            animation = AnimationSettings.from_json(raw)
        except TypeError as exc:
            raise InvalidRequest("settings", f"an option has the wrong type: {exc}") from None
        limits = settings.limits
        check_settings(
            animation, max_size=max(limits.max_width, limits.max_height), max_steps=limits.max_steps
        )
        if animation.width * animation.height > limits.max_pixels:
            raise InvalidRequest("width × height", f"at most {limits.max_pixels} pixels per frame")
        formats = params.get("formats", ["mp4", "gif"])
        if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
            raise InvalidRequest("formats", f"{formats!r}: choose from {', '.join(FORMATS)}")
        seed = int(params.get("seed", resolve_seed(animation.seed)))
        animation = _with_video(animation, settings, seed)
        plan_frames(animation, seed)  # every schedule and prompt computed once: bad input fails here
        if animation.animation_mode == "3D" and animation.needs_depth_model:
            from engine.animation.depth_files import find_depth_model

            find_depth_model(settings.models_path)  # refused now, naming models/Deforum, when there is none
        return {
            **params,
            "settings": animation.to_json(),
            "seed": seed,
            "formats": list(dict.fromkeys(formats)),
        }

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.animation.animate import AnimationSettings, frame_path
        from engine.animation.render3d import make_renderer

        params = job.request
        animation = AnimationSettings.from_json(params["settings"])
        running = engine()
        folder = animation_folder(running.settings, job)
        renderer = make_renderer(running, animation, int(params["seed"]), folder / "frames")  # 2D or 3D
        start = _first_unfinished(renderer, frame_path)
        if start > int((state or {}).get("unit", 0)):  # frames on disk beyond the last slice's end: a crash
            log.info(
                "animation job %d resumes at frame %d of %d",
                job.id,
                renderer.units[start].frames[0],
                animation.max_frames,
            )
        total = animation.max_frames
        step_control = RunControl(cancel=control.run.cancel)
        index = start
        while index < len(renderer.units):
            if control.run.cancelled():
                raise JobCancelled()
            if index > start and control.should_yield():
                break
            written = renderer.render_unit(index, step_control)
            index += 1
            if control.run.on_step is not None:
                last = written[-1]
                with_preview = frame_path(renderer.folder, last)
                control.run.on_step(
                    StepProgress(
                        f"frame {last + 1}/{total}", last + 1, total, 0, partial(_open, with_preview), True
                    )
                )
        done_frames = renderer.units[index - 1].frames[-1] + 1 if index else 0
        if index < len(renderer.units):
            return Slice({"unit": index}, phase=f"frame {done_frames}/{total}", progress=done_frames / total)
        return Slice(
            {"unit": index}, done=True, results=tuple(_finish(renderer, folder, params)), progress=1.0
        )


def _with_video(animation, settings, seed: int):
    """An animation that reads an input video: the file checked (a local file in the data folder's videos/
    folder, readable, its frames' size bounded) and `max_frames` at most the frames it keeps, as Deforum does;
    hybrid video's schedules computed (engine/animation/video_input.py, hybrid.py)."""
    from dataclasses import replace

    from engine.animation.hybrid import Hybrid
    from engine.animation.video_input import fit_max_frames
    from engine.animation.video_options import needs_video

    if not needs_video(animation):
        return animation
    animation = replace(animation, max_frames=fit_max_frames(animation, settings.data_dir))
    if animation.animation_mode == "2D":
        Hybrid(animation, None, seed)
    return animation


async def catalogue_animation(catalog, job: JobRecord, paths: tuple[str, ...], guild: str) -> tuple[int, ...]:
    """A finished animation into the catalog as one item (its first frame, with its video and settings file)
    and its other frames as the item's children (catalog/animations.py); the item's id."""
    import asyncio
    import time

    from catalog.animations import NewAnimation, video_of
    from catalog.records import NewImage, Relation
    from engine.infotext_files import read_infotext

    video = video_of(paths)
    if video is None:
        return ()
    settings_file = next((path for path in paths if path.endswith("settings.txt")), None)
    relation = job.meta.get("relation")

    def frames() -> tuple[NewImage, ...]:
        found = sorted((Path(video).parent / "frames").glob("[0-9][0-9][0-9][0-9][0-9].png"))
        return tuple(
            NewImage(
                str(path),
                guild,
                job.owner,
                read_infotext(path) or "",
                channel=job.channel,
                created=time.time(),
                job_id=job.id,
                nsfw=bool(job.meta.get("nsfw")),
                **({"parent_id": job.meta.get("parent_id"), "relation": Relation(relation) if relation else None}
                   if index == 0 else {}),
            )
            for index, path in enumerate(found)
        )  # fmt: skip

    found = await asyncio.to_thread(frames)
    if not found:
        return ()
    fps = float(job.request.get("settings", {}).get("fps", 15.0))
    item = await catalog.add_animation(NewAnimation(found, video, settings_file, fps))
    return (item.id,)


def _first_unfinished(renderer, frame_path) -> int:
    """The first unit whose last frame is not on disk: frames are written whole (temporary file, then renamed)
    and a unit's last frame is written last, so a crash at any point resumes right after the last finished
    unit."""
    for index, unit in enumerate(renderer.units):
        if not frame_path(renderer.folder, unit.frames[-1]).is_file():
            return index
    return len(renderer.units)


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _finish(renderer, folder: Path, params: dict[str, Any]) -> list[str]:
    """The videos and the Deforum settings file, from the frames on disk."""
    from engine.animation.animate import frame_path
    from engine.animation.deforum_files import export_deforum
    from engine.animation.video import write_videos

    animation = renderer.settings
    frames = [_open(frame_path(renderer.folder, frame)) for frame in range(animation.max_frames)]
    videos = write_videos(frames, folder, "animation", animation.fps, params["formats"])
    settings_file = folder / "settings.txt"
    atomic_write(settings_file, json.dumps(export_deforum(animation, int(params["seed"])), indent=4))
    return [str(path) for path in videos] + [str(settings_file)]
