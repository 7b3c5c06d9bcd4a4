"""A1111 prompt syntax: attention weights, BREAK, extra-network tags and styles behave as in the Web UI."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidRequest
from engine.prompts.prompt_syntax import (
    ExtraNetwork,
    apply_style,
    extract_extra_networks,
    is_break,
    parse_prompt_attention,
)

BREAK = ("BREAK", -1)


def assert_parsed(text: str, expected: list[tuple[str, float]]) -> None:
    """Compare texts exactly and weights with pytest.approx."""
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


# Every doctest of A1111's `parse_prompt_attention` (modules/prompt_parser.py).
A1111_DOCTESTS = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), A1111_DOCTESTS)
def test_a1111_doctests(text: str, expected: list[tuple[str, float]]) -> None:
    """The documented A1111 examples give the documented fragments and weights."""
    assert_parsed(text, expected)


def test_doctest_weights_match_a1111_float_for_float() -> None:
    """Multiplication order is A1111's, so even the float rounding of the doctest is reproduced."""
    weights = dict(parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))))."))
    assert weights["house"] == 1.5730000000000004
    assert weights["sky"] == 1.4641000000000006


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("((a))", [("a", 1.1 * 1.1)]),
        ("[[a]]", [("a", 1 / 1.1 / 1.1)]),
        ("([a])", [("a", 1.0)]),
        ("((a:2))", [("a", 2.2)]),
        ("(a (b:2) c)", [("a ", 1.1), ("b", 2.2), (" c", 1.1)]),
        ("[a (b) c]", [("a ", 1 / 1.1), ("b", 1.0), (" c", 1 / 1.1)]),
        ("(a:0.5) (b:1.5)", [("a", 0.5), (" ", 1.0), ("b", 1.5)]),
        ("(a: 1.5 )", [("a", 1.5)]),
        ("(a:-1)", [("a", -1.0)]),
        ("x [unbalanced (nested", [("x ", 1.0), ("unbalanced ", 1 / 1.1), ("nested", 1.0)]),
    ],
)
def test_nesting_and_explicit_weights(text: str, expected: list[tuple[str, float]]) -> None:
    """Nested brackets multiply; explicit weights replace the 1.1 of the bracket they close."""
    assert_parsed(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\(a\\)", [("(a)", 1.0)]),
        ("\\[a\\]", [("[a]", 1.0)]),
        ("a \\\\ b", [("a \\ b", 1.0)]),
        ("(\\(a\\))", [("(a)", 1.1)]),
        ("a\\b", [("ab", 1.0)]),
        ("a)b]", [("a)b]", 1.0)]),
        ("a:b", [("a:b", 1.0)]),
        ("a:1.5)", [("a:1.5)", 1.0)]),
        ("(x:1.2.3)", [("x:1.2.3", 1.1)]),
        ("", [("", 1.0)]),
        ("()", [("", 1.0)]),
    ],
)
def test_escapes_and_stray_syntax(text: str, expected: list[tuple[str, float]]) -> None:
    """Escapes are literal, closers without an opener are text, and a lone backslash is dropped (as A1111)."""
    assert_parsed(text, expected)


def test_break_is_a_marker_between_fragments() -> None:
    """BREAK as a word becomes the marker; the spaces around it are eaten."""
    assert parse_prompt_attention("a cat BREAK a dog") == [("a cat", 1.0), BREAK, ("a dog", 1.0)]


def test_break_needs_word_boundaries_and_capitals() -> None:
    """BREAKFAST, xBREAK and lower-case break stay ordinary text."""
    for text in ("BREAKFAST", "xBREAK", "a break b"):
        assert parse_prompt_attention(text) == [(text, 1.0)]


def test_break_at_edges_and_repeated() -> None:
    """Leading, trailing and doubled BREAKs each give a marker with (possibly empty) text between."""
    assert parse_prompt_attention("BREAK") == [("", 1.0), BREAK, ("", 1.0)]
    assert parse_prompt_attention("a BREAK BREAK b") == [("a", 1.0), BREAK, ("", 1.0), BREAK, ("b", 1.0)]
    assert parse_prompt_attention("a\nBREAK\nb") == [("a", 1.0), BREAK, ("b", 1.0)]


def test_break_inside_brackets_stays_a_marker() -> None:
    """Unlike A1111 (which scales the -1), a BREAK inside brackets still splits chunks."""
    got = parse_prompt_attention("(a BREAK b)")
    assert got == [("a", pytest.approx(1.1)), BREAK, ("b", pytest.approx(1.1))]
    assert [is_break(f) for f in got] == [False, True, False]


def test_fragments_with_equal_weight_are_merged() -> None:
    """Neighbours of equal weight join, as A1111 does after parsing."""
    assert parse_prompt_attention("(a)(b) c") == [("ab", pytest.approx(1.1)), (" c", 1.0)]
    assert parse_prompt_attention("a \\( b") == [("a ( b", 1.0)]


# Extra networks -------------------------------------------------------------------------------------------


def test_extract_lora_with_weight() -> None:
    """A LoRA tag is removed from the text and returned with its arguments."""
    text, networks = extract_extra_networks("a cat <lora:film_grain:0.8>, sharp")
    assert text == "a cat , sharp"
    assert networks == [ExtraNetwork("lora", "film_grain", ("0.8",))]
    assert networks[0].multiplier == pytest.approx(0.8)


def test_default_multiplier_is_one() -> None:
    """Without a weight the multiplier is 1.0."""
    _, networks = extract_extra_networks("<lora:style>")
    assert networks == [ExtraNetwork("lora", "style", ())]
    assert networks[0].multiplier == 1.0


