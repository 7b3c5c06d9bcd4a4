"""A1111 infotext: exact format, A1111's parser quirks, round trips, and reading/writing real image files."""

from __future__ import annotations

import io
import struct
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import InvalidImage, InvalidRequest
from engine.infotext import (
    INFOTEXT_KEY_ORDER,
    PARAM_PATTERN,
    Infotext,
    _find_params,
    check_prompt,
    format_infotext,
    normalize_prompt,
    parse_infotext,
    quote,
    split_sampler_name,
)
from engine.infotext_files import (
    decode_user_comment,
    exif_with_user_comment,
    read_infotext,
    read_infotext_from_image,
    save_image_with_infotext,
)
from tests.corpus import CORPUS  # noqa: E402

A1111_DIR = CORPUS / "AUTOMATIC1111"
OTHER_GENERATORS = sorted(
    path for name in ("ComfyUI", "Fooocus", "InvokeAI", "NovelAI") for path in (CORPUS / name).glob("*.png")
)
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="tests/data/corpus not present")

SPEC_PARAMS_LINE = (
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 396135060, Size: 512x512, "
    "Model hash: cc6cb27103, Model: v1-5-pruned-emaonly, Version: v1.9.0"
)
# What the corpus files hold (automatic1111_cropped.png `parameters`, .jpg EXIF, text_after_idat.png zTXt).
DUCK = (
    "photo of a duck\nNegative prompt: monochrome\nSteps: 15, Sampler: UniPC, CFG scale: 5, Seed: 235284042, "
    "Size: 512x400, Model hash: c0d1994c73, Model: realistic_realisticVisionV20_v20"
)
# Decoded by hand from the alpha-channel LSBs ("stealth_pngcomp", gzip) of automatic1111_stealth.png.
STEALTH = (
    "a circle\nNegative prompt: a square\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
    "Seed: 2015833630, Size: 64x64, Model hash: 15012c538f, Model: realisticVisionV51_v51VAE, Clip skip: 2, "
    "Version: v1.9.4-169-ga30b19dd"
)
UNICODE_INFOTEXT = (
    'a "quoted" café, 日本の猫 🐈: (masterpiece:1.2)\nsecond line\n'
    "Negative prompt: ugly, 低品質\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
    'Lora hashes: "add_detail: 7c6bad76eb54, vitalik: 1a2b3c4d5e6f"'
)

# --- strategies

TRICKY = ',:"\\\n\r\t ' + "aZ0-/_é日本🙂\u2028\x85"
FRAGMENTS = ("Negative prompt:", "Steps: 20, Sampler: Euler, Seed: 1", ", ", ": ", '"', "\\", "\n", "8x8")
tricky_text = st.lists(
    st.one_of(st.text(alphabet=TRICKY, max_size=6), st.sampled_from(FRAGMENTS), st.text(max_size=4)),
    max_size=6,
).map("".join)
keys = st.one_of(
    st.sampled_from(INFOTEXT_KEY_ORDER + ("Version", "User")),
    st.from_regex(r"\w[\w \-/]{1,12}", fullmatch=True),  # any key A1111's reader accepts
)
values = st.one_of(tricky_text, st.integers(), st.floats(allow_nan=False, allow_infinity=False))


def representable(text: str) -> bool:
    """Whether no line would be read as the start of the negative prompt."""
    return not any(line.strip().startswith("Negative prompt:") for line in text.split("\n"))


def expected_order(params: dict[str, object]) -> list[str]:
    """A1111's order: known keys in INFOTEXT_KEY_ORDER, others as given, Version and User last."""
    present = [key for key, value in params.items() if value is not None]
    known = [key for key in INFOTEXT_KEY_ORDER if key in present]
    last = [key for key in ("Version", "User") if key in present]
    return known + [key for key in present if key not in known and key not in last] + last


# --- writer


def test_spec_example_is_written_byte_for_byte() -> None:
    params = {
        "Version": "v1.9.0",
        "Model": "v1-5-pruned-emaonly",
        "Seed": 396135060,
        "Steps": 20,
        "Size": "512x512",
        "Sampler": "DPM++ 2M",
        "CFG scale": 7,
        "Model hash": "cc6cb27103",
        "Schedule type": "Karras",
        "Clip skip": None,
    }
    text = format_infotext("a photo of a cat", "blurry, lowres", params)
    assert text == f"a photo of a cat\nNegative prompt: blurry, lowres\n{SPEC_PARAMS_LINE}"


