"""`salon upscale`: the Extras tab's upscale with a model upscaler (or its face restorers alone), as a queue
job, followed until the PNGs are written (and copied to `--output`). "Scale by" (`--scale`) or "Scale to"
(`--to WxH`, `--crop`), a second upscaler blended in (`--upscaler-2`, `--upscaler-2-visibility`), the face
restorers (`--gfpgan`, `--codeformer`), and A1111's "Batch Process" / "Batch from Directory": several files or
folders in one job, each result named after its source; a file that is not a picture is reported by name and
the others go on."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.output import EXIT_JOB_FAILED, console, err_console
from cli.queueing import submit_and_follow
from config import Settings


def upscale_parser(sub) -> None:
    """The `upscale` subcommand's arguments (A1111's Extras tab)."""
    upscale = sub.add_parser(
        "upscale", help="upscale images with a model upscaler (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT)"
    )
    upscale.add_argument(
        "image",
        metavar="IMAGE",
        nargs="+",
        help="an image file or a catalog image's id; several files or folders make one batch job",
    )
    upscale.add_argument(
        "--upscaler",
        default=None,
        help="the upscaler's name (`salon models` lists them); leave it out to restore faces only (--gfpgan, "
        "--codeformer) at the picture's size",
    )
    upscale.add_argument(
        "--scale",
        default=None,
        help="upscale by this factor, 1 to 8 (default 4; the model runs, then resizes)",
    )
    upscale.add_argument(
        "--to",
        default=None,
        metavar="WxH",
        help="upscale to cover this size instead (A1111's 'Scale to'; each side 64 to 8192), e.g. 1920x1080",
    )
    upscale.add_argument(
        "--crop", action="store_true", help="with --to: crop the centre to exactly that size ('Crop to fit')"
    )
    upscale.add_argument("--upscaler-2", default=None, metavar="NAME", help="a second upscaler, blended in")
    upscale.add_argument(
        "--upscaler-2-visibility",
        type=float,
        default=None,
        metavar="V",
        help="how much of the second upscaler's result shows, 0 to 1 (default 0.5 with --upscaler-2)",
    )
    add_face_options(upscale)
    upscale.add_argument(
        "--output",
        type=Path,
        default=None,
        help="also copy the results here (default: outputs/extras-images); a batch keeps the source names",
    )


def add_face_options(parser) -> None:
    """A1111's Extras face restorers, after the upscale: GFPGAN, then CodeFormer (engine/faces/extras.py)."""
    for flag, name in (("--gfpgan", "GFPGAN"), ("--codeformer", "CodeFormer")):
        parser.add_argument(
            flag,
            type=float,
            default=None,
            metavar="VISIBILITY",
            help=f"restore faces with {name} (models/{'GFPGAN' if name == 'GFPGAN' else 'Codeformer'} and the "
            "face detector), blended at this visibility, 0 to 1",
        )
    parser.add_argument(
        "--codeformer-weight",
        type=float,
        default=None,
        metavar="W",
        help="CodeFormer's weight, 0 = maximum effect, 1 = minimum (default 0.5)",
    )


def _source(settings: Settings, image: str):
    """The input: a file, else a catalog image of the command line's own (a number)."""
    from commands.upscaling import input_from_bytes, input_from_record
    from core.errors import InvalidRequest

    path = Path(image)
    if path.is_file():
        return input_from_bytes(path.read_bytes(), path.name, settings.limits)
    if not image.isdigit():
        raise InvalidRequest("image", f"{image} is neither a file nor a catalog image's id")
    from app.oneshot import with_catalog
    from jobs.running import LOCAL_GUILD

    async def find(catalog):
        return await catalog.get(LOCAL_GUILD, int(image))

    record = with_catalog(settings, find)
    if record is None:
        raise InvalidRequest("image", f"no catalog image {image} (and no such file)")
    return input_from_record(record, settings.limits)


def batch_files(names: list[str]) -> list[Path]:
    """The files named, a folder's files (not hidden, sorted by name) in its place; a name that is neither is
    an InvalidRequest naming it."""
    from core.errors import InvalidRequest

    files = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidRequest("image", f"{name} is neither a file nor a folder")
    return files


