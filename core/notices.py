"""How blitz words a warning on the console: one line, "Warning:" in yellow, the text as given."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def warning_markup(message: str) -> str:
    """``message`` as a warning line in rich markup (its own brackets are text, not markup)."""
    return f"[yellow]Warning:[/] {escape(message)}"


def print_warning(console: Console, message: str) -> None:
    """One warning line; never cut mid-value, never highlighted: a log or a pipe is read by grep."""
    console.print(warning_markup(message), highlight=False, soft_wrap=True)
