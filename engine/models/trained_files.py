"""What a trained file is called and where it lies: the trainers' names, a result's file name, the model
folder it goes to, and the sidecar that says who trained it. Shared by the training job (jobs/training.py), the
command that checks a training request (commands/training.py), the front ends and the model registry, which
never takes a trained file for the default checkpoint by itself. No torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest

TRAINERS = ("lora", "embedding", "hypernetwork", "dreambooth")
# A1111's "Select Layer weights initialization" for a new hypernetwork (engine/prompts/hypernetwork.py).
HYPERNETWORK_WEIGHT_INITS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OWNER_SUFFIX = (
    ".salon.json"  # beside a trained file: who made it, where, from which job (engine/models/registry.py)
)


def check_name(name: object) -> str:
    """A file stem for the result: letters, digits, `_`, `-`, `.`; no path, no `..`."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise InvalidRequest(
            "name",
            f"{name!r} is not allowed; use 1–64 letters, digits, '_', '-' or '.', starting with a letter",
        )
    return name


def output_paths(settings, trainer: str, name: str) -> list[Path]:
    """Where a result named `name` may lie (a Dreambooth checkpoint is a single file or a diffusers folder)."""
    if trainer == "lora":
        return [settings.lora_dir / f"{name}.safetensors"]
    if trainer == "embedding":
        return [settings.embeddings_path / f"{name}.pt"]
    if trainer == "hypernetwork":
        return [settings.hypernetworks_dir / f"{name}.pt"]
    if trainer == "dreambooth":
        return [settings.checkpoints_dir / f"{name}.safetensors", settings.checkpoints_dir / name]
    raise InvalidRequest("kind", f"{trainer!r} is not one of: {', '.join(TRAINERS)}")


def owner_of(path: Path) -> dict[str, Any] | None:
    """Who trained an installed file (None for files put there by hand)."""
    sidecar = path.with_name(path.name + OWNER_SUFFIX)
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None


def preview_folder(settings, name: str) -> Path:
    """Where a run's preview images are kept (like A1111's textual_inversion log folder)."""
    return settings.data_dir / "training" / name
