"""Training inputs: images checked by content, captions, zips (and zip bombs), names and overwrites."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from commands.training import caption_from_name, images_from_files, images_from_zip, training_job
from config import load_settings
from core.errors import InvalidRequest
from engine.models.trained_files import OWNER_SUFFIX


@pytest.fixture
def settings(tmp_path):
    return load_settings(None, data_dir=tmp_path / "data")


def _png(colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_captions_come_from_txt_files_else_from_names(settings):
    found = images_from_files(
        [
            ("00012-a_red_box.png", _png()),
            ("cat.png", _png()),
            ("cat.txt", b"a cat, sitting\n"),
            ("notes.md", b"x"),
        ],
        settings,
    )
    assert [caption for _, caption in found] == ["a red box", "a cat, sitting"]
    assert caption_from_name("00001-2-my_style") == "my style"


def test_a_non_image_is_refused_by_content_whatever_its_name(settings):
    with pytest.raises(InvalidRequest, match="images: fake.png"):
        images_from_files([("good.png", _png()), ("fake.png", b"not an image at all")], settings)
    with pytest.raises(InvalidRequest, match="no images found"):
        images_from_files([("readme.txt", b"hello")], settings)


def test_zips_are_read_in_memory_and_bombs_refused(settings):
    found = images_from_zip(
        _zip({"set/one.png": _png(), "set/one.txt": b"one", "../../two.png": _png()}), settings
    )
    assert sorted(caption for _, caption in found) == ["one", "two"]
    with pytest.raises(InvalidRequest, match="zip bomb"):
        images_from_zip(_zip({"bomb.png": b"\0" * (64 * 1024 * 1024)}), settings)
    with pytest.raises(InvalidRequest, match="not a zip"):
        images_from_zip(b"PK\x03\x04 broken", settings)
    with pytest.raises(InvalidRequest, match="images: x.png"):
        images_from_zip(_zip({"x.png": b"GIF89a but not really"}), settings)


def test_names_and_overwrites(settings):
    images = images_from_files([("a.png", _png())], settings)
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(InvalidRequest, match="name"):
            training_job(settings, "lora", bad, images, "ann")
    target = settings.lora_dir / "mine.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"installed by hand")
    with pytest.raises(InvalidRequest, match="already exists and is not yours"):
        training_job(settings, "lora", "mine", images, "ann", overwrite=True)
    target.with_name(target.name + OWNER_SUFFIX).write_text(json.dumps({"owner": "ann"}))
    with pytest.raises(InvalidRequest, match="set overwrite"):
        training_job(settings, "lora", "mine", images, "ann")
    with pytest.raises(InvalidRequest, match="not yours"):
        training_job(settings, "lora", "mine", images, "bob", overwrite=True)
    job = training_job(settings, "lora", "mine", images, "ann", overwrite=True, options={"steps": 3})
    assert job.params["name"] == "mine" and job.params["steps"] == 3 and len(job.params["images"]) == 1
    assert target.read_bytes() == b"installed by hand"  # nothing written until the job succeeds
