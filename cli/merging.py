"""`salon merge`: A1111's checkpoint merger as a queue job, followed until the new checkpoint is installed."""

from __future__ import annotations

import argparse

from cli.output import EXIT_JOB_FAILED, console, err_console
from cli.queueing import submit_and_follow
from config import Settings


def merge_parser(sub) -> None:
    """The `merge` subcommand's arguments (A1111's Checkpoint Merger fields)."""
    merge = sub.add_parser(
        "merge",
        help="merge checkpoints as A1111 does (weighted sum, add difference, no interpolation) into a new one",
    )
    merge.add_argument("a", metavar="A", help="primary model (its other weights and configs are kept)")
    merge.add_argument("b", metavar="B", nargs="?", default=None, help="secondary model")
    merge.add_argument(
        "--c", default=None, metavar="C", help="tertiary model (add-difference: A + (B − C)·M)"
    )
    merge.add_argument(
        "--mode",
        choices=["weighted-sum", "add-difference", "no-interpolation"],
        default="weighted-sum",
        help="weighted-sum: A·(1−M) + B·M (default); add-difference: A + (B − C)·M; no-interpolation: A alone",
    )
    merge.add_argument("--multiplier", "-M", type=float, default=0.3, help="M, from 0 to 1 (default 0.3)")
    merge.add_argument("--vae", default=None, help="bake in this models/VAE file (A1111 layout)")
    merge.add_argument("--fp16", action="store_true", help="save float32 weights as float16 (A1111's rule)")
    merge.add_argument(
        "--discard", default="", metavar="REGEX", help="drop the weights whose names this regex finds"
    )
    merge.add_argument("--name", required=True, help="the new checkpoint's name (never overwrites a file)")


def merge(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from app.oneshot import model_registry
    from commands.merging import merge_job, merged_checkpoint
    from engine.models.merging import MergeOptions
    from jobs.records import JobStatus

    options = MergeOptions(
        mode=args.mode,
        primary=args.a,
        secondary=args.b,
        tertiary=args.c,
        multiplier=args.multiplier,
        name=args.name,
        vae=args.vae,
        fp16=args.fp16,
        discard=args.discard,
    )
    registry = model_registry(settings)
    job = merge_job(registry, options)  # a model that is missing or refused, or a name taken, fails now
    record = asyncio.run(submit_and_follow(settings, job))
    if record.status is not JobStatus.DONE:
        err_console.print(f"job {record.id} {record.status.value}: {record.error or ''}", markup=False)
        return EXIT_JOB_FAILED
    name, short_hash = merged_checkpoint(registry, options.name)
    console.print(record.results[0], markup=False, soft_wrap=True)
    console.print(
        f"merged {name} [{short_hash}] ({options.mode}, M={options.multiplier:g}); "
        f"choose it with --model {options.name}",
        markup=False,
        soft_wrap=True,
    )
    return 0
