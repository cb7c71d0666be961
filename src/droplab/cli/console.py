"""Where the command line prints: a console that keeps table rows whole off a terminal, and its tables."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["make_console", "print_table"]


def make_console() -> Console:
    """The console output goes to: the terminal's width, or 160 columns for logs and pipes."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def print_table(console: Console, rows: list[list[str]], title: str | None = None) -> None:
    """``rows[0]`` the header, the rest the rows; every cell printed as it is (no markup)."""
    table = Table(*map(escape, rows[0]), title=title and escape(title), title_justify="left")
    for row in rows[1:]:
        table.add_row(*map(escape, row))
    console.print(table)
