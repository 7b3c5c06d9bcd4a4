"""User regular expressions (`/browse regex`, the filename filter): RE2 syntax, linear time, a time budget.

Patterns are compiled with RE2 (google-re2), which matches in time linear in the text: no pattern can
backtrack for minutes as `(a+)+$` does with Python's `re`. RE2's syntax is Python's without backreferences
(`\\1`, `(?P=name)`), lookaround (`(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)`), atomic groups and possessive
repeats; `\\w`, `\\d`, `\\s` and `\\b` are ASCII (`\\pL` is any letter); `$` is the end of the text. Linear
is not instant (a large pattern that RE2 cannot run as a DFA costs microseconds per character), so sizes are
bounded and a search stops with an error once its regular expressions have run for `BUDGET_S`.

Every refusal is an InvalidRequest naming the option ("keyword" or "filename") and saying what is not
supported; nothing here raises anything else.
"""

from __future__ import annotations

import contextvars
import functools
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import re2

from core.errors import InvalidRequest

MAX_PATTERN_CHARS = 1000
MAX_REPEAT = 1000  # RE2's own limit on {n,m}; larger counts would silently be read as literal text
MAX_PROGRAM = 5000  # RE2 instructions; beyond this a pattern is refused as too complex
BUDGET_S = 0.75  # a search's regular expressions stop after this long (the whole search stays under 1 s)
SYNTAX = "RE2 syntax"

_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_UNSUPPORTED = (  # (start of RE2's error text, what to tell the user)
    ("invalid escape sequence: \\1", "backreferences (\\1) are not supported"),
    ("invalid perl operator: (?=", "lookahead (?=…) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!…) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=…) is not supported"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!…) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>…) are not supported"),
    ("invalid perl operator: (?P", "backreferences (?P=name) are not supported"),
    ("invalid escape sequence: \\k", "backreferences (\\k<name>) are not supported"),
    ("invalid escape sequence: \\Z", "\\Z is not supported: write \\z for the end of the text"),
    ("invalid perl operator: (?x", "verbose mode (?x) is not supported"),
    ("invalid perl operator: (?#", "comments (?#…) are not supported"),
    ("invalid repetition size", f"repetition counts above {MAX_REPEAT} are not supported"),
    ("bad repetition operator: *+", "possessive repeats (*+, ++, ?+) are not supported"),
    ("bad repetition operator: ++", "possessive repeats (*+, ++, ?+) are not supported"),
    ("bad repetition operator: ?+", "possessive repeats (*+, ++, ?+) are not supported"),
)
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("salon_regex_deadline", default=None)


def shown(pattern: str, limit: int = 60) -> str:
    """The pattern as an error message quotes it (long ones cut)."""
    return repr(pattern if len(pattern) <= limit else pattern[:limit] + "…")


def _refuse(option: str, pattern: str, why: str) -> InvalidRequest:
    return InvalidRequest(option, f"{shown(pattern)} is not a valid regular expression ({SYNTAX}): {why}")


@functools.lru_cache(maxsize=256)
def compiled(pattern: str, case_sensitive: bool, option: str = "keyword"):
    """The RE2 program of a user pattern, or InvalidRequest(option, …) saying what is wrong with it."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise _refuse(option, pattern, f"it is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}")
    for count in _repeat_counts(pattern):
        if count > MAX_REPEAT:
            raise _refuse(option, pattern, f"repetition counts above {MAX_REPEAT} are not supported")
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True  # only "is there a match" is asked: no submatch work
    options.case_sensitive = case_sensitive
    try:
        program = re2.compile(pattern, options)
    except re2.error as exc:
        raise _refuse(option, pattern, _reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 (an encoding or binding error: still the user's pattern)
        raise _refuse(option, pattern, str(exc)[:120]) from None
    if program.programsize > MAX_PROGRAM:
        raise _refuse(option, pattern, "it is too complex (make repeated groups smaller)")
    return program


def _reason(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for start, why in _UNSUPPORTED:
        if text.startswith(start):
            return why
    reason, _, where = str(text).partition(": ")
    return f"{reason} at {shown(where, 30)}" if where else reason


def _repeat_counts(pattern: str):
    """The numbers of every `{m}`, `{m,}` and `{m,n}` repeat outside classes, escapes and \\Q…\\E."""
    position, end, in_class = 0, len(pattern), False
    while position < end:
        char = pattern[position]
        if char == "\\":
            if pattern.startswith("\\Q", position):
                close = pattern.find("\\E", position + 2)
                position = end if close < 0 else close + 2
            else:
                position += 2
            continue
        if in_class:
            if pattern.startswith("[:", position):
                close = pattern.find(":]", position + 2)
                position = position + 1 if close < 0 else close + 2
                continue
            in_class = char != "]"
            position += 1
            continue
        if char == "[":
            in_class = True
            position += 1
            if pattern.startswith("^", position):
                position += 1
            if pattern.startswith("]", position):
                position += 1  # a ']' first in a class is a literal
            continue
        if char == "{" and (found := _REPEAT.match(pattern, position)):
            yield from (int(number) for number in found.groups() if number)
            position = found.end()
            continue
        position += 1


# ----- the time budget of one search -------------------------------------------------------------------------
class PatternTooSlow(Exception):
    """Raised inside SQLite's call of a pattern once the search's budget is spent."""


def deadline() -> float:
    """The monotonic time at which the current search's regular expressions must stop."""
    return _deadline.get() or time.monotonic() + BUDGET_S


T = TypeVar("T")


def time_bounded(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Give each call of a catalog search one budget; a pattern that outruns it is an InvalidRequest."""

    @functools.wraps(method)
    async def bounded(*args, **kwargs) -> T:
        started = time.monotonic()
        ends = _deadline.get() or started + BUDGET_S  # (nested calls share the outer call's budget)
        token = _deadline.set(ends)
        try:
            return await method(*args, **kwargs)
        except PatternTooSlow:  # (raised where Python checks the rows itself: catalog/pg_search.py)
            raise _stopped() from None
        except sqlite3.OperationalError as exc:
            if "user-defined function raised exception" in str(exc) and time.monotonic() >= ends:
                raise _stopped() from None
            raise
        finally:
            _deadline.reset(token)

    return bounded


def _stopped() -> InvalidRequest:
    return InvalidRequest(
        "regex",
        f"the regular expression ran for more than {BUDGET_S:g} s and was stopped: make it "
        "simpler, or give it a literal part of 3 or more characters so fewer images are checked",
    )


def sql_regexp(pattern: str, text: str | None, case_sensitive: int, ends: float) -> int:
    """SQLite function `salon_regexp(pattern, text, case_sensitive, deadline)`."""
    if time.monotonic() > ends:
        raise PatternTooSlow(pattern)
    return int(compiled(pattern, bool(case_sensitive)).search(text or "") is not None)


def sql_match(text: str | None, needle: str, case_sensitive: int, regex: int, ends: float) -> int:
    """SQLite function `salon_match(text, needle, case_sensitive, regex, deadline)` of the filename filter:
    a substring (any case or exact case) or a regular expression."""
    text = text or ""
    if regex:
        return sql_regexp(needle, text, case_sensitive, ends)
    return int(needle in text if case_sensitive else needle.casefold() in text.casefold())
