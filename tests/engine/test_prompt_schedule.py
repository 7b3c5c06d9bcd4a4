"""A1111 prompt editing, alternation and composable diffusion: schedules pinned from A1111's own parser.

The tables below are the answers of AUTOMATIC1111/stable-diffusion-webui's `modules/prompt_parser.py` at
commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906 (`get_learned_conditioning_prompt_schedules(prompts,
steps, hires_steps)` and `get_multicond_prompt_list`), run outside this repository with lark 1.3.1. Only the
answers are kept here, as data. On random soups of brackets, colons and numbers our parser agrees with it on
about 99.9% of prompts; the rest are prompts where lark's ambiguity resolution reads a construct followed by
loose brackets as text in ways we do not model (see `prompt_schedule.py`).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.prompts.prompt_schedule import (
    is_static,
    parse_schedule_syntax,
    prompt_schedule,
    split_composable,
    text_at_step,
)

# (prompt, steps, hires steps, A1111 schedule)
SCHEDULES = [
    ("test", 10, None, [(10, "test")]),
    ("a [b:3]", 10, None, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, None, [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", 10, None, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, None, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, None, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, None, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", 10, None, [(10, "a [unbalanced")]),
    ("a [b:.5] c", 10, None, [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", 10, None, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    (
        "[fe|||]male",
        10,
        None,
        [
            (1, "female"),
            (2, "male"),
            (3, "male"),
            (4, "male"),
            (5, "female"),
            (6, "male"),
            (7, "male"),
            (8, "male"),
            (9, "female"),
            (10, "male"),
        ],
    ),
    ("a [b:.5] c", 10, 10, [(10, "a b c")]),
    ("a [b:1.5] c", 10, 10, [(5, "a  c"), (10, "a b c")]),
    ("[red:blue:0.5]", 20, None, [(10, "red"), (20, "blue")]),
    ("[red:blue:0.5]", 7, None, [(3, "red"), (7, "blue")]),
    ("[red:blue:0.25]", 10, None, [(2, "red"), (10, "blue")]),
    ("[red:blue:1.0]", 10, None, [(10, "red")]),
    ("[red:blue:0]", 10, None, [(10, "blue")]),
    ("[red:blue:0.0]", 10, None, [(10, "blue")]),
    ("[red:blue:10]", 10, None, [(10, "red")]),
    ("[red:blue:15]", 10, None, [(10, "red")]),
    ("[red:blue:3.]", 10, None, [(10, "red")]),
    ("[red:blue:-1]", 10, None, [(10, "blue")]),
    ("[red:blue:1e1]", 20, None, [(10, "red"), (20, "blue")]),
    ("[red:blue:+4]", 10, None, [(4, "red"), (10, "blue")]),
    ("[red:blue: 0.5 ]", 10, None, [(5, "red"), (10, "blue")]),
    ("[red:blue:0.99]", 10, None, [(9, "red"), (10, "blue")]),
    ("[red:blue:1]", 4, None, [(1, "red"), (4, "blue")]),
    ("[[a:b:0.3]:c:0.7]", 10, None, [(3, "a"), (7, "b"), (10, "c")]),
    ("[a:[b:c:0.6]:0.3]", 10, None, [(3, "a"), (6, "b"), (10, "c")]),
    ("[a::0.5] b", 4, None, [(2, "a b"), (4, " b")]),
    ("a [b:0.5]", 4, None, [(2, "a "), (4, "a b")]),
    ("[a|b|c]", 6, None, [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")]),
    ("[fe|]male", 4, None, [(1, "female"), (2, "male"), (3, "female"), (4, "male")]),
    ("[a|[b:c:2]]", 5, None, [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "a")]),
    ("[|x]y", 3, None, [(1, "y"), (2, "xy"), (3, "y")]),
    ("[a:b:2] [c|d]", 4, None, [(1, "a c"), (2, "a d"), (3, "b c"), (4, "b d")]),
    ("\\[a:b:0.5\\]", 10, None, [(10, "\\[a:b:0.5\\]")]),
    ("[a\\:b:c:5]", 10, None, [(5, "a\\:b"), (10, "c")]),
    ("[a\\|b|c]", 4, None, [(1, "a\\|b"), (2, "c"), (3, "a\\|b"), (4, "c")]),
    ("\\(x\\) [a|b]", 3, None, [(1, "\\(x\\) a"), (2, "\\(x\\) b"), (3, "\\(x\\) a")]),
    ("[(red:1.3):blue:0.5]", 10, None, [(5, "(red:1.3)"), (10, "blue")]),
    ("([red:blue:0.5]:1.2)", 10, None, [(5, "(red:1.2)"), (10, "(blue:1.2)")]),
    ("[[red]:blue:2]", 10, None, [(2, "[red]"), (10, "blue")]),
    ("[a BREAK b:c:0.5]", 10, None, [(5, "a BREAK b"), (10, "c")]),
    ("a | b [x:y:2]", 10, None, [(10, "a | b [x:y:2]")]),
    ("[a:b:2] \\", 10, None, [(10, "[a:b:2] \\")]),
    ("[a:b:5]::", 10, None, [(10, "[a:b:5]::")]),
    ("[a:b:5]:::", 10, None, [(5, "a:::"), (10, "b:::")]),
    ("[a:b:5]:", 10, None, [(5, "a:"), (10, "b:")]),
    ("[a:b:c:5]", 10, None, [(10, "[a:b:c:5]")]),
    ("[a:b:5x]", 10, None, [(10, "[a:b:5x]")]),
    ("(a:b:c) [x:y:2]", 10, None, [(2, "(a:b:c) x"), (10, "(a:b:c) y")]),
    ("[a:b:0.5]", 20, 10, [(10, "b")]),
    ("[a:b:25]", 20, 10, [(5, "a"), (10, "b")]),
    ("[a:b:1.5]", 20, 10, [(5, "a"), (10, "b")]),
    ("[a|b]", 20, 4, [(1, "a"), (2, "b"), (3, "a"), (4, "b")]),
    ("[a:b:5]", 20, 10, [(10, "b")]),
    ("[a:b:1.0]", 20, 10, [(10, "b")]),
    ("[a:b:40]", 20, 10, [(10, "a")]),
    ("[a:[b:c:1.25]:1.5]", 20, 8, [(2, "a"), (4, "a"), (8, "c")]),
    ("<lora:x:0.5> [a:b:0.5]", 10, None, [(5, "<lora:x:0.5> a"), (10, "<lora:x:0.5> b")]),
    ("[cat:dog:0.5] AND sky", 10, None, [(5, "cat AND sky"), (10, "dog AND sky")]),
]

# (prompt, A1111 sub-prompts with weights)
COMPOSABLE = [
    ("a AND b", [("a", 1.0), (" b", 1.0)]),
    ("a:1.5 AND b :-0.5", [("a", 1.5), (" b", -0.5)]),
    ("cat:0.5", [("cat", 0.5)]),
    ("ANDROID AND x", [("ANDROID", 1.0), (" x", 1.0)]),
    ("a AND", [("a", 1.0), ("", 1.0)]),
    ("AND", [("", 1.0), ("", 1.0)]),
    ("[a:b:0.5] AND c:2", [("[a:b:0.5]", 1.0), (" c", 2.0)]),
    ("a\nAND\nb", [("a", 1.0), ("\nb", 1.0)]),
    ("(x:1.2) AND y", [("(x:1.2)", 1.0), (" y", 1.0)]),
    ("a ANDb", [("a ANDb", 1.0)]),
    ("a:1:2", [("a:1", 2.0)]),
    ("a: .5", [("a", 0.5)]),
    ("a:5.", [("a", 5.0)]),
    ("x:+2", [("x", 2.0)]),
    ("a and b", [("a and b", 1.0)]),
    ("a AND a:2", [("a", 1.0), (" a", 2.0)]),
    ("x:1.5.3", [("x:1.5.3", 1.0)]),
    ("a AND b AND c:0", [("a", 1.0), (" b", 1.0), (" c", 0.0)]),
    ("  lead AND trail  ", [("  lead", 1.0), (" trail", 1.0)]),
    ("cat (x:1.2):0.7", [("cat (x:1.2)", 0.7)]),
]


@pytest.mark.parametrize(("prompt", "steps", "hires", "expected"), SCHEDULES)
def test_schedule_matches_a1111(prompt, steps, hires, expected):
    assert prompt_schedule(prompt, steps, hires) == expected


@pytest.mark.parametrize(("prompt", "expected"), COMPOSABLE)
def test_composable_split_matches_a1111(prompt, expected):
    assert split_composable(prompt) == expected


def test_text_at_step_counts_from_zero_up_to_each_end():
    schedule = prompt_schedule("[red:blue:0.5]", 4)  # [(2, red), (4, blue)]
    assert [text_at_step(schedule, i) for i in range(4)] == ["red", "red", "red", "blue"]
    alternating = prompt_schedule("[a|b]", 4)  # A1111 starts with the first option twice
    assert [text_at_step(alternating, i) for i in range(4)] == ["a", "a", "b", "a"]


def test_huge_numbers_mean_never_or_from_the_start():
    assert prompt_schedule("[a:b:1e999]", 10) == [(10, "a")]
    assert prompt_schedule("[a:b:-1e999]", 10) == [(10, "b")]


@pytest.mark.parametrize(
    ("prompt", "static"),
    [
        ("a red circle", True),
        ("(red:1.2) circle, [blue]", True),
        ("a [unbalanced", True),
        ("[red:blue:0.5]", False),
        ("[a|b]", False),
        ("red AND blue", False),
        ("red:0.5", False),
        ("a red circle, glossy ", True),  # A1111 drops a sub-prompt's trailing space: the same tokens
    ],
)
def test_static_prompts_keep_the_plain_path(prompt, static):
    assert is_static(prompt, 20) is static


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab []():|\\.05-", max_size=40), st.integers(1, 30))
def test_any_prompt_gives_a_schedule_ending_at_the_last_step(prompt, steps):
    schedule = prompt_schedule(prompt, steps)
    ends = [end for end, _ in schedule]
    assert ends == sorted(set(ends)) and ends[-1] == steps and ends[0] >= 1
    if parse_schedule_syntax(prompt) is None:
        assert schedule == [(steps, prompt)]


def test_long_prompts_parse_in_reasonable_time():
    prompt = "[a:b:0.5]" * 400 + "(" * 2000 + "[" * 2000
    assert prompt_schedule(prompt, 20)[-1][0] == 20
