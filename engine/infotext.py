"""A1111 infotext: write, parse and store the text that describes how an image was made (SPEC §8).

Pure functions over str and Pillow images; nothing here imports torch, so the catalog can use it.

Format (A1111 `create_infotext` / `parse_generation_parameters`)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>          (omitted when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

Limits of the format that Salon enforces when writing (A1111 itself writes ambiguous text here):
- no line of the prompt or negative prompt may start with "Negative prompt:" (the reader would split there);
- parameter keys must match `\\w[\\w \\-/]+` and there must be at least 3 parameters (the reader only takes a
  last line with 3 or more `key: value` items as the parameter line);
- values that are empty, contain `,` `:` or a newline, start with `"` or have surrounding whitespace are
  JSON-quoted, so every value reads back exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import InvalidRequest

# Keys of A1111 v1.9/1.10 `create_infotext`, in the order it writes them; extra keys go between Tiling and
# Version. `Clip skip` is written by A1111 only when > 1: callers pass None for 1.
# fmt: off
INFOTEXT_KEY_ORDER: tuple[str, ...] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight",
    "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG",
    "Tiling",
)
# fmt: on
_LAST_KEYS: tuple[str, ...] = ("Version", "User")

# A1111's `re_param`, kept verbatim as the definition of the parameter line; `_find_params` computes the same
# matches in linear time (this pattern is quadratic on long lines, and infotexts come from uploaded files).
PARAM_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_AT = re.compile(r"\s*+(\w[\w \-/]*+)?")
_SPACES = re.compile(r"\s*+")
_KEY_FULL = re.compile(r"\w[\w \-/]+")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_NEGATIVE_PREFIX = "Negative prompt:"
_MIN_PARAMS = 3

# A1111 >= 1.9 schedule labels (modules/sd_schedulers.py); lower-case names and aliases map to the label.
# fmt: off
SCHEDULE_LABELS: tuple[str, ...] = (
    "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
    "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
)
# fmt: on
_SCHEDULE_ALIASES: dict[str, str] = {
    **{label.lower(): label for label in SCHEDULE_LABELS},
    "sgm_uniform": "SGM Uniform",
    "sgmuniform": "SGM Uniform",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
}
# Longest first, so "X SGM Uniform" is not read as "X SGM" + "Uniform".
_SCHEDULE_SUFFIXES: tuple[str, ...] = tuple(sorted(_SCHEDULE_ALIASES, key=len, reverse=True))


# --- writing


def quote(value: object) -> str:
    """Write one value as A1111 does, JSON-quoting whenever the bare text would not read back the same."""
    text = str(value)
    if not text or text != text.strip() or text.startswith('"') or any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def normalize_prompt(text: str) -> str:
    """Unify newlines and strip every line and the whole, so a prompt reads back from infotext unchanged.

    A line that then starts with "Negative prompt:" cannot be represented; `format_infotext` refuses it.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.strip() for line in lines).strip()


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """Build A1111 infotext: prompt, optional negative line, then `key: value` items in A1111's key order."""
    check_prompt("prompt", prompt)
    check_prompt("negative_prompt", negative_prompt)
    items = [(key, value) for key, value in _ordered_items(params) if value is not None]
    if len(items) < _MIN_PARAMS:
        raise ValueError(f"infotext needs at least {_MIN_PARAMS} parameters to be readable, got {len(items)}")
    for key, _ in items:
        if not _KEY_FULL.fullmatch(key):
            raise ValueError(f"infotext key {key!r} does not match \\w[\\w \\-/]+")
    params_text = ", ".join(f"{key}: {quote(value)}" for key, value in items)
    negative_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{params_text}".strip()


