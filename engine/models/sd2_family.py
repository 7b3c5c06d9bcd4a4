"""Stable Diffusion 2.x without torch: v-prediction or epsilon, the native size, and each checkpoint's family.

SD 2.x comes in two kinds that share one architecture: 768-v (v-prediction, trained at 768²) and 512-base
(epsilon, 512²). Like A1111 (`modules/sd_models_config.py`), a single file's kind is decided first by a
`<checkpoint>.yaml` beside it (`model.params.parameterization: "v"`), else by running its UNet once on a fixed
input (`engine/models/sd2_loading.py`, in the GPU thread, when it loads). The test's answer is remembered in a
small hidden sidecar beside the checkpoint (`.<name>.salon-sd2.json`, keyed by the file's size and mtime;
kept in memory only where the folder is read-only), so it runs once per file, and so that processes without
torch (the bot, the CLI) know the native size too. Until a file has loaded once and has no yaml, its size is
taken as 768 (the 768-v models are the common SD 2.x checkpoints) and its family says "SD2 (v untested)".
Diffusers folders say it all in their configs (the scheduler's `prediction_type`, the UNet's `sample_size`).

The yaml is read with `yaml.safe_load` only, and only a regular file of at most `MAX_YAML_BYTES`; anything
else (huge, not YAML, a link loop, a FIFO) is ignored with a log line, as if there were no yaml.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

from core.files import atomic_write

log = logging.getLogger(__name__)

V_PREDICTION = "v_prediction"
EPSILON = "epsilon"
MAX_YAML_BYTES = 1 << 20  # A1111's v2 yaml files are about 2 KB
MAX_MEMO_BYTES = 4096
MEMO_SUFFIX = ".salon-sd2.json"
SD2_V_SIDE = 768
SD2_BASE_SIDE = 512

_memory: dict[tuple[str, int, int], str] = {}  # where the sidecar cannot be written
_lock = threading.Lock()


def yaml_path(checkpoint: Path) -> Path:
    """Where A1111 looks for a checkpoint's own config: `<name>.yaml` beside it."""
    return checkpoint.with_suffix(".yaml")


def memo_path(checkpoint: Path) -> Path:
    """The hidden sidecar that remembers the UNet test's answer (hidden: the model scan skips it)."""
    return checkpoint.with_name(f".{checkpoint.stem}{MEMO_SUFFIX}")


def _bounded_regular_text(path: Path, limit: int, what: str) -> str | None:
    """The text of `path` if it is a regular file of at most `limit` bytes; None (logged) otherwise."""
    try:
        info = os.stat(path)  # follows links; a loop raises ELOOP
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s %s ignored: %s", what, path, exc.strerror or exc)
        return None
    if not stat.S_ISREG(info.st_mode):
        log.warning("%s %s ignored: not a regular file", what, path)
        return None
    if info.st_size > limit:
        log.warning("%s %s ignored: %d bytes, more than %d", what, path, info.st_size, limit)
        return None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
        return raw[:limit].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s %s ignored: %s", what, path, exc)
        return None


def yaml_prediction(checkpoint: Path) -> str | None:
    """V_PREDICTION or EPSILON from the checkpoint's `<name>.yaml` (ldm's default is eps), or None when there
    is no usable yaml (none, unreadable, not YAML, not an ldm model config: each logged)."""
    import yaml

    path = yaml_path(checkpoint)
    text = _bounded_regular_text(path, MAX_YAML_BYTES, "checkpoint config")
    if text is None:
        return None
    try:
        config = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        log.warning("checkpoint config %s ignored: not YAML (%s)", path, str(exc).splitlines()[0][:200])
        return None
    params = _params(config)
    if params is None:
        log.warning("checkpoint config %s ignored: no model.params mapping (not an ldm model config)", path)
        return None
    return V_PREDICTION if params.get("parameterization") == "v" else EPSILON


def _params(config: Any) -> dict | None:
    model = config.get("model") if isinstance(config, dict) else None
    params = model.get("params") if isinstance(model, dict) else None
    return params if isinstance(params, dict) else None


def _file_key(checkpoint: Path) -> tuple[str, int, int] | None:
    try:
        info = checkpoint.stat()
    except OSError:
        return None
    return str(checkpoint.resolve()), info.st_size, info.st_mtime_ns


def remembered_prediction(checkpoint: Path) -> str | None:
    """The UNet test's answer for this file as it is now (same size and mtime), or None."""
    key = _file_key(checkpoint)
    if key is None:
        return None
    with _lock:
        if key in _memory:
            return _memory[key]
    text = _bounded_regular_text(memo_path(checkpoint), MAX_MEMO_BYTES, "SD 2.x sidecar")
    if text is None:
        return None
    try:
        memo = json.loads(text)
    except ValueError:
        return None
    if not isinstance(memo, dict) or [memo.get("size"), memo.get("mtime_ns")] != list(key[1:]):
        return None
    value = memo.get("prediction_type")
    return value if value in (V_PREDICTION, EPSILON) else None


