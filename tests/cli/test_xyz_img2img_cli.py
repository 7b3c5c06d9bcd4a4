"""`salon xyz --init-image`: an img2img X/Y/Z plot from the command line on the demo model (64², 2 steps)."""

from __future__ import annotations

from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext


def test_an_img2img_plot_over_denoising(tmp_path, capsys):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    picture = tmp_path / "start.png"
    Image.new("RGB", (72, 64), (30, 90, 200)).save(picture)
    out = tmp_path / "out"
    assert main(["--config", str(config), "xyz", "a red circle", "--init-image", str(picture),
                 "--x", "Denoising=0.2,0.5", "--steps", "2", "--seed", "7", "--output", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "1 grid(s) and 2 image(s)" in printed and "X Type: Denoising" in printed
    cells = sorted(path for path in out.glob("*.png") if "grid" not in path.name)
    assert len(cells) == 2
    infos = [parse_infotext(read_infotext(path)) for path in cells]
    assert [info.params["Denoising strength"] for info in infos] == ["0.2", "0.5"]
    assert all(info.size == (72, 64) and info.seed == 7 for info in infos)  # the input image's size


def test_img2img_options_need_an_init_image(tmp_path, capsys):
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["--config", str(config), "xyz", "a cat", "--x", "Seed=1,2", "--strength", "0.5"]) == 2
    assert "strength: applies to an img2img plot: give --init-image FILE" in capsys.readouterr().err
    missing = tmp_path / "nope.png"
    assert (
        main(["--config", str(config), "xyz", "a cat", "--x", "Seed=1,2", "--init-image", str(missing)]) == 2
    )
    assert "init_image" in capsys.readouterr().err
