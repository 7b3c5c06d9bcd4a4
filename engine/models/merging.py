"""The checkpoint merger (A1111's Checkpoint Merger tab): weighted sum, add difference, no interpolation.

Semantics follow A1111's `modules/extras.py` `run_modelmerger` (AUTOMATIC1111/stable-diffusion-webui, commit
8faafb60804f40506eb3166e71d4d33bdc4e5c58), key by key over A's tensors:

- weighted sum: A·(1−M) + B·M; add difference: A + (B − C)·M; no interpolation: A alone (to bake in a VAE,
  save as fp16 or drop weights);
- only keys whose name contains `model` and that B has are merged; the rest, and the text encoder's
  `position_ids`, are A's. Keys only B has are dropped. With add difference, a key C lacks counts as B − C = 0;
- an inpainting A (9 input channels) with a normal B merges the 4 channels they share; a normal A with an
  inpainting B is refused (A must be the inpainting model);
- fp16 turns float32 tensors to float16: the merged ones (every one with no interpolation) and a baked-in VAE;
- a VAE from models/VAE replaces A's `first_stage_model.` weights; `discard` drops the keys a regex finds.

Where A1111 would write a broken file, Salon refuses instead, naming both models: SD 1.x with SDXL, a weight
of another shape, a VAE that does not fit. Integer tensors are never averaged. Inputs stream key by key
(`engine.models.merge_files`); the output is an A1111 single file in models/Stable-diffusion with A1111's
`sd_merge_recipe` and `sd_merge_models` metadata, never written over an existing file. A's diffusers configs
(its folder's, or its single file's `.config` sidecar) are copied beside it, as A1111 copies A's `.yaml`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidRequest, JobCancelled
from core.files import replace_folder
from engine.models.merge_files import (
    InputRecord,
    MergeInput,
    TensorSpec,
    legacy_hash,
    merge_models_entry,
    open_input,
    place_without_overwrite,
    torch_dtype,
    write_streaming,
)
from engine.models.model_files import UNET_CONV_IN, VAE_PREFIX, load_safetensors
from engine.models.registry import ModelEntry, ModelRegistry
from engine.models.trained_files import check_name

if TYPE_CHECKING:
    import torch

# Salon's mode names (the CLI's) → A1111's `interp_method`, as the recipe records it.
MODES = {
    "weighted-sum": "Weighted sum",
    "add-difference": "Add difference",
    "no-interpolation": "No interpolation",
}
SKIP_ON_MERGE = ("cond_stage_model.transformer.text_model.embeddings.position_ids",)  # A1111's list
MAX_DISCARD_CHARS = 500


@dataclass(frozen=True)
class MergeOptions:
    """A merge as the queue accepted it (names are checkpoint and VAE names in the registry)."""

    mode: str  # a key of MODES
    primary: str
    secondary: str | None
    tertiary: str | None
    multiplier: float
    name: str
    vae: str | None = None
    fp16: bool = False
    discard: str = ""


def check_options(options: MergeOptions) -> MergeOptions:
    """Refuse what can be refused without reading a model: mode, inputs the mode needs, M, the name, the regex."""
    if options.mode not in MODES:
        raise InvalidRequest("mode", f"{options.mode!r} is not one of: {', '.join(MODES)}")
    if options.mode != "no-interpolation" and not options.secondary:
        raise InvalidRequest("B", f"{options.mode} needs a second model B")
    if options.mode == "add-difference" and not options.tertiary:
        raise InvalidRequest(
            "c", "add-difference needs a third model C (--c NAME): the result is A + (B − C)·M"
        )
    if options.mode != "add-difference" and options.tertiary:
        raise InvalidRequest("c", f"a third model is only used by add-difference, not {options.mode}")
    if not isinstance(options.multiplier, float | int) or not 0.0 <= float(options.multiplier) <= 1.0:
        raise InvalidRequest("multiplier", f"{options.multiplier!r} is not a number from 0 to 1")
    check_name(options.name)
    discard_pattern(options.discard)
    return options


def discard_pattern(text: str):
    """The `discard` regex compiled with RE2 (linear time, so no pattern can hang the worker), or None."""
    if not text:
        return None
    if len(text) > MAX_DISCARD_CHARS:
        raise InvalidRequest("discard", f"the regex is longer than {MAX_DISCARD_CHARS} characters")
    import re2

    try:
        return re2.compile(text)
    except re2.error as exc:
        raise InvalidRequest("discard", f"{text!r} is not a regular expression: {exc}") from None


def output_path(registry: ModelRegistry, name: str) -> Path:
    """Where the result goes; refused when a file, a folder or an installed checkpoint already has the name."""
    from engine.models.registry import ModelKind

    folder = registry.folders[ModelKind.CHECKPOINT]
    target = folder / f"{check_name(name)}.safetensors"
    taken = [p for p in (target, folder / name, folder / f"{name}.config") if p.exists()]
    if taken:
        raise InvalidRequest(
            "name", f"{taken[0]} already exists; a merge never overwrites: choose another name"
        )
    if name.casefold() in (known.casefold() for known in registry.names(ModelKind.CHECKPOINT)):
        raise InvalidRequest("name", f"{name!r} is an installed model; choose another name")
    return target


@dataclass(frozen=True)
class _Plan:
    """What each output tensor is: where it comes from and its dtype and shape."""

    specs: dict[str, TensorSpec]
    merged: frozenset[str]
    baked: frozenset[str]
    inpainting: bool


def _family_check(a: MergeInput, other: MergeInput, label: str) -> None:
    if a.family != other.family:
        raise InvalidRequest(
            "models",
            f"A ({a.entry.name}) is {a.family} but {label} ({other.entry.name}) is {other.family}: "
            "only checkpoints of one architecture can be merged",
        )


def _channels_case(key: str, a: TensorSpec, b: TensorSpec, names: tuple[str, str]) -> bool:
    """Whether A and B differ only in the UNet's input channels, with A the inpainting model (A1111's rule)."""
    if a.shape == b.shape:
        return False
    same_rest = len(a.shape) == len(b.shape) > 1 and a.shape[:1] + a.shape[2:] == b.shape[:1] + b.shape[2:]
    if key == UNET_CONV_IN and same_rest and a.shape[1] == 9 and b.shape[1] == 4:
        return True
    if key == UNET_CONV_IN and same_rest and a.shape[1] == 4 and b.shape[1] == 9:
        raise InvalidRequest(
            "models",
            f"B ({names[1]}) is an inpainting model and A ({names[0]}) is not: A must be the inpainting model",
        )
    raise InvalidRequest(
        "models",
        f"{key} is {list(a.shape)} in A ({names[0]}) but {list(b.shape)} in {names[1]}: "
        "not the same architecture",
    )


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def _promote(*dtypes: str) -> str:
    import torch

    from engine.models.merge_files import SAFETENSORS_DTYPES

    result = torch_dtype(dtypes[0])
    for dtype in dtypes[1:]:
        result = torch.promote_types(result, torch_dtype(dtype))
    return SAFETENSORS_DTYPES[str(result).removeprefix("torch.")]


def _half(dtype: str, fp16: bool) -> str:
    return "F16" if fp16 and dtype == "F32" else dtype  # A1111's to_half: float32 only


def _plan(
    options: MergeOptions, a: MergeInput, b: MergeInput | None, c: MergeInput | None, vae: dict | None
) -> _Plan:
    """Every output tensor's spec, decided from the headers before any value is read."""
    discard = discard_pattern(options.discard)
    specs: dict[str, TensorSpec] = {}
    merged, baked, inpainting = set(), set(), False
    for key, spec in a.specs.items():
        out = spec
        if b is not None and "model" in key and key in b.specs and key not in SKIP_ON_MERGE:
            b_spec = b.specs[key]
            if _channels_case(key, spec, b_spec, (a.entry.name, f"B ({b.entry.name})")):
                inpainting = True
            if c is not None and key in c.specs and c.specs[key].shape != b_spec.shape:
                raise InvalidRequest(
                    "models",
                    f"{key} is {list(b_spec.shape)} in B ({b.entry.name}) but {list(c.specs[key].shape)} in "
                    f"C ({c.entry.name}): not the same architecture",
                )
            floats = [spec.dtype, b_spec.dtype] + ([c.specs[key].dtype] if c and key in c.specs else [])
            if all(_is_float(d) for d in floats):
                merged.add(key)
                dtype = spec.dtype if spec.shape != b_spec.shape else _promote(*floats)
                out = TensorSpec(_half(dtype, options.fp16), spec.shape)
        if vae is not None and key.startswith(VAE_PREFIX) and key[len(VAE_PREFIX) :] in vae:
            from engine.models.merge_files import spec_of

            baked.add(key)
            out = TensorSpec(_half(spec_of(vae[key[len(VAE_PREFIX) :]]).dtype, options.fp16), spec.shape)
        elif b is None:
            out = TensorSpec(_half(out.dtype, options.fp16), out.shape)
        if discard is not None and discard.search(key):
            continue
        specs[key] = out
    return _Plan(specs, frozenset(merged), frozenset(baked), inpainting)


