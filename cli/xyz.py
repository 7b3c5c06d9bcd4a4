"""`salon xyz`, `salon prompt-matrix` and `salon prompts-from-file`: A1111's plot scripts as one queue job each
(kind `xyz`), with imagine's options for everything the axes or lines do not change."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from cli.output import EXIT_JOB_FAILED, console, err_console
from config import Settings

AddOptions = Callable[[argparse.ArgumentParser], None]


def plot_parsers(sub, add_generation_options: AddOptions, add_hires_options: AddOptions) -> None:
    """The three subcommands, each with imagine's generation and hires options."""
    from commands.xyz import AXES

    axes = ", ".join(kind.label for kind in AXES[1:])
    xyz = sub.add_parser(
        "xyz",
        help="X/Y/Z plot: one image per combination of up to three axes, on labelled grids",
        description=f"Axes: {axes}. Values: a comma list (CSV quotes keep commas), or A1111's ranges "
        "1-5, 1-10 (+2), 10-20 [5], 0.5-1 (+0.25). Prompt S/R: the first value is searched in the prompt "
        "and replaced by each value. One grid per Z value; each cell is one image, kept and catalogued. "
        "With --init-image every cell is an img2img of it (its size unless --size), and the Denoising axis "
        "is its denoising strength.",
    )
    add_generation_options(xyz)
    add_hires_options(xyz)
    xyz.add_argument(
        "--init-image",
        type=Path,
        default=None,
        metavar="FILE",
        help="img2img plot: every cell starts from it",
    )
    xyz.add_argument(
        "--strength", type=float, default=None, help="img2img denoising strength, 0–1 (default 0.75)"
    )
    xyz.add_argument(
        "--resize-mode",
        default=None,
        help="img2img: Just resize (default), Crop and resize, Resize and fill, Just resize (latent upscale)",
    )
    xyz.add_argument(
        "--noise-multiplier", type=float, default=None, help="img2img: scale of the added noise (default 1)"
    )
    xyz.add_argument("--x", default=None, metavar="AXIS=VALUES", help="the columns, e.g. 'Seed=1-3'")
    xyz.add_argument("--y", default=None, metavar="AXIS=VALUES", help="the rows, e.g. 'Steps=4,8'")
    xyz.add_argument(
        "--z", default=None, metavar="AXIS=VALUES", help="one grid per value, e.g. 'Sampler=Euler,DPM++ 2M'"
    )

    matrix = sub.add_parser(
        "prompt-matrix",
        help="prompt matrix: every combination of the |-separated parts after the first, on a grid",
    )
    add_generation_options(matrix)
    add_hires_options(matrix)
    matrix.add_argument("--put-at-start", action="store_true", help="the optional parts go before the first")
    matrix.add_argument(
        "--different-seeds", action="store_true", help="seed + i for image i (A1111's Random seeds)"
    )
    matrix.add_argument(
        "--joiner", choices=["comma", "space"], default="comma", help="join the parts with ', ' or ' '"
    )

    listed = sub.add_parser(
        "prompts-from-file",
        help="one image job per line of a file: a prompt, or A1111's options (--prompt … --steps 10 --seed 5)",
    )
    listed.add_argument("file", type=Path, help="the prompts, one per line (UTF-8)")
    add_generation_options(listed)
    add_hires_options(listed)
    listed.add_argument(
        "--iterate-seed", action="store_true", help="each line's seed follows the previous one's"
    )
    listed.add_argument("--same-seed", action="store_true", help="one random seed for every line")


