"""The catalog on real SQLite and Whoosh in a temp folder: adding, every browse filter, ratings, favourites,
delete/restore/purge, guild isolation, index rebuild, integrity repair and import."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import BrowseQuery, NegativeMode, NewImage, RankFilter, SortOrder
from catalog.sqlite_words import SqliteWords
from core.errors import InvalidRequest
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext
from tests.corpus import CORPUS

IMAGES = [
    # prompt, negative, model, sampler, seed, author
    ("a red circle on a blue background", "", "v1-5-pruned", "Euler a", 11, "ann"),
    ("a Red square, <lora:add_detail:0.8>", "blurry, lowres", "v1-5-pruned", "DPM++ 2M", 12, "bob"),
    ("a green star at the top", "ugly", "sdxl-base", "Euler a", 13, "ann"),
    ("portrait of a cat, (masterpiece:1.2)", "blurry", "sdxl-base", "DPM++ 2M", 14, "cy"),
    ("a cat and a dog on a red sofa", "", "v1-5-pruned", "Euler", 15, "bob"),
]


def write_image(
    folder: Path, name: str, prompt: str, negative: str, model: str, sampler: str, seed: int
) -> Path:
    params = {"Steps": 20, "Sampler": sampler, "CFG scale": 7, "Seed": seed, "Size": "64x64", "Model": model}
    infotext = format_infotext(prompt, negative, params)
    image = Image.new("RGB", (64, 64), (seed * 9 % 256, seed * 5 % 256, 40))
    return save_image_with_infotext(image, folder / name, infotext)


@pytest.fixture(params=["whoosh", "sqlite"])
async def catalog(tmp_path, request):
    """A catalog with each text index: every behaviour below holds for both."""
    opened = await Catalog.open(tmp_path / "catalog", text_index=request.param)
    yield opened
    await opened.close()


@pytest.fixture
async def filled(catalog, tmp_path):
    """Five images in guild g1 (and the same files again in guild g2)."""
    files = tmp_path / "outputs"
    files.mkdir()
    new = []
    for i, (prompt, negative, model, sampler, seed, author) in enumerate(IMAGES):
        path = write_image(files, f"{i:05d}-{seed}.png", prompt, negative, model, sampler, seed)
        from engine.infotext_files import read_infotext

        new.append(NewImage(str(path), "g1", author, read_infotext(path), created=1000.0 + i))
    records = await catalog.add_many(new)
    await catalog.add_many([NewImage(n.path, "g2", "zed", n.infotext, created=n.created) for n in new])
    return records


async def found(catalog: Catalog, **options) -> list[int]:
    page = await catalog.search(BrowseQuery("g1", page_size=100, **options))
    return sorted(image.id for image in page.images)


def ids_of(records, *indices) -> list[int]:
    return sorted(records[i].id for i in indices)


async def test_an_added_image_keeps_its_generation_info(catalog, filled):
    record = await catalog.get("g1", filled[1].id)
    assert (
        record.prompt == "a Red square, <lora:add_detail:0.8>" and record.negative_prompt == "blurry, lowres"
    )
    assert (record.model, record.sampler, record.seed, record.steps, record.cfg) == (
        "v1-5-pruned",
        "DPM++ 2M",
        12,
        20,
        7.0,
    )
    assert record.networks == ("lora:add_detail",) and record.width == 64 and len(record.sha256) == 64
    assert record.infotext.startswith("a Red square") and record.filename == "00001-12.png"


async def test_keyword_words_with_and_or_not(catalog, filled):
    assert await found(catalog, keyword="red") == ids_of(filled, 0, 1, 4)
    assert await found(catalog, keyword="red cat") == ids_of(filled, 4)
    assert await found(catalog, keyword="red and not cat") == ids_of(filled, 0, 1)
    assert await found(catalog, keyword="star or dog") == ids_of(filled, 2, 4)
    assert await found(catalog, keyword='(star or dog) and not "red sofa"') == ids_of(filled, 2)
    assert await found(catalog, keyword='"blue background"') == ids_of(filled, 0)
    assert await found(catalog, keyword="ca*") == ids_of(filled, 3, 4)
    assert await found(catalog, keyword="euler") == ids_of(filled, 0, 2, 4)  # the parameters are searched too


async def test_field_queries(catalog, filled):
    assert await found(catalog, keyword="model:sdxl-base") == ids_of(filled, 2, 3)
    assert await found(catalog, keyword="lora:add_detail") == ids_of(filled, 1)
    assert await found(catalog, keyword='sampler:"DPM++ 2M"') == ids_of(filled, 1, 3)
    assert await found(catalog, keyword="seed:13") == ids_of(filled, 2)
    assert await found(catalog, keyword="neg:blurry") == ids_of(filled, 1, 3)
    assert await found(catalog, keyword="cat and not neg:blurry") == ids_of(filled, 4)
    assert await found(catalog, keyword="model:SDXL*") == ids_of(filled, 2, 3)  # any case, a prefix
    assert await found(catalog, keyword="model:*base") == ids_of(filled, 2, 3)  # other wildcards too
    assert await found(catalog, keyword="sampler:dpm* and lora:add*") == ids_of(filled, 1)
    assert await found(catalog, keyword="not seed:13 and model:sdxl-base") == ids_of(filled, 3)
    assert await found(catalog, keyword="seed:x") == []


async def test_negative_prompt_none_yes_only(catalog, filled):
    assert await found(catalog, keyword="blurry") == []  # by default the negative prompt is not searched
    assert await found(catalog, keyword="blurry", negative=NegativeMode.YES) == ids_of(filled, 1, 3)
    assert await found(catalog, keyword="ugly", negative=NegativeMode.ONLY) == ids_of(filled, 2)
    assert await found(catalog, keyword="cat", negative=NegativeMode.ONLY) == []
    assert await found(catalog, negative=NegativeMode.NONE) == ids_of(filled, 0, 4)
    assert await found(catalog, keyword="red", negative=NegativeMode.NONE) == ids_of(filled, 0, 4)


async def test_case_sensitive_and_regex(catalog, filled):
    assert await found(catalog, keyword="Red", case_sensitive=True) == ids_of(filled, 1)
    assert await found(catalog, keyword="red", case_sensitive=True) == ids_of(filled, 0, 4)
    assert await found(catalog, keyword="sofa", case_sensitive=True) == ids_of(filled, 4)
    assert await found(catalog, keyword="ale", case_sensitive=True) == ids_of(
        filled, 0, 1, 2, 3, 4
    )  # "CFG scale"
    assert await found(catalog, keyword=r"a (cat|dog)\b", regex=True) == ids_of(filled, 3, 4)
    assert await found(catalog, keyword=r"^a red", regex=True) == ids_of(filled, 0, 1)
    assert await found(catalog, keyword=r"^a red", regex=True, case_sensitive=True) == ids_of(filled, 0)
    assert await found(catalog, keyword="blur+y", regex=True, negative=NegativeMode.ONLY) == ids_of(
        filled, 1, 3
    )
    with pytest.raises(InvalidRequest, match="keyword: '\\(unclosed' is not a valid regular expression"):
        await found(catalog, keyword="(unclosed", regex=True)
    with pytest.raises(InvalidRequest, match="keyword: a '\\(' is not closed"):
        await found(catalog, keyword="(cat or dog")


async def test_filename_author_model_filters(catalog, filled):
    assert await found(catalog, filename="00002") == ids_of(filled, 2)
    assert await found(catalog, filename=r"-1[45]\.png$", regex=True) == ids_of(filled, 3, 4)
    assert await found(catalog, author="ann") == ids_of(filled, 0, 2)
    assert await found(catalog, model="sdxl-base", author="cy") == ids_of(filled, 3)


async def test_ratings_set_change_remove_and_rank_filters(catalog, filled):
    first, second, third = (r.id for r in filled[:3])
    await catalog.rate("g1", first, "ann", 5)
    await catalog.rate("g1", first, "bob", 2)
    rated = await catalog.rate("g1", second, "ann", 4)
    assert (rated.rank_mean, rated.rank_count) == (4.0, 1)
    changed = await catalog.rate("g1", first, "bob", 4)  # a change replaces, it does not add
    assert (changed.rank_mean, changed.rank_count) == (4.5, 2)
    assert await catalog.rating_of(first, "bob") == 4
    await catalog.rate("g1", third, "cy", 1)
    removed = await catalog.rate("g1", third, "cy", None)
    assert (removed.rank_mean, removed.rank_count) == (None, 0)
    assert await found(catalog, rank=RankFilter.parse("none")) == ids_of(filled, 2, 3, 4)
    assert await found(catalog, rank=RankFilter.parse("4")) == sorted([second])  # 4.5 rounds to 5
    assert await found(catalog, rank=RankFilter.parse("5")) == sorted([first])
    assert await found(catalog, rank=RankFilter.parse("4-5")) == sorted([first, second])
    assert await found(catalog, rank=RankFilter.parse("all")) == ids_of(filled, 0, 1, 2, 3, 4)
    page = await catalog.search(BrowseQuery("g1", sort=SortOrder.RANK, page_size=2))
    assert [image.id for image in page.images] == [first, second]
    with pytest.raises(InvalidRequest, match="score: 6 is not a whole number from 1 to 5"):
        await catalog.rate("g1", first, "ann", 6)
    with pytest.raises(InvalidRequest, match="rank: '3-1': the minimum is above the maximum"):
        RankFilter.parse("3-1")


async def test_favourites_per_user(catalog, filled):
    await catalog.favourite("g1", filled[3].id, "ann")
    await catalog.favourite("g1", filled[4].id, "ann")
    await catalog.favourite("g1", filled[4].id, "bob")
    await catalog.favourite("g1", filled[4].id, "ann")  # twice is once
    assert await found(catalog, favourites_of="ann") == ids_of(filled, 3, 4)
    await catalog.favourite("g1", filled[3].id, "ann", on=False)
    assert await found(catalog, favourites_of="ann") == ids_of(filled, 4)
    assert await found(catalog, favourites_of="bob", keyword="dog") == ids_of(filled, 4)


async def test_delete_restore_purge_and_delete_all_of_a_filter(catalog, filled):
    assert await catalog.delete_matching(BrowseQuery("g2")) == 5  # g2 lets go of the files both guilds had
    assert await catalog.purge("g2") == 5
    victim = filled[0]
    assert await catalog.delete("g1", [victim.id]) == 1
    assert not Path(victim.path).exists()
    assert victim.id not in await found(catalog)
    assert await found(catalog, deleted=True) == [victim.id]
    assert await catalog.restore("g1", [victim.id]) == 1
    assert Path(victim.path).exists() and victim.id in await found(catalog)

    assert await catalog.delete_matching(BrowseQuery("g1", keyword="red")) == 3
    assert await found(catalog) == ids_of(filled, 2, 3)
    assert await catalog.purge("g1") == 3
    assert await found(catalog, deleted=True) == []
    assert list(catalog.recycle_bin.iterdir()) == []
    assert await catalog.get("g1", victim.id) is None
    assert all(triple[2] != victim.id for triple in catalog.index_postings())


async def test_deleting_a_file_shared_with_another_guild_leaves_it_to_them(catalog, filled):
    assert await catalog.delete("g1", [filled[0].id]) == 1
    theirs = (await catalog.search(BrowseQuery("g2", keyword="circle"))).images
    assert len(theirs) == 1 and Path(theirs[0].path).exists()
    assert await catalog.restore("g1", [filled[0].id]) == 1
    assert await catalog.delete("g1", [filled[0].id]) == 1 and await catalog.purge("g1") == 1
    assert Path(theirs[0].path).exists() and (await catalog.check()).clean


async def test_totals_are_right_whichever_guild_holds_most_images(catalog, filled, tmp_path):
    async def totals(guild: str, deleted: bool = False) -> list[int]:
        keywords = ("red", "cat or star", "a and not cat", "model:v1-5-pruned", "neg:blurry")
        return [
            (await catalog.search(BrowseQuery(guild, keyword=k, deleted=deleted))).total for k in keywords
        ]

    assert await totals("g1") == await totals("g2") == [3, 3, 3, 3, 2]
    extra = tmp_path / "extra"
    extra.mkdir()
    more = [
        write_image(extra, f"{i}.png", "a red kite", "blurry", "v1-5-pruned", "Euler", 50 + i)
        for i in range(6)
    ]
    await catalog.add_many([NewImage(str(p), "g1", "ann") for p in more])  # g1 now holds most images
    await catalog.delete("g1", [filled[1].id])  # and one is in its recycle bin
    assert await totals("g1") == [2, 3, 2, 2, 1]  # (the kites were added without generation info)
    assert await totals("g1", deleted=True) == [1, 0, 1, 1, 1]
    assert await totals("g2") == [3, 3, 3, 3, 2]


async def test_a_guild_never_sees_another_guilds_images(catalog, filled):
    mine = await found(catalog)
    theirs = (await catalog.search(BrowseQuery("g2", page_size=100))).images
    assert len(mine) == len(theirs) == 5 and not set(mine) & {image.id for image in theirs}
    assert all(image.guild == "g2" for image in theirs)
    assert await catalog.get("g2", filled[0].id) is None
    with pytest.raises(InvalidRequest, match="image: there is no image"):
        await catalog.rate("g2", filled[0].id, "zed", 5)
    with pytest.raises(InvalidRequest, match="image: there is no image"):
        await catalog.delete("g2", [filled[0].id])
    other = await catalog.search(BrowseQuery("g2", keyword="red"))
    assert other.total == 3 and all(image.guild == "g2" for image in other.images)


async def test_pages_and_sort_orders(catalog, filled):
    first = await catalog.search(BrowseQuery("g1", page_size=2))
    assert (first.page, first.pages, first.total) == (1, 3, 5)
    assert [image.id for image in first.images] == [filled[4].id, filled[3].id]  # newest first
    last = await catalog.search(BrowseQuery("g1", page_size=2, page=-1))
    assert last.page == 3 and [image.id for image in last.images] == [filled[0].id]
    with pytest.raises(InvalidRequest, match="page: page 4 does not exist; there are 3 page"):
        await catalog.search(BrowseQuery("g1", page_size=2, page=4))
    by_seed = await catalog.search(BrowseQuery("g1", sort=SortOrder.SEED, descending=False))
    assert [image.seed for image in by_seed.images] == [11, 12, 13, 14, 15]
    by_model = await catalog.search(BrowseQuery("g1", sort=SortOrder.MODEL, descending=False))
    assert [image.model for image in by_model.images][:2] == ["sdxl-base"] * 2
    shuffled = [
        [i.id for i in (await catalog.search(BrowseQuery("g1", sort=SortOrder.RANDOM, random_seed=s))).images]
        for s in (1, 1, 2)
    ]
    assert shuffled[0] == shuffled[1] and sorted(shuffled[0]) == ids_of(filled, 0, 1, 2, 3, 4)


async def test_rebuilt_index_equals_the_one_built_as_images_came(catalog, filled):
    await catalog.rate("g1", filled[0].id, "ann", 3)
    before = catalog.index_postings()
    answers = [
        await found(catalog, keyword=k) for k in ("red", "cat or star", "model:v1-5-pruned", "seed:12")
    ]
    assert await catalog.rebuild_index() == 10
    assert catalog.index_postings() == before
    assert [
        await found(catalog, keyword=k) for k in ("red", "cat or star", "model:v1-5-pruned", "seed:12")
    ] == answers


async def test_integrity_check_finds_and_repairs_damage(catalog, filled, tmp_path):
    assert (await catalog.check([tmp_path / "outputs"])).clean
    Path(filled[0].path).unlink()  # a row without its file
    orphan = write_image(tmp_path / "outputs", "99999-77.png", "an orphan moon", "", "m", "Euler", 77)
    await catalog.store.in_index_thread(
        catalog.store.text.remove, [filled[1].id]
    )  # a row missing from the index
    if isinstance(catalog.store.text, SqliteWords):  # an index entry without a row
        with sqlite3.connect(catalog.folder / "catalog.db") as db:
            db.execute("INSERT INTO images_words (rowid, scope, prompt) VALUES (4242, 'x', 'ghost')")
    else:
        await catalog.store.in_index_thread(catalog.store.text.put, [replace(filled[2], id=4242)])
    report = await catalog.check([tmp_path / "outputs"], guild="g1", author="repair")
    assert report.rows_without_files == (filled[0].id, filled[0].id + 5)  # and its copy in guild g2
    assert report.files_without_rows == (str(orphan),)
    assert report.rows_not_indexed == (filled[1].id,)
    assert report.index_without_rows == (4242,)
    await catalog.check([tmp_path / "outputs"], guild="g1", author="repair", repair=True)
    assert (await catalog.check([tmp_path / "outputs"])).clean
    assert await found(catalog, keyword="orphan moon") != []
    assert filled[1].id in await found(catalog, keyword="square")
    assert await catalog.get("g1", filled[0].id) is None


async def test_import_real_a1111_files_and_skip_broken_ones(catalog, tmp_path):
    folder = tmp_path / "a1111"
    shutil.copytree(CORPUS / "AUTOMATIC1111", folder / "good")
    shutil.copytree(CORPUS / "bad_images", folder / "bad")
    records, skipped = await catalog.import_folder(folder, "g1", "importer")
    assert {Path(r.path).name for r in records} >= {"automatic1111_cropped.png", "automatic1111_cropped.jpg"}
    with_info = [r for r in records if r.prompt]
    assert with_info and all(r.steps and r.sampler and r.seed is not None for r in with_info)
    assert {Path(line.split(":")[0]).name for line in skipped} >= {"empty_file.png"}
    again, _ = await catalog.import_folder(folder, "g1", "importer")  # importing twice adds nothing
    assert sorted(r.id for r in again) == sorted(r.id for r in records)
    word = with_info[0].prompt.split()[0].strip(",()")
    assert with_info[0].id in await found(catalog, keyword=f'"{word}"')


async def test_import_reads_comfyui_invokeai_fooocus_and_novelai_metadata(catalog, tmp_path):
    shutil.copytree(CORPUS, tmp_path / "corpus")
    records, _ = await catalog.import_folder(tmp_path / "corpus", "g1", "importer")
    by_name = {Path(r.path).name: r for r in records}
    comfy = by_name["img2img_cropped.png"]
    assert comfy.prompt.startswith("photograph of victorian woman with wings")
    assert (comfy.negative_prompt, comfy.steps, comfy.sampler, comfy.cfg, comfy.seed, comfy.model) == (
        "watermark, text",
        20,
        "DPM++ 2M",
        8.0,
        280823642470253,
        "v1-5-pruned-emaonly",
    )
    fooocus = by_name["fooocus1_cropped.png"]
    assert (fooocus.prompt, fooocus.sampler, fooocus.schedule, fooocus.steps) == (
        "a smiling goldfish",
        "DPM++ 2M SDE",
        "Karras",
        30,
    )
    assert fooocus.model == "juggernautXL_v8Rundiffusion" and fooocus.model_hash == "aeb7e9e689"
    invoke = by_name["invokeai_imeta1.png"]
    assert (invoke.steps, invoke.cfg, invoke.seed, invoke.model) == (35, 8.0, 3293022630, "juggernautXL")
    dream = by_name["invokeai_dream1.png"]
    assert dream.negative_prompt == "rendering, glowing eyes, skinny" and dream.sampler == "LMS"
    novel = by_name["novelai1_cropped.png"]
    assert novel.prompt.startswith("masterpiece, best quality") and (novel.steps, novel.cfg) == (50, 10.0)
    assert novel.sampler == "Euler a" and novel.negative_prompt.startswith("lowres, bad anatomy")
    assert await found(catalog, keyword="goldfish") == [fooocus.id]
    assert comfy.id in await found(catalog, keyword="model:v1-5-pruned-emaonly")