def _values(
    options: MergeOptions,
    plan: _Plan,
    a: MergeInput,
    b: MergeInput | None,
    c: MergeInput | None,
    vae: dict | None,
    step: Callable[[int, int], None],
) -> Iterator[tuple[str, torch.Tensor]]:
    """Each output tensor, computed from its inputs one key at a time (A1111's formulas, in its order)."""
    import torch

    m = float(options.multiplier)
    total = len(plan.specs)
    for done, (key, spec) in enumerate(plan.specs.items(), start=1):
        if key in plan.baked:
            value = vae[key[len(VAE_PREFIX) :]]
        elif key in plan.merged:
            theta0, theta1 = a.read(key), b.read(key)
            if c is not None:
                theta1 = theta1 - c.read(key) if key in c.specs else torch.zeros_like(theta1)
            if theta0.shape != theta1.shape:  # the inpainting A: merge the 4 channels both have
                value = theta0.clone()
                value[:, 0:4] = _formula(options.mode, theta0[:, 0:4], theta1, m)
            else:
                value = _formula(options.mode, theta0, theta1, m)
        else:
            value = a.read(key)
        yield key, value.to(torch_dtype(spec.dtype))
        step(done, total)


def _formula(mode: str, theta0: torch.Tensor, theta1: torch.Tensor, m: float) -> torch.Tensor:
    """A1111's two formulas; for add difference `theta1` is already B − C."""
    if mode == "weighted-sum":
        return ((1 - m) * theta0) + (m * theta1)
    return theta0 + (m * theta1)


