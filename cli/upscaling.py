"""`salon upscale`: the Extras tab's upscale with a model upscaler, as a queue job, followed until the PNG is
written (and copied to `--output`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.output import EXIT_JOB_FAILED, console, err_console
from cli.queueing import submit_and_follow
from config import Settings


def upscale_parser(sub) -> None:
    """The `upscale` subcommand's arguments (A1111's Extras tab, "Scale by")."""
    upscale = sub.add_parser(
        "upscale", help="upscale an image with a model upscaler (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT)"
    )
    upscale.add_argument("image", metavar="IMAGE", help="an image file, or a catalog image's id")
    upscale.add_argument("--upscaler", required=True, help="the upscaler's name (`salon models` lists them)")
    upscale.add_argument(
        "--scale",
        default=None,
        help="upscale by this factor, 1 to 8 (default 4; the model runs, then resizes)",
    )
    upscale.add_argument(
        "--output", type=Path, default=None, help="also copy the result here (default: outputs/extras-images)"
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


def upscale(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from commands.outputs import copy_results
    from commands.upscaling import parse_scale, upscale_job
    from jobs.records import JobStatus

    job = upscale_job(settings, _source(settings, args.image), args.upscaler, parse_scale(args.scale))
    record = asyncio.run(submit_and_follow(settings, job))
    if record.status is not JobStatus.DONE:
        err_console.print(f"job {record.id} {record.status.value}: {record.error or ''}", markup=False)
        return EXIT_JOB_FAILED
    paths = [Path(p) for p in record.results]
    if args.output is not None:
        paths = copy_results(paths, args.output)
    for path in paths:
        console.print(str(path), markup=False, soft_wrap=True)
    elapsed = (record.finished_at or 0) - record.created_at
    params = record.request
    console.print(
        f"upscaled by {params['scale']:g} with {params['upscaler']} in {elapsed:.2f}s (job {record.id})",
        markup=False,
    )
    return 0
