"""Every /browse filter gives the same page on PostgreSQL as on SQLite (property-based).

One random catalog (three guilds; prompts with punctuation, mixed case, accents, ß, the Kelvin sign, long
s, digits and underscores; models, samplers, seeds, LoRAs, ratings, favourites, galleries, NSFW, deleted
images, equal dates) is built in SQLite with its FTS5 words index, copied into PostgreSQL by
`catalog.pg_copy.copy_catalog`, and then each query drawn by Hypothesis (keyword expressions with fields and
wildcards, regexes, case-sensitive substrings, negative modes, rank, favourites, model, author, gallery,
filename, sort orders, directions, pages and page sizes, the recycle bin, counts capped or exact) must give
both the same page and total, and the same matching ids, or the same refusal.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import pg_search
from catalog.catalog import Catalog
from catalog.pg_catalog import PgCatalog
from catalog.pg_copy import copy_catalog
from catalog.records import COUNT_CAP, BrowseQuery, NegativeMode, RankFilter, SortOrder
from core.errors import InvalidRequest
from tests.pg.catalogs import open_pg_catalog

GUILDS = ("g1", "g2", "g3")
WORDS = [
    "red", "Red", "RED", "cat", "cats", "Cat", "dog", "sofa", "star", "a", "on", "the", "(best:1.2)", "x-1",
    "x_1", "a.b", "café", "CAFÉ", "Straße", "strasse", "Kelvin", "\u212aelvin", "\u017fofa", "ǅemal", "42",
    "1girl", "masterpiece,", "blue-sky", "don't", "日本", "über", "naïve", "k", "s",
]  # fmt: skip
MODELS = [None, "v1-5-pruned", "SDXL-base", "sdxl-base", "Ünïcode", "m_1", ""]
SAMPLERS = [None, "Euler a", "DPM++ 2M", "euler", "LMS"]
LORAS = ["add_detail", "Add_Detail", "style-x", "ünï"]
AUTHORS = ("ann", "bob", "cy")


def corpus_rows(rng: random.Random, count: int) -> list[dict]:
    rows = []
    for i in range(count):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(0, 8)))
        negative = " ".join(rng.choices(WORDS, k=rng.randint(0, 3)))
        seed = rng.choice([None, i, -i, 2**40 + i, 42])
        sampler = rng.choice(SAMPLERS)
        params = f"Steps: {rng.randint(1, 50)}, Sampler: {sampler}, Seed: {seed}"
        loras = rng.sample(LORAS, rng.randint(0, 2))
        networks = [f"lora:{name}" for name in loras] + (["embedding:easyneg"] if rng.random() < 0.2 else [])
        rows.append({
            "guild": rng.choice(GUILDS), "channel": None, "message": None, "author": rng.choice(AUTHORS),
            "created": 1000.0 + rng.randint(0, count // 3), "path": f"files/{i}.png",
            "filename": f"{i:05d}-{rng.choice(['Cat', 'dog', 'x'])}.png", "sha256": f"{i:064x}", "width": 64,
            "height": 64, "model": rng.choice(MODELS), "model_hash": None, "sampler": sampler, "schedule": None,
            "steps": rng.choice([None, 20, 30]), "cfg": rng.choice([None, 7.0, 4.5]), "seed": seed,
            "prompt": prompt, "negative_prompt": negative, "params": params, "infotext": prompt,
            "networks": json.dumps(networks), "parent_id": None, "relation": None,
            "nsfw": int(rng.random() < 0.2), "job_id": None,
        })  # fmt: skip
    return rows


async def build(folder, url: str) -> tuple[Catalog, PgCatalog, dict]:
    rng = random.Random(21)
    sqlite = await Catalog.open(folder, text_index="sqlite")
    await sqlite.bulk_insert(corpus_rows(rng, 240))
    for guild in GUILDS:
        for image_id in await sqlite.matching_ids(BrowseQuery(guild)):
            for user in rng.sample(AUTHORS, rng.randint(0, 3)):
                await sqlite.rate(guild, image_id, user, rng.randint(1, 5))
            if rng.random() < 0.3:
                await sqlite.favourite(guild, image_id, rng.choice(AUTHORS))
    gallery = await sqlite.galleries.create("g1", "Best", "ann")
    g1 = await sqlite.matching_ids(BrowseQuery("g1"))
    await sqlite.galleries.add("g1", "Best", rng.sample(g1, 15), "ann")
    for guild in GUILDS:
        ids = await sqlite.matching_ids(BrowseQuery(guild))
        await sqlite.delete(guild, rng.sample(ids, len(ids) // 8))
    postgres = await open_pg_catalog(url, folder)
    counts = await copy_catalog(sqlite, postgres)
    return sqlite, postgres, {"counts": counts, "gallery": gallery.id}


@pytest.fixture(scope="module")
def both(postgres_server, tmp_path_factory):
    """(run, sqlite catalog, postgres catalog, facts): `run` runs a coroutine in the catalogs' event loop."""
    runner = asyncio.Runner()
    url = postgres_server.create_database()
    sqlite, postgres, facts = runner.run(build(tmp_path_factory.mktemp("both") / "catalog", url))
    yield runner.run, sqlite, postgres, facts
    runner.run(sqlite.close())
    runner.run(postgres.close())
    runner.close()


