"""`salon upscale` end to end with a tiny random-weight ESRGAN: a file and a catalog image upscaled by a queue
job (A1111's postprocessing text, the input's own infotext kept, the catalog's "upscale" relation), `salon
models` listing upscalers with their hashes, bad input refused naming the option, and `--hires-upscaler`
taking a model upscaler."""

from __future__ import annotations

from PIL import Image

from cli.main import main
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext, save_image_with_infotext
from engine.models.registry import sha256_file
from engine.upscaling.extras import read_postprocessing
from tests.tiny_upscalers import save_upscaler, tiny_esrgan


def test_upscale_a_file_and_a_catalog_image(tmp_path, capsys):
    data = tmp_path / "data"
    model = save_upscaler(tiny_esrgan(2), data / "models" / "RealESRGAN" / "2x-Tiny.pth")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    source = save_image_with_infotext(
        Image.new("RGB", (24, 16), "red"), tmp_path / "in.png", "a cat\nSteps: 20, Sampler: Euler, Seed: 5"
    )

    args = ["--config", str(config), "upscale", str(source), "--upscaler", "2x-tiny", "--output"]
    assert main([*args, str(tmp_path / "o"), "--scale", "3"]) == 0
    out = capsys.readouterr().out
    assert "upscaled by 3 with 2x-Tiny" in out
    copied = tmp_path / "o" / "00000-00001-in.png"
    with Image.open(copied) as result:
        assert result.size == (72, 48)
    assert read_postprocessing(copied) == "Postprocess upscale by: 3, Postprocess upscaler: 2x-Tiny"
    assert parse_infotext(read_infotext(copied)).seed == 5  # the input's own parameters, as A1111 keeps them

    assert main(["--config", str(config), "models"]) == 0
    listed = capsys.readouterr().out
    assert "upscaler" in listed and "2x-Tiny" in listed and sha256_file(model)[:10] in listed

    assert main(["--config", str(config), "upscale", str(source), "--upscaler", "4x-UltraSharp"]) == 2
    assert "no upscaler named '4x-UltraSharp'; installed: 2x-Tiny" in capsys.readouterr().err
    assert (
        main(["--config", str(config), "upscale", str(source), "--upscaler", "2x-Tiny", "--scale", "9"]) == 2
    )
    assert "scale: 9 is outside 1..8" in capsys.readouterr().err
    assert main(["--config", str(config), "upscale", "nothing.png", "--upscaler", "2x-Tiny"]) == 2
    assert "image: nothing.png is neither a file nor a catalog image's id" in capsys.readouterr().err

    # a catalog image (the first upscale's result is image 1): the new one is its child, relation "upscale"
    assert main(["--config", str(config), "upscale", "1", "--upscaler", "2x-Tiny", "--scale", "1.5"]) == 0
    from app.oneshot import with_catalog
    from config import load_settings
    from jobs.running import LOCAL_GUILD

    async def second(catalog):
        return await catalog.get(LOCAL_GUILD, 2)

    record = with_catalog(load_settings(config), second)
    assert record is not None and (record.parent_id, str(record.relation)) == (1, "upscale")
    assert (record.width, record.height) == (108, 72)


def test_hires_fix_takes_a_model_upscaler_by_name(tmp_path, capsys):
    data = tmp_path / "data"
    save_upscaler(tiny_esrgan(2), data / "models" / "ESRGAN" / "2x-Tiny.safetensors")
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{data}"\n')
    args = [
        "--config",
        str(config),
        "imagine",
        "a red circle",
        "--steps",
        "2",
        "--size",
        "64x64",
        "--seed",
        "3",
    ]
    assert main([*args, "--hires", "2", "--hires-upscaler", "2x-tiny", "--output", str(tmp_path / "o")]) == 0
    info = parse_infotext(read_infotext(tmp_path / "o" / "00000-3.png"))
    assert info.params["Hires upscaler"] == "2x-Tiny"  # spelled as installed
    capsys.readouterr()
    assert main([*args, "--hires", "2", "--hires-upscaler", "Bicubic"]) == 2
    err = capsys.readouterr().err
    assert "hires_upscaler: no upscaler named 'Bicubic'; installed: 2x-Tiny" in err and "Lanczos" in err


def test_the_sources_other_text_chunks_are_carried_as_a1111_extras_does(tmp_path, capsys):
    """A1111's Extras copies the source's PNG text (modules/postprocessing.py passes `image.info` on as
    `existing_pnginfo`): a ComfyUI picture keeps its `prompt` and `workflow`, one picture or a batch; the
    carried text is capped (MAX_CARRIED_TEXT), so a picture stuffed with text cannot bloat every result."""
    from PIL import PngImagePlugin

    from commands.options import MAX_CARRIED_TEXT

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
    info.add_text("workflow", '{"nodes": []}', zip=True)
    info.add_text("Title", "ein Bild – übergroß")  # not Latin-1: iTXt
    info.add_text("padding", "x" * (MAX_CARRIED_TEXT - 100), zip=True)
    info.add_text("late", "left out: no room")
    info.add_text("postprocessing", "an old one")  # written anew
    source = tmp_path / "comfy.png"
    Image.new("RGB", (16, 16), "blue").save(source, pnginfo=info)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (16, 16), "green").save(plain)

    base = ["--config", str(config), "upscale", "--upscaler", "Lanczos", "--scale", "2", "--output"]
    assert main([*base, str(tmp_path / "one"), str(source)]) == 0
    assert main([*base, str(tmp_path / "batch"), str(source), str(plain)]) == 0
    capsys.readouterr()
    results = sorted((tmp_path / "one").glob("*.png")) + sorted((tmp_path / "batch").glob("*.png"))
    assert len(results) == 3
    for path in results:
        with Image.open(path) as result:
            texts = dict(result.info)
        assert texts["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
        if "plain" in path.name:
            assert "prompt" not in texts
            continue
        assert texts["prompt"] == '{"3": {"class_type": "KSampler"}}' and texts["workflow"] == '{"nodes": []}'
        assert texts["Title"] == "ein Bild – übergroß" and len(texts["padding"]) == MAX_CARRIED_TEXT - 100
        assert "late" not in texts