def check_prompt(option: str, text: str) -> None:
    """Refuse a prompt with a line the reader would take for the negative prompt (call it before queuing)."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip().startswith(_NEGATIVE_PREFIX):
            raise InvalidRequest(
                option, f'line {number} starts with "{_NEGATIVE_PREFIX}", which A1111 infotext cannot hold'
            )


def _ordered_items(params: Mapping[str, object]) -> list[tuple[str, object]]:
    """Known keys in A1111 order, then the others as given, then Version and User."""
    known = [(key, params[key]) for key in INFOTEXT_KEY_ORDER if key in params]
    extra = [(k, v) for k, v in params.items() if k not in INFOTEXT_KEY_ORDER and k not in _LAST_KEYS]
    last = [(key, params[key]) for key in _LAST_KEYS if key in params]
    return known + extra + last


# --- parsing


def split_sampler_name(name: str) -> tuple[str, str | None]:
    """Split a pre-1.9 combined name ("DPM++ 2M Karras") into sampler and schedule label, or (name, None)."""
    for suffix in _SCHEDULE_SUFFIXES:
        cut = len(name) - len(suffix)
        if cut > 1 and name[cut - 1] == " " and name[cut:].lower() == suffix:
            prefix = name[: cut - 1].rstrip()
            if prefix:
                return prefix, _SCHEDULE_ALIASES[suffix]
    return name, None


def _to_int(text: str | None) -> int | None:
    """An int from infotext text ("20", "20.0"), or None when absent or not a whole number."""
    if text is None:
        return None
    try:
        return int(text)  # exact, also for seeds beyond float precision
    except ValueError:
        number = _to_float(text)
    return int(number) if number is not None and number.is_integer() else None


def _to_float(text: str | None) -> float | None:
    """A finite float from infotext text, or None when absent or not a number."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Infotext:
    """One parsed infotext: the texts and raw `key: value` strings, with typed views and A1111 defaults."""

    prompt: str
    negative_prompt: str
    params: dict[str, str]

    def to_text(self) -> str:
        """Write this infotext back: values as read, re-quoted where needed (limits of format_infotext)."""
        return format_infotext(self.prompt, self.negative_prompt, self.params)

    @property
    def steps(self) -> int | None:
        """Sampling steps."""
        return _to_int(self.params.get("Steps"))

    @property
    def sampler(self) -> str | None:
        """Sampler name, with a legacy schedule suffix ("DPM++ 2M Karras") removed."""
        raw = self.params.get("Sampler")
        return None if raw is None else split_sampler_name(raw)[0]

    @property
    def schedule_type(self) -> str:
        """The `Schedule type` key, else the legacy sampler suffix, else A1111's default "Automatic"."""
        explicit = self.params.get("Schedule type")
        if explicit:
            return _SCHEDULE_ALIASES.get(explicit.lower(), explicit)
        legacy = split_sampler_name(self.params.get("Sampler", ""))[1]
        return legacy or "Automatic"

    @property
    def cfg_scale(self) -> float | None:
        """Classifier-free guidance scale."""
        return _to_float(self.params.get("CFG scale"))

    @property
    def seed(self) -> int | None:
        """Seed of the first image."""
        return _to_int(self.params.get("Seed"))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) from `Size: WxH`."""
        match = _SIZE.match(self.params.get("Size", ""))
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def width(self) -> int | None:
        """Width in pixels from `Size`."""
        return self.size[0] if self.size else None

    @property
    def height(self) -> int | None:
        """Height in pixels from `Size`."""
        return self.size[1] if self.size else None

    @property
    def model(self) -> str | None:
        """Checkpoint name as written."""
        return self.params.get("Model")

    @property
    def model_hash(self) -> str | None:
        """A1111 short hash of the checkpoint (10 hex)."""
        return self.params.get("Model hash")

    @property
    def clip_skip(self) -> int:
        """CLIP layers skipped; A1111 default 1 (the key is only written when > 1)."""
        return _to_int(self.params.get("Clip skip")) or 1

    @property
    def denoising_strength(self) -> float | None:
        """img2img / hires denoising strength."""
        return _to_float(self.params.get("Denoising strength"))

    @property
    def variation_seed(self) -> int | None:
        """A1111 subseed."""
        return _to_int(self.params.get("Variation seed"))

    @property
    def variation_seed_strength(self) -> float | None:
        """A1111 subseed strength."""
        return _to_float(self.params.get("Variation seed strength"))

    @property
    def vae(self) -> str | None:
        """The VAE file's name as A1111 writes it (`VAE: name.safetensors`); None: the checkpoint's own."""
        return self.params.get("VAE") or None

    @property
    def vae_hash(self) -> str | None:
        """A1111 short hash of the VAE file (10 hex)."""
        return self.params.get("VAE hash") or None

    @property
    def seed_resize_from(self) -> tuple[int, int] | None:
        """(width, height) of A1111's "resize seed from" (`Seed resize from: WxH`)."""
        match = _SIZE.match(self.params.get("Seed resize from", ""))
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def eta(self) -> float | None:
        """The sampler's eta: `Eta` (k-diffusion samplers) or `Eta DDIM`; None: the sampler's default."""
        return _to_float(self.params.get("Eta DDIM") or self.params.get("Eta"))

    @property
    def refiner(self) -> str | None:
        """A1111's refiner checkpoint (`Refiner: name [hash]`), by its name; None: no refiner switched."""
        title = self.params.get("Refiner", "").strip()
        if title.endswith("]") and " [" in title:
            title = title[: title.rindex(" [")]
        return title or None

    @property
    def refiner_switch_at(self) -> float | None:
        """A1111's `Refiner switch at` fraction; None when absent."""
        return _to_float(self.params.get("Refiner switch at"))

    @property
    def ensd(self) -> int:
        """A1111's eta noise seed delta; 0 when absent."""
        return _to_int(self.params.get("ENSD")) or 0

    @property
    def version(self) -> tuple[int, ...] | None:
        """Writer version as numbers ("v1.9.0" -> (1, 9, 0)); None when absent or not a version number."""
        match = _VERSION.match(self.params.get("Version", ""))
        if match is None:
            return None
        return tuple(int(part) for part in match.groups() if part is not None)


