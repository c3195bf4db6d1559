"""What every command prints to the terminal, and how it stops on bad input.

One place for the commands of :mod:`xraydenoise.cli` and those registered beside it
(``serve``, ``view``), so each prints the same way: a user error is one line on stderr,
``error: ...``, and exit status 2.
"""

from __future__ import annotations

import typer
from rich.console import Console

# markup off: messages carry file names and extras like "xraydenoise[bm3d]" that rich would eat as tags
# emoji off: a file named "scan:ok:.png" is printed as it is
console = Console(stderr=True, markup=False, highlight=False, emoji=False)
out = Console(markup=False, highlight=False, emoji=False)

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print ``error: MESSAGE`` on one line and exit with status 2."""
    console.print(f"error: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)