def remember_prediction(checkpoint: Path, prediction: str, decided_by: str = "unet test") -> None:
    """Keep the UNet test's answer (or a Dreambooth result's base model's) beside the checkpoint (in memory
    too, for a read-only folder)."""
    key = _file_key(checkpoint)
    if key is None:
        return
    with _lock:
        _memory[key] = prediction
    memo = {"size": key[1], "mtime_ns": key[2], "prediction_type": prediction, "decided_by": decided_by}
    try:
        atomic_write(memo_path(checkpoint), json.dumps(memo))
    except OSError as exc:
        log.info("cannot keep the SD 2.x test's answer beside %s (%s): kept in memory", checkpoint, exc)


def known_prediction(checkpoint: Path) -> str | None:
    """What a single SD 2.x file predicts, without torch: its yaml first (as A1111), else the remembered test."""
    return yaml_prediction(checkpoint) or remembered_prediction(checkpoint)


def sd2_side(prediction: str | None, inpainting: bool = False) -> int:
    """SD 2.x's native side: 768 for v-prediction (and for a file not known yet), 512 for epsilon/inpainting."""
    if inpainting or prediction == EPSILON:
        return SD2_BASE_SIDE
    return SD2_V_SIDE


def sd2_label(prediction: str | None, inpainting: bool = False) -> str:
    """The family shown by `salon models`: "SD2 768-v", "SD2 512", "SD2 512 inpainting"."""
    if inpainting:
        return "SD2 512 inpainting"
    if prediction is None:
        return "SD2 (v untested)"  # 768-v or 512: known after its first load
    return "SD2 768-v" if prediction == V_PREDICTION else "SD2 512"


def is_openclip_text_config(config: dict) -> bool:
    """A CLIPTextModel config of SD 2.x's OpenCLIP-H text encoder: 1024 wide, or GELU (OpenAI CLIP uses
    quick GELU), so tiny test models of its shape count too."""
    return config.get("hidden_size") == 1024 or config.get("hidden_act") == "gelu"


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def folder_family(folder: Path) -> str:
    """The family of a diffusers folder, from its configs."""
    index = _json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    inpainting = _json(folder / "unet" / "config.json").get("in_channels") == 9
    suffix = " inpainting" if inpainting else ""
    if "XL" in class_name:
        return "SDXL refiner" if "Img2Img" in class_name else f"SDXL{suffix}"
    if is_openclip_text_config(_json(folder / "text_encoder" / "config.json")):
        prediction = _json(folder / "scheduler" / "scheduler_config.json").get("prediction_type", EPSILON)
        return sd2_label(prediction, inpainting)
    return f"SD1{suffix}" if class_name.startswith("StableDiffusion") else class_name or "unknown"


def checkpoint_family(entry: Any) -> str:  # a registry ModelEntry (registry imports this module)
    """A checkpoint's family as `salon models` shows it ("SD1", "SDXL", "SD2 768-v", "SD2 512", SD 3.5 and
    Flux by `engine.models.flow_files`' label, …)."""
    from engine.models.flow_files import entry_kind

    flow = entry_kind(entry)
    if flow is not None:
        return flow.label
    if entry.is_diffusers_folder:
        return folder_family(entry.path)
    from core.errors import InvalidRequest, UnsafeModelFile
    from engine.models.model_files import SD2_KINDS, CheckpointKind, check_safetensors, detect_checkpoint_kind

    try:
        header = check_safetensors(entry.path)
        # a file in diffusers' names (engine/models/diffusers_file.py) has its configs beside it
        if (header.get("__metadata__") or {}).get("salon_layout") == "diffusers":
            return folder_family(entry.path.with_name(entry.path.stem + ".config"))
        kind = detect_checkpoint_kind(header)
    except (InvalidRequest, UnsafeModelFile, OSError):
        return "unknown"
    if kind in SD2_KINDS:
        inpainting = kind is CheckpointKind.SD2_INPAINT
        return sd2_label(None if inpainting else known_prediction(entry.path), inpainting)
    names = {
        CheckpointKind.SD1: "SD1",
        CheckpointKind.SD1_INPAINT: "SD1 inpainting",
        CheckpointKind.SDXL: "SDXL",
        CheckpointKind.SDXL_INPAINT: "SDXL inpainting",
    }
    return names.get(kind, str(kind))
