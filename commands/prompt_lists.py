"""A1111's prompt matrix and "prompts from file or textbox", as the parameters of one `xyz` job (jobs/plots.py).

Prompt matrix (A1111's scripts/prompt_matrix.py): `a cat|in a hat|on a mat` gives every combination of the
parts after the first (2^(n−1) prompts: the first part alone, then with each subset, joined by ", " or " "),
each with the same seed (or seed + i with `different_seeds`), on a grid of 2^((n−1)//2) rows whose legends
name the parts each column and row adds.

Prompts from file (A1111's scripts/prompts_from_file.py): one prompt per line, blank lines skipped; a line with
`--` is read as options in shell syntax, with A1111's option names (`--prompt` and `--negative_prompt` take
every word up to the next option; `--seed 5 --steps 10 --sampler_name "Euler a" --cfg_scale 7 --width 512
--height 512 --batch_size 2 --n_iter 1 --subseed 3 --subseed_strength 0.2 --seed_resize_from_w 512
--seed_resize_from_h 512 --tiling true`). A1111 reads a line it cannot parse as a prompt; Salon refuses it,
naming the line and the option. No grid: each line's images are kept and catalogued.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import InvalidRequest
from engine.requests import GenerationRequest, with_fixed_seeds
from engine.seeds import resolve_seed
from jobs.codec import request_to_json

MATRIX_SCRIPT = "Prompt matrix"
FILE_SCRIPT = "Prompts from file"


def matrix_prompts(prompt: str, delimiter: str = ", ", put_at_start: bool = False) -> list[str]:
    """Every combination of the `|` parts after the first, in A1111's order (bit n of the index: part n + 1)."""
    parts = prompt.split("|")
    prompts = []
    for number in range(2 ** (len(parts) - 1)):
        chosen = [text.strip().strip(",") for n, text in enumerate(parts[1:]) if number & (1 << n)]
        chosen = chosen + [parts[0]] if put_at_start else [parts[0]] + chosen
        prompts.append(delimiter.join(chosen))
    return prompts


