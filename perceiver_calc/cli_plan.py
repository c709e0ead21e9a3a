"""``perceiver-calc sweep | fit | compare | plan``: planning commands, registered on cli.py's app.

Thin like cli.py: parse, call :mod:`perceiver_calc.sweep` / :mod:`perceiver_calc.plan`, render.
Exit 2 for bad input. matplotlib is imported only when ``--plot`` is given (extra "plot").
"""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from perceiver_calc.cli_options import WorkloadOptions, finite_positive, workload_options
from perceiver_calc.config import load_config
from perceiver_calc.console import fail as _fail
from perceiver_calc.console import stdout as _stdout
from perceiver_calc.devices import DEVICES
from perceiver_calc.errors import ConfigError, PerceiverCalcError
from perceiver_calc.hub import locate
from perceiver_calc.resolve import validate as validate_config

if TYPE_CHECKING:
    from perceiver_calc.sweep import Sweep, SweepResult
    from perceiver_calc.workload import Workload

__all__ = ["register"]


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class TableJson(StrEnum):
    """compare and plan print a table or JSON; anything else is refused (exit 2)."""

    table = "table"
    json = "json"


VaryOpt = Annotated[
    list[str],
    typer.Option("--vary", help="FIELD=START:STOP:STEP or FIELD=V1,V2,... (repeatable)."),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model class.")]
FormatOpt = Annotated[OutFormat, typer.Option("--format", "-f")]
_DEVICE_HELP = "GPU for step time and fit (perceiver_calc/devices.py): " + ", ".join(DEVICES)


def _workload(options: WorkloadOptions) -> Workload:
    try:
        return options.build()
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)


def _sweep(path: Path, vary: list[str], model: str | None, wl: Workload) -> SweepResult:
    # numpy and the sweep machinery load only when a planning command runs: `report` stays
    # quick to start.
    from perceiver_calc.sweep import evaluate, grid, parse_values

    try:
        axes: dict[str, list[Any]] = {}
        for spec in vary:
            name, sep, values = spec.partition("=")
            if not sep:
                raise ValueError(f"--vary {spec!r}: expected FIELD=VALUES")
            axes[name.strip()] = parse_values(values)
        sw: Sweep = grid(load_config(locate(path)), axes, model=model, workload=wl)
    except ConfigError as err:
        _fail(f"error: {path}: {err}", 2)
    except (PerceiverCalcError, ValueError) as err:
        _fail(f"error: {err}", 2)
    if len(sw) < 2000:
        return evaluate(sw)
    from rich.console import Console
    from rich.progress import Progress

    # progress on stderr: stdout holds the rows (CSV, JSON) and must stay clean
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sweeping", total=len(sw))
        return evaluate(sw, progress=lambda done, _n: bar.update(task, completed=done))


TABLE_ROWS = 50
"""The table format shows at most this many valid rows and invalid reasons (the first ones);
csv and json give every row."""


def _render(res: SweepResult, rows: list[int], fmt: OutFormat, title: str) -> None:
    from perceiver_calc.sweep import CHUNK_ROWS, COUNTS

    names = list(res.sweep.columns)
    every = len(rows) == len(res)
    if fmt is OutFormat.json:
        data = res.rows() if every else [res.row(i) for i in rows]
        typer.echo(json.dumps(data, indent=2))
        return
    if fmt is OutFormat.csv:
        # streamed: one block of rows converted and written at a time (bounded memory)
        out = sys.stdout
        w = csv.DictWriter(out, fieldnames=[*names, "valid", *COUNTS, "reason"])
        w.writeheader()
        if every:
            for start in range(0, len(res), CHUNK_ROWS):
                w.writerows(res.iter_rows(start, min(start + CHUNK_ROWS, len(res))))
        else:
            w.writerows(res.row(i) for i in rows)
        out.flush()
        return
    console = _stdout()
    from rich.table import Table

    table = Table(title=title, box=None)
    for n in names:
        table.add_column(n, justify="right")
    for c in ("params", "forward_flops", "training_flops", "memory_bytes"):
        table.add_column(c, justify="right")
    shown = 0
    invalid: list[str] = []
    n_valid = 0
    for i in rows:
        valid = bool(res.valid[i])
        n_valid += valid
        if valid and shown < TABLE_ROWS:
            row = res.row(i)
            table.add_row(
                *(str(row[n]) for n in names),
                f"{row['params']:,}",
                f"{row['forward_flops']:.3e}",
                f"{row['training_flops']:.3e}",
                f"{row['memory_bytes'] / 2**30:.2f} GiB",
            )
            shown += 1
        elif not valid and len(invalid) < TABLE_ROWS:
            row = res.row(i)
            vals = ", ".join(f"{n}={row[n]}" for n in names)
            invalid.append(f"  {vals}: {row['reason']}")
        if shown >= TABLE_ROWS and len(invalid) >= TABLE_ROWS and len(rows) > 10 * TABLE_ROWS:
            # a bounded summary: count the rest without converting them
            n_valid = int(res.valid[rows].sum())
            break
    console.print(table)
    n_invalid = len(rows) - n_valid
    if shown < n_valid:
        console.print(
            f"(first {shown} of {n_valid:,} valid rows shown; --format csv or json gives all)",
            markup=False,
        )
    if invalid:
        console.print(f"invalid ({n_invalid:,}):", markup=False)
        for line in invalid:
            console.print(line, markup=False)
        if len(invalid) < n_invalid:
            console.print(
                f"  ... {n_invalid - len(invalid):,} more (--format csv or json gives all)",
                markup=False,
            )