def test_the_copy_keeps_every_row(both):
    _, _, _, facts = both
    counts = facts["counts"]
    assert all(source == target for source, target in counts.values()), counts
    assert counts["images"][0] == 240 and counts["recycle_bin"][0] > 0 and counts["ratings"][0] > 0
    assert counts["favourites"][0] > 0 and counts["gallery_images"][0] == 15


# ----- the queries ----------------------------------------------------------------------------------------------
def _quoted(word: str) -> str:
    return word if word.replace("-", "").replace("_", "").isalnum() else '"' + word.replace('"', "") + '"'


word_terms = st.one_of(
    st.sampled_from(WORDS).map(_quoted),
    st.sampled_from(["ca*", "st*", "x*", "caf*", "Str*", '"red cat"', '"a cat"', '"x 1"', "1.2", "日*"]),
    st.sampled_from(["neg:red", "neg:cat", 'neg:"red cat"', "neg:caf*"]),
    st.sampled_from(MODELS[1:] + ["SDXL*", "*base", "sd?l-base", "[sv]*", "Ü*", "v1-5-pruned*"]).map(
        lambda m: f"model:{_quoted(m) if '*' not in m and '?' not in m and '[' not in m else m}"
    ),
    st.sampled_from(["Euler", '"Euler a"', "dpm*", "*2m", "lms", '"DPM++ 2M"']).map(lambda s: f"sampler:{s}"),
    st.sampled_from(["42", "7", "x", "-7", "1099511627786", "4*", "4?"]).map(lambda s: f"seed:{s}"),
    st.sampled_from(["add_detail", "ADD*", "style-x", "*x", "ünï", "add?detail"]).map(lambda s: f"lora:{s}"),
)


def _combine(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda ab: f"({ab[0]} and {ab[1]})"),
        pair.map(lambda ab: f"({ab[0]} or {ab[1]})"),
        pair.map(lambda ab: f"{ab[0]} {ab[1]}"),
        children.map(lambda a: f"not {a}"),
    )


word_keywords = st.recursive(word_terms, _combine, max_leaves=4)
exact_keywords = st.recursive(
    st.sampled_from(WORDS + ["at", "ed", "afé", "Eule", "2M", "ss", "KELVIN", "elvin", "\u212a"]).map(_quoted)
    | st.sampled_from(["model:sdxl", "sampler:Euler", "seed:42", "lora:add", "neg:red"]),
    _combine,
    max_leaves=4,
)
regexes = st.lists(
    st.sampled_from(
        ["cat", "Cat", "r[aeiou]d", ".", ".*", "\\w+", "^", "$", " ", "(dog|star)", "[A-Z]", "o?", "\\(", "ß"]
        + ["[[:upper:]]at", "\\pLo", "\\Qx-1\\E", "(?i:cat) ", "a{1,2}", "kelvin", "sofa", "Sampler: E", "é"]
    ),
    min_size=1,
    max_size=4,
).map("".join)


