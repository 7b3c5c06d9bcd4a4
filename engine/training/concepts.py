"""Dreambooth concepts: several subjects in one run, read from the concepts list of the Dreambooth extension
(d8ahazard/sd_dreambooth_extension, its `Concept` fields), checked, and kept in a job's JSON. No torch.

A concepts file is a JSON list of objects (or `{"concepts_list": [...]}`, as the extension's model config
holds it). Per concept: `instance_data_dir` (required: the subject's images, `.txt` captions beside them),
`instance_prompt` ([filewords] is each image's caption, [name] the result's name; empty: the captions alone),
`class_data_dir` / `class_prompt` / `class_negative_prompt` / `num_class_images_per` / `class_infer_steps` /
`class_guidance_scale` (prior preservation: the class images found in the folder, the missing ones generated),
and `save_sample_prompt` / `save_sample_negative_prompt` / `n_save_sample` / `sample_seed` /
`save_infer_steps` / `save_guidance_scale` (the samples saved after training). Unknown keys are ignored with a
note; so are the extension's keys Salon does not use.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from core.errors import InvalidRequest

MAX_CONCEPTS = 16
MAX_SAMPLES = 8  # samples per concept
MAX_CLASS_IMAGES = 1000
UNUSED_KEYS = ("class_token", "instance_token", "is_valid", "save_sample_template")  # the extension's


@dataclass(frozen=True)
class Concept:
    """One subject of a Dreambooth run (the extension's field names and defaults, Salon's limits)."""

    instance_data_dir: str
    instance_prompt: str = ""
    class_data_dir: str = ""
    class_prompt: str = ""
    class_negative_prompt: str = ""
    num_class_images_per: int = 0
    class_infer_steps: int = 60
    class_guidance_scale: float = 7.5
    save_sample_prompt: str = ""
    save_sample_negative_prompt: str = ""
    n_save_sample: int = 1
    sample_seed: int = -1
    save_infer_steps: int = 20
    save_guidance_scale: float = 7.5

    @property
    def prior_preservation(self) -> bool:
        """Class images keep this concept's class: a class prompt and a number of class images."""
        return bool(self.class_prompt.strip()) and self.num_class_images_per > 0

    def caption(self, name: str, filewords: str) -> str:
        """An instance image's training prompt (its caption alone when the concept has no instance prompt)."""
        prompt = self.instance_prompt.strip() or "[filewords]"
        return prompt.replace("[name]", name).replace("[filewords]", filewords).strip(" ,")

    def to_json(self) -> dict:
        return asdict(self)


_TYPES = {f.name: f.type for f in fields(Concept)}


def _value(where: str, key: str, value: object) -> object:
    """A field's value as its type, or a refusal naming `concepts[i].key`."""
    kind = _TYPES[key]
    if kind == "str":
        if not isinstance(value, str) or len(value) > 1000:
            raise InvalidRequest(f"{where}.{key}", "must be text of at most 1000 characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{where}.{key}", f"{value!r} is not a number")
    if kind == "int":
        if value != int(value):
            raise InvalidRequest(f"{where}.{key}", f"{value!r} is not a whole number")
        return int(value)
    if not math.isfinite(value):
        raise InvalidRequest(f"{where}.{key}", f"{value!r} is not a finite number")
    return float(value)


def concept_from_dict(data: object, where: str = "concepts[0]") -> tuple[Concept, list[str]]:
    """One concept from the extension's dictionary, and the notes about keys it ignored."""
    if not isinstance(data, dict):
        raise InvalidRequest(where, "each concept must be a JSON object")
    if not str(data.get("instance_data_dir") or "").strip():
        raise InvalidRequest(f"{where}.instance_data_dir", "is missing: the folder of this concept's images")
    notes, values = [], {}
    for key, value in data.items():
        if key in _TYPES:
            values[key] = _value(where, key, value)
        elif key in UNUSED_KEYS:
            if value not in ("", None, False, True):
                notes.append(f"{where}.{key} is not used by Salon; ignored")
        else:
            notes.append(f"{where}: unknown key {key!r} ignored")
    concept = Concept(**values)
    check_concept(concept, where)
    return concept, notes


def check_concept(concept: Concept, where: str = "concepts[0]") -> None:
    """Salon's limits on a concept's numbers, each refusal naming its key."""
    for key, low, high in (
        ("num_class_images_per", 0, MAX_CLASS_IMAGES),
        ("class_infer_steps", 1, 150),
        ("n_save_sample", 0, MAX_SAMPLES),
        ("save_infer_steps", 1, 150),
    ):
        value = getattr(concept, key)
        if not low <= value <= high:
            raise InvalidRequest(f"{where}.{key}", f"{value} is not from {low} to {high}")
    for key in ("class_guidance_scale", "save_guidance_scale"):
        if not 1 <= getattr(concept, key) <= 30:
            raise InvalidRequest(f"{where}.{key}", f"{getattr(concept, key)} is not from 1 to 30")
    if not -1 <= concept.sample_seed < 2**32:
        raise InvalidRequest(f"{where}.sample_seed", f"{concept.sample_seed} is not -1 (the run's) or a seed")


def read_concepts(text: str | bytes) -> tuple[list[Concept], list[str]]:
    """The concepts of an extension concepts file (a list, or an object with `concepts_list`), with notes."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("concepts", f"not a JSON file: {exc}") from None
    if isinstance(data, dict):
        data = data.get("concepts_list", [data] if "instance_data_dir" in data else None)
    if not isinstance(data, list) or not data:
        raise InvalidRequest(
            "concepts", "expected a JSON list of concepts (the Dreambooth extension's format)"
        )
    if len(data) > MAX_CONCEPTS:
        raise InvalidRequest("concepts", f"{len(data)} concepts; at most {MAX_CONCEPTS} in one run")
    concepts, notes = [], []
    for index, item in enumerate(data):
        concept, more = concept_from_dict(item, f"concepts[{index}]")
        concepts.append(concept)
        notes += more
    return concepts, notes
