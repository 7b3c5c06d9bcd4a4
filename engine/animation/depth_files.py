"""Which depth model 3D animation uses, found without torch: a transformers depth-estimation folder
(`config.json`, weights in `.safetensors`, the image processor's `preprocessor_config.json`) inside
`models/Deforum`, the folder Deforum keeps its depth models in. The queue asks this before it accepts a 3D job,
so a missing model is a clear refusal naming the folder, not a failure in the GPU thread.

Kinds (config `model_type`): DPT (MiDaS 3, DPT-Hybrid, DPT-Large) and Depth Anything give inverse depth (near
is large), as MiDaS does; ZoeDepth and Depth Anything's metric models give depth (far is large).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidRequest

FOLDER = "Deforum"
OPTION = "depth model"
INVERSE_KINDS = ("dpt", "depth_anything")
DEPTH_KINDS = ("zoedepth",)


@dataclass(frozen=True)
class DepthModelFolder:
    path: Path
    kind: str  # config.json's model_type
    inverse: bool  # the output is inverse depth (MiDaS-like)


def depth_folder(models_path: Path) -> Path:
    return Path(models_path) / FOLDER


def find_depth_model(models_path: Path) -> DepthModelFolder:
    """The first depth-estimation folder (by name) in `models/Deforum`; InvalidRequest says what to install."""
    folder = depth_folder(models_path)
    problems: list[str] = []
    candidates = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for path in candidates:
        found = _depth_model(path)
        if isinstance(found, DepthModelFolder):
            return found
        if found:
            problems.append(f"{path.name}: {found}")
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise InvalidRequest(
        OPTION,
        f"3D animation needs a depth model: put a transformers depth-estimation folder (DPT/MiDaS, Depth "
        f"Anything or ZoeDepth: config.json, preprocessor_config.json, .safetensors weights) in {folder}"
        f"{detail}; or set use_depth_warping to false for a flat depth",
    )


def _depth_model(path: Path) -> DepthModelFolder | str | None:
    """The folder as a depth model, or why it is not one (None: not a model folder at all)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"config.json cannot be read ({exc})"
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in (*INVERSE_KINDS, *DEPTH_KINDS):
        return (
            f"model_type {kind!r} is not a depth model Salon reads ({', '.join(INVERSE_KINDS + DEPTH_KINDS)})"
        )
    if not any(path.glob("*.safetensors")):
        return "no .safetensors weights"
    if not (path / "preprocessor_config.json").is_file():
        return "no preprocessor_config.json"
    metric = config.get("depth_estimation_type") == "metric"
    return DepthModelFolder(path, kind, kind in INVERSE_KINDS and not metric)
