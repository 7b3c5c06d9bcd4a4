"""Training as a long queue job (kind `train`): checked parameters in JSON, slices that resume exactly.

The job's parameters name the trainer, the output name, the base model, the training images (stored by hash
under `<data_dir>/jobs/inputs` when the job was accepted, with their captions) and the trainer's options.
Each slice loads the model, encodes the images, trains from the state saved in the job's workdir until the
queue asks for the GPU back, and saves that state; the last slice writes the result into the model folders.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from engine.errors import InvalidRequest
from engine.requests import StepProgress
from jobs.long import Slice, SliceControl, register_long_task
from jobs.records import JobKind, JobRecord

TRAINERS = ("lora", "embedding", "hypernetwork")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OWNER_SUFFIX = ".salon.json"  # beside a trained file: who made it, where, from which job


def check_name(name: object) -> str:
    """A file stem for the result: letters, digits, `_`, `-`, `.`; no path, no `..`."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise InvalidRequest(
            "name",
            f"{name!r} is not allowed; use 1–64 letters, digits, '_', '-' or '.', starting with a letter",
        )
    return name


def output_path(settings, trainer: str, name: str) -> Path:
    if trainer == "lora":
        return settings.lora_dir / f"{name}.safetensors"
    if trainer == "embedding":
        return settings.embeddings_path / f"{name}.pt"
    if trainer == "hypernetwork":
        return settings.hypernetworks_dir / f"{name}.pt"
    raise InvalidRequest("kind", f"{trainer!r} is not one of: {', '.join(TRAINERS)}")


def owner_of(path: Path) -> dict[str, Any] | None:
    """Who trained an installed file (None for files put there by hand)."""
    sidecar = path.with_name(path.name + OWNER_SUFFIX)
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None


class TrainTask:
    """The `train` long job kind."""

    kind = JobKind.TRAIN

    def check(self, params: dict[str, Any], settings: Any) -> dict[str, Any]:
        from engine.train_embedding import check_embedding_options
        from engine.train_lora import check_lora_options

        trainer = params.get("trainer")
        if trainer not in TRAINERS:
            raise InvalidRequest("kind", f"{trainer!r} is not one of: {', '.join(TRAINERS)}")
        check_name(params.get("name"))
        images = params.get("images")
        if not isinstance(images, list) or not images:
            raise InvalidRequest("images", "there are no training images")
        inputs = settings.data_dir / "jobs" / "inputs"
        for item in images:
            file = item.get("file", "") if isinstance(item, dict) else ""
            if "/" in file or "\\" in file or not (inputs / file).is_file():
                raise InvalidRequest("images", f"stored training image {file!r} is missing")
        if trainer == "lora":
            check_lora_options(lora_options(params))
        elif trainer == "embedding":
            check_embedding_options(embedding_options(params))
        else:
            from engine.train_hypernetwork import check_hypernetwork_options

            check_hypernetwork_options(hypernetwork_options(params))
        return params

    def run_slice(
        self, engine, job: JobRecord, state: dict | None, workdir: Path, control: SliceControl
    ) -> Slice:
        from engine.train_embedding import captions, save_embedding, train_embedding_slice
        from engine.train_hypernetwork import save_trained, train_hypernetwork_slice
        from engine.train_loop import encode_examples
        from engine.train_lora import save_lora, train_lora_slice
        from jobs.codec import load_image

        params = job.request
        kind = params["trainer"]
        lora = kind == "lora"
        options = {
            "lora": lora_options,
            "embedding": embedding_options,
            "hypernetwork": hypernetwork_options,
        }[kind](params)
        running = engine()
        model = running.base_model(params.get("model"))
        inputs = workdir.parent.parent / "inputs"  # <data_dir>/jobs/work/<job> → <data_dir>/jobs/inputs
        words = [item.get("caption", "") for item in params["images"]]
        texts = captions(options.template, options.name, words) if kind == "embedding" else words
        items = [
            (load_image(inputs, item["file"]), text)
            for item, text in zip(params["images"], texts, strict=True)
        ]
        examples = encode_examples(
            model, items, options.resolution, params.get("crop", True), bool(params.get("alpha_weight"))
        )
        total = options.loop.steps

        def on_step(loop) -> None:
            if control.run.on_step is not None:
                recent = loop.losses[-10:]
                phase = f"loss {sum(recent) / len(recent):.4f} {sparkline(loop.losses[-24:])}"
                control.run.on_step(StepProgress(phase, loop.step, total, 0))

        train = {"lora": train_lora_slice, "embedding": train_embedding_slice}.get(
            kind, train_hypernetwork_slice
        )
        loop, trainer = train(
            model,
            examples,
            options,
            workdir / "state",
            control.should_yield,
            control.run.cancelled,
            on_step,
            **({"save_every_s": float(params["save_every_s"])} if "save_every_s" in params else {}),
        )
        recent = loop.losses[-10:]
        loss = sum(recent) / len(recent) if recent else float("nan")
        saved = {"step": loop.step, "losses": loop.losses[-50:]}
        if loop.step < total:
            phase = f"step {loop.step}/{total}, loss {loss:.4f}"
            return Slice(saved, phase=phase, progress=loop.step / total)
        path = output_path(running.settings, params["trainer"], params["name"])
        if lora:
            save_lora(trainer, path, loop, len(examples))
        elif kind == "embedding":
            save_embedding(trainer, path, loop)
        else:
            save_trained(trainer, path, loop)
        sidecar = {
            "owner": job.owner,
            "guild": job.guild,
            "job": job.id,
            "trained_at": time.time(),
            "loss": loss,
        }
        path.with_name(path.name + OWNER_SUFFIX).write_text(json.dumps(sidecar))
        running.registry.refresh()
        return Slice(saved, done=True, results=(str(path),), progress=1.0)


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
    from engine.train_loop import LoopOptions
    from engine.train_lora import LoraOptions

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
    from engine.train_embedding import DEFAULT_TEMPLATE, EmbeddingOptions

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
    from engine.train_hypernetwork import HypernetworkTraining

    loop = lora_options({**params, "learning_rate": params.get("learning_rate", "5e-6")}).loop
    try:
        dropout = params.get("dropout")
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


register_long_task(TrainTask())