def test_spec_example_parses() -> None:
    info = parse_infotext(f"a photo of a cat\nNegative prompt: blurry, lowres\n{SPEC_PARAMS_LINE}")
    assert (info.prompt, info.negative_prompt) == ("a photo of a cat", "blurry, lowres")
    assert list(info.params) == [
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "Version",
    ]  # fmt: skip
    assert (info.steps, info.sampler, info.schedule_type, info.cfg_scale) == (20, "DPM++ 2M", "Karras", 7.0)
    assert (info.seed, info.width, info.height, info.size) == (396135060, 512, 512, (512, 512))
    assert (info.model, info.model_hash, info.version) == ("v1-5-pruned-emaonly", "cc6cb27103", (1, 9, 0))
    assert info.params["Size"] == "512x512"
    assert info.to_text() == f"a photo of a cat\nNegative prompt: blurry, lowres\n{SPEC_PARAMS_LINE}"


def test_negative_line_is_omitted_when_empty_and_text_is_stripped() -> None:
    params = {"Steps": 20, "Sampler": "Euler", "Seed": 1}
    assert format_infotext("cat", "", params) == "cat\nSteps: 20, Sampler: Euler, Seed: 1"
    assert format_infotext("", "", params) == "Steps: 20, Sampler: Euler, Seed: 1"
    assert format_infotext("", "bad", params) == "Negative prompt: bad\nSteps: 20, Sampler: Euler, Seed: 1"


def test_extra_keys_follow_known_keys_and_version_user_come_last() -> None:
    params = {"User": "bob", "Hires upscale": 2, "Version": "v1.10.1", "Tiling": True, "Steps": 30, "Seed": 5}
    line = format_infotext("x", "", params).split("\n")[-1]
    assert line == "Steps: 30, Seed: 5, Tiling: True, Hires upscale: 2, Version: v1.10.1, User: bob"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        (7, "7"),
        (0.5, "0.5"),
        ("a, b", '"a, b"'),
        ("name: 0123", '"name: 0123"'),
        ("two\nlines", '"two\\nlines"'),
        ("日本: 猫", '"日本: 猫"'),  # ensure_ascii=False, as A1111
        ('"starts with quote', '"\\"starts with quote"'),
        (" leading", '" leading"'),
        ("trailing ", '"trailing "'),
        ("", '""'),
        ('mid"quote', 'mid"quote'),
    ],
)
def test_quote(value: object, written: str) -> None:
    assert quote(value) == written


def test_lora_hashes_are_one_quoted_value() -> None:
    loras = "add_detail: 7c6bad76eb54, vitalik: 1a2b3c4d5e6f"
    params = {"Steps": 20, "Seed": 1, "Lora hashes": loras, "Size": "8x8"}
    text = format_infotext("p", "", params)
    assert text.endswith('Size: 8x8, Lora hashes: "add_detail: 7c6bad76eb54, vitalik: 1a2b3c4d5e6f"')
    assert parse_infotext(text).params["Lora hashes"] == "add_detail: 7c6bad76eb54, vitalik: 1a2b3c4d5e6f"


