"""Generation info written by other generators (ComfyUI, InvokeAI, Fooocus, NovelAI), as A1111 infotext.

Importing someone's output folder should make their images searchable by prompt, model, sampler and seed
like Salon's own. Each reader takes the PNG text chunks and returns an A1111 infotext, or None when the
chunks are not that generator's. Best effort: what a format does not carry is left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from engine.infotext import format_infotext

SAMPLERS = {  # k-diffusion / ComfyUI / InvokeAI sampler names → A1111's
    "euler_ancestral": "Euler a",
    "euler_a": "Euler a",
    "euler": "Euler",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "ddim": "DDIM",
    "plms": "PLMS",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "lcm": "LCM",
}


def sampler_name(raw: str | None) -> str | None:
    if not raw:
        return None
    key = re.sub(r"^(k_|sample_)", "", raw.strip().lower()).removesuffix("_gpu")
    return SAMPLERS.get(key, raw)


def _infotext(prompt: str, negative: str, **params: Any) -> str:
    kept = {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items() if v not in (None, "")}
    return format_infotext(prompt.strip(), negative.strip(), kept)


def _size(width: Any, height: Any) -> str | None:
    return f"{width}x{height}" if width and height else None


# A1111's sampler names and aliases (its `samplers_map`: each name in lower case and each alias → the name),
# the part NovelAI's sampler names can meet; any other name becomes "Euler a", as in A1111.
_A1111_SAMPLER_ALIASES = {
    "Euler a": ("k_euler_a", "k_euler_ancestral"),
    "Euler": ("k_euler",),
    "LMS": ("k_lms",),
    "Heun": ("k_heun",),
    "DPM2": ("k_dpm_2",),
    "DPM2 a": ("k_dpm_2_a",),
    "DPM++ 2S a": ("k_dpmpp_2s_a",),
    "DPM++ 2M": ("k_dpmpp_2m",),
    "DPM++ SDE": ("k_dpmpp_sde",),
    "DPM++ 2M SDE": ("k_dpmpp_2m_sde",),
    "DPM fast": ("k_dpm_fast",),
    "DPM adaptive": ("k_dpm_ad",),
    "DDIM": (),
    "PLMS": (),
}
NOVELAI_SAMPLERS = {
    key: name for name, aliases in _A1111_SAMPLER_ALIASES.items() for key in (name.lower(), *aliases)
}


def from_novelai(chunks: dict[str, str], size: tuple[int, int] | None = None) -> str | None:
    """The infotext A1111 makes of a NovelAI image (`read_info_from_image`): Description as the prompt, `uc`
    as the negative, steps, sampler, scale and seed from the Comment JSON, the image's own size, and the
    `Clip skip: 2, ENSD: 31337` NovelAI generates with. Without `size`, the Comment's width and height."""
    if chunks.get("Software") != "NovelAI" or "Comment" not in chunks:
        return None
    comment = json.loads(chunks["Comment"])
    width, height = size or (comment.get("width"), comment.get("height"))
    sampler = NOVELAI_SAMPLERS.get(comment["sampler"], "Euler a")
    params = [
        f"Steps: {comment['steps']}",
        f"Sampler: {sampler}",
        f"CFG scale: {comment['scale']}",
        f"Seed: {comment['seed']}",
        *([f"Size: {width}x{height}"] if width and height else []),
        "Clip skip: 2",
        "ENSD: 31337",
    ]
    return f"{chunks['Description']}\nNegative prompt: {comment['uc']}\n{', '.join(params)}"


def from_invokeai(chunks: dict[str, str]) -> str | None:
    if "invokeai_metadata" in chunks:
        meta = json.loads(chunks["invokeai_metadata"])
        model = meta.get("model") or {}
        return _infotext(
            meta.get("positive_prompt", ""),
            meta.get("negative_prompt", ""),
            Steps=meta.get("steps"),
            Sampler=sampler_name(meta.get("scheduler")),
            **{"CFG scale": meta.get("cfg_scale"), "Seed": meta.get("seed")},
            Size=_size(meta.get("width"), meta.get("height")),
            Model=model.get("model_name") or model.get("name"),
        )
    if "sd-metadata" in chunks:
        meta = json.loads(chunks["sd-metadata"])
        image = meta.get("image", {})
        prompts = image.get("prompt", "")
        prompt = prompts if isinstance(prompts, str) else ", ".join(p.get("prompt", "") for p in prompts)
        negative = " ".join(re.findall(r"\[([^\]]*)\]", prompt))  # InvokeAI 2 wrote negatives in [brackets]
        return _infotext(
            re.sub(r"\s*\[[^\]]*\]", "", prompt),
            negative,
            Steps=image.get("steps"),
            Sampler=sampler_name(image.get("sampler")),
            **{"CFG scale": image.get("cfg_scale"), "Seed": image.get("seed")},
            Size=_size(image.get("width"), image.get("height")),
            Model=meta.get("model_weights"),
        )
    if (
        "Dream" in chunks
    ):  # InvokeAI 1–2: a command line, "prompt" -s steps -S seed -W w -H h -C cfg -A sampler
        match = re.match(r'\s*"(.*)"(.*)$', chunks["Dream"], re.DOTALL)
        if match is None:
            return None
        options = dict(re.findall(r"-([a-zA-Z]+)\s+([^\s-][^\s]*)", match.group(2)))
        prompt = match.group(1)
        return _infotext(
            re.sub(r"\s*\[[^\]]*\]", "", prompt),
            " ".join(re.findall(r"\[([^\]]*)\]", prompt)),
            Steps=options.get("s"),
            Sampler=sampler_name(options.get("A")),
            **{"CFG scale": options.get("C"), "Seed": options.get("S")},
            Size=_size(options.get("W"), options.get("H")),
        )
    return None


