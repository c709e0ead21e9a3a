"""``perceiver-calc``: the console-script entry point.

:func:`main` runs the common command lines (``report``, ``explain``, ``validate`` on a local
config) with :mod:`perceiver_calc.cli_fast`, which does not import typer; everything else, and
every run that fails, goes to the typer app (:mod:`perceiver_calc.cli_app`, also reachable as
``perceiver_calc.cli.app``). Both give the same output and exit status (tests/test_cli_fast.py).

Exit codes:

* 0: success;
* 2: bad input (unreadable path, malformed JSON, invalid config, bad option): a message on
  stderr, no traceback;
* 1: an internal error (a bug in perceiver-calc): a short message on stderr.

This module imports nothing at import time beyond the standard library's ``sys``: the
report path has an import-time budget (tests/test_import_budget.py), and it must never import
torch (tests/test_cli.py).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time, __getattr__ below
    from perceiver_calc.cli_app import ConventionChoice, Format, app

__all__ = ["ConventionChoice", "Format", "app", "main"]

# The typer app's names that ``perceiver_calc.cli`` has always exported (tests, docs).
_FROM_APP = frozenset(__all__) - {"main"}


def main(*, fast: bool = True) -> None:
    """Console-script entry point: exit 1 with a short message on internal errors.

    ``fast=False`` skips :mod:`perceiver_calc.cli_fast` (the tests compare both paths).
    """
    try:
        if fast:
            from perceiver_calc.cli_fast import run

            if run(sys.argv[1:]):
                return
        from perceiver_calc.cli_app import app

        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:
        from rich.console import Console

        from perceiver_calc.errors import InputError

        if isinstance(err, InputError):  # pragma: no cover - commands catch these themselves
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"error: {err}", markup=False
            )
            sys.exit(2)
        Console(stderr=True).print(
            f"internal error: {type(err).__name__}: {err}\n"
            "This is a bug in perceiver-calc; please report it with the config that caused it.",
            markup=False,
        )
        sys.exit(1)


def __getattr__(name: str) -> Any:
    # ``from perceiver_calc.cli import app`` (tests, docs/gen_cli_doc.py) builds the typer app
    # on first use, so that the console script does not when cli_fast handles the command.
    if name in _FROM_APP:
        from perceiver_calc import cli_app

        return getattr(cli_app, name)
    raise AttributeError(f"module 'perceiver_calc.cli' has no attribute {name!r}")


if __name__ == "__main__":
    main()