@pytest.mark.parametrize(
    ("prompt", "negative", "option"),
    [
        ("cat\nNegative prompt: dog", "", "prompt"),
        ("  Negative prompt: dog", "", "prompt"),
        ("cat", "dog\nNegative prompt: x", "negative_prompt"),
    ],
)
def test_a_negative_prompt_line_inside_a_prompt_is_refused(prompt: str, negative: str, option: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        format_infotext(prompt, negative, {"Steps": 1, "Seed": 1, "Sampler": "Euler"})
    assert caught.value.option == option
    assert "Negative prompt:" in caught.value.message


def test_check_prompt_is_available_before_queuing() -> None:
    check_prompt("prompt", "a cat\nNegative space, minimal")
    with pytest.raises(InvalidRequest, match="line 2"):
        check_prompt("prompt", "a cat\n Negative prompt: dog")


def test_writer_refuses_what_the_reader_could_not_read_back() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        format_infotext("cat", "", {"Steps": 20, "Seed": None, "Sampler": "Euler"})
    with pytest.raises(ValueError, match="key"):
        format_infotext("cat", "", {"Steps": 20, "Seed": 1, "bad:key": 1})


def test_normalize_prompt() -> None:
    assert normalize_prompt("  a cat \r\n  on a mat\r\rend \n") == "a cat\non a mat\n\nend"
    assert normalize_prompt("\n\n x \n") == "x"


# --- round trips (property based)


@settings(max_examples=300, deadline=None)
@given(
    prompt=tricky_text.map(normalize_prompt),
    negative=tricky_text.map(normalize_prompt),
    given_params=st.dictionaries(keys, values, min_size=3, max_size=8),
    unset=st.lists(keys, max_size=2),
)
def test_format_then_parse_gives_everything_back(
    prompt: str, negative: str, given_params: dict[str, object], unset: list[str]
) -> None:
    assume(representable(prompt) and representable(negative))
    params = given_params | {key: None for key in unset if key not in given_params}  # None: not written
    info = parse_infotext(format_infotext(prompt, negative, params))
    assert info.prompt == prompt
    assert info.negative_prompt == negative
    assert info.params == {key: str(value) for key, value in params.items() if value is not None}
    assert list(info.params) == expected_order(params)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(), tricky_text, st.lists(tricky_text, max_size=5).map("\n".join)))
def test_parse_never_raises(text: str) -> None:
    info = parse_infotext(text)
    assert isinstance(info, Infotext)
    for name in ("steps", "sampler", "schedule_type", "cfg_scale", "seed", "width", "height", "model",
                 "model_hash", "clip_skip", "denoising_strength", "variation_seed", "variation_seed_strength",
                 "version"):  # fmt: skip
        getattr(info, name)  # typed views never raise either


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=TRICKY + "abc:", max_size=40))
def test_linear_scanner_equals_a1111_regex(line: str) -> None:
    assert _find_params(line) == PARAM_PATTERN.findall(line)


@pytest.mark.parametrize("line", ["a" * 200_000, " " * 200_000, 'ab: "\\", ' * 20_000, "a-" * 100_000])
def test_hostile_lines_parse_in_linear_time(line: str) -> None:
    started = time.perf_counter()
    parse_infotext("prompt\n" + line)  # A1111's regex takes minutes on these (quadratic backtracking)
    # Linear parsing takes well under a second; the bound only has to catch minutes, even on a loaded machine.
    assert time.perf_counter() - started < 10.0


# --- A1111 parser behaviour


def test_last_line_with_fewer_than_three_items_belongs_to_the_prompt() -> None:
    info = parse_infotext("a cat\nstyle: oil, mood: calm")
    assert info.prompt == "a cat\nstyle: oil, mood: calm"
    assert info.params == {}
    prompt_only = parse_infotext("just a prompt")
    assert (prompt_only.prompt, prompt_only.negative_prompt, prompt_only.params) == ("just a prompt", "", {})


def test_negative_prompt_lines_and_strips() -> None:
    info = parse_infotext("  a\n  b  \nNegative prompt:   c  \n d\nSteps: 1, Seed: 2, Sampler: Euler")
    assert (info.prompt, info.negative_prompt) == ("a\nb", "c\nd")


def test_quoted_values_are_json_decoded_with_raw_fallback() -> None:
    info = parse_infotext('p\nSteps: 1, Aa: "x, \\"y\\"", Bb: "bad \\q", Cc: "", Seed: 3, X: 1')
    assert info.params["Aa"] == 'x, "y"'
    assert info.params["Bb"] == '"bad \\q"'  # invalid JSON escape: kept as written
    assert info.params["Cc"] == ""
    assert "X" not in info.params  # keys need 2+ characters (`\w[\w \-/]+`)


def test_empty_values_are_dropped_and_later_duplicates_win() -> None:
    info = parse_infotext("p\nSteps: 20, Sampler: , Seed: 1, Steps: 30")
    assert "Sampler" not in info.params
    assert list(info.params) == ["Steps", "Seed"] and info.steps == 30


