"""Terminal output of `salon`: user text (prompts, file names, error messages) is printed as typed.

rich's Console turns `:x:` into an emoji and `[red]` into a style by default, so `<lora:x:1>` printed as
`<lora❌1>` and `[bold]cat` lost its brackets. Both consoles here have markup, emoji and highlighting off for
every print; the few styled words (the red "error") are `Text` with a style, never markup around user text.
Lines of text are never broken at the terminal's width either (a long prompt or path stays one line, as
typed); tables lay their cells out as usual. The exit statuses of `salon` are here too.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_AVAILABLE = 3
EXIT_STORAGE = 1  # a damaged database or a full disk (cli/failures.py)


class LiteralConsole(Console):
    """A Console for user text: no markup, emoji or highlighting; plain lines are soft-wrapped."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:  # type: ignore[override]
        if soft_wrap is None and all(isinstance(o, str | Text) for o in objects):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = LiteralConsole()
err_console = LiteralConsole(stderr=True)


def labelled(label: str, style: str, message: object) -> Text:
    """`label message` with only the label styled; the message is shown literally."""
    return Text.assemble((label, style), " ", str(message))


def print_error(message: object) -> None:
    """The one-line `error …` every failing command prints on stderr."""
    err_console.print(labelled("error", "red", message))


def print_note(label: str, message: object) -> None:
    """A yellow-labelled line on stderr (e.g. a model file that is not loaded, and why)."""
    err_console.print(labelled(label, "yellow", message))
