"""Dreambooth concepts in a training job (`params["concepts"]`, made by commands/training_concepts.py): their
check, each instance image's prompt from its concept, each concept's class images (the stored ones, the
missing ones generated in the job's work folder, resumable, then copied into the concept's `class_data_dir` when
the list came from the disk, as the extension writes them there), and each concept's samples after training."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from core.files import atomic_write_with
from engine.models.trained_files import preview_folder
from engine.requests import StepProgress
from engine.training.concepts import Concept, concept_from_dict

JOB_KEYS = ("class_files", "class_folder")  # what commands/training_concepts.py adds to a concept's fields


def concepts_of(params: dict[str, Any]) -> list[Concept] | None:
    """The job's concepts (None for a one-concept job made from the plain options)."""
    specs = params.get("concepts")
    if specs is None:
        return None
    return [
        concept_from_dict({k: v for k, v in spec.items() if k not in JOB_KEYS}, f"concepts[{i}]")[0]
        for i, spec in enumerate(specs)
    ]


def check_concepts(params: dict[str, Any], inputs: Path) -> None:
    """A concepts job: Dreambooth only, every concept valid, its class images stored, every image's concept."""
    specs = params.get("concepts")
    if specs is None:
        return
    if params.get("trainer") != "dreambooth":
        raise InvalidRequest("concepts", "a concepts list trains a Dreambooth checkpoint (kind dreambooth)")
    if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
        raise InvalidRequest("concepts", "expected a list of concepts")
    concepts = concepts_of(params) or []
    for index, spec in enumerate(specs):
        files = spec.get("class_files", [])
        if not isinstance(files, list) or len(files) > concepts[index].num_class_images_per:
            raise InvalidRequest(f"concepts[{index}].class_data_dir", "more class images than asked for")
        for file in files:
            if not isinstance(file, str) or "/" in file or "\\" in file or not (inputs / file).is_file():
                raise InvalidRequest(f"concepts[{index}].class_data_dir", f"stored image {file!r} is missing")
        folder = spec.get("class_folder", "")
        if not isinstance(folder, str) or (folder and not Path(folder).is_absolute()):
            raise InvalidRequest(f"concepts[{index}].class_data_dir", f"{folder!r} is not an absolute folder")
    for item in params["images"]:
        concept = item.get("concept")
        if not isinstance(concept, int) or isinstance(concept, bool) or not 0 <= concept < len(specs):
            raise InvalidRequest("images", f"a training image names concept {concept!r}, not one of the list")


def with_concepts(examples: list, concepts: list[int]) -> list:
    """Encoded examples marked with their concepts' indices, so that the trainer pairs each instance example
    with its own concept's class images (engine.training.dreambooth.DreamboothTrainer.prior_pairs)."""
    from engine.training.dreambooth import ConceptExample

    return [
        ConceptExample(example.latents, example.caption, example.weight, concept)
        for example, concept in zip(examples, concepts, strict=True)
    ]


def concept_captions(concepts: list[Concept], name: str, images: list[dict]) -> list[str]:
    """Each instance image's training prompt from its own concept's instance prompt."""
    return [concepts[item["concept"]].caption(name, item.get("caption", "")) for item in images]


def class_items(
    running, params: dict[str, Any], concepts: list[Concept], workdir: Path, control
) -> tuple[list[tuple[Any, str, int]] | None, str, int, int, list[str]]:
    """(class images with their class prompts and concepts, or None while some are still to be made; the phase;
    made; wanted; notes). A concept's images found in its class_data_dir come first; the rest are generated,
    one PNG each in `workdir/class/<concept>`, so a resumed job only makes the missing ones; once all are made,
    they are copied into the concept's `class_folder` when it has one (`publish_class_images`)."""
    from jobs.codec import load_image

    inputs = workdir.parent.parent / "inputs"
    items, made, wanted, notes = [], 0, 0, []
    for index, concept in enumerate(concepts):
        if not concept.prior_preservation:
            continue
        spec = params["concepts"][index]
        stored = spec.get("class_files", [])
        for file in stored:
            items.append((load_image(inputs, file), concept.class_prompt, index))
        missing = concept.num_class_images_per - len(stored)
        wanted += concept.num_class_images_per
        folder = workdir / "class" / str(index)
        count = generate_class_images(running, params, concept, missing, folder, control)
        made += len(stored) + count
        target = spec.get("class_folder", "")
        if count < missing:
            into = f" for {target}" if target else ""
            return None, f"class images {made}/{wanted} ({concept.class_prompt}){into}", made, wanted, notes
        generated = [folder / f"{i:04d}.png" for i in range(missing)]
        items += [(_png(file), concept.class_prompt, index) for file in generated]
        if target and generated:
            note = publish_class_images(generated, concept.class_prompt, Path(target), folder, index)
            notes.append(note)
            if control.run.on_step is not None:  # in the job's progress: where the class images went
                control.run.on_step(StepProgress(note, missing, missing, 0))
    return items, "", made, wanted, notes