def test_defaults_when_absent() -> None:
    info = parse_infotext("p\nSteps: 20, CFG scale: 7, Seed: 1")
    assert info.schedule_type == "Automatic"
    assert info.clip_skip == 1
    assert info.sampler is None and info.model is None and info.size is None and info.version is None
    assert info.denoising_strength is None and info.variation_seed is None


def test_typed_values() -> None:
    info = parse_infotext(
        "p\nSteps: 20.0, CFG scale: 7.5, Seed: 4294967295, Denoising strength: 0.45, Variation seed: 12, "
        "Variation seed strength: 0.1, Clip skip: 2, Size: 768x512"
    )
    assert (info.steps, info.cfg_scale, info.seed) == (20, 7.5, 4294967295)
    assert (info.denoising_strength, info.variation_seed, info.variation_seed_strength) == (0.45, 12, 0.1)
    assert (info.clip_skip, info.width, info.height) == (2, 768, 512)
    broken = parse_infotext("p\nSteps: many, CFG scale: nan, Seed: 1.5, Size: 512 x 512, Version: dev")
    assert (broken.steps, broken.cfg_scale, broken.seed, broken.size, broken.version) == (None,) * 5


@pytest.mark.parametrize(
    ("version", "parsed"),
    [
        ("v1.9.0", (1, 9, 0)),
        ("v1.10.1", (1, 10, 1)),
        ("1.6.0", (1, 6, 0)),
        ("v1.9.4-169-ga30b19dd", (1, 9, 4)),
        ("f0.0.17v1.8.0rc-latest-276-g29be1da7", None),
        ("v2.0", (2, 0)),
        ("latest", None),
    ],
)
def test_version(version: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_infotext(f"p\nSteps: 1, Seed: 1, Version: {version}").version == parsed


def test_stealth_infotext_from_corpus_parses() -> None:
    info = parse_infotext(STEALTH)
    assert (info.prompt, info.negative_prompt) == ("a circle", "a square")
    assert (info.sampler, info.schedule_type, info.clip_skip) == ("Euler", "Automatic", 2)
    assert (info.seed, info.size, info.model_hash) == (2015833630, (64, 64), "15012c538f")
    assert info.version == (1, 9, 4)


# --- legacy sampler names


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("Euler a", ("Euler a", None)),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
        ("LMS Karras", ("LMS", "Karras")),
        ("DPM++ SDE Karras", ("DPM++ SDE", "Karras")),
        ("DPM2 a Karras", ("DPM2 a", "Karras")),
        ("DPM++ 2M SDE Heun", ("DPM++ 2M SDE Heun", None)),
        ("Euler SGM Uniform", ("Euler", "SGM Uniform")),
        ("Euler sgm_uniform", ("Euler", "SGM Uniform")),
        ("Euler Uniform", ("Euler", "Uniform")),
        ("DPM++ 2M karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Align Your Steps", ("DPM++ 2M", "Align Your Steps")),
        ("Euler Polyexponential", ("Euler", "Polyexponential")),
        ("DDIM", ("DDIM", None)),
        ("Karras", ("Karras", None)),
        ("UniPC", ("UniPC", None)),
    ],
)
def test_split_sampler_name(name: str, split: tuple[str, str | None]) -> None:
    assert split_sampler_name(name) == split


def test_legacy_sampler_in_infotext() -> None:
    info = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert (info.sampler, info.schedule_type) == ("DPM++ 2M", "Karras")
    assert info.params["Sampler"] == "DPM++ 2M Karras"  # raw text kept as read


def test_schedule_type_key_wins_over_combined_name() -> None:
    info = parse_infotext("p\nSteps: 20, Sampler: DPM++ 2M Karras, Schedule type: Exponential, Seed: 1")
    assert (info.sampler, info.schedule_type) == ("DPM++ 2M", "Exponential")
    lower = parse_infotext("p\nSteps: 20, Sampler: Euler, Schedule type: sgm_uniform, Seed: 1")
    assert lower.schedule_type == "SGM Uniform"


# --- reading real files


