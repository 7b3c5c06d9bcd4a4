"""User text printed as typed (issue 18, item 16): the console library turned `:x:` into an emoji
(`<lora:x:1>` printed as `<lora❌1>`) and `[red]`, `[bold]…[/bold]` into styles; a stray `[/bold]` in an
error message was a markup error. Every command that prints a prompt, a path or an error shows it verbatim."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import cli.output
from cli.main import main
from tests.engine.test_lora_embeddings import write_kohya_lora

PROMPT = r"<lora:x:1> :smile: [red] [bold]x[/bold] \["
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


@pytest.fixture
def folder(tmp_path: Path, engine) -> Path:
    """A data folder with a LoRA called `x` for the demo model; returns its config file."""
    loras = tmp_path / "data" / "models" / "Lora"
    loras.mkdir(parents=True)
    model = engine.load(None)
    write_kohya_lora(loras / "x.safetensors", model.unet, model.pipe.text_encoder)
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_model = "salon-demo-shapes"\n')
    return config


def test_prompts_with_markup_and_emoji_codes_print_verbatim_everywhere(folder, tmp_path, capsys, monkeypatch):
    """Item 16: imagine, pnginfo, browse (list and --show) and queue print `<lora:x:1> :smile: [red]…`."""
    monkeypatch.setattr(cli.output.console, "_width", 400)  # whole cells in the tables
    salon = ["--config", str(folder)]
    out_dir = tmp_path / "out"
    assert main([*salon, "imagine", PROMPT, "--steps", "1", "--seed", "3", "-o", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert PROMPT in printed and not EMOJI.search(printed)
    assert main([*salon, "pnginfo", str(out_dir / "00000-3.png")]) == 0
    printed = capsys.readouterr().out
    assert f"{PROMPT}\nSteps: 1" in printed and not EMOJI.search(printed)
    assert main([*salon, "browse"]) == 0
    listing = capsys.readouterr().out
    assert PROMPT in listing and not EMOJI.search(listing)
    image_id = next(line.split("│")[1].strip() for line in listing.splitlines() if PROMPT in line)
    assert main([*salon, "browse", "--show", image_id]) == 0
    assert PROMPT in capsys.readouterr().out
    assert main([*salon, "queue"]) == 0
    assert PROMPT[:40] in capsys.readouterr().out  # the queue shows a prompt's first 40 characters


def test_error_messages_carrying_user_text_print_verbatim(folder, capsys):
    """Item 16: an option value with markup and emoji codes comes back as typed in the one-line error."""
    sampler = "[/bold] :x: [red]"
    assert main(["--config", str(folder), "imagine", "a cat", "--sampler", sampler]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error sampler: unknown sampler '{sampler}'") and err.count("\n") == 1


def test_the_command_line_prints_no_console_markup():
    """Item 16: no rich markup in the CLI's string literals (the consoles print literally; style with Text)."""
    markup = re.compile(r"\[/?(?:red|yellow|green|blue|bold|dim|italic|cyan|magenta)\b[^\]]*\]")
    found = []
    for path in Path(cli.output.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [(path.name, node.lineno, hit) for hit in markup.findall(node.value)]
    assert found == []