def xyz(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import model_registry
    from commands.xyz import xyz_job

    if args.x is None and args.y is None and args.z is None:
        from core.errors import InvalidRequest

        raise InvalidRequest("x", "give at least one axis, e.g. --x 'Seed=1-3' --y 'Steps=4,8'")
    init_image = _init_image(args, settings)
    base, extensions = _base(args, settings, init_image)
    init = None
    if init_image is not None:
        from commands.options import img2img_request

        init = img2img_request(
            base,
            init_image,
            denoising_strength=0.75 if args.strength is None else args.strength,
            resize_mode=args.resize_mode or "Just resize",
            noise_multiplier=1.0 if args.noise_multiplier is None else args.noise_multiplier,
        )
    job = xyz_job(base, args.x, args.y, args.z, settings.limits, model_registry(settings), init)
    return _run(settings, job, args.output, extensions)


def _init_image(args: argparse.Namespace, settings: Settings):
    """The img2img plot's input image (checked as any input image), or None; img2img options without it are
    an error naming the option."""
    from commands.options import load_input_image
    from core.errors import InvalidRequest

    if args.init_image is None:
        for option in ("strength", "resize_mode", "noise_multiplier"):
            if getattr(args, option) is not None:
                raise InvalidRequest(option, "applies to an img2img plot: give --init-image FILE")
        return None
    return load_input_image(args.init_image, settings.limits, "init_image")


def prompt_matrix(args: argparse.Namespace, settings: Settings) -> int:
    from commands.generation import LongJob
    from commands.prompt_lists import prompt_matrix_plot
    from jobs.records import JobKind

    base, extensions = _base(args, settings)
    params = prompt_matrix_plot(
        base,
        delimiter=", " if args.joiner == "comma" else " ",
        put_at_start=args.put_at_start,
        different_seeds=args.different_seeds,
        max_cells=settings.limits.max_plot_cells,
    )
    return _run(settings, LongJob(JobKind.XYZ, params), args.output, extensions)


def prompts_from_file(args: argparse.Namespace, settings: Settings) -> int:
    from commands.generation import LongJob
    from commands.prompt_lists import prompts_from_file_plot
    from core.errors import InvalidRequest
    from engine.tasks.samplers import BUILTIN_SAMPLERS
    from jobs.records import JobKind

    try:
        text = args.file.read_bytes().decode("utf-8", errors="ignore")
    except OSError as error:
        raise InvalidRequest("file", f"cannot read {args.file}: {error.strerror or error}") from None
    if args.prompt is None:  # the prompt of lines that give only options (A1111: the UI's prompt)
        args.prompt = ""
    base, extensions = _base(args, settings)
    params = prompts_from_file_plot(
        base,
        text,
        iterate_seed=args.iterate_seed,
        same_seed=args.same_seed,
        samplers=BUILTIN_SAMPLERS.names,
        max_cells=settings.limits.max_plot_cells,
    )
    return _run(settings, LongJob(JobKind.XYZ, params), args.output, extensions)


def _base(args: argparse.Namespace, settings: Settings, init_image=None):
    """imagine's request from the options (defaults applied; an img2img plot's size: its input image's unless
    --size), and the extensions discovered once."""
    from app.worker import load_extensions
    from cli.generate import _generation_request, _image_size

    extensions = load_extensions(settings)
    size = None if init_image is None else _image_size(init_image)
    return _generation_request(args, settings, size), extensions


def _run(settings: Settings, job, output: Path | None, extensions) -> int:
    """Through the queue; the grids printed with their infotext, then how many cells."""
    import asyncio

    from cli.queueing import submit_and_follow
    from commands.outputs import copy_results
    from engine.infotext_files import read_infotext
    from jobs.records import JobStatus

    record = asyncio.run(submit_and_follow(settings, job, extensions))
    if record.status is not JobStatus.DONE:
        err_console.print(f"job {record.id} {record.status.value}: {record.error or ''}", markup=False)
        return EXIT_JOB_FAILED
    paths = [Path(p) for p in record.results]
    if output:
        paths = copy_results(paths, output)
    grids = len(record.request.get("grids", []))
    for path in paths[:grids]:
        console.print(str(path), markup=False)
        console.print(read_infotext(path) or "", markup=False, soft_wrap=True)
        console.print()
    for path in paths[grids:]:
        console.print(str(path), markup=False)
    elapsed = (record.finished_at or 0) - record.created_at
    console.print(
        f"{grids} grid(s) and {len(paths) - grids} image(s) in {elapsed:.2f}s (job {record.id})", markup=False
    )
    return 0