@needs_corpus
@pytest.mark.parametrize("name", ["automatic1111_cropped.png", "automatic1111_cropped.jpg"])
def test_real_a1111_files(name: str) -> None:
    text = read_infotext(A1111_DIR / name)
    assert text == DUCK
    info = parse_infotext(text)
    assert info.prompt.startswith("photo of a duck") and info.negative_prompt == "monochrome"
    assert (info.steps, info.sampler, info.schedule_type, info.cfg_scale) == (15, "UniPC", "Automatic", 5.0)
    assert (info.seed, info.width, info.height) == (235284042, 512, 400)
    assert (info.model_hash, info.model) == ("c0d1994c73", "realistic_realisticVisionV20_v20")
    assert info.version is None and info.clip_skip == 1
    with Image.open(A1111_DIR / name) as image:
        assert read_infotext_from_image(image) == DUCK


@needs_corpus
def test_text_chunk_after_idat_is_found() -> None:
    path = CORPUS / "bad_images" / "text_after_idat.png"
    assert read_infotext(path) == DUCK  # zTXt after the image data, read without decoding pixels
    with Image.open(path) as image:
        assert read_infotext_from_image(image) == DUCK  # loads the image to reach the trailing chunk


@needs_corpus
def test_stealth_file_has_no_text_metadata() -> None:
    assert read_infotext(A1111_DIR / "automatic1111_stealth.png") is None  # alpha-LSB info is not read


@needs_corpus
@pytest.mark.parametrize("path", sorted((CORPUS / "bad_images").glob("*")), ids=lambda p: p.name)
def test_bad_images_never_crash(path: Path) -> None:
    try:
        text = read_infotext(path)
    except InvalidImage as error:
        assert error.option == "image"
        return
    assert text is None or isinstance(text, str)


@needs_corpus
def test_empty_file_is_refused_clearly() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        read_infotext(CORPUS / "bad_images" / "empty_file.png")


