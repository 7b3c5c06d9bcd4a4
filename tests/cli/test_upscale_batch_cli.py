"""`salon upscale` beyond "Scale by", end to end with tiny random-weight ESRGANs: "Scale to" with and without
crop, a second upscaler blended in, and A1111's batch (files and a folder in one job, names kept, each
source's infotext kept and A1111's postprocessing text added, a file that is not a picture reported by name
while the others go on), with bad values refused naming the option."""

from __future__ import annotations

from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext, save_image_with_infotext
from engine.upscaling.extras import read_postprocessing
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def _setup(tmp_path):
    data = tmp_path / "data"
    save_upscaler(tiny_esrgan(2), data / "models" / "RealESRGAN" / "2x-Tiny.pth")
    save_upscaler(tiny_esrgan(4, seed=7), data / "models" / "ESRGAN" / "4x-Other.safetensors")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    return ["--config", str(config), "upscale"]


def test_scale_to_crop_and_a_second_upscaler(tmp_path, capsys):
    upscale = _setup(tmp_path)
    source = save_image_with_infotext(
        Image.new("RGB", (40, 30), "blue"), tmp_path / "in.png", "a dog\nSteps: 20, Sampler: Euler, Seed: 9"
    )
    out = tmp_path / "o"
    assert main([*upscale, str(source), "--upscaler", "2x-tiny", "--to", "128x64", "--output", str(out)]) == 0
    assert "upscaled to 128x64 with 2x-Tiny" in capsys.readouterr().out
    (first,) = sorted(out.iterdir())
    with Image.open(first) as result:
        assert result.size == (128, 96)  # covers 128x64 by 3.2, kept whole
    assert read_postprocessing(first) == "Postprocess upscale to: 128x64, Postprocess upscaler: 2x-Tiny"

    args = [str(source), "--upscaler", "2x-Tiny", "--to", "128x64", "--crop", "--output", str(out)]
    assert main([*upscale, *args, "--upscaler-2", "4x-other", "--upscaler-2-visibility", "0.25"]) == 0
    assert "blending 4x-Other at 0.25" in capsys.readouterr().out
    second = sorted(out.iterdir())[-1]
    with Image.open(second) as result:
        assert result.size == (128, 64)
    assert read_postprocessing(second) == (
        "Postprocess upscale to: 128x64, Postprocess crop to: 128x64, Postprocess upscaler: 2x-Tiny, "
        "Postprocess upscaler 2: 4x-Other"
    )
    assert parse_infotext(read_infotext(second)).seed == 9

    assert main([*upscale, str(source), "--upscaler", "2x-Tiny", "--to", "wide"]) == 2
    assert "to: 'wide' is not WIDTHxHEIGHT, e.g. 1920x1080" in capsys.readouterr().err
    assert main([*upscale, str(source), "--upscaler", "2x-Tiny", "--to", "32x9000"]) == 2
    assert "to: 32x9000: each side must lie in 64..8192" in capsys.readouterr().err
    assert main([*upscale, str(source), "--upscaler", "2x-Tiny", "--upscaler-2", "Missing"]) == 2
    assert "upscaler_2: no upscaler named 'Missing'" in capsys.readouterr().err
    bad_visibility = ["--upscaler-2", "4x-Other", "--upscaler-2-visibility", "2"]
    assert main([*upscale, str(source), "--upscaler", "2x-Tiny", *bad_visibility]) == 2
    assert "upscaler_2_visibility: 2 is outside 0..1" in capsys.readouterr().err


def test_a_batch_of_files_and_a_folder_keeps_names_and_skips_what_is_not_a_picture(tmp_path, capsys):
    upscale = _setup(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    save_image_with_infotext(
        Image.new("RGB", (24, 16), "red"), folder / "cat.png", "a cat\nSteps: 20, Sampler: Euler, Seed: 5"
    )
    Image.new("RGB", (16, 16), "green").save(folder / "plain.jpg")
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".hidden.png").write_bytes(b"")
    loose = save_image_with_infotext(
        Image.new("RGB", (20, 20), "white"), tmp_path / "cat.png", "a cat\nSteps: 20, Sampler: Euler, Seed: 6"
    )
    out = tmp_path / "out"

    assert (
        main(
            [*upscale, str(folder), str(loose), "--upscaler", "2x-Tiny", "--scale", "2", "--output", str(out)]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert f"skipped {folder / 'notes.txt'}: " in captured.err
    assert "upscaled 3 pictures by 2 with 2x-Tiny" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["cat-1.png", "cat.png", "plain.png"]
    with Image.open(out / "cat.png") as first, Image.open(out / "plain.png") as plain:
        assert first.size == (48, 32) and plain.size == (32, 32)
    assert parse_infotext(read_infotext(out / "cat.png")).seed == 5
    assert parse_infotext(read_infotext(out / "cat-1.png")).seed == 6  # the loose file, named apart
    assert (
        read_postprocessing(out / "plain.png") == "Postprocess upscale by: 2, Postprocess upscaler: 2x-Tiny"
    )

    # run again into the same folder: nothing is overwritten
    assert main([*upscale, str(folder), "--upscaler", "2x-Tiny", "--scale", "1", "--output", str(out)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "cat-1.png",
        "cat-2.png",
        "cat.png",
        "plain-1.png",
        "plain.png",
    ]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no")
    assert main([*upscale, str(empty), "--upscaler", "2x-Tiny"]) == 2
    assert "image: no picture to upscale among the files given" in capsys.readouterr().err
    assert main([*upscale, str(folder), "missing", "--upscaler", "2x-Tiny"]) == 2
    assert "image: missing is neither a file nor a folder" in capsys.readouterr().err