@st.composite
def queries(draw) -> BrowseQuery:
    mode = draw(st.sampled_from(["none", "words", "exact", "regex"]))
    keyword = {"none": st.just(""), "words": word_keywords, "exact": exact_keywords, "regex": regexes}[mode]
    rank = draw(st.sampled_from(["all", "all", "none", "3", "5", "3-5", "2.5-4", "1-2"]))
    return BrowseQuery(
        guild=draw(st.sampled_from(GUILDS)),
        filename=draw(st.sampled_from(["", "", "", "cat", "Cat", "0000", "[0-9]{5}-d", "x\\.png$"])),
        keyword=draw(keyword),
        negative=draw(st.sampled_from(list(NegativeMode))),
        case_sensitive=mode == "exact" or (mode == "regex" and draw(st.booleans())),
        regex=mode == "regex",
        rank=RankFilter.parse(rank),
        author=draw(st.sampled_from([None, None, "ann", "cy"])),
        model=draw(st.sampled_from([None, None, "SDXL-base", "v1-5-pruned", ""])),
        favourites_of=draw(st.sampled_from([None, None, "bob"])),
        gallery=draw(st.sampled_from([None, None, 1])),
        sort=draw(st.sampled_from(list(SortOrder))),
        descending=draw(st.booleans()),
        page=draw(st.sampled_from([1, 1, 2, 3, -1])),
        page_size=draw(st.sampled_from([1, 3, 10, 25, 100])),
        deleted=draw(st.booleans()) and draw(st.booleans()),
        include_nsfw=draw(st.booleans()),
        random_seed=draw(st.integers(0, 5)),
        count_cap=draw(st.sampled_from([COUNT_CAP, COUNT_CAP, None, 1, 4, 20])),  # counts that stop early
    )


async def _outcome(catalog, browse: BrowseQuery, method: str):
    try:
        return await getattr(catalog, method)(browse)
    except InvalidRequest as refused:
        return ("refused", refused.option, refused.message)


def compare(both, browse: BrowseQuery) -> None:
    run, sqlite, postgres, _ = both
    for method in ("search", "matching_ids"):
        expected = run(_outcome(sqlite, browse, method))
        got = run(_outcome(postgres, browse, method))
        assert got == expected, (method, browse)


SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(browse=queries())
def test_every_browse_filter_gives_the_same_page(both, browse):
    compare(both, browse)


@pytest.mark.parametrize(
    "keyword",
    ["red", "cat or star", "a and not cat", "model:v1-5-pruned", "neg:blurry", "x_1", "1.2", "café", "CAFE",
     "strasse", "Straße", "kelvin", "sofa", '"x 1"', "dzemal", "ǆemal", "日本", "model:sd*", "model:*base",
     "lora:ADD_DETAIL", "lora:add*", "seed:42", "seed:1099511627786", "not lora:add*", "model:", 'model:""',
     "x?y", "a*b"],
)  # fmt: skip
def test_word_searches_known_to_be_tricky(both, keyword):
    for guild in GUILDS:
        for negative in NegativeMode:
            compare(both, BrowseQuery(guild, keyword=keyword, negative=negative, page_size=100))


# ----- exact searches with a capped count: the count apart, the page by windows of the sort index --------------
EXACT_CAPPED = [
    {"keyword": keyword, "regex": regex, "case_sensitive": not regex or sensitive}
    for keyword, regex, sensitive in [
        ("cat", False, True), ("red or dog", False, True), ("a and not star", False, True),
        ("Sampler: E", False, True), ("cat", True, False), ("r[aeiou]d", True, True),
        ("(dog|star)", True, False), ("kelvin", True, False), ("\\w+", True, True),
    ]
]  # fmt: skip