@needs_corpus
@pytest.mark.parametrize("path", OTHER_GENERATORS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_other_generators_do_not_crash_the_reader(path: Path) -> None:
    text = read_infotext(path)
    assert text is None or isinstance(text, str)
    if text is not None:
        parse_infotext(text)
    with Image.open(path) as image:
        assert read_infotext_from_image(image) == text


@needs_corpus
def test_fooocus_writes_json_into_parameters() -> None:
    text = read_infotext(CORPUS / "Fooocus" / "fooocus1_cropped.png")
    assert text is not None and text.startswith('{"adm_guidance"')


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@needs_corpus
def test_damaged_copies_of_real_files_raise_only_invalid_image(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["automatic1111_cropped.png", "automatic1111_cropped.jpg"]))
    raw = bytearray((A1111_DIR / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(bytes(raw))
        try:
            result = read_infotext(path)
        except InvalidImage:
            return
        assert result is None or isinstance(result, str)


def test_declared_bomb_is_refused_when_reading_metadata(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_size(65535, 65535))
    with pytest.raises(InvalidImage, match="too many pixels"):
        read_infotext(path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_infotext(tmp_path / "nope.png")


# --- writing files


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".webp"])
def test_save_then_read_round_trip(tmp_path: Path, suffix: str) -> None:
    image = Image.new("RGB", (16, 16), "red")
    path = save_image_with_infotext(image, tmp_path / f"out{suffix}", UNICODE_INFOTEXT)
    assert path == tmp_path / f"out{suffix}"
    assert read_infotext(path) == UNICODE_INFOTEXT
    with Image.open(path) as image:
        assert image.size == (16, 16)
        assert read_infotext_from_image(image) == UNICODE_INFOTEXT
    info = parse_infotext(read_infotext(path) or "")
    assert info.prompt.startswith('a "quoted" café') and info.negative_prompt == "ugly, 低品質"
    assert info.params["Lora hashes"] == "add_detail: 7c6bad76eb54, vitalik: 1a2b3c4d5e6f"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.parametrize("text", [UNICODE_INFOTEXT, DUCK])
def test_png_chunk_key_is_parameters(tmp_path: Path, text: str) -> None:
    path = save_image_with_infotext(Image.new("RGBA", (8, 8)), tmp_path / "a.png", text)
    with Image.open(path) as image:
        assert image.info["parameters"] == text
        assert image.mode == "RGBA"
    chunk = b"tEXtparameters\0" if text.isascii() else b"iTXtparameters\0"  # iTXt when not Latin-1 (Pillow)
    assert chunk in path.read_bytes()


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_exif_user_comment_is_unicode_undefined_as_piexif_writes(tmp_path: Path, suffix: str) -> None:
    path = save_image_with_infotext(Image.new("RGBA", (8, 8)), tmp_path / f"a{suffix}", UNICODE_INFOTEXT)
    with Image.open(path) as image:
        comment = image.getexif().get_ifd(0x8769)[0x9286]
    assert comment == b"UNICODE\0" + UNICODE_INFOTEXT.encode("utf-16-be")
    assert b"\x92\x86\x00\x07" in path.read_bytes()  # tag UserComment, type UNDEFINED


@needs_corpus
def test_exif_layout_matches_a1111_file() -> None:
    with Image.open(A1111_DIR / "automatic1111_cropped.jpg") as image:
        a1111 = image.info["exif"]
    ours = exif_with_user_comment(b"UNICODE\0" + "x".encode("utf-16-be"))
    assert ours[:36] == a1111[:36]  # same TIFF header, IFD0 -> Exif IFD pointer, UserComment entry type


def test_a1111_reader_piexif_reads_our_jpeg(tmp_path: Path) -> None:
    piexif = pytest.importorskip("piexif")
    helper = pytest.importorskip("piexif.helper")
    path = save_image_with_infotext(Image.new("RGB", (8, 8)), tmp_path / "a.jpg", UNICODE_INFOTEXT)
    comment = piexif.load(str(path))["Exif"][piexif.ExifIFD.UserComment]
    assert helper.UserComment.load(comment) == UNICODE_INFOTEXT


def test_sidecar_is_read_when_the_image_has_none(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert read_infotext(tmp_path / "plain.png") is None
    (tmp_path / "plain.txt").write_text(DUCK + "\n", encoding="utf-8")
    assert read_infotext(tmp_path / "plain.png") == DUCK
    own = "own\nSteps: 1, Seed: 1, CFG scale: 7"
    save_image_with_infotext(Image.new("RGB", (8, 8)), tmp_path / "plain.png", own)
    assert read_infotext(tmp_path / "plain.png") == own  # the image's own text wins over the sidecar


def test_png_exif_user_comment_is_read_without_parameters(tmp_path: Path) -> None:
    path = tmp_path / "exif.png"
    Image.new("RGB", (8, 8)).save(path, exif=exif_with_user_comment(b"UNICODE\0" + DUCK.encode("utf-16-be")))
    assert read_infotext(path) == DUCK


def test_existing_file_survives_a_failed_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image_with_infotext(Image.new("RGB", (8, 8)), tmp_path / "keep.png", DUCK)
    before = path.read_bytes()

    def broken_save(self: Image.Image, fp: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image_with_infotext(Image.new("RGB", (8, 8)), path, "new\nSteps: 1, Seed: 1, CFG scale: 7")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_save_refuses_unknown_suffix_and_oversized_jpeg_exif(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        save_image_with_infotext(Image.new("RGB", (8, 8)), tmp_path / "a.gif", DUCK)
    assert caught.value.option == "format"
    with pytest.raises(InvalidRequest) as caught:
        save_image_with_infotext(Image.new("RGB", (8, 8)), tmp_path / "a.jpg", "x" * 40_000)
    assert caught.value.option == "infotext"
    assert list(tmp_path.iterdir()) == []


# --- EXIF UserComment decoding


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"UNICODE\0" + "日本 ok".encode("utf-16-be"), "日本 ok"),
        (b"UNICODE\0" + "hello, world".encode("utf-16-le"), "hello, world"),  # wrong order, detected
        (b"UNICODE\0" + "hi".encode("utf-16"), "hi"),  # with BOM
        (b"ASCII\0\0\0plain", "plain"),
        (b"\0" * 8 + "café".encode(), "café"),
        ("no prefix é".encode(), "no prefix é"),
    ],
)
def test_decode_user_comment(raw: bytes, text: str) -> None:
    assert decode_user_comment(raw) == text


def test_little_endian_user_comment_in_a_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "le.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif_with_user_comment(b"UNICODE\0" + DUCK.encode("utf-16-le")))
    assert read_infotext(path) == DUCK


# --- helpers


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height (the pixel data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