def _check_plot(out: Path | None) -> None:
    """Before any work: the plot's path is writable and matplotlib is installed (exit 2)."""
    if out is None:
        return
    from perceiver_calc.output import PLOT_SUFFIXES, check_output_path, check_plot_extra

    try:
        check_output_path(out, PLOT_SUFFIXES, "--plot")
        check_plot_extra()
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)


def _plot(res: SweepResult, out: Path, rows: list[int] | None = None) -> None:
    from perceiver_calc.plan import plot_sweep

    if not any(res.valid):
        # An empty figure over a plot the user already has would lose it for nothing.
        _fail(f"error: --plot {str(out)!r}: no valid config to plot; the file is unchanged", 2)
    try:
        plot_sweep(res, out, highlight=rows)
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)


def register(app: typer.Typer) -> None:
    """Add ``sweep``, ``fit``, ``compare`` and ``plan`` to ``app``."""

    @app.command()
    @workload_options(mode="training")
    def sweep(
        path: Path,
        vary: VaryOpt,
        workload: WorkloadOptions,
        model: ModelOpt = None,
        format: FormatOpt = OutFormat.table,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="out.png, out.svg or out.pdf")
        ] = None,
    ) -> None:
        """Counts for every config of a grid; invalid points listed with their reason."""
        _check_plot(plot)
        wl = _workload(workload)
        res = _sweep(path, vary, model, wl)
        _render(res, list(range(len(res))), format, f"{res.sweep.model}: {len(res)} configs")
        if plot is not None:
            _plot(res, plot)

    @app.command()
    # fit is about training: --mode is not offered, the workload trains
    @workload_options(omit=("mode",), mode="training")
    def fit(
        path: Path,
        vary: VaryOpt,
        workload: WorkloadOptions,
        max_params: Annotated[int | None, typer.Option("--max-params")] = None,
        max_flops: Annotated[int | None, typer.Option("--max-flops")] = None,
        max_memory: Annotated[int | None, typer.Option("--max-memory")] = None,
        model: ModelOpt = None,
        format: FormatOpt = OutFormat.table,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="out.png, out.svg or out.pdf")
        ] = None,
    ) -> None:
        """Configs within budget (training FLOPs per step, training memory), and the Pareto
        front: most parameters for the least compute."""
        from perceiver_calc.plan import fit as fit_rows

        _check_plot(plot)
        wl = _workload(workload)
        res = _sweep(path, vary, model, wl)
        found = fit_rows(res, max_params=max_params, max_flops=max_flops, max_memory=max_memory)
        if format is OutFormat.table:
            _stdout().print(f"{len(found.within)} of {len(res)} configs within budget")
        _render(res, found.pareto, format, "Pareto front: most params for least training FLOPs")
        if plot is not None:
            _plot(res, plot, found.pareto)

    @app.command()
    # compared on a training step: --mode is not offered
    @workload_options(omit=("mode",), mode="training")
    def compare(
        paths: list[Path],
        workload: WorkloadOptions,
        model: ModelOpt = None,
        format: Annotated[TableJson, typer.Option("--format", "-f")] = TableJson.table,
    ) -> None:
        """Configs side by side; rows that differ are highlighted."""
        from perceiver_calc.plan import compare as compare_models

        try:
            resolved = [validate_config(locate(p), model) for p in paths]
        except ConfigError as err:
            _fail(f"error: {err}", 2)
        except PerceiverCalcError as err:
            _fail(f"error: {err}", 2)
        wl = _workload(workload)
        cmp = compare_models(resolved, [str(p) for p in paths], wl)
        if format == "json":
            typer.echo(cmp.model_dump_json(indent=2))
            return
        from rich.table import Table

        table = Table(box=None)
        table.add_column("")
        for name in cmp.names:
            table.add_column(name, justify="right")
        for k, vals in cmp.counts.items():
            style = "bold yellow" if k in cmp.differing_counts else None
            table.add_row(k, *(f"{v:,}" for v in vals), style=style)
        table.add_section()
        for k, dvals in cmp.dims.items():
            if k in cmp.differing_dims:
                table.add_row(k, *("-" if v is None else str(v) for v in dvals), style="yellow")
        _stdout().print(table)
        same = len(cmp.dims) - len(cmp.differing_dims)
        _stdout().print(f"{len(cmp.differing_dims)} dimensions differ; {same} are equal (hidden)")

    @app.command()
    # plan trains, and shows every strategy with and without checkpointing: no --mode, no
    # --checkpointing
    @workload_options(omit=("mode", "checkpointing"), mode="training", dtype="mixed-bf16")
    def plan(
        path: Path,
        workload: WorkloadOptions,
        gpus: Annotated[int, typer.Option("--gpus", min=1)] = 8,
        device: Annotated[str | None, typer.Option("--device", help=_DEVICE_HELP)] = None,
        mfu: Annotated[
            float, typer.Option("--mfu", max=1, callback=finite_positive, help="0 < MFU <= 1.")
        ] = 0.4,
        samples: Annotated[int | None, typer.Option("--samples", min=1)] = None,
        model: ModelOpt = None,
        format: Annotated[TableJson, typer.Option("--format", "-f")] = TableJson.table,
    ) -> None:
        """Per-GPU memory for DDP, ZeRO-1/2/3 and FSDP, step time and time to train."""
        from perceiver_calc.plan import training_plan

        if samples is not None and device is None:
            _fail(
                "error: --samples needs --device: the time to train comes from its peak FLOP/s", 2
            )
        try:
            resolved = validate_config(locate(path), model)
            wl = _workload(workload)
            tp = training_plan(resolved, wl, gpus=gpus, device=device, mfu=mfu, samples=samples)
        except ConfigError as err:
            _fail(f"error: {path}: {err}", 2)
        except (PerceiverCalcError, ValueError) as err:
            _fail(f"error: {err}", 2)
        if format == "json":
            typer.echo(tp.model_dump_json(indent=2))
            return
        out = _stdout()
        out.print(f"{tp.model}: {tp.params:,} parameters, {gpus} GPUs, batch {wl.batch_size}/GPU")
        from rich.table import Table

        table = Table(box=None, title="per-GPU memory (GiB)")
        for c in (
            "strategy",
            "ckpt",
            "weights",
            "grads",
            "optim",
            "activations",
            "transient",
            "total",
            "fits",
        ):
            table.add_column(c, justify="right")
        gib = 2**30
        for m in tp.memory:
            table.add_row(
                m.strategy,
                "yes" if m.checkpointing else "no",
                *(
                    f"{v / gib:.2f}"
                    for v in (
                        m.weights_bytes,
                        m.gradients_bytes,
                        m.optimizer_bytes,
                        m.activations_bytes,
                        m.transient_bytes,
                        m.total_bytes,
                    )
                ),
                "-" if m.fits is None else ("yes" if m.fits else "NO"),
            )
        out.print(table)
        if tp.step_seconds is not None:
            ck = (tp.step_seconds_checkpointing or 0) * 1e3
            out.print(
                f"step: {tp.step_seconds * 1e3:.1f} ms ({ck:.1f} ms with checkpointing) "
                f"at MFU {mfu:.0%} on {device}"
            )
        if tp.train_seconds is not None:
            out.print(
                f"{samples:,} samples: {tp.steps:,} steps, "
                f"{tp.train_seconds / 3600:.2f} h "
                f"({(tp.train_seconds_checkpointing or 0) / 3600:.2f} h with checkpointing)"
            )
