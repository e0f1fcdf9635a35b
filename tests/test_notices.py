"""Warnings are one line, "Warning:" first, the message's own brackets kept as text."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from blitz.notices import print_warning


def test_a_warning_is_one_line_with_its_brackets_and_long_values_uncut():
    console = Console(file=StringIO(), width=40)
    message = "option [x] of '/a/very/long/path/that/is/wider/than/the/console/itself' ignored"
    print_warning(console, message)
    assert console.file.getvalue() == f"Warning: {message}\n"
