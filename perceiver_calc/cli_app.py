"""The typer app of ``perceiver-calc``: a thin command line over the library.

The entry point is :func:`perceiver_calc.cli.main`, which runs the common command lines
without importing this module (perceiver_calc.cli_fast) and this app for everything else.
Parse, call the library, render, map errors to exit codes:

* 0: success;
* 2: bad input (unreadable path, malformed JSON, invalid config, bad option): a message on
  stderr, no traceback;
* 1: an internal error (a bug in perceiver-calc): a short message on stderr.

This module must not import torch (a test checks it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from perceiver_calc.cli_device import register as register_device_commands
from perceiver_calc.cli_fast import build as _build_report
from perceiver_calc.cli_fast import check as _check
from perceiver_calc.cli_fast import explain_json, validate_lines
from perceiver_calc.cli_options import WorkloadOptions, workload_options
from perceiver_calc.cli_plan import register as register_planning_commands
from perceiver_calc.console import fail as _fail
from perceiver_calc.console import stdout as _stdout
from perceiver_calc.errors import ConfigError, PerceiverCalcError

# The report (and through it the FLOP and memory counts) and rich are imported by the commands
# that use them, so that `validate` loads neither (tests/test_import_budget.py).
if TYPE_CHECKING:
    from perceiver_calc.report import Report

T = TypeVar("T")

app = typer.Typer(
    name="perceiver-calc",
    help=(
        "Validate Perceiver configs (Hugging Face transformers: a config.json, a folder or a "
        "hub id) and count their exact parameters, FLOPs and training/inference memory by "
        "module, without building the model; sweep and fit configs, plan multi-GPU training "
        "(DDP, ZeRO, FSDP), and check or benchmark the counts against a real model (torch)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class ConventionChoice(StrEnum):
    """perceiver_calc.conventions.CONVENTIONS (tests/test_papers.py checks they agree)."""

    flopcounter = "flopcounter"
    paper = "paper"
    macs = "macs"
    no_attention = "no-attention"
    io_half = "io-half"


PathArg = Annotated[
    Path,
    typer.Argument(
        help=(
            "A config.json, a folder holding one (as saved by transformers), a hub cache folder "
            "(models--org--name), or a Hugging Face model id (org/name: the local cache first, "
            "then only config.json is downloaded unless HF_HUB_OFFLINE is set)."
        ),
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model class (default: the config's architectures[0], else PerceiverForMaskedLM).",
    ),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Treat keys PerceiverConfig does not know as errors.")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
ConventionOpt = Annotated[
    ConventionChoice,
    typer.Option(
        "--convention",
        help=(
            "Also show the forward FLOPs under a named convention (docs/conventions.md): "
            "paper (Perceiver IO App. D), macs, no-attention, io-half. The exact counts "
            "(flopcounter) are always shown unchanged."
        ),
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", help="For a hub id or cache folder: a branch, tag or commit."),
]


def _guard(
    path: Path,
    model: str | None,
    strict: bool,
    workload: WorkloadOptions | None = None,
    revision: str | None = None,
) -> Report:
    """Build the report, turning every expected failure into exit status 2."""
    return _guarded(
        path,
        lambda: _build_report(
            path, model, strict, workload.build if workload is not None else None, revision
        ),
    )


def _guarded(path: Path, build: Callable[[], T]) -> T:
    """``build()``, turning every expected failure into exit status 2."""
    try:
        return build()
    except ConfigError as err:
        _fail(f"error: {path}: {err}", 2)
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)
    except (RecursionError, MemoryError) as err:  # absurd input, e.g. deeply nested JSON
        _fail(f"error: {path}: input too large or too deeply nested ({type(err).__name__})", 2)


@app.command()
@workload_options()
def report(
    path: PathArg,
    workload: WorkloadOptions,
    model: ModelOpt = None,
    strict: StrictOpt = False,
    revision: RevisionOpt = None,
    format: FormatOpt = Format.table,
    convention: ConventionOpt = ConventionChoice.flopcounter,
) -> None:
    """Resolved dimensions, parameters, FLOPs and memory by module, and findings."""
    rep = _guard(path, model, strict, workload, revision)
    from perceiver_calc.report import render_json, render_markdown, render_table

    if format is Format.json:
        text = render_json(rep)
        if convention is not ConventionChoice.flopcounter and rep.flops is not None:
            from perceiver_calc.conventions import convention_data

            data = json.loads(text)
            data["flops_convention"] = convention_data(rep.flops, convention.value)
            text = json.dumps(data, indent=2)
        typer.echo(text)
    elif format is Format.markdown:
        typer.echo(render_markdown(rep), nl=False)
    else:
        render_table(rep, _stdout())
    if format is not Format.json and convention is not ConventionChoice.flopcounter:
        from perceiver_calc.conventions import convention_lines

        if rep.flops is None:
            typer.echo(f"convention: {convention.value}: no FLOPs (no valid workload)")
        else:
            for line in convention_lines(rep.flops, convention.value):
                typer.echo(line)


@app.command()
def explain(
    path: PathArg,
    model: ModelOpt = None,
    strict: StrictOpt = False,
    revision: RevisionOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Every module's dimensions with where each came from (field, default, hardcoded, rule)."""
    from perceiver_calc.report import render_explain, render_explain_markdown

    rep = _guard(path, model, strict, revision=revision)
    if format is Format.json:
        typer.echo(explain_json(rep))
    elif format is Format.markdown:
        typer.echo(render_explain_markdown(rep), nl=False)
    else:
        render_explain(rep, _stdout())


@app.command()
def validate(
    path: PathArg,
    model: ModelOpt = None,
    strict: StrictOpt = False,
    revision: RevisionOpt = None,
) -> None:
    """Check a config; print its findings. Exit 0 when valid, 2 when not."""
    resolved, total = _guarded(path, lambda: _check(path, model, strict, revision))
    for line in validate_lines(path, resolved, total):
        typer.echo(line)


register_planning_commands(app)  # sweep, fit, compare, plan
register_device_commands(app)  # check, bench (torch, imported only when they run)
