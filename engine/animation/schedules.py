"""Deforum keyframe schedules: `0:(1.0), 30:(1.02)` or `0:(1+0.002*sin(1.25*3.14*t/30))`, one value per frame.

No `eval` anywhere: an expression is read by a small parser into a tree of numbers, the names `t` (frame),
`max_f` (last frame) and `s` (seed), the operators numexpr has (`+ - * / % **`, comparisons, `& | ~`) and a
fixed list of functions (sin, cos, …, where), then computed with Python floats. Size, nesting and exponents
are bounded, and every mistake is a `ScheduleError` naming the schedule, the position and what was expected.

Frame by frame as Deforum's `get_inbetweens`: a keyframe whose value is a plain number holds at that frame and
the frames between numbers are interpolated linearly; a keyframe whose value is an expression is computed at
every frame up to the next keyframe (with `t` the frame); frames before the first keyframe and after the last
take their values.

Deforum's prompts may hold the same expressions between backticks (`` a `(0.5+0.5*sin(t/10))` cat ``): each is
computed at the frame and written into the prompt as numexpr would print it (`prompt_math`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.errors import InvalidRequest

MAX_TEXT = 10_000  # characters of one schedule
MAX_NODES = 2_000  # numbers, names and operations in one expression
MAX_DEPTH = 64  # nesting of parentheses and operators
MAX_EXPONENT = 1_000  # |b| in a ** b
MAX_FRAMES = 100_000


class ScheduleError(InvalidRequest):
    """A schedule that cannot be read or computed; the message says where and what was expected."""


def _where(condition: float, yes: float, no: float) -> float:
    return yes if condition else no


FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "sin": (1, math.sin),
    "cos": (1, math.cos),
    "tan": (1, math.tan),
    "arcsin": (1, math.asin),
    "arccos": (1, math.acos),
    "arctan": (1, math.atan),
    "arctan2": (2, math.atan2),
    "sinh": (1, math.sinh),
    "cosh": (1, math.cosh),
    "tanh": (1, math.tanh),
    "arcsinh": (1, math.asinh),
    "arccosh": (1, math.acosh),
    "arctanh": (1, math.atanh),
    "exp": (1, math.exp),
    "expm1": (1, math.expm1),
    "log": (1, math.log),
    "log10": (1, math.log10),
    "log1p": (1, math.log1p),
    "sqrt": (1, math.sqrt),
    "abs": (1, abs),
    "floor": (1, math.floor),
    "ceil": (1, math.ceil),
    "where": (3, _where),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("t", "max_f", "s")

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/%()<>,&|~]))"
)
_BINARY = {  # operator: (precedence, right-associative)
    "|": (1, False),
    "&": (2, False),
    "<": (4, False),
    "<=": (4, False),
    ">": (4, False),
    ">=": (4, False),
    "==": (4, False),
    "!=": (4, False),
    "+": (5, False),
    "-": (5, False),
    "*": (6, False),
    "/": (6, False),
    "%": (6, False),
    "**": (8, True),
}
_PLAIN_NUMBER = re.compile(r"^(?=.)([+-]?([0-9]*)(\.([0-9]+))?)$")
_UNARY_PRECEDENCE = 7  # -x ** 2 is -(x ** 2), as in Python and numexpr


@dataclass(frozen=True)
class Expression:
    """A parsed expression: call with t, max_f and s."""

    text: str
    tree: tuple

    def __call__(self, t: float, max_f: float, s: float) -> float:
        return _compute(self.tree, {"t": t, "max_f": max_f, "s": s})

    @property
    def is_number(self) -> bool:
        """Deforum's test (`check_is_number` on the text between the parentheses): a plain decimal such as
        `1`, `-0.5` or `.25` is interpolated towards the next keyframe; anything else (even `1e-3` or ` 1 `)
        is computed at each frame until the next keyframe."""
        return _PLAIN_NUMBER.match(self.text) is not None


def parse_expression(text: str, where: str = "expression") -> Expression:
    """Read an expression or raise ScheduleError(where, "position N: expected …")."""
    if len(text) > MAX_TEXT:
        raise ScheduleError(where, f"is longer than {MAX_TEXT} characters")
    parser = _Parser(text, where)
    tree = parser.expression(0, 0)
    parser.expect_end()
    return Expression(text, tree)


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                column = position + len(text[position:]) - len(text[position:].lstrip())
                raise ScheduleError(where, f"position {column + 1}: unexpected {text[column]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind) + 1))
            position = match.end()
        self.index = 0
        self.nodes = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _fail(self, expected: str):
        token = self._peek()
        found = f"{token[1]!r}" if token else "the end"
        position = token[2] if token else len(self.text.rstrip()) + 1
        raise ScheduleError(self.where, f"position {position}: expected {expected}, found {found}")

    def _count(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ScheduleError(self.where, f"the expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise ScheduleError(self.where, f"the expression is nested more than {MAX_DEPTH} deep")

    def expect_end(self) -> None:
        if self._peek() is not None:
            self._fail("an operator or the end")

    def expression(self, min_precedence: int, depth: int) -> tuple:
        left = self.unary(depth)
        while (token := self._peek()) is not None and token[0] == "op" and token[1] in _BINARY:
            precedence, right_assoc = _BINARY[token[1]]
            if precedence < min_precedence:
                break
            self.index += 1
            self._count(depth)
            right = self.expression(precedence if right_assoc else precedence + 1, depth + 1)
            left = ("bin", token[1], left, right)
        return left

    def unary(self, depth: int) -> tuple:
        self._count(depth)
        token = self._peek()
        if token is not None and token[0] == "op" and token[1] in ("-", "+", "~"):
            self.index += 1
            operand = self.expression(_UNARY_PRECEDENCE, depth + 1)
            return ("neg", operand) if token[1] == "-" else ("not", operand) if token[1] == "~" else operand
        return self.atom(depth)

    def atom(self, depth: int) -> tuple:
        token = self._peek()
        if token is None:
            self._fail("a number, a name or '('")
        kind, value, position = token
        if kind == "number":
            self.index += 1
            return ("num", float(value), "." not in value and "e" not in value.lower())  # int literal?
        if kind == "op" and value == "(":
            self.index += 1
            inner = self.expression(0, depth + 1)
            self._close()
            return inner
        if kind == "name":
            self.index += 1
            if value in FUNCTIONS:
                return self.call(value, position, depth)
            if value in CONSTANTS:
                return ("num", CONSTANTS[value], False)
            if value in VARIABLES:
                return ("var", value)
            allowed = ", ".join((*VARIABLES, *CONSTANTS))
            raise ScheduleError(
                self.where, f"position {position}: unknown name {value!r}; names are {allowed} and functions"
            )
        self._fail("a number, a name or '('")
        raise AssertionError  # unreachable: _fail raises

    def call(self, name: str, position: int, depth: int) -> tuple:
        arity, _ = FUNCTIONS[name]
        token = self._peek()
        if token is None or token[1] != "(":
            self._fail(f"'(' after {name}")
        self.index += 1
        arguments = [self.expression(0, depth + 1)]
        while (token := self._peek()) is not None and token[1] == ",":
            self.index += 1
            arguments.append(self.expression(0, depth + 1))
        self._close()
        if len(arguments) != arity:
            raise ScheduleError(
                self.where, f"position {position}: {name} takes {arity} argument(s), not {len(arguments)}"
            )
        return ("call", name, *arguments)

    def _close(self) -> None:
        token = self._peek()
        if token is None or token[1] != ")":
            self._fail("')'")
        self.index += 1


def _compute(tree: tuple, names: Mapping[str, float]) -> float:
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "var":
        return float(names[tree[1]])
    if kind == "neg":
        return -_compute(tree[1], names)
    if kind == "not":
        return float(not _compute(tree[1], names))
    if kind == "call":
        _, function = FUNCTIONS[tree[1]]
        if tree[1] == "where":  # only the branch taken is computed
            return float(_compute(tree[3] if _compute(tree[2], names) else tree[4], names))
        return float(function(*(_compute(argument, names) for argument in tree[2:])))
    op, a, b = tree[1], _compute(tree[2], names), _compute(tree[3], names)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "%":
        return a % b
    if op == "**":
        if abs(b) > MAX_EXPONENT:
            raise OverflowError(f"exponent {b:g} is larger than {MAX_EXPONENT}")
        if a < 0 and b != int(b):
            raise ValueError(f"{a:g} ** {b:g} is not a real number")
        return a**b
    return float(
        {
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
            "==": a == b,
            "!=": a != b,
            "&": bool(a) and bool(b),
            "|": bool(a) or bool(b),
        }[op]
    )


# ----- keyframe strings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyframe:
    frame: int
    value: Expression


def parse_keyframes(text: str, name: str, max_frames: int = MAX_FRAMES, seed: int = 0) -> list[Keyframe]:
    """`0:(1.0), 30:(1.02), "max_f-1":(s)` → keyframes in frame order. A frame may be a quoted expression of
    `max_f` and `s`; a value is anything in balanced parentheses (commas inside are fine)."""
    if len(text) > MAX_TEXT:
        raise ScheduleError(name, f"is longer than {MAX_TEXT} characters")
    keyframes: dict[int, Expression] = {}
    position = 0
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            break
        frame, position = _frame(text, position, name, max_frames, seed)
        position = _skip_space(text, position)
        if position >= len(text) or text[position] != ":":
            _expected(name, text, position, "':' after the frame number")
        position = _skip_space(text, position + 1)
        if position >= len(text) or text[position] != "(":
            _expected(name, text, position, "'(' before the value")
        end = _closing(text, position, name)
        keyframes[frame] = parse_expression(text[position + 1 : end], f"{name} at frame {frame}")
        position = _skip_space(text, end + 1)
        if position < len(text):
            if text[position] != ",":
                _expected(name, text, position, "',' between keyframes")
            position += 1
    if not keyframes:
        raise ScheduleError(name, "has no keyframes; write it like 0:(1.0), 30:(1.02)")
    return [Keyframe(frame, keyframes[frame]) for frame in sorted(keyframes)]


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _expected(name: str, text: str, position: int, what: str):
    found = repr(text[position]) if position < len(text) else "the end"
    raise ScheduleError(name, f"position {position + 1}: expected {what}, found {found}")


def _frame(text: str, position: int, name: str, max_frames: int, seed: int) -> tuple[int, int]:
    if text[position] in "\"'":
        quote = text[position]
        end = text.find(quote, position + 1)
        if end < 0:
            _expected(name, text, len(text), f"the closing {quote}")
        expression = parse_expression(text[position + 1 : end], f"{name} frame")
        try:
            return int(expression(0, max_frames - 1, seed)), end + 1
        except (ArithmeticError, ValueError) as exc:
            raise ScheduleError(name, f"frame {text[position : end + 1]} cannot be computed: {exc}") from None
    match = re.compile(r"\d+").match(text, position)
    if match is None:
        _expected(name, text, position, 'a frame number (or a quoted expression like "max_f-1")')
    return int(match.group()), match.end()


def _closing(text: str, start: int, name: str) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    _expected(name, text, len(text), "')' to close the value")
    raise AssertionError  # unreachable


def schedule_values(
    text: str, name: str, max_frames: int, seed: int = 0, integer: bool = False
) -> list[float]:
    """The value at every frame 0…max_frames-1, as Deforum's get_inbetweens computes it."""
    if not 1 <= max_frames <= MAX_FRAMES:
        raise ScheduleError("max_frames", f"{max_frames} is not from 1 to {MAX_FRAMES}")
    keyframes = {k.frame: k.value for k in parse_keyframes(text, name, max_frames, seed)}
    values: list[float | None] = [None] * max_frames
    current: Expression | None = None
    for frame in range(max_frames):
        if frame in keyframes:
            current = keyframes[frame]
            if current.is_number:
                values[frame] = current(frame, max_frames - 1, seed)
        if current is not None and not current.is_number:
            try:
                values[frame] = current(frame, max_frames - 1, seed)
            except (ArithmeticError, ValueError) as exc:
                raise ScheduleError(name, f"cannot be computed at frame {frame}: {exc}") from None
            if not math.isfinite(values[frame]):
                raise ScheduleError(name, f"is not a finite number at frame {frame}")
    known = [frame for frame, value in enumerate(values) if value is not None]
    if not known:  # every keyframe lies past the last frame: Deforum fails too
        raise ScheduleError(name, f"has no keyframe within the {max_frames} frames")
    values[0], values[-1] = values[known[0]], values[known[-1]]
    known = [frame for frame, value in enumerate(values) if value is not None]
    for left, right in zip(known, known[1:], strict=False):
        a, b = values[left], values[right]
        assert a is not None and b is not None
        for frame in range(left + 1, right):
            values[frame] = a + (b - a) * (frame - left) / (right - left)
    result = [float(v) for v in values if v is not None]
    return [float(int(v)) for v in result] if integer else result


