"""Console helpers shared by the command modules: where output goes and how a failure ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["fail", "stdout"]


# rich is imported when output is rendered, and typer when a command fails, not at import:
# `report --format json` and `validate` load neither (tests/test_import_budget.py).


def stdout() -> Console:
    from rich.console import Console

    # Module paths are long (transformers' names, verbatim): when the output is not a terminal
    # (a pipe, a file, a test), use a width they fit in instead of rich's 80 columns.
    # markup=False: every string printed holds user text (paths, field names, values), and
    # rich markup in it (``a[/b]c.json``, ``[exp]/config.json``) must print literally, never be
    # interpreted or raise MarkupError. Styling is done with Text/Table styles, not markup.
    console = Console(highlight=False, markup=False)
    if not console.is_terminal:
        console = Console(highlight=False, markup=False, width=160)
    return console


def fail(message: str, code: int) -> NoReturn:
    import typer
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(message, markup=False)
    raise typer.Exit(code)
