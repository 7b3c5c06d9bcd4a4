"""Catalog search against hostile patterns (issue 18, items 5, 6 and 7): catastrophic regexes, parser bombs,
unsupported syntax, and prompts that made the extra-network regex quadratic."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import patterns
from catalog.catalog import Catalog
from catalog.keywords import (
    MAX_DEPTH,
    SearchedTexts,
    Term,
    check_patterns,
    decode,
    encode,
    matches,
    parse_keywords,
)
from catalog.prefilter import keyword_match, regex_match
from catalog.records import BrowseQuery, NegativeMode
from catalog.text_index import to_whoosh
from catalog.words import sql_condition
from core.errors import InvalidRequest
from engine.prompts.prompt_syntax import extract_extra_networks

CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(.*a){20}", r"^(\w+\s?)*$", "(x+x+)+y", r"(\w*\s*)*@"]
EVIL_PROMPT = "a" * 29 + "!"  # 29 characters before the character that makes every path fail


def row(i: int, prompt: str, guild: str = "g1", params: str | None = None) -> dict:
    """A catalog row as `Catalog.bulk_insert` takes it (no file needed for searching)."""
    params = f"Steps: 20, Seed: {i}" if params is None else params
    return {
        "guild": guild, "channel": None, "message": None, "author": "ann", "created": 1000.0 + i,
        "path": f"/nowhere/{i}.png", "filename": f"{i:05d}-{i}.png", "sha256": f"{i:064x}", "width": 64,
        "height": 64, "model": "m", "model_hash": None, "sampler": "Euler", "schedule": None, "steps": 20,
        "cfg": 7.0, "seed": i, "prompt": prompt, "negative_prompt": "", "params": params,
        "infotext": prompt, "networks": "[]", "parent_id": None, "relation": None, "nsfw": 0, "job_id": None,
    }  # fmt: skip


@pytest.fixture
async def evil_catalog(tmp_path):
    """300 images whose prompts make backtracking engines explode, and a few ordinary ones."""
    catalog = await Catalog.open(tmp_path / "catalog")
    prompts = [EVIL_PROMPT, "a" * 20 + " " * 9 + "!", "a red cat", "aaaa a"] * 75
    await catalog.bulk_insert(row(i, prompt) for i, prompt in enumerate(prompts))
    yield catalog
    await catalog.close()


def brute_force(pattern: str, texts: dict[int, str], case_sensitive: bool = True) -> list[int]:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    program = re2.compile(pattern, options)
    return sorted(i for i, text in texts.items() if program.search(text))


async def test_catastrophic_regexes_answer_in_linear_time(evil_catalog):
    """Item 5: `(a+)+$` and friends over prompts that make Python's re backtrack for minutes take well under
    a second each (RE2), with the right answer."""
    rows = await evil_catalog.matching_ids(BrowseQuery("g1"))
    texts = {}
    for image_id in rows:
        record = await evil_catalog.get("g1", image_id)
        texts[image_id] = f"{record.prompt}\n{record.params}"
    for pattern in CATASTROPHIC:
        started = time.perf_counter()
        found = await evil_catalog.matching_ids(BrowseQuery("g1", keyword=pattern, regex=True))
        assert time.perf_counter() - started < 5, pattern  # (generous: about 10 ms here)
        assert found == brute_force(pattern, texts), pattern


async def test_case_insensitive_regexes_still_work(evil_catalog):
    """Item 5: case-insensitive mode works with RE2 (option and inline flag)."""
    found = await evil_catalog.matching_ids(BrowseQuery("g1", keyword="A RED C[AO]T", regex=True))
    assert len(found) == 75
    assert (
        await evil_catalog.matching_ids(BrowseQuery("g1", keyword="A RED", regex=True, case_sensitive=True))
        == []
    )
    assert (
        len(
            await evil_catalog.matching_ids(
                BrowseQuery("g1", keyword="(?i)A RED", regex=True, case_sensitive=True)
            )
        )
        == 75
    )


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "backreferences"),
        ("cat(?=s)", "lookahead"),
        ("cat(?!s)", "negative lookahead"),
        ("(?<=a)cat", "lookbehind"),
        ("(?<!a)cat", "negative lookbehind"),
        ("(?>cat)", "atomic groups"),
        ("a++", "possessive"),
        ("a{99999999999}", "repetition counts above 1000"),
        ("a{1001}", "repetition counts above 1000"),
        ("(.{0,30}a){30}c", "too complex"),
        ("x" * 1001, "at most 1000"),
        ("(", "missing )"),
        ("(" * 3000, "at most 1000"),
        ("[z-a]", "invalid character class range"),
    ],
)
async def test_unsupported_regex_syntax_is_refused_saying_what(evil_catalog, pattern, why):
    """Items 5 and 6: what RE2 does not support, and oversized patterns, are option errors naming the option
    and what is not supported."""
    with pytest.raises(InvalidRequest) as caught:
        await evil_catalog.search(BrowseQuery("g1", keyword=pattern, regex=True))
    assert caught.value.option == "keyword" and why in caught.value.message and "RE2" in caught.value.message
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    with pytest.raises(InvalidRequest) as caught:
        await evil_catalog.search(BrowseQuery("g1", filename=pattern, regex=True))
    assert caught.value.option == "filename" and why in caught.value.message


async def test_a_regex_that_outruns_its_budget_is_stopped(evil_catalog, monkeypatch):
    """Item 5: a pattern RE2 can only run slowly (no DFA) is stopped once the search's budget is spent."""
    rng = random.Random(5)  # (random text: a periodic one would let RE2's DFA cache every state)
    await evil_catalog.bulk_insert(row(1000 + i, "".join(rng.choices("ab ", k=800))) for i in range(3000))
    monkeypatch.setattr(patterns, "BUDGET_S", 0.05)
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as caught:
        await evil_catalog.search(BrowseQuery("g1", keyword="(.*a.{20}){5}c", regex=True))
    assert caught.value.option == "regex" and "was stopped" in caught.value.message
    assert time.perf_counter() - started < 5
    monkeypatch.setattr(patterns, "BUDGET_S", 0.0)  # the filename filter has the same budget
    with pytest.raises(InvalidRequest, match="regex: the regular expression ran for more than"):
        await evil_catalog.search(BrowseQuery("g1", filename="0", regex=True))
    monkeypatch.setattr(patterns, "BUDGET_S", 0.75)
    assert (await evil_catalog.search(BrowseQuery("g1", keyword="red cat", regex=True))).total == 75