def _batch_sources(settings: Settings, names: list[str]) -> list:
    """Each file read and checked; one that is not a picture Salon accepts is reported and left out."""
    from commands.upscaling import input_from_bytes
    from core.errors import InvalidRequest

    sources = []
    for path in batch_files(names):
        try:
            if path.stat().st_size > settings.limits.max_upload_bytes:
                raise InvalidRequest("image", f"larger than {settings.limits.max_upload_bytes:,} bytes")
            sources.append(input_from_bytes(path.read_bytes(), path.name, settings.limits))
        except (InvalidRequest, OSError) as error:
            reason = error.message if isinstance(error, InvalidRequest) else (error.strerror or str(error))
            err_console.print(f"skipped {path}: {reason}", markup=False)
    if not sources:
        raise InvalidRequest("image", "no picture to upscale among the files given")
    return sources


def copy_batch(paths: list[Path], job_id: int, folder: Path) -> list[Path]:
    """A batch's results copied into `folder` under their sources' names (`<stem>.png`; `<stem>-1.png`… when
    that name is taken: nothing is overwritten)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{job_id:05d}-"
    copies = []
    for path in paths:
        stem = path.stem.removeprefix(prefix)
        target, number = folder / f"{stem}.png", 0
        while target.exists():
            number += 1
            target = folder / f"{stem}-{number}.png"
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def upscale(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from commands.faces import with_faces
    from commands.outputs import copy_results
    from commands.upscaling import batch_upscale_job, parse_scale, parse_size, upscale_job
    from jobs.records import JobStatus

    if args.upscaler is None:  # the faces restored alone: nothing is resized
        resizing = {
            "scale": args.scale,
            "to": args.to,
            "crop": args.crop or None,
            "upscaler_2": args.upscaler_2,
        }
        given = next((name for name, value in resizing.items() if value is not None), None)
        if given is not None:
            from core.errors import InvalidRequest

            raise InvalidRequest(given, "resizes with an upscaler: name one with --upscaler")
    visibility = args.upscaler_2_visibility
    if visibility is None:
        visibility = 0.5 if args.upscaler_2 else 0.0
    more = {
        "to": parse_size(args.to),
        "crop": args.crop,
        "upscaler_2": args.upscaler_2,
        "upscaler_2_visibility": visibility,
    }
    batch = len(args.image) > 1 or Path(args.image[0]).is_dir()
    if batch:
        sources = _batch_sources(settings, args.image)
        job = batch_upscale_job(settings, sources, args.upscaler, parse_scale(args.scale), **more)
    else:
        job = upscale_job(
            settings, _source(settings, args.image[0]), args.upscaler, parse_scale(args.scale), **more
        )
    job = with_faces(job, args.gfpgan, args.codeformer, args.codeformer_weight)  # commands/faces.py
    record = asyncio.run(submit_and_follow(settings, job))
    if record.status is not JobStatus.DONE:
        err_console.print(f"job {record.id} {record.status.value}: {record.error or ''}", markup=False)
        return EXIT_JOB_FAILED
    paths = [Path(p) for p in record.results]
    if args.output is not None:
        paths = copy_batch(paths, record.id, args.output) if batch else copy_results(paths, args.output)
    for path in paths:
        console.print(str(path), markup=False, soft_wrap=True)
    elapsed = (record.finished_at or 0) - record.created_at
    params = record.request
    how = f"to {params['to'][0]}x{params['to'][1]}" if params.get("to") else f"by {params['scale']:g}"
    if params.get("upscaler_2"):
        how += f" blending {params['upscaler_2']} at {params['upscaler_2_visibility']:g}"
    count = f"{len(paths)} pictures " if batch else ""
    faces = " and ".join(n for n in ("GFPGAN", "CodeFormer") if params.get(f"{n.lower()}_visibility"))
    if params.get("upscaler"):
        done = f"upscaled {count}{how} with {params['upscaler']}" + (f", faces with {faces}" if faces else "")
    else:
        done = f"restored the faces of {count or 'the picture '}with {faces}"
    console.print(f"{done} in {elapsed:.2f}s (job {record.id})", markup=False)
    return 0