def from_fooocus(chunks: dict[str, str]) -> str | None:
    if chunks.get("fooocus_scheme") != "fooocus" and '"metadata_scheme": "fooocus"' not in chunks.get(
        "parameters", ""
    ):
        return None
    meta = json.loads(chunks["parameters"])
    size = re.findall(r"\d+", str(meta.get("resolution", "")))
    return _infotext(
        meta.get("prompt", ""),
        meta.get("negative_prompt", ""),
        Steps=meta.get("steps"),
        Sampler=sampler_name(meta.get("sampler")),
        **{"Schedule type": str(meta.get("scheduler", "")).capitalize() or None},
        **{"CFG scale": meta.get("guidance_scale"), "Seed": meta.get("seed")},
        Size=_size(*size[:2]) if len(size) >= 2 else None,
        Model=meta.get("base_model"),
        **{"Model hash": meta.get("base_model_hash"), "Version": meta.get("version")},
    )


def from_comfyui(chunks: dict[str, str]) -> str | None:
    """The sampler node that feeds the saved image, its prompts (every text encoder behind its positive and
    negative inputs), checkpoint and latent size."""
    if "prompt" not in chunks:
        return None
    graph: dict[str, dict] = json.loads(chunks["prompt"])
    samplers = [key for key, node in graph.items() if {"seed", "steps", "cfg"} <= set(node.get("inputs", {}))]
    if not samplers:
        return None
    final = max(samplers, key=lambda key: _depth(graph, key))
    inputs = graph[final]["inputs"]
    texts = {side: _texts(graph, inputs.get(side)) for side in ("positive", "negative")}
    return _infotext(
        ", ".join(texts["positive"]),
        ", ".join(texts["negative"]),
        Steps=inputs.get("steps"),
        Sampler=sampler_name(inputs.get("sampler_name")),
        **{"Schedule type": str(inputs.get("scheduler", "")).capitalize() or None},
        **{"CFG scale": inputs.get("cfg"), "Seed": inputs.get("seed")},
        Size=_latent_size(graph, inputs.get("latent_image")),
        Model=_checkpoint(graph, inputs.get("model")),
        **{"Denoising strength": inputs.get("denoise") if inputs.get("denoise", 1) != 1 else None},
    )


def _linked(graph: dict, link: Any) -> dict | None:
    return graph.get(str(link[0])) if isinstance(link, list) and link else None


def _depth(graph: dict, key: str, seen: frozenset = frozenset()) -> int:
    """How many samplers lie upstream of this one (the last pass of a 2-pass workflow has the most)."""
    node = graph.get(key, {})
    ups = [
        str(v[0])
        for v in node.get("inputs", {}).values()
        if isinstance(v, list) and v and str(v[0]) not in seen
    ]
    return max(
        (_depth(graph, up, seen | {key}) + ("seed" in graph.get(up, {}).get("inputs", {})) for up in ups),
        default=0,
    )


def _texts(graph: dict, link: Any, seen: frozenset = frozenset()) -> list[str]:
    node = _linked(graph, link)
    if node is None or str(link[0]) in seen:
        return []
    text = node.get("inputs", {}).get("text")
    if isinstance(text, str):
        return [text.strip()]
    found: list[str] = []
    for value in node.get("inputs", {}).values():
        found += _texts(graph, value, seen | {str(link[0])})
    return found


def _checkpoint(graph: dict, link: Any, seen: frozenset = frozenset()) -> str | None:
    node = _linked(graph, link)
    if node is None or str(link[0]) in seen:
        return None
    name = node.get("inputs", {}).get("ckpt_name")
    if isinstance(name, str):
        return re.sub(r"\.(safetensors|ckpt|pt)$", "", name)
    return _checkpoint(graph, node.get("inputs", {}).get("model"), seen | {str(link[0])})


def _latent_size(graph: dict, link: Any) -> str | None:
    node = _linked(graph, link)
    if node is None:
        return None
    inputs = node.get("inputs", {})
    return _size(inputs.get("width"), inputs.get("height"))


READERS: tuple[Callable[[dict[str, str]], str | None], ...] = (
    from_invokeai,
    from_fooocus,
    from_comfyui,
)


def foreign_infotext(chunks: dict[str, Any], size: tuple[int, int] | None = None) -> str | None:
    """A1111 infotext from another generator's PNG text chunks, or None; `size` is the image's (width,
    height), which A1111 writes for NovelAI images."""
    texts = {key: value for key, value in chunks.items() if isinstance(value, str)}
    for reader in (partial(from_novelai, size=size), *READERS):
        try:
            infotext = reader(texts)
        except (ValueError, TypeError, AttributeError, KeyError):
            continue
        if infotext:
            return infotext
    return None
