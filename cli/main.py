"""`salon` — generate, inspect and manage Salon from a terminal.

Heavy modules (torch, diffusers) are imported only by the subcommands that generate, so `salon --help`,
`salon pnginfo` and `salon models` stay quick.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cli.extended import loads_extensions
from cli.failures import leave_without_gpu_thread, storage_failure
from cli.output import console, err_console, print_error, print_note
from config import Settings, load_settings
from core.errors import SalonError

EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_AVAILABLE = 3
EXIT_STORAGE = 1  # a damaged database or a full disk (cli/failures.py)


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prompt", help="the prompt, with A1111 syntax: (word:1.2), [word], BREAK, <lora:name:0.8>"
    )
    parser.add_argument("--negative", "-n", default="", help="negative prompt")
    parser.add_argument("--model", "-m", default=None, help="checkpoint name (see `salon models`)")
    parser.add_argument(
        "--sampler", default="DPM++ 2M", help="A1111 sampler name, e.g. 'Euler a', 'DPM++ 2M'"
    )
    parser.add_argument(
        "--schedule", default="Automatic", help="Schedule type: Automatic, Karras, Exponential, …"
    )
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    parser.add_argument("--seed", type=int, default=-1, help="seed; -1 = random")
    parser.add_argument(
        "--size",
        default=None,
        help="WIDTHxHEIGHT, multiples of 8 (default: the model's own resolution, "
        "or the input image's size for img2img/inpaint)",
    )
    parser.add_argument("--batch", type=int, default=1, help="images per batch (batch size)")
    parser.add_argument("--batch-count", type=int, default=1, help="number of batches")
    parser.add_argument("--clip-skip", type=int, default=1, help="stop at the N-th last CLIP layer")
    parser.add_argument("--tiling", action="store_true", help="seamless tiling")
    parser.add_argument("--variation-seed", type=int, default=-1, help="variation seed; -1 = random")
    parser.add_argument(
        "--variation-strength", type=float, default=0.0, help="0 = off, 1 = only the variation"
    )
    parser.add_argument("--output", "-o", type=Path, default=None, help="folder for the PNGs")


def _add_hires_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hires", type=float, default=None, metavar="SCALE", help="hires fix upscale factor")
    parser.add_argument("--hires-steps", type=int, default=0, help="hires steps; 0 = same as --steps")
    parser.add_argument("--hires-denoise", type=float, default=0.7, help="hires denoising strength")
    parser.add_argument(
        "--hires-upscaler", default="Latent", help="Latent, Latent (nearest), Lanczos, Nearest"
    )


def _add_img2img_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strength", type=float, default=0.75, help="denoising strength, 0–1")
    parser.add_argument(
        "--resize-mode",
        default="Just resize",
        help="Just resize, Crop and resize, Resize and fill, Just resize (latent upscale)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salon", description="Salon: a Stable Diffusion studio for Discord."
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="settings TOML file (default: ./salon.toml)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", required=True)

    imagine = sub.add_parser("imagine", help="txt2img: generate images from a prompt")
    _add_generation_options(imagine)
    _add_hires_options(imagine)

    img2img = sub.add_parser("img2img", help="img2img: generate from an input image")
    img2img.add_argument("image", type=Path, help="input image")
    _add_generation_options(img2img)
    _add_img2img_options(img2img)
    img2img.add_argument("--noise-multiplier", type=float, default=1.0, help="scale of the added noise")

    inpaint = sub.add_parser("inpaint", help="inpaint: repaint the white part of a mask")
    inpaint.add_argument("image", type=Path, help="input image")
    area = inpaint.add_mutually_exclusive_group(required=True)
    area.add_argument("--mask", type=Path, help="mask image, same size; white = repaint")
    area.add_argument("--region", help="rectangle to repaint instead of a mask: x,y,w,h")
    _add_generation_options(inpaint)
    _add_img2img_options(inpaint)
    inpaint.add_argument("--mask-blur", type=int, default=4, help="mask blur in pixels")
    inpaint.add_argument(
        "--masked-content", default="original", help="fill, original, latent noise, latent nothing"
    )
    inpaint.add_argument("--inpaint-area", default="Whole picture", help="Whole picture or Only masked")
    inpaint.add_argument("--padding", type=int, default=32, help="Only masked padding in pixels")

    pnginfo = sub.add_parser("pnginfo", help="print the generation parameters stored in an image")
    pnginfo.add_argument("file", type=Path)

    sub.add_parser("models", help="list installed checkpoints, LoRAs, VAEs, hypernetworks and embeddings")

    queue = sub.add_parser("queue", help="list recent jobs with their status and place in line")
    queue.add_argument("--limit", type=int, default=30, help="how many jobs to show")
    worker = sub.add_parser("worker", help="run the GPU worker alone (jobs from the bot, the CLI, …)")
    worker.add_argument("--exit-when-idle", action="store_true", help="stop once the queue is empty")
    cancel = sub.add_parser("cancel", help="cancel a queued job (or a running one of this process)")
    cancel.add_argument("job", type=int, help="job id (see `salon queue`)")
    from commands.browse import NEGATIVE_HELP as negative_help

    browse = sub.add_parser("browse", help="search the catalog like A1111's Image Browser; prints one page")
    browse.add_argument("keyword", nargs="?", default="", help='words, "phrases", and/or/not, model: lora: …')
    browse.add_argument("--guild", default="local", help="whose images (default: this machine's, 'local')")
    browse.add_argument("--filename", default="", help="file name contains this")
    browse.add_argument("--negative", default="no", help=negative_help)
    browse.add_argument("--case-sensitive", action="store_true", help="exact case, and words as substrings")
    browse.add_argument("--regex", action="store_true", help="the keyword is one regular expression")
    browse.add_argument("--rank", default="all", help="all, none, a score 1-5 or a range like 3-5")
    browse.add_argument("--author", default=None)
    browse.add_argument("--model", default=None, help="checkpoint name as in the infotext")
    browse.add_argument("--favourites-of", default=None, help="only this user's favourites")
    browse.add_argument("--sort", default="date", help="date, rank, seed, steps, cfg, model or random")
    browse.add_argument("--ascending", action="store_true", help="oldest/lowest first")
    browse.add_argument("--page", default="1", help="page number, first or last")
    browse.add_argument("--page-size", type=int, default=25)
    browse.add_argument("--recycle-bin", action="store_true", help="browse deleted images instead")
    browse.add_argument("--show", type=int, default=None, help="print one image's file and full infotext")
    imports = sub.add_parser(
        "import", help="add a folder of A1111/Salon images (with their infotext) to the catalog"
    )
    imports.add_argument("folder", type=Path)
    imports.add_argument("--guild", default="local")
    imports.add_argument("--author", default=None, help="default: your user name")
    catalog = sub.add_parser("catalog", help="catalog upkeep: check (and --repair) or rebuild the text index")
    catalog.add_argument("action", choices=("check", "rebuild-index"))
    catalog.add_argument("--repair", action="store_true", help="fix what the check finds")
    sub.add_parser("run", help="run the Discord bot with its worker (needs DISCORD_TOKEN)")

    train = sub.add_parser(
        "train",
        help="train a LoRA, an embedding, a hypernetwork or a Dreambooth checkpoint on a folder of images",
    )
    train.add_argument(
        "kind", choices=["lora", "embedding", "hypernetwork", "dreambooth"], help="what to train"
    )
    train.add_argument("folder", type=Path, help="images, with optional .txt captions of the same name")
    train.add_argument("--name", required=True, help="the result's name: <lora:NAME:1>, or NAME in a prompt")
    train.add_argument("--model", default=None, help="base checkpoint (default: the default model)")
    train.add_argument("--steps", type=int, default=500, help="optimizer steps")
    train.add_argument(
        "--learning-rate",
        default=None,
        help='a rate or an A1111 schedule "5e-3:100, 1e-4" (LoRA 1e-4, TI 5e-3, others 5e-6)',
    )
    train.add_argument(
        "--instance-prompt",
        default=None,
        help='dreambooth: the subject\'s prompt, e.g. "a photo of [name] dog"',
    )
    train.add_argument(
        "--class-prompt", default="", help='dreambooth: e.g. "a photo of a dog"; turns on prior preservation'
    )
    train.add_argument("--class-images", type=int, default=50, help="dreambooth: class images to generate")
    train.add_argument("--class-steps", type=int, default=20, help="dreambooth: steps per class image")
    train.add_argument(
        "--prior-loss-weight", type=float, default=1.0, help="dreambooth: weight of the class loss"
    )
    train.add_argument(
        "--save-format",
        choices=["auto", "safetensors", "diffusers"],
        default="auto",
        help="dreambooth: one .safetensors or a diffusers folder (auto: like the base model)",
    )
    train.add_argument(
        "--save-every", type=int, default=0, help="install the result every N steps (0: at the end)"
    )
    train.add_argument("--preview-every", type=int, default=0, help="render a preview image every N steps")
    train.add_argument(
        "--preview-prompt", default=None, help="the preview's prompt (default: the first caption)"
    )
    train.add_argument("--preview-steps", type=int, default=20, help="denoising steps of a preview")
    train.add_argument("--init-text", default="*", help="embedding: the words its vectors start from")
    train.add_argument("--vectors", type=int, default=1, help="embedding: vectors per token")
    train.add_argument("--layer-structure", default="1,2,1", help="hypernetwork: layer sizes, e.g. 1,2,1")
    train.add_argument("--activation", default="linear", help="hypernetwork: linear, relu, swish, …")
    train.add_argument("--layer-norm", action="store_true", help="hypernetwork: add layer normalization")
    train.add_argument("--alpha-loss", action="store_true", help="PNG transparency weights the loss (A1111)")
    train.add_argument(
        "--template", default=None, help='embedding: prompt template, e.g. "a photo of [name], [filewords]"'
    )
    train.add_argument("--batch", type=int, default=1, help="images per step")
    train.add_argument("--grad-accum", type=int, default=1, help="batches averaged into one step")
    train.add_argument("--clip-grad", choices=["disabled", "value", "norm"], default="disabled")
    train.add_argument("--clip-grad-value", type=float, default=0.1)
    train.add_argument("--rank", type=int, default=4, help="LoRA rank (network dim)")
    train.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    train.add_argument("--text-encoder", action="store_true", help="train the text encoder too")
    train.add_argument("--resolution", type=int, default=None, help="training size (default: the model's)")
    train.add_argument(
        "--no-crop", action="store_true", help="resize the longer side instead of centre-cropping"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--overwrite", action="store_true", help="replace your own earlier result of that name"
    )

    animate = sub.add_parser(
        "animate", help="a Deforum-style animation (2D camera moves or prompt interpolation) to MP4/GIF/WebP"
    )
    animate.add_argument(
        "prompts",
        nargs="?",
        default=None,
        help='a prompt, "0: a cat | 30: a dog", or Deforum\'s JSON {"0": "a cat", "30": "a dog --neg blurry"}',
    )
    animate.add_argument("--settings", type=Path, default=None, help="a Deforum settings file (settings.txt)")
    animate.add_argument(
        "--output", type=Path, default=None, help="copy the videos and frames into this folder"
    )
    animate.add_argument("--mode", dest="animation_mode", choices=["2D", "Interpolation"], default=None)
    animate.add_argument(
        "--frames", dest="max_frames", type=int, default=None, help="max frames (Deforum: 120)"
    )
    animate.add_argument("--size", default=None, help="WxH, e.g. 512x512")
    animate.add_argument("--model", default=None)
    animate.add_argument("--sampler", default=None)
    animate.add_argument("--steps", type=int, default=None)
    animate.add_argument("--seed", type=int, default=None, help="start seed (-1: random)")
    animate.add_argument(
        "--seed-behavior", choices=["iter", "fixed", "random", "ladder", "alternate", "schedule"]
    )
    for flag, name, example in (
        ("--zoom", "zoom", "0:(1.02)"),
        ("--angle", "angle", "0:(0), 30:(10)"),
        ("--translation-x", "translation_x", "0:(2)"),
        ("--translation-y", "translation_y", "0:(0)"),
        ("--center-x", "transform_center_x", "0:(0.5)"),
        ("--center-y", "transform_center_y", "0:(0.5)"),
        ("--strength", "strength_schedule", "0:(0.65)"),
        ("--noise", "noise_schedule", "0:(0.065)"),
        ("--contrast", "contrast_schedule", "0:(1.0)"),
        ("--cfg", "cfg_scale_schedule", "0:(7)"),
        ("--seed-schedule", "seed_schedule", "0:(s), 10:(s+100)"),
    ):
        animate.add_argument(flag, dest=name, default=None, help=f"schedule, e.g. {example}")
    animate.add_argument("--color-coherence", choices=["None", "LAB", "HSV", "RGB"], default=None)
    animate.add_argument(
        "--blend-prompts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="2D: blend each prompt into the next keyframe's (Deforum, the default, holds it until then)",
    )
    animate.add_argument("--noise-type", choices=["perlin", "uniform"], default=None, help="Deforum: perlin")
    animate.add_argument("--border", choices=["replicate", "wrap"], default=None)
    animate.add_argument(
        "--cadence", dest="diffusion_cadence", type=int, default=None, help="diffuse every Nth frame"
    )
    animate.add_argument("--fps", type=float, default=None)
    animate.add_argument("--formats", default="mp4,gif", help="any of mp4,gif,webp")
    animate.add_argument(
        "--plot", type=Path, default=None, help="write the plot of the schedules here and stop"
    )
    sub.add_parser("extensions", help="installed extensions: name, URL, version, install date, enabled")
    warmup = sub.add_parser(
        "warmup",
        help="compile the fast path's shapes now (fills the on-disk compile cache, so the bot starts fast)",
    )
    warmup.add_argument(
        "--model", action="append", default=None, help="checkpoint to warm up (repeat for several)"
    )
    warmup.add_argument("--mode", choices=["auto", "max", "balanced", "off"], default=None, help="speed mode")
    warmup.add_argument("--sizes", default=None, help="image sizes, e.g. 512x512,768x512")
    warmup.add_argument("--batches", default=None, help="batch buckets in images, e.g. 1,2,4,8,16")
    web = sub.add_parser("web", help="serve the read-only web gallery (links from /gallery web, or --local)")
    web.add_argument("--port", type=int, default=None, help="port (default: [web] port, 8765)")
    web.add_argument("--host", default=None, help="address to listen on (default: [web] host, 127.0.0.1)")
    web.add_argument(
        "--local",
        action="store_true",
        help="no link needed: serve one guild at / on 127.0.0.1 only (for the machine's owner)",
    )
    web.add_argument(
        "--guild", default="local", help="with --local: whose images (default: your own imports)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # not transformers' torchvision notices
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "imagine": _imagine,
        "img2img": _img2img,
        "inpaint": _inpaint,
        "pnginfo": _pnginfo,
        "models": _models,
        "run": _run,
        "queue": _queue,
        "worker": _worker,
        "cancel": _cancel,
        "browse": _browse,
        "import": _import,
        "catalog": _catalog,
        "train": _train,
        "animate": _animate,
        "web": _web,
        "extensions": _extensions,
        "warmup": _warmup,
    }
    settings = None
    try:
        settings = load_settings(args.config)
        return handlers[args.command](args, settings)
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


def _generation_request(args: argparse.Namespace, settings: Settings, default_size: tuple[int, int]):
    from commands.options import generation_request

    hires = getattr(args, "hires", None)
    return generation_request(
        settings.limits,
        args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        sampler=args.sampler,
        schedule=args.schedule,
        steps=args.steps,
        cfg_scale=args.cfg,
        seed=args.seed,
        size=args.size or default_size,
        batch_size=args.batch,
        batch_count=args.batch_count,
        clip_skip=args.clip_skip,
        tiling=args.tiling,
        variation_seed=args.variation_seed,
        variation_strength=args.variation_strength,
        hires_scale=hires,
        hires_steps=getattr(args, "hires_steps", 0),
        hires_denoising_strength=getattr(args, "hires_denoise", 0.7),
        hires_upscaler=getattr(args, "hires_upscaler", "Latent"),
    )


@loads_extensions
def _imagine(args: argparse.Namespace, settings: Settings) -> int:
    from engine.models.registry import ModelRegistry

    size = ModelRegistry.from_settings(settings).native_size(args.model or settings.default_model)
    request = _generation_request(args, settings, size)
    return _through_queue(settings, request, args.output)


def _image_size(image) -> tuple[int, int]:
    from commands.options import output_size_for

    return output_size_for(image)


@loads_extensions
def _img2img(args: argparse.Namespace, settings: Settings) -> int:
    from commands.options import img2img_request, load_input_image

    image = load_input_image(args.image, settings.limits)
    params = _generation_request(args, settings, _image_size(image))
    request = img2img_request(
        settings.limits,
        params,
        image,
        denoising_strength=args.strength,
        resize_mode=args.resize_mode,
        noise_multiplier=args.noise_multiplier,
    )
    return _through_queue(settings, request, args.output)


@loads_extensions
def _inpaint(args: argparse.Namespace, settings: Settings) -> int:
    from commands.options import inpaint_request, load_input_image, region_mask

    image = load_input_image(args.image, settings.limits)
    params = _generation_request(args, settings, _image_size(image))
    mask = (
        region_mask(image, args.region)
        if args.region
        else load_input_image(args.mask, settings.limits, "mask")
    )
    request = inpaint_request(
        settings.limits,
        params,
        image,
        mask,
        denoising_strength=args.strength,
        resize_mode=args.resize_mode,
        mask_blur=args.mask_blur,
        masked_content=args.masked_content,
        inpaint_area=args.inpaint_area,
        padding=args.padding,
    )
    return _through_queue(settings, request, args.output)


def _through_queue(settings: Settings, request, output: Path | None) -> int:
    """Submit to the queue, run the worker here unless another process runs it, show progress, print results."""
    import asyncio

    from commands.outputs import copy_results
    from engine.infotext_files import read_infotext
    from jobs.records import JobStatus

    job = asyncio.run(_submit_and_wait(settings, request))
    if job.status is not JobStatus.DONE:
        err_console.print(f"job {job.id} {job.status.value}: {job.error or 'no images'}", markup=False)
        return EXIT_JOB_FAILED
    paths = copy_results([Path(p) for p in job.results], output) if output else [Path(p) for p in job.results]
    for path in paths:
        console.print(str(path), markup=False)
        console.print(read_infotext(path) or "", markup=False, soft_wrap=True)
        console.print()
    elapsed = (job.finished_at or 0) - job.created_at
    console.print(f"{len(paths)} image(s) in {elapsed:.2f}s (job {job.id}, model {job.model})", markup=False)
    return 0


async def _submit_and_wait(settings: Settings, request):
    import asyncio
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from commands.generation import submit_and_wait
    from jobs.queue import JobQueue, owner_for_cli
    from jobs.records import WARMING_UP

    queue = await JobQueue.open(settings)
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err_console, transient=True) as progress:
            task = progress.add_task("queued", total=None)

            def show(event) -> None:
                if event.kind == "queued" and event.position:
                    warming = " (the GPU is warming up)" if event.phase == WARMING_UP else ""
                    progress.update(task, description=f"queued, position {event.position}{warming}")
                elif event.kind == "progress":
                    progress.update(task, description=event.phase, completed=event.step, total=event.total)

            loop = asyncio.get_running_loop()
            job_ids: list[int] = []
            loop.add_signal_handler(
                signal.SIGINT, lambda: [asyncio.ensure_future(queue.cancel(i)) for i in job_ids]
            )
            return await submit_and_wait(queue, request, owner_for_cli(), show, job_ids.append)
    finally:
        await queue.close()


def _pnginfo(args: argparse.Namespace, settings: Settings) -> int:
    from core.errors import InvalidImage
    from engine.infotext import parse_infotext
    from engine.infotext_files import read_infotext

    try:
        text = read_infotext(args.file)
    except InvalidImage as exc:  # refused from its header (a bomb, a 100 MB text chunk): name the file
        print_error(f"{args.file}: {exc.message}")
        return EXIT_BAD_INPUT
    if text is None:
        err_console.print(f"{args.file}: no generation parameters found")
        return 1
    console.print(text, markup=False, soft_wrap=True)
    info = parse_infotext(text)
    console.print()
    console.print(f"prompt: {info.prompt!r}", markup=False)
    console.print(f"negative prompt: {info.negative_prompt!r}", markup=False)
    for key, value in info.params.items():
        console.print(f"{key}: {value}", markup=False)
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from engine.models.registry import ModelKind, ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    table = Table("kind", "name", "hash", "size", "modified", "path")
    for kind in ModelKind:
        for entry in registry.entries(kind):
            modified = dt.datetime.fromtimestamp(entry.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M")
            cells = (
                kind.value,
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


def _queue(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from rich.table import Table

    from jobs.queue import JobQueue

    async def listing():
        queue = await JobQueue.open(settings)
        try:
            return await queue.store.recent(args.limit), await queue.positions(), queue.worker_waiting()
        finally:
            await queue.close()

    jobs, positions, waiting = asyncio.run(listing())
    table = Table("job", "status", "kind", "owner", "place", "phase", "age", "prompt")
    now = dt.datetime.now().timestamp()
    for job in jobs:
        prompt = str(job.request.get("params", {}).get("prompt", ""))
        place = str(positions.get(job.id, ""))
        row = (
            str(job.id),
            job.status.value,
            job.kind.value,
            job.owner,
            place,
            (job.error if job.status.value == "failed" and job.error else job.phase) or "",  # why it failed
            f"{now - job.created_at:.0f}s",
            prompt[:40],
        )
        table.add_row(*row)
    console.print(table)
    if waiting:
        print_note("the worker is", waiting)  # e.g. "waiting: disk full in … (12 KB free)"
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from jobs.queue import JobQueue, WorkerBusy

    async def work() -> None:
        queue = await JobQueue.open(settings)
        stop = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            asyncio.ensure_future(queue.shutdown())

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            await queue.run(stop=stop, until_empty=args.exit_when_idle)
        finally:
            await queue.close()

    logging.getLogger().setLevel(logging.INFO)
    try:
        asyncio.run(work())
    except WorkerBusy as exc:
        err_console.print(str(exc), markup=False)
        return EXIT_NOT_AVAILABLE
    leave_without_gpu_thread(0)  # a stop during a model load: the jobs are back in line, exit now
    return 0


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from jobs.queue import JobQueue

    async def cancel():
        queue = await JobQueue.open(settings)
        try:
            return await queue.cancel(args.job)
        finally:
            await queue.close()

    job = asyncio.run(cancel())
    if job.status.value == "running":
        console.print(f"job {job.id}: running; it stops at its next step", markup=False)
    else:
        console.print(f"job {job.id}: {job.status.value}", markup=False)
    return 0


def _with_catalog(settings: Settings, work):
    """Open the catalog, await `work(catalog)`, close it; returns what work returned."""
    import asyncio

    from catalog.catalog import Catalog

    async def run():
        catalog = await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
        # Files added by import and repair: at most the pixels of an input image or of an output, if more.
        catalog.max_pixels = max(settings.limits.max_input_pixels, settings.limits.max_pixels)
        try:
            return await work(catalog)
        finally:
            await catalog.close()

    return asyncio.run(run())


def _browse(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from commands.browse import browse_query

    if args.show is not None:
        image = _with_catalog(settings, lambda catalog: catalog.get(args.guild, args.show))
        if image is None:
            err_console.print(f"no image {args.show} in guild {args.guild}", markup=False)
            return EXIT_BAD_INPUT
        console.print(image.path, markup=False)
        console.print(image.infotext, markup=False, soft_wrap=True)
        return 0
    query = browse_query(
        args.guild,
        keyword=args.keyword,
        filename=args.filename,
        negative=args.negative,
        case_sensitive=args.case_sensitive,
        regex=args.regex,
        rank=args.rank,
        author=args.author,
        model=args.model,
        favourites_of=args.favourites_of,
        sort=args.sort,
        ascending=args.ascending,
        page=args.page,
        page_size=args.page_size,
        deleted=args.recycle_bin,
    )
    page = _with_catalog(settings, lambda catalog: catalog.search(query))
    table = Table("id", "file", "rank", "model", "seed", "author", "prompt")
    for image in page.images:
        rank = f"{image.rank_mean:.1f} ({image.rank_count})" if image.rank_count else ""
        row = (str(image.id), image.filename, rank, image.model or "", str(image.seed or ""), image.author)
        table.add_row(*row, image.prompt[:60])
    console.print(table)
    console.print(f"page {page.page} of {page.pages} ({page.total} images)", markup=False, soft_wrap=True)
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    if not args.folder.is_dir():
        err_console.print(f"folder: {args.folder} is not a folder", markup=False)
        return EXIT_BAD_INPUT
    author = args.author or getpass.getuser()
    records, skipped = _with_catalog(
        settings, lambda catalog: catalog.import_folder(args.folder.resolve(), args.guild, author)
    )
    for line in skipped:
        err_console.print(f"skipped {line}", markup=False, soft_wrap=True)
    with_info = sum(1 for record in records if record.infotext)
    console.print(
        f"{len(records)} image(s) in the catalog from {args.folder} ({with_info} with generation info), "
        f"{len(skipped)} skipped",
        markup=False,
        soft_wrap=True,
    )
    return 0


def _catalog(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "rebuild-index":
        count = _with_catalog(settings, lambda catalog: catalog.rebuild_index())
        console.print(f"text index rebuilt: {count} image(s)", markup=False)
        return 0
    report = _with_catalog(
        settings,
        lambda catalog: catalog.check(
            [settings.outputs_path],
            repair=args.repair,
            skip=[settings.outputs_path / "animations"],  # frames of animations are not catalog images
        ),
    )
    console.print(
        f"rows without files: {len(report.rows_without_files)}, files without rows: "
        f"{len(report.files_without_rows)}, rows not indexed: {len(report.rows_not_indexed)}, "
        f"index entries without rows: {len(report.index_without_rows)}"
        + (" (repaired)" if args.repair and not report.clean else ""),
        markup=False,
        soft_wrap=True,
    )
    return 0 if report.clean or args.repair else 1


USAGE = {
    "lora": "use it as <lora:{name}:1> in a prompt",
    "embedding": "use it as {name} in a prompt",
    "hypernetwork": "use it as <hypernet:{name}:1> in a prompt",
    "dreambooth": "choose it with --model {name}",
}


def _train(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from commands.training import images_from_folder, training_job
    from engine.models.registry import ModelRegistry, native_resolution
    from jobs.queue import owner_for_cli
    from jobs.records import JobStatus

    model = ModelRegistry.from_settings(settings).checkpoint(args.model or settings.default_model)
    options = {
        "steps": args.steps,
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),  # else the trainer's default
        "layer_structure": [float(x) for x in args.layer_structure.split(",") if x.strip()],
        "activation": args.activation,
        "layer_norm": args.layer_norm,
        "alpha_weight": args.alpha_loss,
        "batch_size": args.batch,
        "gradient_accumulation": args.grad_accum,
        "clip_grad_mode": args.clip_grad,
        "clip_grad_value": args.clip_grad_value,
        "rank": args.rank,
        "alpha": args.alpha,
        "train_text_encoder": args.text_encoder,
        "resolution": args.resolution or native_resolution(model),
        "crop": not args.no_crop,
        "seed": args.seed,
        "init_text": args.init_text,
        "vectors": args.vectors,
        "class_prompt": args.class_prompt,
        "class_images": args.class_images,
        "class_steps": args.class_steps,
        "prior_loss_weight": args.prior_loss_weight,
        "save_format": args.save_format,
        "save_every": args.save_every,
        "preview_every": args.preview_every,
        "preview_steps": args.preview_steps,
    }
    for option in ("instance_prompt", "preview_prompt"):
        if getattr(args, option):
            options[option] = getattr(args, option)
    if args.template:
        options["template"] = args.template
    images = images_from_folder(args.folder, settings)
    job = training_job(
        settings,
        args.kind,
        args.name,
        images,
        owner_for_cli(),
        model=model.name,
        overwrite=args.overwrite,
        options=options,
    )
    record = asyncio.run(_submit_and_wait(settings, job))
    if record.status is not JobStatus.DONE:
        err_console.print(
            f"job {record.id} {record.status.value}: {record.error or ''}", markup=False, soft_wrap=True
        )
        return EXIT_JOB_FAILED
    losses = (record.checkpoint or {}).get("losses", [])
    tail = f", loss over the last steps {sum(losses[-10:]) / len(losses[-10:]):.4f}" if losses else ""
    console.print(f"{record.results[0]}", markup=False, soft_wrap=True)
    console.print(
        f"trained {args.kind} {args.name!r} on {len(images)} images in {record.slices + 1} slice(s){tail}; "
        f"{USAGE[args.kind].format(name=args.name)}",
        markup=False,
        soft_wrap=True,
    )
    if args.preview_every:
        from engine.models.trained_files import preview_folder

        console.print(f"previews: {preview_folder(settings, args.name)}", markup=False, soft_wrap=True)
    return 0


@loads_extensions
def _animate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import shutil

    from commands.animation import animation_job, animation_settings, describe, parse_prompts, schedule_plot
    from engine.animation.deforum_files import import_deforum
    from engine.validation import parse_size
    from jobs.records import JobStatus

    base = None
    if args.settings is not None:
        imported = import_deforum(args.settings.read_bytes())
        base = imported.settings
        for warning in imported.warnings:
            err_console.print(f"note: {warning}", markup=False)
        if imported.ignored:
            shown = ", ".join(imported.ignored[:12]) + (" …" if len(imported.ignored) > 12 else "")
            err_console.print(
                f"note: {len(imported.ignored)} Deforum keys are not used: {shown}", markup=False
            )
    elif args.prompts is None:
        from core.errors import InvalidRequest

        raise InvalidRequest("prompts", "give a prompt (or a schedule), or --settings FILE")
    width = height = None
    if args.size:
        width, height = parse_size(args.size)
    elif base is None:  # no size given: the model's own, as `imagine` does
        from engine.models.registry import ModelRegistry

        registry = ModelRegistry.from_settings(settings)
        width, height = registry.native_size(args.model or settings.default_model)
    options = {
        name: getattr(args, name)
        for name in (
            "animation_mode", "max_frames", "model", "sampler", "steps", "seed", "seed_behavior", "zoom", "angle",
            "translation_x", "translation_y", "transform_center_x", "transform_center_y", "strength_schedule",
            "noise_schedule", "contrast_schedule", "cfg_scale_schedule", "seed_schedule", "color_coherence",
            "border", "diffusion_cadence", "fps", "blend_prompts", "noise_type",
        )
    }  # fmt: skip
    if args.prompts is not None:
        options["prompts"] = parse_prompts(args.prompts)
    chosen = animation_settings(base, width=width, height=height, **options)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    job, seed = animation_job(chosen, formats, limits=settings.limits)
    if args.plot is not None:
        args.plot.write_bytes(schedule_plot(chosen, seed))
        console.print(f"{args.plot}: {describe(chosen, seed)}", markup=False, soft_wrap=True)
        return 0
    record = asyncio.run(_submit_and_wait(settings, job))
    if record.status is not JobStatus.DONE:
        err_console.print(f"job {record.id} {record.status.value}: {record.error or ''}", markup=False)
        return EXIT_JOB_FAILED
    results = [Path(p) for p in record.results]
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        for path in results:
            shutil.copy2(path, args.output / path.name)
        shutil.copytree(results[0].parent / "frames", args.output / "frames", dirs_exist_ok=True)
        results = [args.output / p.name for p in results]
    for path in results:
        console.print(str(path), markup=False, soft_wrap=True)
    console.print(f"animated {describe(chosen, seed)} (job {record.id})", markup=False, soft_wrap=True)
    return 0


def _extensions(args: argparse.Namespace, settings: Settings) -> int:
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


def _warmup(args: argparse.Namespace, settings: Settings) -> int:
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


def _web(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from catalog.catalog import Catalog
    from community.store import CommunityStore
    from web.server import serve

    host = "127.0.0.1" if args.local else (args.host or settings.web.host)
    port = args.port or settings.web.port

    async def run() -> None:
        catalog = await Catalog.open(settings.catalog_dir, settings.catalog.text_index)
        try:
            community = await CommunityStore.open(settings.community_db)
        except BaseException:
            await catalog.close()  # an open connection would keep the process from exiting
            raise
        runner = await serve(settings, catalog, community, host, port, args.guild if args.local else None)
        where = (
            f"http://{host}:{port}/" if args.local else f"http://{host}:{port}/g/<link from /gallery web>/"
        )
        console.print(f"web gallery on {where} (Ctrl-C stops it)", markup=False, soft_wrap=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await community.close()
            await catalog.close()

    asyncio.run(run())
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.discord_token is None or not settings.discord_token.get_secret_value().strip():
        err_console.print(
            "DISCORD_TOKEN is not set: export DISCORD_TOKEN=… or set discord_token in salon.toml "
            "(README: 'Running the Discord bot')"
        )
        return EXIT_BAD_INPUT
    import asyncio

    from bot.app import run_bot

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("discord").setLevel(logging.WARNING)
    status = asyncio.run(run_bot(settings))  # Discord refusing the token or intents: a SalonError, exit 2
    leave_without_gpu_thread(status)  # a stop during a model load: the jobs are back in line, exit now
    return status


if __name__ == "__main__":
    sys.exit(main())
