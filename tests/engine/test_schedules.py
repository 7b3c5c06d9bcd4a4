"""Deforum keyframe schedules: the values Deforum computes frame by frame, and a parser that never runs code."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.animation.schedules import ScheduleError, parse_expression, prompt_math, schedule_values

# Deforum's defaults (sd-webui-deforum args.py) and the examples of its documentation.
DEFORUM_ZOOM = "0: (1.0025+0.002*sin(1.25*3.14*t/30))"
DEFORUM_SEED = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'


def test_an_expression_keyframe_is_computed_at_every_frame():
    values = schedule_values(DEFORUM_ZOOM, "zoom", 120)
    assert len(values) == 120
    for t in (0, 1, 17, 119):
        assert values[t] == pytest.approx(1.0025 + 0.002 * math.sin(1.25 * 3.14 * t / 30), abs=1e-12)


def test_numbers_are_interpolated_linearly_and_held_past_the_ends():
    assert schedule_values("0:(0), 10:(10)", "angle", 15) == [float(i) for i in range(11)] + [10.0] * 4
    assert schedule_values("5:(2), 9:(4)", "angle", 12) == [2.0] * 6 + [2.5, 3.0, 3.5] + [4.0] * 3
    assert schedule_values("0: (1.0), 2: (1.02)", "zoom", 3) == pytest.approx([1.0, 1.01, 1.02])


def test_the_default_seed_schedule():
    # max_f is the last frame (9): frame 0 is s, frames 1…7 are -1 (a random seed each), and from frame 8
    # the expression s holds to the end.
    assert schedule_values(DEFORUM_SEED, "seed_schedule", 10, seed=42) == [42.0] + [-1.0] * 7 + [42.0] * 2


def test_expressions_hold_until_the_next_keyframe_numbers_do_not():
    assert schedule_values("0:(t*2), 5:(100)", "x", 7) == [0.0, 2.0, 4.0, 6.0, 8.0, 100.0, 100.0]
    assert schedule_values("0:(0), 4:(t)", "x", 6) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # Deforum's number test is textual: "1e-3" and " 1 " are computed (held), "-1" and ".5" are numbers.
    assert schedule_values("0:(1e-3), 4:(1)", "x", 5) == [0.001] * 4 + [1.0]
    assert schedule_values("0:( 0 ), 4:(1)", "x", 5) == [0.0] * 4 + [1.0]
    assert schedule_values("0:(-1), 2:(.5)", "x", 3) == [-1.0, -0.25, 0.5]


def test_max_f_s_where_and_commas_inside_values():
    values = schedule_values("0:(where(t < max_f/2, t, max_f - t)), 8:(arctan2(1, 1)*4)", "x", 10, seed=3)
    assert values[:8] == [0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0] and values[8] == pytest.approx(math.pi)
    assert schedule_values("0:(s % 7 + pi - pi)", "x", 2, seed=23) == [2.0, 2.0]
    assert schedule_values("0:(2**3**2)", "x", 1) == [512.0]  # right-associative, like numexpr
    assert schedule_values("0:(-2**2)", "x", 1) == [-4.0]
    assert schedule_values("0:(25.9)", "steps", 2, integer=True) == [25.0, 25.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no keyframes"),
        ("0:1.0", "position 3: expected '(' before the value, found '1'"),
        ("0:(1.0) 30:(2)", "position 9: expected ',' between keyframes, found '3'"),
        ("x:(1)", "position 1: expected a frame number"),
        ("0:(1+)", "zoom at frame 0: position 3: expected a number, a name or '(', found the end"),
        ("0:(1 2)", "position 3: expected an operator or the end, found '2'"),
        ("0:(sin 1)", "expected '(' after sin"),
        ("0:(foo(1))", "unknown name 'foo'"),
        ("0:(1, 2", "expected ')' to close the value"),
        ("0:(log(1, 2))", "log takes 1 argument(s), not 2"),
        ("0:(t/0)", "cannot be computed at frame 0"),
        ("0:(10**400)", "cannot be computed at frame 0"),
        ("0:(9**9**9)", "larger than 1000"),
        ("0:((-8)**(1/3))", "is not a real number"),
        ("0:(__import__(t))", "unknown name '__import__'"),
        ("0:(__import__('os'))", "position 12: unexpected"),
        ("0:(t.__class__)", "unexpected '.'"),
        ("0:(" + "(" * 100 + "1" + ")" * 100 + ")", "nested more than 64 deep"),
        ("0:(" + "+".join(["1"] * 3000) + ")", "more than 2000 parts"),
        ("0:(1" + " " * 20_000 + ")", "longer than 10000 characters"),
    ],
)
def test_mistakes_name_the_schedule_the_position_and_what_was_expected(text, message):
    with pytest.raises(ScheduleError, match="^zoom") as caught:
        schedule_values(text, "zoom", 10)
    assert message in str(caught.value)


ALPHABET = "0123456789.+-*/%()<>=!&|~,:\"' tsmax_fsincowhere_Ie"
PIECES = [
    "t",
    "s",
    "max_f",
    "sin(",
    "where(",
    "**",
    "(",
    ")",
    ",",
    ":",
    '"',
    "1e308",
    "__import__",
    ".",
    "0:(",
]


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=ALPHABET, max_size=60)
    | st.lists(st.sampled_from(PIECES + list("0123()")), max_size=30).map("".join)
)
def test_any_text_either_gives_finite_values_or_a_schedule_error(text):
    try:
        values = schedule_values(text, "zoom", 5, seed=7)
    except ScheduleError:
        return
    assert len(values) == 5 and all(math.isfinite(v) for v in values)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_no_expression_reaches_python(text):
    try:
        expression = parse_expression(text)
    except ScheduleError:
        return
    try:
        result = expression(3, 9, 1)
    except (ArithmeticError, ValueError):
        return
    assert isinstance(result, float)


def test_every_default_of_deforums_settings_file():
    """The schedule defaults of sd-webui-deforum's args.py (Salon's defaults too), frame by frame over its
    default 120 frames."""
    from engine.animation.animate import NUMERIC_SCHEDULES, AnimationSettings

    defaults = AnimationSettings()
    constants = {
        "angle": 0,
        "translation_x": 0,
        "translation_y": 0,
        "transform_center_x": 0.5,
        "transform_center_y": 0.5,
        "strength_schedule": 0.65,
        "noise_schedule": 0.065,
        "contrast_schedule": 1.0,
        "cfg_scale_schedule": 7,
        "steps_schedule": 25,
        "noise_multiplier_schedule": 1.05,
    }
    for name in NUMERIC_SCHEDULES:
        values = schedule_values(getattr(defaults, name), name, 120, seed=1234)
        if name in constants:
            assert values == [float(constants[name])] * 120, name
    zoom = schedule_values(defaults.zoom, "zoom", 120)
    assert zoom == pytest.approx(
        [1.0025 + 0.002 * math.sin(1.25 * 3.14 * t / 30) for t in range(120)], abs=1e-12
    )
    seeds = schedule_values(defaults.seed_schedule, "seed_schedule", 120, seed=1234)
    assert seeds == [1234.0] + [-1.0] * 117 + [1234.0] * 2


@pytest.mark.parametrize(
    ("text", "frame", "expected"),
    [
        ("a `(0.5+0.5*sin(t/10))` cat", 5, "a 0.7397127693021015 cat"),
        ("`t*2` `t%4` `2**3` `max_f/2` `-t`", 5, "10 1 8 49.5 -5"),
        ("`t>3` `1.5*2` `abs(-3)` `where(t>2, 1.5, 0)` `1e3`", 0, "False 3.0 3 0 1000.0"),
        ("`where(t>2, 1.5, 0)` `cos(t)*cos(t)+sin(t)*sin(t)`", 17, "1.5 0.9999999999999999"),
        ("no math, `` left alone? no: empty is an error", 0, None),
    ],
)
def test_prompt_math_prints_as_deforum_does(text, frame, expected):
    """Deforum's prompt.py prepare_prompt (commit 322426851408ebca2cd49492bfeb1ec86e1dc869) writes the frame and
    max_f into each `…` and prints numexpr's result; these strings are what it printed for 100 frames."""
    if expected is None:
        with pytest.raises(
            ScheduleError, match="position 1: expected a number, a name or '\\(', found the end"
        ):
            prompt_math(text, frame, 99)
        return
    assert prompt_math(text, frame, 99) == expected


def test_prompt_math_runs_no_code():
    with pytest.raises(ScheduleError, match="unknown name '__import__'"):
        prompt_math("`__import__(t)`", 0, 10)
    assert prompt_math("plain text, (weights:1.2) and [a|b]", 3, 10) == "plain text, (weights:1.2) and [a|b]"