def _vae_weights(entry: ModelEntry, a: MergeInput) -> dict:
    """A models/VAE file's weights under A's LDM names (without `first_stage_model.`), checked against A."""
    from engine.models.vae_files import _is_ldm, _stripped

    state = _stripped(load_safetensors(entry.path))
    if not _is_ldm(state):
        raise InvalidRequest(
            "vae", f"{entry.path.name} is not in A1111's (LDM) VAE layout; only those can be baked in"
        )
    own = {key[len(VAE_PREFIX) :]: spec for key, spec in a.specs.items() if key.startswith(VAE_PREFIX)}
    unknown = [key for key in state if key not in own]
    if unknown or not state:
        sample = ", ".join(unknown[:3]) or "no weights"
        raise InvalidRequest("vae", f"{entry.path.name} is not a VAE for A ({a.entry.name}): {sample}")
    for key, value in state.items():
        if tuple(value.shape) != own[key].shape:
            raise InvalidRequest(
                "vae",
                f"{entry.path.name} does not fit A ({a.entry.name}): {key} is {list(value.shape)}, "
                f"A's is {list(own[key].shape)}",
            )
    return state


def _checkpoint_name(registry: ModelRegistry, entry: ModelEntry) -> str:
    """A1111's checkpoint name: the path under models/Stable-diffusion with its extension."""
    from engine.models.registry import ModelKind

    try:
        return entry.path.relative_to(registry.folders[ModelKind.CHECKPOINT]).as_posix()
    except ValueError:
        return entry.path.name


