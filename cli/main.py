"""`salon` — generate, inspect and manage Salon from a terminal.

The arguments are in cli/parser.py, each subcommand's handler in a module by topic (generate, queueing,
long_jobs, browsing, installed, roles); the services a handler needs come from the composition root (app/).
Heavy modules (torch, diffusers) are imported only by the subcommands that generate, so `salon --help`,
`salon pnginfo` and `salon models` stay quick.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from cli import (
    browsing,
    curating,
    database,
    generate,
    installed,
    long_jobs,
    merging,
    queueing,
    roles,
    upscaling,
    xyz,
)
from cli.failures import leave_without_gpu_thread, storage_failure
from cli.output import EXIT_BAD_INPUT, EXIT_STORAGE, print_error
from cli.parser import build_parser
from config import Settings, load_settings
from core.errors import SalonError

HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "imagine": generate.imagine,
    "img2img": generate.img2img,
    "inpaint": generate.inpaint,
    "pnginfo": browsing.pnginfo,
    "models": installed.models,
    "run": roles.run,
    "queue": queueing.queue,
    "worker": roles.worker,
    "workers": queueing.workers,
    "cancel": queueing.cancel,
    "browse": browsing.browse,
    "import": browsing.import_folder,
    "catalog": browsing.catalog,
    "rate": curating.rate,
    "favourite": curating.favourite,
    "delete": curating.delete,
    "restore": curating.restore,
    "purge": curating.purge,
    "train": long_jobs.train,
    "animate": long_jobs.animate,
    "merge": merging.merge,
    "upscale": upscaling.upscale,
    "xyz": xyz.xyz,
    "prompt-matrix": xyz.prompt_matrix,
    "prompts-from-file": xyz.prompts_from_file,
    "web": roles.web,
    "api": roles.api,
    "extensions": installed.extensions,
    "warmup": installed.warmup,
    "db": database.db,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # not transformers' torchvision notices
    settings = None
    try:
        settings = load_settings(args.config)
        return HANDLERS[args.command](args, settings)
    except SalonError as exc:
        print_error(exc)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print_error(exc)
        return EXIT_BAD_INPUT
    except Exception as exc:
        message = storage_failure(exc, settings)
        if message is None:
            raise
        print_error(message)
        leave_without_gpu_thread(EXIT_STORAGE)
        return EXIT_STORAGE


if __name__ == "__main__":
    sys.exit(main())