# ----- the keyword parser and the regex check, fuzzed --------------------------------------------------------
PIECES = [
    "(",
    ")",
    '"',
    "\\",
    " ",
    "and",
    "or",
    "not",
    "a",
    "cat",
    "model:",
    "lora:",
    "seed:",
    "neg:",
    ":",
    "*",
]
keywords = st.lists(st.sampled_from(PIECES), max_size=60).map(" ".join) | st.text(
    alphabet='() "\\:*anotdr-', max_size=80
)
deep = st.integers(1, 400).flatmap(
    lambda n: st.sampled_from(["(" * n + "a" + ")" * n, "not " * n + "a", "(not " * n + "a" + ")" * n])
)
TEXTS = SearchedTexts("a red cat\nSteps: 20", "blurry", "m", "Euler", "lora:a", "1")
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))


def within_bound(function, *args) -> None:
    """Call; only InvalidRequest may come out, and the call returns within a second."""
    started = time.perf_counter()
    try:
        function(*args)
    except InvalidRequest as exc:
        assert exc.option in ("keyword", "regex", "filename") and "\n" not in exc.message
    assert time.perf_counter() - started < 1.0


def use_tree(text: str) -> None:
    node = parse_keywords(text)
    if node is None:
        return
    assert decode(encode(node)) == node
    for negative in NegativeMode:
        to_whoosh(node, negative)
        keyword_match(node, negative)
    sql_condition(node, NegativeMode.NO)
    matches(node, TEXTS, True, False)
    matches(node, TEXTS, False, False)


@FUZZ
@given(text=keywords | deep)
def test_the_keyword_parser_only_refuses_with_option_errors(text):
    """Item 6: any keyword text parses (and its tree is used) or is InvalidRequest("keyword"), quickly."""
    within_bound(use_tree, text)


REGEX_PIECES = list("()[]{}*+?|.^$\\:,-=!<>P0123456789aAbwsdQEz") + ["(?", "(?P<n>", "{1000}", "[[:alpha:]]"]
regex_texts = st.lists(st.sampled_from(REGEX_PIECES), max_size=40).map("".join) | st.text(max_size=40)


def use_pattern(pattern: str) -> None:
    for case_sensitive in (True, False):
        check_patterns(Term(pattern), case_sensitive)
        matches(Term(pattern), TEXTS, case_sensitive, True)
    regex_match(pattern, NegativeMode.YES)


