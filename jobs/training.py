"""Training as a long queue job (kind `train`): checked parameters in JSON, slices that resume exactly.

The job's parameters name the trainer, the output name, the base model, the training images (stored by hash
under `<data_dir>/jobs/inputs` when the job was accepted, with their captions) and the trainer's options.
Each slice loads the model, encodes the images, trains from the state saved in the job's workdir until the
queue asks for the GPU back, and saves that state; the last slice writes the result into the model folders.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from core.files import atomic_write, atomic_write_with
from engine.models.trained_files import (
    OWNER_SUFFIX,
    TRAINERS,
    check_name,
    output_paths,
    owner_of,
    preview_folder,
)
from engine.requests import StepProgress
from jobs.long import Slice, SliceControl
from jobs.records import JobKind, JobRecord
from jobs.training_concepts import (
    check_concepts,
    class_items,
    concept_captions,
    concepts_of,
    save_samples,
    with_concepts,
)

PREVIEW_STEPS = 20  # denoising steps of a training preview unless the job says otherwise


def _check_base_model(trainer: str, name: str | None, settings: Any) -> None:
    """The trainers are SD 1.x / SDXL ones: an SD 3.5 or Flux base model is refused by name before the job
    is queued (a model not installed is left to the run, which names it)."""
    from core.errors import SalonError
    from engine.models.registry import ModelRegistry

    try:
        kind = ModelRegistry.from_settings(settings).flow_kind(name or settings.default_model)
    except SalonError:
        return
    if kind is not None:
        raise InvalidRequest(
            "model",
            f"{trainer} training is not supported on {kind.label} models; train on an SD 1.x or SDXL one",
        )


class TrainTask:
    """The `train` long job kind."""

    kind = JobKind.TRAIN

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        trainer = params.get("trainer")
        if trainer not in TRAINERS:
            raise InvalidRequest("kind", f"{trainer!r} is not one of: {', '.join(TRAINERS)}")
        check_name(params.get("name"))
        _check_base_model(trainer, params.get("model"), settings)
        images = params.get("images")
        if not isinstance(images, list) or not images:
            raise InvalidRequest("images", "there are no training images")
        inputs = settings.data_dir / "jobs" / "inputs"
        for item in images:
            file = item.get("file", "") if isinstance(item, dict) else ""
            if "/" in file or "\\" in file or not (inputs / file).is_file():
                raise InvalidRequest("images", f"stored training image {file!r} is missing")
        for option in ("save_every", "preview_every"):
            value = params.get(option, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
                raise InvalidRequest(option, f"{value!r} is not a number of steps from 0 (never) to 100000")
        preview_steps = params.get("preview_steps", PREVIEW_STEPS)
        if not isinstance(preview_steps, int) or not 1 <= preview_steps <= 150:
            raise InvalidRequest("preview_steps", f"{preview_steps!r} is not from 1 to 150")
        if len(str(params.get("preview_prompt") or "")) > 1000:
            raise InvalidRequest("preview_prompt", "is longer than 1000 characters")
        checker, options = TRAINER_OPTIONS[trainer]
        checker()(options(params))
        check_concepts(params, inputs)
        return params

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.training.loop import cached_examples, encode_examples
        from jobs.codec import load_image

        params = job.request
        kind = params["trainer"]
        options = TRAINER_OPTIONS[kind][1](params)
        running = engine()
        saved = dict(state or {})
        class_examples: list = []
        model = running.base_model(params.get("model"))
        path = _result_path(running.settings, kind, options, model)
        if kind == "dreambooth":  # a form the result cannot take fails now, not after the training
            from engine.training.dreambooth import check_can_save

            check_can_save(model, path)
        concepts = concepts_of(params) if kind == "dreambooth" else None
        if concepts is not None:  # several concepts, each with its own class images
            items, phase, made, _, notes = class_items(running, params, concepts, workdir, control)
            if items is None:
                saved["class_images"] = made
                return Slice(saved, phase=phase, progress=0.0)
            saved.update({"class_notes": notes} if notes else {})  # where the generated class images went
            if items:
                model = running.base_model(params.get("model"))  # the class prompts' LoRA tags are off again
                class_examples = with_concepts(  # each concept's prior term from its own class images
                    cached_examples(
                        workdir / "class.safetensors",
                        [caption for _, caption, _ in items],
                        lambda: encode_examples(model, [item[:2] for item in items], options.resolution),
                    ),
                    [concept for *_, concept in items],
                )
        elif kind == "dreambooth" and options.prior_preservation:
            made = _class_images(running, params, options, workdir / "class", control)
            if made < options.class_images:
                saved["class_images"] = made
                phase = f"class images {made}/{options.class_images}"
                return Slice(saved, phase=phase, progress=0.0)
            model = running.base_model(params.get("model"))  # the class prompt's LoRA tags are off again
            class_examples = cached_examples(
                workdir / "class.safetensors",
                [options.class_prompt] * options.class_images,
                lambda: _encode_class_images(model, options, workdir / "class"),
            )
        inputs = workdir.parent.parent / "inputs"  # <data_dir>/jobs/work/<job> → <data_dir>/jobs/inputs
        if concepts is not None:
            texts = concept_captions(concepts, options.name, params["images"])
        else:
            texts = _captions(kind, options, [item.get("caption", "") for item in params["images"]])
        items = (
            (load_image(inputs, item["file"]), text)
            for item, text in zip(params["images"], texts, strict=True)
        )
        examples = cached_examples(
            workdir / "examples.safetensors",
            texts,
            lambda: encode_examples(
                model, items, options.resolution, params.get("crop", True), bool(params.get("alpha_weight"))
            ),
        )
        if concepts is not None:
            examples = with_concepts(examples, [item["concept"] for item in params["images"]])
        total = options.loop.steps
        save_every, preview_every = int(params.get("save_every", 0)), int(params.get("preview_every", 0))
        preview_prompt = str(params.get("preview_prompt") or texts[0])

        def install(trainer, loop) -> None:
            trainer.save(path, loop, len(examples))
            sidecar = {
                "owner": job.owner,
                "guild": job.guild,
                "job": job.id,
                "trained_at": time.time(),
                "step": loop.step,
                "steps": total,
                "loss": _recent_loss(loop.losses),
            }
            atomic_write(path.with_name(path.name + OWNER_SUFFIX), json.dumps(sidecar))
            for other in output_paths(running.settings, kind, options.name):
                if other != path and other.exists() and (owner_of(other) or {}).get("owner") == job.owner:
                    _remove(other)  # an earlier result of the same name in the other form (file or folder)
            running.registry.refresh()

        def on_step(loop, trainer) -> None:
            if save_every and loop.step % save_every == 0 and loop.step < total:
                install(trainer, loop)  # a cancel or a failure keeps this file
            preview = None
            if preview_every and loop.step % preview_every == 0:
                seed = int(params.get("seed", 0))
                image = trainer.preview(preview_prompt, seed, int(params.get("preview_steps", PREVIEW_STEPS)))
                folder = preview_folder(running.settings, options.name)
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / f"{options.name}-{loop.step:05d}.png")
                preview = image
            if control.run.on_step is not None:
                phase = f"loss {_recent_loss(loop.losses):.4f} {sparkline(loop.losses[-24:])}"
                progress = StepProgress(
                    phase,
                    loop.step,
                    total,
                    0,
                    None if preview is None else (lambda: preview),
                    preview is not None,
                )
                control.run.on_step(progress)

        train = _slice_function(kind)
        extra: dict[str, Any] = {"class_examples": class_examples} if kind == "dreambooth" else {}
        if "save_every_s" in params:
            extra["save_every_s"] = float(params["save_every_s"])
        loop, trainer = train(
            model,
            examples,
            options,
            workdir / "state",
            control.should_yield,
            control.run.cancelled,
            on_step,
            **extra,
        )
        loss = _recent_loss(loop.losses)
        saved.update({"step": loop.step, "losses": loop.losses[-50:]})
        if loop.step < total:
            phase = f"step {loop.step}/{total}, loss {loss:.4f}"
            return Slice(saved, phase=phase, progress=loop.step / total)
        install(trainer, loop)
        if concepts is not None:
            save_samples(
                trainer, concepts, running.settings, options.name, loop.step, int(params.get("seed", 0))
            )
        return Slice(saved, done=True, results=(str(path),), progress=1.0)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.with_name(path.name + OWNER_SUFFIX).unlink(missing_ok=True)


def _recent_loss(losses: list[float]) -> float:
    recent = losses[-10:]
    return sum(recent) / len(recent) if recent else float("nan")


def _captions(kind: str, options, filewords: list[str]) -> list[str]:
    """The training prompt of each image: its caption, or the trainer's template filled in."""
    if kind == "embedding":
        from engine.training.embedding import captions

        return captions(options.template, options.name, filewords)
    if kind == "dreambooth":
        from engine.training.dreambooth import instance_captions

        return instance_captions(options.instance_prompt, options.name, filewords)
    return filewords


