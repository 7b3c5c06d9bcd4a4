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
        "and replaced by each value. One grid per Z value; each cell is one image, kept and catalogued.",
    )
    add_generation_options(xyz)
    add_hires_options(xyz)
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
    base, extensions = _base(args, settings)
    job = xyz_job(base, args.x, args.y, args.z, settings.limits, model_registry(settings))
    return _run(settings, job, args.output, extensions)


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


def _base(args: argparse.Namespace, settings: Settings):
    """imagine's request from the options (defaults applied), and the extensions discovered once."""
    from app.worker import load_extensions
    from cli.generate import _generation_request

    extensions = load_extensions(settings)
    return _generation_request(args, settings, None), extensions


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