def test_several_tags_keep_their_order() -> None:
    """Several tags, of several kinds, come back in prompt order."""
    text, networks = extract_extra_networks("<lora:a:0.5> x <hypernet:h:0.3> y <lora:b:1.2:0.4>")
    assert text == " x  y "
    assert [(n.kind, n.name, n.args) for n in networks] == [
        ("lora", "a", ("0.5",)),
        ("hypernet", "h", ("0.3",)),
        ("lora", "b", ("1.2", "0.4")),
    ]
    assert [n.multiplier for n in networks] == pytest.approx([0.5, 0.3, 1.2])


def test_tags_inside_attention_brackets() -> None:
    """Tags are found inside brackets; the brackets stay for the attention parser."""
    text, networks = extract_extra_networks("((masterpiece <lora:detail:0.6>)), [bad <hypernet:h>]")
    assert text == "((masterpiece )), [bad ]"
    assert [n.name for n in networks] == ["detail", "h"]
    assert parse_prompt_attention(text)[0] == ("masterpiece ", pytest.approx(1.21))


def test_named_arguments() -> None:
    """`key=value` arguments are named (A1111 ExtraNetworkParams); LoRA's `te=` sets the multiplier."""
    _, (net,) = extract_extra_networks("<lora:x:te=0.3:unet=0.7>")
    assert net.positional == ()
    assert net.named == {"te": "0.3", "unet": "0.7"}
    assert net.multiplier == pytest.approx(0.3)
    _, (positional,) = extract_extra_networks("<lora:x:0.9:unet=0.7>")
    assert positional.multiplier == pytest.approx(0.9)


def test_text_without_tags_is_unchanged() -> None:
    """Angle brackets that are not tags stay in the prompt."""
    assert extract_extra_networks("a <b> c <:x> d") == ("a <b> c <:x> d", [])


@pytest.mark.parametrize("weight", ["abc", "nan", "inf", "1,5"])
def test_bad_weight_is_refused(weight: str) -> None:
    """A weight that is not a finite number is refused, naming the prompt and the allowed form."""
    _, (net,) = extract_extra_networks(f"<lora:x:{weight}>")
    with pytest.raises(InvalidRequest) as caught:
        _ = net.multiplier
    assert caught.value.option == "prompt"
    assert "not a number" in str(caught.value)
    assert "<lora:x:0.8>" in str(caught.value)


BAD_NAMES = ["../x", "..", "a/b", "a\\b", ".hidden", "x\0y", "/etc/passwd", "a\\..\\b", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_traversal_names_are_refused(name: str) -> None:
    """Names with folders, `..`, a leading dot or NUL are refused before any file is touched."""
    with pytest.raises(InvalidRequest) as caught:
        extract_extra_networks(f"a <lora:{name}:1> b")
    assert caught.value.option == "lora"
    assert "not allowed" in str(caught.value)


def test_traversal_message_says_what_is_allowed() -> None:
    """The refusal names the option and the folder users should pick from."""
    with pytest.raises(InvalidRequest) as caught:
        extract_extra_networks("<lora:../x:1>")
    assert str(caught.value) == (
        "lora: name '../x' is not allowed: use the file name of a LoRA in models/Lora, without folders"
    )


def test_traversal_refusal_names_the_tag_kind() -> None:
    """For other kinds the option is the tag kind."""
    with pytest.raises(InvalidRequest) as caught:
        extract_extra_networks("<hypernet:../../h:1>")
    assert caught.value.option == "hypernet"
    assert "models/hypernetworks" in caught.value.message


def test_dots_inside_a_name_are_fine() -> None:
    """A single dot inside a name (versioned files) is allowed."""
    _, (net,) = extract_extra_networks("<lora:style_v1.5:1>")
    assert net.name == "style_v1.5"


# Styles ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "style", "expected"),
    [
        ("a cat", "oil painting", "a cat, oil painting"),
        ("  a cat  ", " oil painting ", "a cat, oil painting"),
        ("a cat", "masterpiece, {prompt}, 4k", "masterpiece, a cat, 4k"),
        ("a cat", "{prompt} and {prompt}", "a cat and a cat"),
        ("", "oil painting", "oil painting"),
        ("a cat", "", "a cat"),
        ("", "", ""),
        ("", "x {prompt} y", "x  y"),
    ],
)
def test_apply_style(prompt: str, style: str, expected: str) -> None:
    """Styles merge as A1111 `merge_prompts`: placeholder replaced, else appended after ", "."""
    assert apply_style(prompt, style) == expected


# Properties -----------------------------------------------------------------------------------------------

SYNTAX_ALPHABET = st.sampled_from(list("ab ():[]\\,.0123456789-+\n") + ["BREAK", " BREAK ", "<lora:x:1>"])
PLAIN_ALPHABET = st.sampled_from(list("ab ,.:0123456789-+\n\tBREAKx") + ["BREAK", " BREAK ", "é", "\0"])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(), st.lists(SYNTAX_ALPHABET).map("".join)))
def test_parse_never_raises(text: str) -> None:
    """Any text parses to a non-empty list of (str, float) pairs."""
    parsed = parse_prompt_attention(text)
    assert parsed
    assert all(isinstance(t, str) and isinstance(w, float) for t, w in parsed)


@settings(max_examples=1000, deadline=None)
@given(st.lists(PLAIN_ALPHABET).map("".join))
def test_text_is_kept_without_brackets(text: str) -> None:
    """Without brackets or escapes the fragments are the input minus the BREAK keywords, all at weight 1."""
    parsed = parse_prompt_attention(text)
    texts = [t for t, w in parsed if not is_break((t, w))]
    assert "".join(texts) == re.sub(r"\s*\bBREAK\b\s*", "", text)
    assert all(w == 1.0 for t, w in parsed if not is_break((t, w)))