# ----- backtick math in prompts ----------------------------------------------------------------------------------

_BACKTICKS = re.compile(r"`([^`]*)`")


def prompt_math(text: str, frame: int, max_f: int, seed: int = 0, where: str = "prompt") -> str:
    """Deforum's prompt math: every `` `expression` `` replaced by its value at frame `frame` (t), with max_f the
    last frame and s the seed, printed as numexpr prints it (integers without a point, True/False for a
    comparison); a mistake is a ScheduleError naming `where`, the frame and the position."""

    def value(match: re.Match) -> str:
        expression = parse_expression(match.group(1), f"{where}, `{match.group(1)}` at frame {frame}")
        try:
            result = expression(frame, max_f, seed)
        except (ArithmeticError, ValueError) as exc:
            raise ScheduleError(
                where, f"`{match.group(1)}` cannot be computed at frame {frame}: {exc}"
            ) from None
        kind = _kind(expression.tree, {"t": frame, "max_f": max_f, "s": seed})
        if kind == "bool":
            return str(bool(result))
        if kind == "int" and math.isfinite(result) and result == int(result):
            return str(int(result))
        return repr(float(result))

    return _BACKTICKS.sub(value, text)


def _kind(tree: tuple, names: Mapping[str, float]) -> str:
    """numexpr's result type of an expression: "int", "float" or "bool" (t, max_f and s are integers; Deforum
    writes the frame into the text, so numexpr folds constants and `where` takes the type of its branch)."""
    kind = tree[0]
    if kind == "num":
        return "int" if tree[2] else "float"
    if kind == "var":
        return "int"
    if kind in ("neg", "not"):
        return _kind(tree[1], names)
    if kind == "call":
        if tree[1] == "where":
            return _kind(tree[3] if _compute(tree[2], names) else tree[4], names)
        return _kind(tree[2], names) if tree[1] == "abs" else "float"
    op, left, right = tree[1], _kind(tree[2], names), _kind(tree[3], names)
    if op in ("<", "<=", ">", ">=", "==", "!=", "&", "|"):
        return "bool"
    if op == "/":
        return "float"
    return "int" if left == right == "int" else "float"