def _result_path(settings, kind: str, options, model) -> Path:
    if kind == "dreambooth":
        from engine.training.dreambooth import checkpoint_path

        return checkpoint_path(settings.checkpoints_dir, options.name, model, options.save_format)
    return output_paths(settings, kind, options.name)[0]


def _slice_function(kind: str):
    if kind == "lora":
        from engine.training.lora import train_lora_slice as train
    elif kind == "embedding":
        from engine.training.embedding import train_embedding_slice as train
    elif kind == "hypernetwork":
        from engine.training.hypernetwork import train_hypernetwork_slice as train
    else:
        from engine.training.dreambooth import train_dreambooth_slice as train
    return train


def _class_images(running, params: dict[str, Any], options, folder: Path, control: SliceControl) -> int:
    """Generate the prior-preservation images with the untouched model (seeded, one PNG each, kept in the job's
    work folder so a resumed job only makes the missing ones); stops early when the slice should yield.
    Returns how many exist."""
    from engine.requests import GenerationRequest, RunControl

    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for index in range(options.class_images):
        file = folder / f"{index:04d}.png"
        if not file.is_file():
            if made and control.should_yield():
                break
            request = GenerationRequest(
                prompt=options.class_prompt,
                negative_prompt=str(params.get("class_negative_prompt", "")),
                model=params.get("model"),
                width=options.resolution,
                height=options.resolution,
                steps=options.class_steps,
                seed=options.seed + index,
            )
            result = running.txt2img(request, RunControl(cancel=control.run.cancel))
            image = result.images[0].image
            atomic_write_with(file, lambda partial, image=image: image.save(partial, format="PNG"))
            if control.run.on_step is not None:
                phase = f"class images ({options.class_prompt})"
                control.run.on_step(StepProgress(phase, index + 1, options.class_images, 0))
        made += 1
    return made