def merge_metadata(
    registry: ModelRegistry, options: MergeOptions, inputs: list[MergeInput], plan: _Plan
) -> dict[str, str]:
    """A1111's metadata: the inputs' own fields (A, then B, then C), `format`, the recipe and the models."""
    records = [
        InputRecord(
            registry.sha256(i.entry),
            _checkpoint_name(registry, i.entry),
            legacy_hash(i.entry.path),
            i.metadata,
        )
        for i in inputs
    ]
    hashes = [r.sha256 for r in records] + [None, None]
    recipe = {
        "type": "webui",
        "primary_model_hash": hashes[0],
        "secondary_model_hash": hashes[1],
        "tertiary_model_hash": hashes[2],
        "interp_method": MODES[options.mode],
        "multiplier": float(options.multiplier),
        "save_as_half": options.fp16,
        "custom_name": options.name,
        "config_source": 0,  # A's configs go with the result
        "bake_in_vae": options.vae or "None",
        "discard_weights": options.discard,
        "is_inpainting": plan.inpainting,
        "is_instruct_pix2pix": False,
    }
    metadata: dict[str, str] = {}
    for item in inputs:
        metadata.update(item.metadata)
    metadata["format"] = "pt"
    metadata["sd_merge_recipe"] = json.dumps(recipe)
    metadata["sd_merge_models"] = json.dumps(merge_models_entry(records))
    return metadata


def merge_checkpoints(
    registry: ModelRegistry,
    options: MergeOptions,
    on_step: Callable[[int, int], None] = lambda done, total: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Path:
    """Merge as `options` say and install the result in models/Stable-diffusion; returns its path.

    `on_step(done, total)` follows the keys written; `cancelled()` is asked between keys (JobCancelled)."""
    from engine.models.registry import ModelKind

    check_options(options)
    target = output_path(registry, options.name)
    find = registry.find_fresh
    entries = [find(ModelKind.CHECKPOINT, options.primary)]
    if options.mode != "no-interpolation":
        entries.append(find(ModelKind.CHECKPOINT, options.secondary or ""))
    if options.mode == "add-difference":
        entries.append(find(ModelKind.CHECKPOINT, options.tertiary or ""))
    vae_entry = find(ModelKind.VAE, options.vae) if options.vae else None
    inputs: list[MergeInput] = []
    try:
        for entry in entries:
            inputs.append(open_input(entry))
        a, b, c = (inputs + [None, None])[:3]
        for other, label in ((b, "B"), (c, "C")):
            if other is not None:
                _family_check(a, other, label)
        vae = _vae_weights(vae_entry, a) if vae_entry is not None else None
        plan = _plan(options, a, b, c, vae)
        metadata = merge_metadata(registry, options, inputs, plan)

        def step(done: int, total: int) -> None:
            if cancelled():
                raise JobCancelled("merge cancelled")
            on_step(done, total)

        _write(target, plan, metadata, _values(options, plan, a, b, c, vae, step))
    finally:
        for item in inputs:
            item.close()
    _copy_configs(entries[0], target)
    registry.refresh()
    return target


def _write(target: Path, plan: _Plan, metadata: dict[str, str], values) -> None:
    """Write the merged file under a hidden temp name beside the target, then put it in place (never over)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temp = Path(name)
    try:
        os.close(handle)
        write_streaming(temp, plan.specs, values, metadata)
        place_without_overwrite(temp, target)
    except FileExistsError:
        raise InvalidRequest("name", f"{target} appeared while merging; it was not overwritten") from None
    finally:
        temp.unlink(missing_ok=True)


def _copy_configs(primary: ModelEntry, target: Path) -> None:
    """A's diffusers configs (no weights, no tokenizer) as the result's `.config` sidecar, when A has its own."""
    source = (
        primary.path if primary.is_diffusers_folder else primary.path.with_name(primary.path.stem + ".config")
    )
    if not (source / "model_index.json").is_file():
        return

    def write(folder: Path) -> None:
        for file in source.rglob("*.json"):
            relative = file.relative_to(source)
            if relative.parts[0].startswith("tokenizer"):
                continue
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, folder / relative)

    replace_folder(target.with_name(target.stem + ".config"), write)
