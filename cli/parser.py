"""The `salon` command's arguments: one subcommand per thing Salon does, with A1111's option names."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.merging import merge_parser
from cli.upscaling import upscale_parser
from cli.xyz import plot_parsers
from engine.models.trained_files import HYPERNETWORK_WEIGHT_INITS
from engine.requests import DEFAULT_CFG_SCALE, DEFAULT_SAMPLER, DEFAULT_STEPS


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    # Defaults are None ("not typed"): the defaults named in the help apply later, so that with --from-png
    # only the options a user typed override the PNG's infotext.
    parser.add_argument(
        "prompt",
        nargs="?",
        default=None,
        help="the prompt, with A1111 syntax: (word:1.2), [word], BREAK, <lora:name:0.8> "
        "(optional with --from-png: the PNG's)",
    )
    parser.add_argument("--negative", "-n", default=None, help="negative prompt")
    parser.add_argument("--model", "-m", default=None, help="checkpoint name (see `salon models`)")
    parser.add_argument(
        "--sampler", default=None, help=f"A1111 sampler name, e.g. 'Euler a' (default: {DEFAULT_SAMPLER})"
    )
    parser.add_argument(
        "--schedule", default=None, help="Schedule type: Automatic (default), Karras, Exponential, …"
    )
    parser.add_argument("--steps", type=int, default=None, help=f"sampling steps (default: {DEFAULT_STEPS})")
    parser.add_argument("--cfg", type=float, default=None, help=f"CFG scale (default: {DEFAULT_CFG_SCALE:g})")
    parser.add_argument("--seed", type=int, default=None, help="seed; -1 = random (default)")
    parser.add_argument(
        "--size",
        default=None,
        help="WIDTHxHEIGHT, multiples of 8 (default: the model's own resolution, "
        "or the input image's size for img2img/inpaint)",
    )
    parser.add_argument("--batch", type=int, default=None, help="images per batch (batch size; default 1)")
    parser.add_argument("--batch-count", type=int, default=None, help="number of batches (default 1)")
    parser.add_argument(
        "--clip-skip", type=int, default=None, help="stop at the N-th last CLIP layer (default 1)"
    )
    parser.add_argument("--tiling", action="store_true", default=None, help="seamless tiling")
    parser.add_argument(
        "--variation-seed", type=int, default=None, help="variation seed; -1 = random (default)"
    )
    parser.add_argument(
        "--variation-strength", type=float, default=None, help="0 = off (default), 1 = only the variation"
    )
    parser.add_argument(
        "--style",
        action="append",
        default=None,
        metavar="NAME",
        help="a style of styles.csv (A1111's {prompt} rule); repeat for several, applied in order",
    )
    parser.add_argument(
        "--vae",
        default=None,
        help="a models/VAE file by name, or Automatic / None: the checkpoint's own "
        "(default: the server's default_vae)",
    )
    parser.add_argument(
        "--seed-resize-from",
        default=None,
        metavar="WxH",
        help="A1111's resize seed from width/height: the noise of that size, placed centred",
    )
    parser.add_argument(
        "--eta",
        type=float,
        default=None,
        help="the sampler's eta, 0–1: DDIM and DDIM CFG++ (default 0), ancestral and SDE samplers (default 1)",
    )
    parser.add_argument(
        "--refiner",
        default=None,
        metavar="NAME",
        help="A1111's refiner: a checkpoint (an SDXL refiner after SDXL) that finishes the denoising; "
        "None: no refiner (default: the server's default_refiner)",
    )
    parser.add_argument(
        "--restore-faces",
        action="store_true",
        default=None,
        help="A1111's Restore faces: each image's faces restored (the face_restoration_model setting, "
        "default CodeFormer; needs models/GFPGAN or models/Codeformer files and the face detector)",
    )
    parser.add_argument(
        "--face-restorer",
        default=None,
        metavar="NAME",
        help="restore faces with this one: CodeFormer, GFPGAN, or a models/GFPGAN|Codeformer file's name",
    )
    parser.add_argument(
        "--refiner-switch-at",
        type=float,
        default=None,
        metavar="FRACTION",
        help="when the refiner takes over, 0–1 of the way through the steps (default 0.8)",
    )
    parser.add_argument(
        "--distilled-cfg",
        type=float,
        default=None,
        metavar="SCALE",
        help="Flux dev's distilled guidance, 0–30 (Forge's Distilled CFG Scale; default 3.5)",
    )
    parser.add_argument(
        "--shift",
        type=float,
        default=None,
        help="SD 3.5 / Flux: the flow-matching schedule's shift, 0.1–100 (default: the model's own)",
    )
    parser.add_argument(
        "--controlnet",
        action="append",
        default=None,
        metavar="UNIT",
        help="a ControlNet unit: model=NAME (models/ControlNet),module=none|canny|scribble_xdog|invert,"
        "weight=1,start=0,end=1,mode=balanced|prompt|control,resize=just|crop|fill[,res=512,low=100,high=200]; "
        "repeat for several units",
    )
    parser.add_argument(
        "--control-image",
        action="append",
        type=Path,
        default=None,
        metavar="FILE",
        help="the ControlNet units' control image: one for all, or one per --controlnet in order "
        "(none: img2img's input image)",
    )
    parser.add_argument(
        "--from-png",
        type=Path,
        default=None,
        metavar="FILE",
        help="run again from a PNG's infotext (A1111's send to txt2img); options typed here override it",
    )
    parser.add_argument("--output", "-o", type=Path, default=None, help="folder for the PNGs")


def _add_hires_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hires", type=float, default=None, metavar="SCALE", help="hires fix upscale factor")
    parser.add_argument(
        "--hires-steps", type=int, default=None, help="hires steps; 0 = same as --steps (default)"
    )
    parser.add_argument(
        "--hires-denoise", type=float, default=None, help="hires denoising strength (default 0.7)"
    )
    parser.add_argument(
        "--hires-upscaler",
        default=None,
        help="Latent (default), Latent (nearest), Lanczos, Nearest, or a model upscaler's name (salon models)",
    )
    parser.add_argument(
        "--hires-resize",
        default=None,
        metavar="WxH",
        help="hires: resize width and height to this instead of --hires SCALE (0 for a side keeps the aspect "
        "ratio; both: upscale to cover, then crop); turns the hires fix on",
    )
    parser.add_argument("--hires-prompt", default=None, help="hires pass prompt (default: the prompt)")
    parser.add_argument(
        "--hires-negative", default=None, help="hires pass negative prompt (default: the negative prompt)"
    )
    parser.add_argument("--hires-sampler", default=None, help="hires pass sampler (default: --sampler)")
    parser.add_argument(
        "--hires-schedule", default=None, help="hires pass schedule type (default: --schedule)"
    )
    parser.add_argument("--hires-cfg", type=float, default=None, help="hires pass CFG scale (default: --cfg)")


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
    worker.add_argument(
        "--name", default=None, help="this worker's name on a shared PostgreSQL queue (default the host name)"
    )
    sub.add_parser("workers", help="list the workers of a shared PostgreSQL queue ([database] url)")
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
    browse.add_argument(
        "--deleted", "--recycle-bin", dest="recycle_bin", action="store_true", help="browse the recycle bin"
    )
    browse.add_argument("--show", type=int, default=None, help="print one image's file and full infotext")
    browse.add_argument(
        "--family", type=int, default=None, metavar="ID", help="an image's original and all made from it"
    )
    _curation_parsers(sub)
    imports = sub.add_parser(
        "import", help="add a folder of A1111/Salon images (with their infotext) to the catalog"
    )
    imports.add_argument("folder", type=Path)
    imports.add_argument("--guild", default="local")
    imports.add_argument("--author", default=None, help="default: your user name")
    catalog = sub.add_parser("catalog", help="catalog upkeep: check (and --repair) or rebuild the text index")
    catalog.add_argument("action", choices=("check", "rebuild-index"))
    catalog.add_argument("--repair", action="store_true", help="fix what the check finds")
    run = sub.add_parser("run", help="run the Discord bot with its worker (needs DISCORD_TOKEN)")
    run.add_argument(
        "--no-worker", action="store_true", help="the bot only: `salon worker` processes run the jobs"
    )

    train = sub.add_parser(
        "train",
        help="train a LoRA, an embedding, a hypernetwork or a Dreambooth checkpoint on a folder of images",
    )
    train.add_argument(
        "kind", choices=["lora", "embedding", "hypernetwork", "dreambooth"], help="what to train"
    )
    train.add_argument(
        "folder", type=Path, nargs="?", help="images, with optional .txt captions of the same name"
    )
    train.add_argument(
        "--concepts",
        type=Path,
        default=None,
        help="dreambooth: a concepts list (the Dreambooth extension's JSON) instead of the folder",
    )
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
    train.add_argument(
        "--weight-init",
        choices=HYPERNETWORK_WEIGHT_INITS,
        default="Normal",
        help="hypernetwork: A1111's layer weights initialization",
    )
    train.add_argument(
        "--dropout-structure",
        default=None,
        help="hypernetwork: A1111's dropout after each layer, e.g. 0,0.3,0 (turns on use_dropout)",
    )
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
    animate.add_argument(
        "--mode", dest="animation_mode", choices=["2D", "3D", "Interpolation", "Video Input"], default=None
    )
    animate.add_argument(  # flow cadence, video input, hybrid video: engine/animation/video_options.py
        "--optical-flow-cadence", choices=["None", "DIS Medium", "DIS Fine", "Farneback"], default=None
    )
    animate.add_argument("--video", dest="video_init_path", help="input video: a file in salon-data/videos/")
    animate.add_argument("--extract-nth-frame", type=int, default=None, help="video: keep every Nth frame")
    animate.add_argument(
        "--hybrid-composite", choices=["None", "Normal", "Before Motion", "After Generation"]
    )
    animate.add_argument("--hybrid-motion", choices=["None", "Optical Flow", "Perspective", "Affine"])
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
    api_parser(sub)
    merge_parser(sub)
    upscale_parser(sub)
    plot_parsers(sub, _add_generation_options, _add_hires_options)
    database = sub.add_parser(
        "db", help="the database: move this installation into PostgreSQL"
    ).add_subparsers(dest="db_command", required=True)
    migrate = database.add_parser(
        "migrate-to", help="copy queue.db, catalog.db and community.db into an empty PostgreSQL database"
    )
    migrate.add_argument("url", help="postgresql://user@host:port/database (the SQLite files are only read)")
    return parser


def _curation_parsers(sub) -> None:
    """`salon rate`, `favourite`, `delete`, `restore`, `purge` (cli/curating.py)."""
    guild = {"default": "local", "help": "whose images (default: this machine's, 'local')"}
    rate = sub.add_parser("rate", help="rate an image 1-5 (or none: remove your rating)")
    rate.add_argument("id", type=int, help="image id (see `salon browse`)")
    rate.add_argument("score", help="1, 2, 3, 4, 5 or none")
    rate.add_argument("--guild", **guild)
    favourite = sub.add_parser("favourite", help="add an image to your favourites (--off: remove it)")
    favourite.add_argument("id", type=int, help="image id (see `salon browse`)")
    favourite.add_argument("--off", action="store_true", help="remove it from your favourites")
    favourite.add_argument("--guild", **guild)
    delete = sub.add_parser("delete", help="move images to the recycle bin, by id or by a browse query")
    delete.add_argument("ids", type=int, nargs="*", metavar="ID", help="image ids (see `salon browse`)")
    delete.add_argument(
        "--filter",
        default=None,
        metavar="QUERY",
        help='every image matching a browse query, e.g. "cat and not dog"',
    )
    delete.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    delete.add_argument("--guild", **guild)
    restore = sub.add_parser("restore", help="bring images back from the recycle bin")
    restore.add_argument("ids", type=int, nargs="+", metavar="ID", help="ids (see `salon browse --deleted`)")
    restore.add_argument("--guild", **guild)
    purge = sub.add_parser("purge", help="empty the recycle bin for good (rows and files)")
    purge.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    purge.add_argument("--guild", **guild)


def api_parser(sub) -> None:
    api = sub.add_parser("api", help="serve the A1111-compatible HTTP API (/sdapi/v1/…) with a worker")
    api.add_argument("--host", default=None, help="address to listen on (default: [api] host, 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (default: [api] port, 7860)")
    api.add_argument("--no-worker", action="store_true", help="only submit jobs: a `salon worker` runs them")
    api.add_argument(
        "--api-auth", default=None, metavar="USER:PW[,USER2:PW2]", help="HTTP Basic credentials (as A1111's)"
    )
