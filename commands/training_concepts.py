"""A Dreambooth concepts list (the Dreambooth extension's JSON, read by `engine.training.concepts`) turned into
a training job's inputs: each concept's instance images and its class images found in its folders, read from
the disk (the CLI: folders relative to the JSON file) or from a zip's folders (`/train`).

As the extension does, the class images a concept still lacks are generated into its `class_data_dir` when the
list came from the disk (`class_folder`, the absolute folder, written by jobs/training_concepts.py); from a
zip they stay in the job's work folder: a member cannot write to the server's disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from config import Settings
from core.errors import InvalidRequest
from engine.training.concepts import Concept, read_concepts
from jobs.codec import store_image

MAX_IMAGES = 200  # instance images of all concepts together (as commands.training.MAX_IMAGES)
FolderReader = Callable[[str], "list[tuple[Image.Image, str]] | None"]  # a folder's images, None if absent


@dataclass(frozen=True)
class ConceptImages:
    """One concept with its instance images (and captions) and the class images its folder already has."""

    concept: Concept
    instance: list[tuple[Image.Image, str]]
    class_images: list[Image.Image]
    class_folder: str = ""  # where the generated class images go (absolute); "": the job's work folder


def gather_concepts(concepts: list[Concept], read_folder: FolderReader) -> list[ConceptImages]:
    """Each concept's images through `read_folder`; a missing instance folder is refused by its key, a missing
    class folder means every class image is generated."""
    gathered, total = [], 0
    for index, concept in enumerate(concepts):
        where = f"concepts[{index}]"
        instance = read_folder(concept.instance_data_dir)
        if not instance:
            raise InvalidRequest(
                f"{where}.instance_data_dir", f"{concept.instance_data_dir!r} is not a folder of images"
            )
        total += len(instance)
        if total > MAX_IMAGES:
            raise InvalidRequest("concepts", f"more than {MAX_IMAGES} instance images; train on fewer")
        found = read_folder(concept.class_data_dir) if concept.class_data_dir.strip() else None
        class_images = [image for image, _ in (found or [])][: concept.num_class_images_per]
        gathered.append(ConceptImages(concept, instance, class_images))
    return gathered


def concepts_from_folder(
    file: Path, settings: Settings, images_from_folder: Callable
) -> tuple[list[ConceptImages], list[str]]:
    """The CLI's `--concepts FILE.json`: folders relative to the file's own folder (or absolute)."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise InvalidRequest("concepts", f"cannot read {file}: {exc.strerror or exc}") from None
    concepts, notes = read_concepts(text)

    def resolve(folder: str) -> Path:
        return (file.parent / Path(folder).expanduser()).resolve()

    def read(folder: str) -> list[tuple[Image.Image, str]] | None:
        path = resolve(folder)
        if not path.is_dir() or not any(path.iterdir()):
            return None
        return _images_or_none(lambda: images_from_folder(path, settings))

    gathered = gather_concepts(concepts, read)
    for index, item in enumerate(gathered):
        missing = item.concept.num_class_images_per - len(item.class_images)
        if item.concept.prior_preservation and missing > 0 and item.concept.class_data_dir.strip():
            folder = resolve(item.concept.class_data_dir)
            if _can_write(folder):
                gathered[index] = ConceptImages(item.concept, item.instance, item.class_images, str(folder))
                notes.append(
                    f"concepts[{index}]: {missing} generated class image(s) will be written into {folder}"
                )
            else:
                notes.append(
                    f"concepts[{index}].class_data_dir: {folder} is not writable; "
                    "its generated class images stay in the job's work folder"
                )
    return gathered, notes


def _images_or_none(load: Callable[[], list]) -> list | None:
    """A concept folder's images, or None when it holds no image (its class images are then generated)."""
    try:
        return load()
    except InvalidRequest as exc:
        if "no images found" in exc.message:
            return None
        raise


def _can_write(folder: Path) -> bool:
    """Whether `folder` can take new files: it is a writable folder, or its nearest existing parent is."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def concepts_from_zip(
    text: bytes, files: list[tuple[str, bytes]], settings: Settings, images_from_files: Callable
) -> tuple[list[ConceptImages], list[str]]:
    """`/train`'s concepts JSON with a zip: each concept's folders are folders inside the zip (names only,
    never paths on this machine)."""
    concepts, notes = read_concepts(text)

    def read(folder: str) -> list[tuple[Image.Image, str]] | None:
        parts = [part for part in PurePosixPath(folder.replace("\\", "/")).parts if part not in (".", "/")]
        if ".." in parts:
            raise InvalidRequest("concepts", f"{folder!r}: name a folder inside the zip, without '..'")
        inside = [
            (PurePosixPath(name).name, data)
            for name, data in files
            if list(PurePosixPath(name).parent.parts) == parts
        ]
        if not inside:
            return None
        return _images_or_none(lambda: images_from_files(inside, settings))

    gathered = gather_concepts(concepts, read)
    for index, item in enumerate(gathered):
        if item.concept.prior_preservation and item.concept.class_data_dir.strip():
            if item.concept.num_class_images_per > len(item.class_images):
                notes.append(
                    f"concepts[{index}].class_data_dir: generated class images stay in the job's work folder "
                    "(a concepts list from Discord cannot write to the server's disk)"
                )
    return gathered, notes


def concept_params(concepts: list[ConceptImages], inputs: Path) -> dict:
    """A job's `images` (each with its concept's index) and `concepts` (each with its stored class images)."""
    images, specs = [], []
    for index, item in enumerate(concepts):
        images += [
            {"file": store_image(image, inputs), "caption": caption, "concept": index}
            for image, caption in item.instance
        ]
        class_files = [store_image(image, inputs) for image in item.class_images]
        specs.append(
            {**item.concept.to_json(), "class_files": class_files, "class_folder": item.class_folder}
        )
    return {"images": images, "concepts": specs}