def prompt_matrix_plot(
    base: GenerationRequest,
    *,
    delimiter: str = ", ",
    put_at_start: bool = False,
    different_seeds: bool = False,
    max_cells: int = 100,
) -> dict[str, Any]:
    """The `xyz` job's parameters for A1111's prompt matrix of `base.prompt`."""
    parts = base.prompt.split("|")
    if len(parts) < 2:
        raise InvalidRequest("prompt", "a prompt matrix needs parts separated by |, e.g. 'a cat|in a hat'")
    count = 2 ** (len(parts) - 1)
    if count > max_cells:
        raise InvalidRequest(
            "prompt", f"{len(parts) - 1} optional parts make {count} images; at most {max_cells}"
        )
    base = dataclasses.replace(with_fixed_seeds(base), batch_size=1, batch_count=1)
    cells = [
        request_to_json(
            dataclasses.replace(base, prompt=text, seed=base.seed + (i if different_seeds else 0)), None
        )[1]
        for i, text in enumerate(matrix_prompts(base.prompt, delimiter, put_at_start))
    ]
    optional = [text.strip().strip(",") for text in parts[1:]]
    across = optional[: (len(optional) + 1) // 2]
    rows = 1 << ((len(parts) - 1) // 2)
    columns = count // rows
    grid = {
        "cells": list(range(count)),
        "columns": columns,
        "x_labels": [_legend(across, column) for column in range(columns)],
        "y_labels": [_legend(optional[len(across) :], row) for row in range(rows)],
        "title": "",
        "params": {"Script": MATRIX_SCRIPT},
    }
    model = base.model
    return {
        "script": MATRIX_SCRIPT,
        "model": model,
        "cells": cells,
        "order": list(range(count)),
        "grids": [grid],
    }


def _legend(parts: Sequence[str], bits: int) -> str:
    """The parts a column (or row) adds, one per line; "—" for none."""
    chosen = [part for n, part in enumerate(parts) if bits & (1 << n)]
    return "\n".join(chosen) if chosen else "—"


def _as_bool(text: str) -> bool:
    return text == "true"


_TAGS: dict[str, tuple[str | None, Callable[[str], Any]]] = {
    "seed": ("seed", int),
    "subseed": ("variation_seed", int),
    "subseed_strength": ("variation_strength", float),
    "seed_resize_from_w": ("seed_resize_from_w", int),
    "seed_resize_from_h": ("seed_resize_from_h", int),
    "sampler_name": ("sampler", str),
    "batch_size": ("batch_size", int),
    "n_iter": ("batch_count", int),
    "steps": ("steps", int),
    "cfg_scale": ("cfg_scale", float),
    "width": ("width", int),
    "height": ("height", int),
    "tiling": ("tiling", _as_bool),
    # accepted as A1111 does, with no effect here: where files go, what the UI shows, saving switches
    "outpath_samples": (None, str),
    "outpath_grids": (None, str),
    "prompt_for_display": (None, str),
    "do_not_save_samples": (None, _as_bool),
    "do_not_save_grid": (None, _as_bool),
}


def parse_prompt_line(line: str, where: str = "line") -> dict[str, Any]:
    """One line's settings: {"prompt": line} when it has no `--`, else its options as request fields."""
    if "--" not in line:
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InvalidRequest(where, f"{exc}: {line!r}") from None
    fields: dict[str, Any] = {}
    position = 0
    while position < len(words):
        word = words[position]
        if not word.startswith("--"):
            raise InvalidRequest(where, f"{word!r} should be an option starting with --")
        if position + 1 >= len(words):
            raise InvalidRequest(where, f"{word} needs a value")
        tag = word[2:]
        if tag in ("prompt", "negative_prompt"):
            position += 1
            text = [words[position]]
            position += 1
            while position < len(words) and not words[position].startswith("--"):
                text.append(words[position])
                position += 1
            fields[tag] = " ".join(text)
            continue
        if tag not in _TAGS:
            allowed = ", ".join(f"--{name}" for name in ("prompt", "negative_prompt", *_TAGS))
            raise InvalidRequest(where, f"{word} is not an option here; the options are: {allowed}")
        name, convert = _TAGS[tag]
        try:
            value = convert(words[position + 1])
        except ValueError:
            raise InvalidRequest(where, f"{word}: {words[position + 1]!r} is not a number") from None
        if name is not None:
            fields[name] = value
        position += 2
    return fields


def parse_prompt_file(text: str) -> list[dict[str, Any]]:
    """The settings of each non-blank line (stripped), each naming its line number in its messages."""
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    return [parse_prompt_line(line, f"line {number}") for number, line in lines if line]


def prompts_from_file_plot(
    base: GenerationRequest,
    text: str,
    *,
    iterate_seed: bool = False,
    same_seed: bool = False,
    samplers: Sequence[str] = (),
    max_cells: int = 100,
) -> dict[str, Any]:
    """The `xyz` job's parameters for A1111's prompts from file: one cell per line, over `base`.
    `iterate_seed`: each line's seed is the previous one's + its images (A1111's "Iterate seed every line");
    `same_seed`: one random seed for every line; `samplers`: the known names, matched case-insensitively."""
    lines = parse_prompt_file(text)
    if not lines:
        raise InvalidRequest("file", "no prompts: the file has only blank lines")
    if len(lines) > max_cells:
        raise InvalidRequest("file", f"{len(lines)} prompts; at most {max_cells}")
    seed = base.seed
    if (iterate_seed or same_seed) and seed == -1:
        seed = resolve_seed(-1)
    known = {name.casefold(): name for name in samplers}
    cells = []
    for fields in lines:
        if "sampler" in fields:
            fields["sampler"] = known.get(fields["sampler"].casefold(), fields["sampler"])
        request = dataclasses.replace(base, **{"seed": seed, **fields})
        cells.append(request_to_json(with_fixed_seeds(request), None)[1])
        if iterate_seed:
            seed += base.batch_size * base.batch_count
    order = list(range(len(cells)))
    return {"script": FILE_SCRIPT, "model": base.model, "cells": cells, "order": order, "grids": []}
