"""The list endpoints: what is installed and what Salon can do, in A1111's shapes.

Paths are never shown: where A1111 gives a file's full path, Salon gives its name inside its model folder.
Nothing here imports torch; embedding shapes come from safetensors headers (0 where a legacy `.pt` file
would have to be unpickled to know).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from api.translate import model_title
from commands.styles import load_styles
from config import Settings
from engine.models.registry import ModelEntry, ModelKind, ModelRegistry
from engine.requests import HiresUpscaler
from engine.tasks.samplers import SCHEDULE_TYPES, SamplerTable

MAX_HEADER_BYTES = 1 << 20


def _file_name(entry: ModelEntry) -> str:
    return entry.path.name


def sd_models(registry: ModelRegistry) -> list[dict[str, Any]]:
    items = []
    for entry in registry.entries(ModelKind.CHECKPOINT):
        items.append(
            {
                "title": model_title(registry, entry),
                "model_name": entry.name,
                "hash": registry.short_hash(entry),
                "sha256": registry.sha256(entry),
                "filename": _file_name(entry),
                "config": None,
            }
        )
    return items


def samplers(table: SamplerTable) -> list[dict[str, Any]]:
    return [
        {"name": spec.name, "aliases": [], "options": {"scheduler": spec.default_schedule.lower()}}
        for spec in table.specs.values()
    ]


def schedulers() -> list[dict[str, Any]]:
    return [
        {
            "name": label.lower().replace(" ", "_"),
            "label": label,
            "aliases": None,
            "default_rho": None,
            "need_inner_model": None,
        }
        for label in SCHEDULE_TYPES
    ]


def upscalers() -> list[dict[str, Any]]:
    """The pixel upscalers of the hires pass (the latent ones are `latent-upscale-modes`)."""
    return [
        {"name": u.value, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
        for u in HiresUpscaler
        if not u.value.startswith("Latent")
    ]


def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": u.value} for u in HiresUpscaler if u.value.startswith("Latent")]


def loras(registry: ModelRegistry) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "alias": e.name, "path": _file_name(e), "metadata": _metadata(e.path)}
        for e in registry.entries(ModelKind.LORA)
    ]


def hypernetworks(registry: ModelRegistry) -> list[dict[str, Any]]:
    return [{"name": e.name, "path": _file_name(e)} for e in registry.entries(ModelKind.HYPERNETWORK)]


def sd_vaes(registry: ModelRegistry) -> list[dict[str, str]]:
    return [{"model_name": e.name, "filename": _file_name(e)} for e in registry.entries(ModelKind.VAE)]


def embeddings(registry: ModelRegistry) -> dict[str, dict[str, Any]]:
    loaded = {}
    for entry in registry.entries(ModelKind.EMBEDDING):
        shape, vectors = _embedding_shape(entry.path)
        loaded[entry.name] = {
            "step": None,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
            "shape": shape,
            "vectors": vectors,
        }
    return {"loaded": loaded, "skipped": {}}


def prompt_styles(settings: Settings) -> list[dict[str, str]]:
    return [
        {"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
        for s in load_styles(settings.styles_file).values()
    ]


def cmd_flags(settings: Settings, host: str, port: int, auth: bool) -> dict[str, Any]:
    """A1111's command-line flags that describe this server (no secrets, no paths)."""
    return {
        "api": True,
        "nowebui": True,
        "listen": host not in ("127.0.0.1", "localhost", "::1"),
        "port": port,
        "api_auth": "set" if auth else None,
        "api_log": False,
        "cors_allow_origins": ",".join(settings.api.cors_origins) or None,
        "skip_torch_cuda_test": False,
        "no_half": settings.dtype == "float32",
    }


def memory() -> dict[str, Any]:
    """RAM from the operating system; CUDA statistics are the GPU thread's and are not reported here."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        free = os.sysconf("SC_AVPHYS_PAGES") * page
        ram: dict[str, Any] = {"free": free, "used": total - free, "total": total}
    except (OSError, ValueError) as error:
        ram = {"error": str(error)}
    return {"ram": ram, "cuda": {"error": "unavailable"}}


def _safetensors_header(path: Path) -> dict[str, Any]:
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return {}
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > MAX_HEADER_BYTES:
                return {}
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    return header if isinstance(header, dict) else {}


def _metadata(path: Path) -> dict[str, Any]:
    metadata = _safetensors_header(path).get("__metadata__")
    return metadata if isinstance(metadata, dict) else {}


def _embedding_shape(path: Path) -> tuple[int, int]:
    """(vector length, vectors) of a safetensors embedding's first tensor; (0, 0) when unknown."""
    for key, value in _safetensors_header(path).items():
        if key != "__metadata__" and isinstance(value, dict):
            shape = value.get("shape") or []
            if len(shape) == 2:
                return int(shape[1]), int(shape[0])
            if len(shape) == 1:
                return int(shape[0]), 1
    return 0, 0
