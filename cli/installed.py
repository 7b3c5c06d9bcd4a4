"""What is installed, from the command line: `salon models`, `salon extensions`, and `salon warmup` (compile
the fast path for the installed models)."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from cli.output import EXIT_BAD_INPUT, console, err_console, print_error, print_note
from config import Settings


def models(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from engine.models.registry import ModelKind, ModelRegistry
    from engine.models.sd2_family import checkpoint_family

    registry = ModelRegistry.from_settings(settings)
    table = Table("kind", "name", "hash", "size", "modified", "path")
    for kind in ModelKind:
        for entry in registry.entries(kind):
            modified = dt.datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
            cells = (
                f"{kind.value}\n{checkpoint_family(entry)}" if kind is ModelKind.CHECKPOINT else kind.value,
                entry.name,
                registry.short_hash(entry),
                _human_size(entry.size),
                modified,
                str(entry.path),
            )
            table.add_row(*cells)
    console.print(table)
    for refused in registry.refused:
        print_note("not loaded", f"{refused.path}: {refused.reason}")
    if table.row_count == 0:
        console.print(f"no models installed under {settings.models_path} or {settings.embeddings_path}")
    return 0


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def extensions(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from extensions import discover

    found = discover(settings.extensions.disabled)
    if not found:
        console.print("no extensions installed (packages with a 'salon.extensions' entry point)")
        return 0
    table = Table("name", "package", "URL", "version", "installed", "state")
    for ext in found:
        state = (
            "enabled"
            if ext.enabled and not ext.error
            else ("disabled" if not ext.enabled else f"error: {ext.error}")
        )
        table.add_row(ext.name, ext.distribution, ext.url, ext.version, ext.installed, state)
    console.print(table)
    return 0


def warmup(args: argparse.Namespace, settings: Settings) -> int:
    update: dict[str, object] = {}
    if args.mode:
        update["mode"] = args.mode
    if args.sizes:
        update["sizes"] = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if args.batches:
        try:
            update["batches"] = [int(b) for b in args.batches.split(",") if b.strip()]
        except ValueError:
            print_error(f"--batches: {args.batches!r} is not a list of numbers, e.g. 1,2,4")
            return EXIT_BAD_INPUT
    from pydantic import ValidationError

    try:
        speed = type(settings.speed).model_validate({**settings.speed.model_dump(), **update})
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        err_console.print(f"error {reasons}", markup=False)
        return EXIT_BAD_INPUT
    settings = settings.model_copy(update={"speed": speed})

    from engine.runner import Engine

    engine = Engine(settings)
    if engine.speed_mode != "max":
        console.print(
            f"speed mode {engine.speed_mode!r} on {engine.device}: nothing to compile "
            '(set [speed] mode = "max", or pass --mode max)',
            markup=False,
        )
        return 0
    started = time.perf_counter()
    engine.warm_up(args.model, report=lambda line: console.print(line, markup=False))
    console.print(
        f"warm-up done in {time.perf_counter() - started:.1f}s; compile cache: {settings.compile_cache_dir}",
        markup=False,
    )
    return 0