def parse_infotext(text: str) -> Infotext:
    """Read infotext exactly as A1111's `parse_generation_parameters`; never raises on any str."""
    *lines, last_line = text.strip().split("\n")
    found = _find_params(last_line)
    if len(found) < _MIN_PARAMS:
        lines.append(last_line)
        found = []
    prompt, negative_prompt = _split_prompts(lines)
    params: dict[str, str] = {}
    for key, value in found:
        if value:  # A1111 drops an empty value (its `v[0]` raises and the item is skipped)
            params[key] = _unquote(value)
    return Infotext(prompt, negative_prompt, params)


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    """Lines before the first "Negative prompt:" line are the prompt, the rest the negative prompt."""
    prompt: list[str] = []
    negative: list[str] = []
    done_with_prompt = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            done_with_prompt = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        (negative if done_with_prompt else prompt).append(line)
    return _join_like_a1111(prompt), _join_like_a1111(negative)


def _join_like_a1111(lines: list[str]) -> str:
    """A1111 joins with "\\n" but adds no separator while the text so far is empty (leading blanks vanish)."""
    first = next((index for index, line in enumerate(lines) if line), len(lines))
    return "\n".join(lines[first:])


def _unquote(value: str) -> str:
    """JSON-decode a quoted value, keeping the raw text when it is not valid JSON."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _find_params(line: str) -> list[tuple[str, str]]:
    """`PARAM_PATTERN.findall(line)` in linear time.

    A start inside a run of key characters fails exactly when the run's first start fails (the run ends at
    the same place), so a failed start jumps past the run instead of retrying every position.
    """
    found: list[tuple[str, str]] = []
    closing: list[int] | None = None
    pos, size = 0, len(line)
    while pos < size:
        key_match = _KEY_AT.match(line, pos)
        key, key_end = key_match.group(1), key_match.end()
        if key is None:
            pos = key_end + 1
            continue
        if len(key) < 2 or key_end >= size or line[key_end] != ":":
            pos = key_end
            continue
        start = _SPACES.match(line, key_end + 1).end()
        if start < size and line[start] == '"':
            closing = closing if closing is not None else _closing_quotes(line)
            close = closing[start + 1]
            if close > start + 1 and _ends_item(line, close + 1):
                found.append((key, line[start : close + 1]))
                pos = close + 2
                continue
        comma = line.find(",", start)
        end = size if comma < 0 else comma
        found.append((key, line[start:end]))
        pos = end + 1
    return found


def _ends_item(line: str, index: int) -> bool:
    """`(?:,|$)` at index: a comma, the end, or (as `$` does) a final newline."""
    return index == len(line) or line[index] == "," or (index == len(line) - 1 and line[index] == "\n")


def _closing_quotes(line: str) -> list[int]:
    """For each index, where `(?:\\\\.|[^\\\\"])*"` starting there ends (the closing quote), or -1."""
    closing = [-1] * (len(line) + 2)
    for index in range(len(line) - 1, -1, -1):
        char = line[index]
        if char == '"':
            closing[index] = index
        elif char == "\\":
            escapable = index + 1 < len(line) and line[index + 1] != "\n"
            closing[index] = closing[index + 2] if escapable else -1
        else:
            closing[index] = closing[index + 1]
    return closing