def publish_class_images(files: list[Path], prompt: str, target: Path, workfolder: Path, index: int) -> str:
    """Copy generated class images into the concept's class_data_dir as the extension names them (the image's
    SHA-1, its prompt in a `.txt` beside it): each file written whole, never over an existing one, once per
    job (a marker in the work folder). Returns the note for the job's output."""
    marker = workfolder / "published"
    if marker.is_file():
        return marker.read_text()
    written = 0
    try:
        target.mkdir(parents=True, exist_ok=True)
        for file in files:
            data = file.read_bytes()
            stem = hashlib.sha1(_png(file).tobytes()).hexdigest()
            if (target / f"{stem}.png").exists():
                continue
            write_new(target / f"{stem}.txt", prompt.encode())
            written += write_new(target / f"{stem}.png", data)
    except OSError as exc:
        note = (
            f"concepts[{index}]: class images kept in the job's work folder; cannot write into {target}: "
            f"{exc.strerror or exc}"
        )
    else:
        note = f"concepts[{index}]: {written} generated class image(s) written into {target}"
    marker.write_text(note)
    return note


def write_new(path: Path, data: bytes) -> bool:
    """Write `path` whole (a temp file linked into place) unless it exists; False when it did."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(name, 0o644)
        try:
            os.link(name, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(name)


def _png(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def generate_class_images(
    running, params: dict[str, Any], concept: Concept, count: int, folder: Path, control
):
    """Make the concept's missing class images with the untouched model (seeded by the run's seed and index);
    stops early when the slice should yield. Returns how many exist."""
    from engine.requests import GenerationRequest, RunControl

    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    size = int(params.get("resolution", 512))
    for index in range(count):
        file = folder / f"{index:04d}.png"
        if not file.is_file():
            if made and control.should_yield():
                break
            request = GenerationRequest(
                prompt=concept.class_prompt,
                negative_prompt=concept.class_negative_prompt,
                model=params.get("model"),
                width=size,
                height=size,
                steps=concept.class_infer_steps,
                cfg_scale=concept.class_guidance_scale,
                seed=int(params.get("seed", 0)) + index,
            )
            image = running.txt2img(request, RunControl(cancel=control.run.cancel)).images[0].image
            atomic_write_with(file, lambda partial, image=image: image.save(partial, format="PNG"))
            if control.run.on_step is not None:
                phase = f"class images ({concept.class_prompt})"
                control.run.on_step(StepProgress(phase, index + 1, count, 0))
        made += 1
    return made


def save_samples(trainer, concepts: list[Concept], settings, name: str, step: int, seed: int) -> list[Path]:
    """Each concept's `n_save_sample` samples of its `save_sample_prompt` (its negative prompt, steps and
    guidance), in the run's preview folder as `<name>-c<concept>-<step>-<n>.png`."""
    folder = preview_folder(settings, name)
    saved = []
    for index, concept in enumerate(concepts):
        if not concept.save_sample_prompt.strip():
            continue
        first = concept.sample_seed if concept.sample_seed >= 0 else seed
        for number in range(concept.n_save_sample):
            image = trainer.preview(
                concept.save_sample_prompt.replace("[name]", name),
                first + number,
                concept.save_infer_steps,
                negative=concept.save_sample_negative_prompt,
                guidance=concept.save_guidance_scale,
            )
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}-c{index}-{step:05d}-{number}.png"
            atomic_write_with(path, lambda partial, image=image: image.save(partial, format="PNG"))
            saved.append(path)
    return saved
