"""Long jobs from the command line: `salon train` and `salon animate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.output import EXIT_JOB_FAILED, console, err_console
from cli.queueing import submit_and_follow
from config import Settings

USAGE = {
    "lora": "use it as <lora:{name}:1> in a prompt",
    "embedding": "use it as {name} in a prompt",
    "hypernetwork": "use it as <hypernet:{name}:1> in a prompt",
    "dreambooth": "choose it with --model {name}",
}


def numbers(option: str, text: str) -> list[float]:
    """Numbers separated by commas ("1, 2, 1"), or a refusal naming the option."""
    from core.errors import InvalidRequest

    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequest(option, f"{text!r} is not numbers separated by commas, e.g. 1, 2, 1") from None


def train(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from app.oneshot import model_registry
    from commands.training import images_from_folder, training_job
    from engine.models.registry import native_resolution
    from jobs.queue import owner_for_cli
    from jobs.records import JobStatus

    model = model_registry(settings).checkpoint(args.model or settings.default_model)
    options = {
        "steps": args.steps,
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),  # else the trainer's default
        "layer_structure": numbers("layer_structure", args.layer_structure),
        "activation": args.activation,
        "layer_norm": args.layer_norm,
        "weight_init": args.weight_init,
        "dropout_structure": numbers("dropout_structure", args.dropout_structure or ""),
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
    concepts = _concepts(args, settings)
    images = images_from_folder(args.folder, settings) if concepts is None else []
    job = training_job(
        settings,
        args.kind,
        args.name,
        images,
        owner_for_cli(),
        model=model.name,
        overwrite=args.overwrite,
        options=options,
        concepts=concepts,
    )
    if concepts is not None:
        images = [image for concept in concepts for image in concept.instance]
    record = asyncio.run(submit_and_follow(settings, job))
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
    if args.preview_every or any(c.concept.save_sample_prompt.strip() for c in concepts or []):
        from engine.models.trained_files import preview_folder

        console.print(f"previews: {preview_folder(settings, args.name)}", markup=False, soft_wrap=True)
    return 0


def _concepts(args: argparse.Namespace, settings: Settings):
    """`--concepts FILE.json` read with its folders (None without it); its notes shown on stderr."""
    from core.errors import InvalidRequest

    if args.concepts is None:
        if args.folder is None:
            raise InvalidRequest(
                "folder", "give a folder of images (or, for dreambooth, --concepts FILE.json)"
            )
        return None
    if args.kind != "dreambooth":
        raise InvalidRequest("concepts", "a concepts list trains a Dreambooth checkpoint (kind dreambooth)")
    if args.folder is not None:
        raise InvalidRequest("concepts", "give the folder or --concepts, not both")
    from commands.training import images_from_folder
    from commands.training_concepts import concepts_from_folder

    concepts, notes = concepts_from_folder(args.concepts, settings, images_from_folder)
    for note in notes:
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)
    return concepts


def animate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import shutil

    from app.oneshot import model_registry
    from app.worker import load_extensions
    from commands.animation import animation_job, animation_settings, describe, parse_prompts, schedule_plot
    from engine.animation.deforum_files import import_deforum
    from engine.validation import parse_size
    from jobs.records import JobStatus

    extensions = load_extensions(settings)  # before the options are checked: they may add samplers
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
        width, height = model_registry(settings).native_size(args.model or settings.default_model)
    options = {
        name: getattr(args, name)
        for name in (
            "animation_mode", "max_frames", "model", "sampler", "steps", "seed", "seed_behavior", "zoom", "angle",
            "translation_x", "translation_y", "transform_center_x", "transform_center_y", "strength_schedule",
            "noise_schedule", "contrast_schedule", "cfg_scale_schedule", "seed_schedule", "color_coherence",
            "border", "diffusion_cadence", "fps", "blend_prompts", "noise_type", "optical_flow_cadence",
            "video_init_path", "extract_nth_frame", "hybrid_composite", "hybrid_motion",
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
    record = asyncio.run(submit_and_follow(settings, job, extensions))
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