def _encode_class_images(model, options, folder: Path) -> list:
    from PIL import Image

    from engine.training.loop import encode_examples

    items = []
    for index in range(options.class_images):
        with Image.open(folder / f"{index:04d}.png") as image:
            items.append((image.convert("RGB"), options.class_prompt))
    return encode_examples(model, items, options.resolution)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """The values as a line of block characters, lowest ▁ to highest █ (loss over the recent steps)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in values)


def lora_options(params: dict[str, Any]):
    """The LoRA trainer's options from a job's JSON parameters (missing ones take their defaults)."""
    from engine.training.loop import LoopOptions
    from engine.training.lora import LoraOptions

    try:
        loop = LoopOptions(
            steps=int(params.get("steps", 500)),
            learning_rate=str(params.get("learning_rate", "1e-4")),
            batch_size=int(params.get("batch_size", 1)),
            gradient_accumulation=int(params.get("gradient_accumulation", 1)),
            clip_grad_mode=str(params.get("clip_grad_mode", "disabled")),
            clip_grad_value=float(params.get("clip_grad_value", 0.1)),
        )
        alpha = params.get("alpha")
        return LoraOptions(
            name=str(params.get("name")),
            loop=loop,
            rank=int(params.get("rank", 4)),
            alpha=float(alpha) if alpha is not None else None,
            train_text_encoder=bool(params.get("train_text_encoder", False)),
            resolution=int(params.get("resolution", 512)),
            seed=int(params.get("seed", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("options", f"a training option is not a number: {exc}") from None


def embedding_options(params: dict[str, Any]):
    """The textual-inversion trainer's options from a job's JSON parameters."""
    from engine.training.embedding import DEFAULT_TEMPLATE, EmbeddingOptions

    loop = lora_options({**params, "learning_rate": params.get("learning_rate", "5e-3")}).loop
    try:
        return EmbeddingOptions(
            name=str(params.get("name")),
            loop=loop,
            init_text=str(params.get("init_text", "*")),
            vectors=int(params.get("vectors", 1)),
            template=str(params.get("template", DEFAULT_TEMPLATE)),
            resolution=int(params.get("resolution", 512)),
            seed=int(params.get("seed", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("options", f"a training option is not a number: {exc}") from None


def hypernetwork_options(params: dict[str, Any]):
    """The hypernetwork trainer's options from a job's JSON parameters."""
    from engine.training.hypernetwork import HypernetworkTraining

    loop = lora_options({**params, "learning_rate": params.get("learning_rate", "5e-6")}).loop
    try:
        dropout = params.get("dropout_structure", params.get("dropout"))  # A1111's name; "dropout" before
        return HypernetworkTraining(
            name=str(params.get("name")),
            loop=loop,
            layer_structure=tuple(float(x) for x in params.get("layer_structure", (1, 2, 1))),
            activation=str(params.get("activation", "linear")),
            weight_init=str(params.get("weight_init", "Normal")),
            layer_norm=bool(params.get("layer_norm", False)),
            dropout=tuple(float(x) for x in dropout) if dropout else None,
            resolution=int(params.get("resolution", 512)),
            seed=int(params.get("seed", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("options", f"a training option is not a number: {exc}") from None


def dreambooth_options(params: dict[str, Any]):
    """The Dreambooth trainer's options from a job's JSON parameters."""
    from engine.training.dreambooth import DreamboothOptions

    loop = lora_options({**params, "learning_rate": params.get("learning_rate", "5e-6")}).loop
    try:
        return DreamboothOptions(
            name=str(params.get("name")),
            loop=loop,
            instance_prompt=str(params.get("instance_prompt") or "a photo of [name]"),
            class_prompt=str(params.get("class_prompt") or ""),
            class_images=int(params.get("class_images", 50)),
            class_steps=int(params.get("class_steps", 20)),
            prior_loss_weight=float(params.get("prior_loss_weight", 1.0)),
            train_text_encoder=bool(params.get("train_text_encoder", False)),
            resolution=int(params.get("resolution", 512)),
            seed=int(params.get("seed", 0)),
            save_format=str(params.get("save_format", "auto")),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("options", f"a training option is not a number: {exc}") from None


def _checker(module: str, function: str):
    def load():
        import importlib

        return getattr(importlib.import_module(module), function)

    return load


# trainer → (its option checker, loaded when needed; its options from a job's parameters)
TRAINER_OPTIONS = {
    "lora": (_checker("engine.training.lora", "check_lora_options"), lora_options),
    "embedding": (_checker("engine.training.embedding", "check_embedding_options"), embedding_options),
    "hypernetwork": (
        _checker("engine.training.hypernetwork", "check_hypernetwork_options"),
        hypernetwork_options,
    ),
    "dreambooth": (_checker("engine.training.dreambooth", "check_dreambooth_options"), dreambooth_options),
}
