"""`salon xyz`, `prompt-matrix` and `prompts-from-file` from the command line on the demo model (64², 1 step)."""

from __future__ import annotations

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext


def _config(tmp_path):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return str(config)


def test_prompts_from_file_and_refusals(tmp_path, capsys):
    config = _config(tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\n--prompt a blue square --seed 4 --sampler_name euler\n")
    out = tmp_path / "out"
    assert main(["--config", config, "prompts-from-file", str(prompts), "--steps", "1", "--size", "64x64",
                 "--output", str(out)]) == 0  # fmt: skip
    assert "0 grid(s) and 2 image(s)" in capsys.readouterr().out
    second = parse_infotext(read_infotext(sorted(out.glob("*.png"))[1]))
    assert second.prompt == "a blue square" and second.params["Seed"] == "4"
    assert second.params["Sampler"] == "Euler"
    assert main(["--config", config, "xyz", "a cat", "--x", "Steps=1-10 (2)"]) == 2
    assert "x: Steps: '1-10 (2)' is not a whole number" in capsys.readouterr().err.replace("\n", " ")
    assert main(["--config", config, "prompt-matrix", "a cat", "--size", "64x64"]) == 2
    assert "parts separated by |" in capsys.readouterr().err.replace("\n", " ")
