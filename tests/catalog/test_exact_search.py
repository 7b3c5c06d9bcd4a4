"""Case-sensitive and regex browsing equal a brute-force check over the same rows (property-based)."""

from __future__ import annotations

import asyncio
import random
import re

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from catalog.catalog import Catalog
from catalog.records import BrowseQuery, NegativeMode, NewImage
from engine.infotext import format_infotext
from engine.infotext_files import save_image_with_infotext

WORDS = [
    "Cat",
    "cat",
    "CAT",
    "dog",
    "Dog",
    "red",
    "Red",
    "sofa",
    "star",
    "a",
    "an",
    "on",
    "(best:1.2)",
    "x-1",
]
SAMPLERS = ["Euler a", "DPM++ 2M", "Euler"]


def build(folder) -> list:
    """Sixty images with prompts and negative prompts drawn from WORDS, in two guilds."""
    rng = random.Random(7)
    files = folder / "files"
    files.mkdir()
    new = []
    for i in range(60):
        prompt = " ".join(rng.choices(WORDS, k=rng.randint(1, 6)))
        negative = " ".join(rng.choices(WORDS, k=rng.randint(0, 3)))
        params = {"Steps": 20, "Sampler": rng.choice(SAMPLERS), "Seed": i, "Model": rng.choice(["m1", "M2"])}
        path = save_image_with_infotext(
            Image.new("RGB", (8, 8), (i, 0, 0)), files / f"{i}.png", format_infotext(prompt, negative, params)
        )
        guild = "g1" if i % 4 else "g2"
        new.append(NewImage(str(path), guild, "ann", format_infotext(prompt, negative, params)))

    async def add():
        catalog = await Catalog.open(folder / "catalog")
        try:
            await catalog.add_many(new)
            return (await catalog.search(BrowseQuery("g1", page_size=100))).images
        finally:
            await catalog.close()

    return list(asyncio.run(add()))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact")
    return folder, build(folder)


def search_all(folder, browse: BrowseQuery) -> list[int]:
    async def run():
        catalog = await Catalog.open(folder / "catalog")
        try:
            return await catalog.matching_ids(browse)
        finally:
            await catalog.close()

    return asyncio.run(run())


def searched(record, negative: NegativeMode) -> str:
    if negative is NegativeMode.ONLY:
        return record.negative_prompt
    if negative is NegativeMode.YES:
        return "\n".join((record.prompt, record.negative_prompt, record.params))
    return "\n".join((record.prompt, record.params))


# An expression as (text for the query, function record-text → bool), built together.
terms = st.sampled_from(WORDS + ["at", "ed", "o", "Eule", "2M"]).map(
    lambda w: (f'"{w}"' if not re.fullmatch(r"[\w-]+", w) else w, lambda text, w=w: w in text)
)


def combine(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(
            lambda ab: (f"({ab[0][0]} and {ab[1][0]})", lambda t, a=ab[0][1], b=ab[1][1]: a(t) and b(t))
        ),
        pair.map(lambda ab: (f"({ab[0][0]} or {ab[1][0]})", lambda t, a=ab[0][1], b=ab[1][1]: a(t) or b(t))),
        children.map(lambda a: (f"not {a[0]}", lambda t, f=a[1]: not f(t))),
    )


expressions = st.recursive(terms, combine, max_leaves=5)
negatives = st.sampled_from(list(NegativeMode))
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW
@given(expression=expressions, negative=negatives)
def test_case_sensitive_expressions_equal_brute_force(rows, expression, negative):
    folder, records = rows
    text, predicate = expression
    browse = BrowseQuery("g1", keyword=text, case_sensitive=True, negative=negative)
    expected = sorted(
        r.id
        for r in records
        if predicate(searched(r, negative)) and (negative is not NegativeMode.NONE or not r.negative_prompt)
    )
    assert search_all(folder, browse) == expected


# User patterns are RE2's (catalog/patterns.py): the brute force runs the same engine on the same texts, so
# what is checked is the search around it (the trigram prefilter, SQL, guilds, negative modes). RE2-only
# syntax is in the mix: POSIX classes (which Python's parser, used by the prefilter, reads differently),
# Unicode classes and \Q…\E quoting.
regexes = st.lists(
    st.sampled_from(
        ["cat", "Cat", "r[aeiou]d", ".", ".*", "\\w+", "^", "$", " ", "(dog|star)", "[A-Z]", "o?", "\\("]
        + ["[[:upper:]]at", "\\pLo", "\\Qx-1\\E", "(?i:cat) ", "a{1,2}"]
    ),
    min_size=1,
    max_size=4,
).map("".join)


@SLOW
@given(pattern=regexes, case_sensitive=st.booleans(), negative=negatives)
def test_regexes_equal_brute_force(rows, pattern, case_sensitive, negative):
    folder, records = rows
    options = re2.Options()
    options.case_sensitive = case_sensitive
    compiled = re2.compile(pattern, options)
    browse = BrowseQuery("g1", keyword=pattern, regex=True, case_sensitive=case_sensitive, negative=negative)
    expected = sorted(
        r.id
        for r in records
        if compiled.search(searched(r, negative))
        and (negative is not NegativeMode.NONE or not r.negative_prompt)
    )
    assert search_all(folder, browse) == expected


def test_the_trigram_prefilter_asks_only_for_what_a_match_needs():
    from catalog.keywords import parse_keywords
    from catalog.prefilter import keyword_match, regex_match

    assert regex_match(r"red dragon.*by (greg|alphonse)", NegativeMode.NO) == (
        '({prompt params} : "red dragon") AND ({prompt params} : "by ") AND '
        '(((({prompt params} : "greg")) OR (({prompt params} : "alphonse"))))'
    )
    assert regex_match(r"^a.?b$", NegativeMode.NO) is None  # nothing of 3 characters is required
    assert regex_match(r"(?:cats?)+ x", NegativeMode.ONLY) == '(({negative_prompt} : "cat"))'
    node = parse_keywords('Cat and ("red sofa" or star) and not dog')
    assert keyword_match(node, NegativeMode.YES) == (
        '({prompt negative_prompt params} : "Cat") AND '
        '(({prompt negative_prompt params} : "red sofa") OR ({prompt negative_prompt params} : "star"))'
    )
    assert keyword_match(parse_keywords("cat or ab"), NegativeMode.NO) is None  # "ab" is too short
