"""The long-running roles `salon` starts, each built by the composition root (app/): `salon run` (the bot
with its worker), `salon worker` (the worker alone), `salon web` (the web gallery) and `salon api` (the
A1111-compatible HTTP API, with its worker unless --no-worker)."""

from __future__ import annotations

import argparse
import logging

from cli.failures import leave_without_gpu_thread
from cli.output import EXIT_BAD_INPUT, EXIT_NOT_AVAILABLE, console, err_console
from config import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        err_console.print(
            "DISCORD_TOKEN is not set: export DISCORD_TOKEN=… or set discord_token in salon.toml "
            "(README: 'Running the Discord bot')"
        )
        return EXIT_BAD_INPUT
    import asyncio

    from app.bot import run_bot

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("discord").setLevel(logging.WARNING)
    # Discord refusing the token or intents: a SalonError, exit 2
    status = asyncio.run(run_bot(settings, worker=not args.no_worker))
    leave_without_gpu_thread(status)  # a stop during a model load: the jobs are back in line, exit now
    return status


def worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from app.worker import run_worker
    from jobs.running import WorkerBusy

    logging.getLogger().setLevel(logging.INFO)
    try:
        asyncio.run(run_worker(settings, until_empty=args.exit_when_idle, name=args.name))
    except WorkerBusy as exc:
        err_console.print(str(exc), markup=False)
        return EXIT_NOT_AVAILABLE
    leave_without_gpu_thread(0)  # a stop during a model load: the jobs are back in line, exit now
    return 0


def web(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from app.web import serve_web

    host = "127.0.0.1" if args.local else (args.host or settings.web.host)
    port = args.port or settings.web.port

    async def run() -> None:
        async with serve_web(settings, host, port, args.guild if args.local else None):
            where = (
                f"http://{host}:{port}/"
                if args.local
                else f"http://{host}:{port}/g/<link from /gallery web>/"
            )
            console.print(f"web gallery on {where} (Ctrl-C stops it)", markup=False, soft_wrap=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

    asyncio.run(run())
    return 0


def api(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from app.api import run_api

    logging.getLogger().setLevel(logging.INFO)
    host = args.host or settings.api.host
    port = args.port or settings.api.port

    def announce(url: str) -> None:
        console.print(
            f"A1111-compatible API on {url}/sdapi/v1/ (docs: {url}/docs; Ctrl-C stops it)", markup=False
        )

    # Another process running the worker (`salon worker`, a bot) is no error: the API then only submits.
    asyncio.run(run_api(settings, host, port, args.api_auth, not args.no_worker, announce))
    leave_without_gpu_thread(0)  # a stop during a model load: the jobs are back in line, exit now
    return 0