@FUZZ
@given(pattern=regex_texts)
def test_the_regex_check_only_refuses_with_option_errors(pattern):
    """Item 6: any pattern compiles (RE2) and gets its prefilter, or is InvalidRequest("keyword"), quickly."""
    within_bound(use_pattern, pattern)


@pytest.mark.parametrize(
    "text", ["(" * 3000, ")" * 3000, "not " * 3000 + "a", "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1),
             '"' * 999, "a " * 500, "x" * 100_000],
)  # fmt: skip
def test_parser_bombs_are_option_errors(text):
    """Item 6: the inputs that raised RecursionError are option errors naming the keyword."""
    with pytest.raises(InvalidRequest) as caught:
        parse_keywords(text)
    assert caught.value.option == "keyword"


def salon(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALON_DATA_DIR": str(data)}
    command = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())", *args]
    cwd = Path(__file__).resolve().parents[2]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["(" * 3000], "keyword"),
        (["(" * 40 + "a" + ")" * 40], "keyword"),
        (["not " * 200 + "a"], "keyword"),
        (['"unbalanced'], "keyword"),
        (["a{99999999999}", "--regex"], "keyword"),
        ([r"(a)\1", "--regex"], "keyword"),
        (["x", "--filename", "(", "--regex"], "filename"),
    ],
)
def test_salon_browse_refuses_bad_patterns_in_one_line(tmp_path, args, option):
    """Item 6: `salon browse` exits 2 with a one-line option error and no traceback."""
    done = salon(tmp_path / "data", "browse", *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error {option}:"), done.stderr


def test_salon_browse_answers_a_catastrophic_regex(tmp_path):
    """Item 5: `salon browse '(a+)+$' --regex` over a 29-character prompt (past 60 s before) answers at once."""

    async def fill():
        catalog = await Catalog.open(tmp_path / "data" / "catalog")
        await catalog.bulk_insert([row(1, EVIL_PROMPT, "local", ""), row(2, "x", "local", "aaa")])
        await catalog.close()

    asyncio.run(fill())
    started = time.monotonic()
    done = salon(tmp_path / "data", "browse", "(a+)+$", "--regex")
    assert done.returncode == 0, done.stderr
    assert "(1 images)" in done.stdout and time.monotonic() - started < 60


# ----- extra-network tags in linear time (item 7) ------------------------------------------------------------
OLD_TAG = re.compile(r"<(\w+):([^>]+)>")


def old_extract(prompt: str):
    """The regex implementation that was quadratic (kept to check the new one finds the same tags)."""
    found = []
    for match in OLD_TAG.finditer(prompt):
        name, *args = match.group(2).split(":")
        found.append((match.group(1), name, tuple(args)))
    return OLD_TAG.sub("", prompt), found


tag_texts = st.lists(
    st.sampled_from(["<", ">", ":", "lora", "x", " ", "<lora:", "a:1>", "é", "_", "<:", "\n", "/", ".."]),
    max_size=30,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(prompt=tag_texts)
def test_extra_network_tags_are_found_as_the_regex_found_them(prompt):
    """Item 7: the linear scan removes and returns exactly what A1111's regex did (or refuses the same)."""
    expected, expected_error = None, None
    try:
        text, found = old_extract(prompt)
        for kind, name, _ in found:  # the validation the engine adds on top of the regex
            if not name or name.startswith(".") or ".." in name or any(c in name for c in "/\\\0"):
                raise InvalidRequest(kind, "not allowed")
        expected = (text, found)
    except InvalidRequest as exc:
        expected_error = exc.option
    try:
        text, networks = extract_extra_networks(prompt)
    except InvalidRequest as exc:
        assert exc.option == expected_error
        return
    assert expected_error is None
    assert (text, [(n.kind, n.name, n.args) for n in networks]) == expected


def _timed(prompt: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        extract_extra_networks(prompt)
        best = min(best, time.perf_counter() - started)
    return best


def test_a_megabyte_of_unclosed_tags_is_linear():
    """Item 7: 1 MB of `<lora:` (over 30 s for 120 KB before) takes well under a second and scales linearly."""
    unit = "<lora:"
    big = unit * (1_000_000 // len(unit))
    started = time.perf_counter()
    assert extract_extra_networks(big) == (big, [])
    assert time.perf_counter() - started < 5
    quarter = _timed(unit * (250_000 // len(unit)))
    whole = _timed(big)
    assert whole / max(quarter, 1e-6) < 10  # linear: about 4; quadratic: about 16
    assert extract_extra_networks("x <lora:a:1>" + big) == (
        "x " + big,
        extract_extra_networks("<lora:a:1>")[1],
    )