def _capped_queries():
    for options in EXACT_CAPPED:
        for guild in GUILDS:
            for cap, page, size, sort, descending in [
                (1, -1, 25, SortOrder.DATE, True), (4, -1, 100, SortOrder.MODEL, False),
                (20, 1, 10, SortOrder.SEED, True), (20, 2, 10, SortOrder.RANK, False),
                (4, 3, 1, SortOrder.DATE, False), (1, 1, 3, SortOrder.CFG, True), (20, -1, 3, SortOrder.STEPS, True),
            ]:  # fmt: skip
                yield BrowseQuery(guild, page=page, page_size=size, sort=sort, descending=descending,
                                  count_cap=cap, **options)  # fmt: skip


@pytest.mark.parametrize(
    "walk", [(2048, 32768), (1, 10**6), (2, 4)], ids=["windows", "one-row-windows", "too-sparse-listed"]
)
def test_capped_exact_searches_give_the_same_pages(both, monkeypatch, walk):
    """The count read apart and the page walked in windows (down to one row; or given up for the listing
    after 4 rows) give SQLite's pages, last pages (the last `page_size` matches, also when the cap is below
    the page size) included."""
    monkeypatch.setattr(pg_search, "WALK_FIRST", walk[0])
    monkeypatch.setattr(pg_search, "WALK_ROWS", walk[1])
    for browse in _capped_queries():
        compare(both, browse)


def test_capped_exact_searches_without_the_count_apart(both, monkeypatch):
    monkeypatch.setattr(pg_search, "COUNT_APART", False)
    for browse in _capped_queries():
        compare(both, browse)


def test_the_count_reads_candidates_only_until_the_cap(both):
    """A regex that every row matches, with a cap of 4: the cursor is left after its first batch (64 rows),
    and the page is found without listing the candidates."""
    run, _, postgres, _ = both
    read: list[int] = []
    statements: list[str] = []
    batches, fetch = postgres.batches, postgres.fetch

    async def counting(sql, args, size):
        async for rows in batches(sql, args, size):
            read.append(len(rows))
            yield rows

    async def fetching(sql, args=()):
        statements.append(sql)
        return await fetch(sql, args)

    browse = BrowseQuery("g1", keyword="Sampler: ", regex=True, page_size=1, count_cap=4)
    try:
        postgres.batches, postgres.fetch = counting, fetching
        found = run(postgres.search(browse))
    finally:
        del postgres.batches, postgres.fetch
    everything = run(postgres.search(BrowseQuery("g1", keyword="Sampler: ", regex=True, count_cap=None)))
    assert not found.exact and found.total == 4 and everything.total > 64
    assert read == [64]
    assert not any("ORDER BY" in sql and "LIMIT" not in sql for sql in statements), statements


def test_a_needed_text_is_looked_up_by_its_runs_and_checked_whole(both):
    """ "red cat" is looked up in the trigram index as "red" and "cat" (no trigram at a word's edge), and the
    rows found are still those holding "red cat" (in any ASCII case), checked outside the index."""
    run, _, postgres, _ = both
    condition = pg_search._any_case("red cat")

    async def plan_and_count():
        async with postgres.transaction() as db:
            await db.execute("SET LOCAL enable_seqscan = off")
            cursor = await db.execute(f"EXPLAIN SELECT id FROM images WHERE {condition.replace('%%', '%')}")
            plan = "\n".join(row["QUERY PLAN"] for row in await cursor.fetchall())
        rows = await postgres.fetch(f"SELECT count(*) AS found FROM images WHERE {condition}")
        texts = await postgres.fetch("SELECT prompt, negative_prompt, params FROM images")
        return plan, rows[0]["found"], texts

    plan, found, texts = run(plan_and_count())
    index_part = plan.split("Index Cond:", 1)[1].split("Filter:", 1)[0]
    assert "%red%" in index_part and "%cat%" in index_part and "red cat" not in index_part, plan
    holding = [r for r in texts if "red cat" in "\n".join(r.values()).lower()]
    assert found == len(holding) > 0
