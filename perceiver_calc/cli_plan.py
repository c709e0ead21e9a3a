"""``perceiver-calc sweep | fit | compare | plan``: planning commands, registered on cli.py's app.

Thin like cli.py: parse, call :mod:`perceiver_calc.sweep` / :mod:`perceiver_calc.plan`, render.
Exit 2 for bad input. matplotlib is imported only when ``--plot`` is given (extra "plot").
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

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
    from perceiver_calc.sweep import SweepResult
    from perceiver_calc.sweep_io import Block
    from perceiver_calc.workload import Workload

__all__ = ["register"]


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


class TableJson(StrEnum):
    """compare and plan print a table or JSON; anything else is refused (exit 2)."""

    table = "table"
    json = "json"


class ReasonsChoice(StrEnum):
    """What an invalid row's ``reason`` holds in sweep's output."""

    text = "text"
    codes = "codes"


ReasonsOpt = Annotated[
    ReasonsChoice,
    typer.Option(
        "--reasons",
        help="Invalid rows' reason: validate's text (the scalar path per invalid row, about "
        "0.2 ms each) or the failing rules' codes (from the vectorised rules: no cost).",
    ),
]

VaryOpt = Annotated[
    list[str],
    typer.Option("--vary", help="FIELD=START:STOP:STEP or FIELD=V1,V2,... (repeatable)."),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model class.")]
FormatOpt = Annotated[
    OutFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="table (default; a bounded summary), csv, json (one array, a row per line), "
        "jsonl (JSON lines) or parquet (needs --output). With --output and no --format: "
        "from the file's suffix.",
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write every row to this file (.csv, .json, .jsonl, .parquet), streamed, "
        "replaced atomically; a summary goes to stderr.",
    ),
]
_DEVICE_HELP = "GPU for step time and fit (perceiver_calc/devices.py): " + ", ".join(DEVICES)


def _workload(options: WorkloadOptions) -> Workload:
    try:
        return options.build()
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)


def _axes_or_exit(vary: list[str]) -> dict[str, list[Any]]:
    try:
        return _axes(vary)
    except ValueError as err:
        _fail(f"error: {err}", 2)


def _axes(vary: list[str]) -> dict[str, list[Any]]:
    from perceiver_calc.sweep import parse_values

    axes: dict[str, list[Any]] = {}
    for spec in vary:
        name, sep, values = spec.partition("=")
        if not sep:
            raise ValueError(f"--vary {spec!r}: expected FIELD=VALUES")
        try:
            axes[name.strip()] = parse_values(values)
        except ValueError as err:
            raise ValueError(f"--vary {spec!r}: {err}") from None
    return axes


def _plan_output(fmt: OutFormat | None, output: Path | None) -> OutFormat:
    """The output format, checked before any work (exit 2): --output's path is writable and
    its suffix fits the format; parquet goes to a file (never binary to a terminal) and needs
    pyarrow."""
    from perceiver_calc.output import check_output_path
    from perceiver_calc.sweep_io import FILE_SUFFIXES, check_parquet_extra

    if fmt is None:
        fmt = OutFormat.table
        if output is not None:
            by_suffix = [f for f, sfx in FILE_SUFFIXES.items() if output.suffix.lower() in sfx]
            if not by_suffix:
                known = ", ".join(x for sfx in FILE_SUFFIXES.values() for x in sfx)
                _fail(
                    f"error: --output {str(output)!r}: unknown file type "
                    f"{output.suffix or '(no extension)'!r}; name it with one of {known} "
                    "or give --format",
                    2,
                )
            fmt = OutFormat(by_suffix[0])
    if output is None:
        if fmt is OutFormat.parquet:
            _fail(
                "error: --format parquet writes a binary file: give --output PATH "
                "(e.g. -o sweep.parquet)",
                2,
            )
        return fmt
    if fmt is OutFormat.table:
        _fail(
            "error: --output writes csv, json, jsonl or parquet; the table format is for the "
            "terminal (drop --format table, or name the format)",
            2,
        )
    try:
        check_output_path(output, FILE_SUFFIXES[fmt.value], "--output")
        if fmt is OutFormat.parquet:
            check_parquet_extra()
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)
    return fmt


PROGRESS_ROWS = 2000
"""Grids of at least this many rows show a progress bar (on stderr)."""


class _Bar:
    """A rich progress bar on stderr (stdout holds the rows and must stay clean), or nothing
    for small grids."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> _Bar:
        if self.total >= PROGRESS_ROWS:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("sweeping", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, done: int, _total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)


PLOT_SERIES = 8
"""A plot draws one line per combination of the other swept fields, the first this many."""
MERGE_ROWS = 1 << 16
"""fit merges its Pareto candidates into one front when they pass this many rows."""


class _Collect:
    """What fit and --plot keep of a grid streamed block by block (never the whole grid):
    the rows a plot draws (for every value of the first swept field, the first
    :data:`PLOT_SERIES` combinations of the others: rows whose index modulo the others'
    product is below it) and, for fit, each block's Pareto front (the front of the grid is
    the front of the blocks' fronts: a point dominated within its block is dominated in the
    grid; ties keep the first row in grid order, as on the whole grid)."""

    def __init__(
        self, axes: dict[str, list[Any]], plot: bool, budgets: dict[str, Any] | None
    ) -> None:
        self.per = math.prod(len(v) for v in list(axes.values())[1:])
        self.plot = plot
        self.budgets = budgets
        self.offset = 0
        self.within = 0
        self.plot_parts: list[tuple[Any, SweepResult]] = []
        self.cands: list[tuple[Any, SweepResult]] = []

    def see(self, res: SweepResult) -> SweepResult:
        import numpy as np

        from perceiver_calc.plan import fit as fit_rows

        rows = self.offset + np.arange(len(res), dtype=np.int64)
        self.offset += len(res)
        if self.plot:
            keep = np.flatnonzero(rows % self.per < PLOT_SERIES)
            if len(keep):
                self.plot_parts.append((rows[keep], res.take(keep)))
        if self.budgets is not None:
            found = fit_rows(res, **self.budgets)
            self.within += len(found.within)
            if found.pareto:
                idx = np.sort(np.asarray(found.pareto, dtype=np.int64))  # grid order
                self.cands.append((rows[idx], res.take(idx)))
                if sum(len(g) for g, _ in self.cands) > MERGE_ROWS:
                    merged, res_front = self.front()
                    assert res_front is not None
                    self.cands = [(np.sort(merged), res_front.take(np.argsort(merged)))]
        return res

    def front(self) -> tuple[Any, SweepResult | None]:
        """The Pareto front of the candidates: (grid rows, result), in the front's order."""
        import numpy as np

        from perceiver_calc.plan import fit as fit_rows
        from perceiver_calc.sweep import concat

        assert self.budgets is not None
        if not self.cands:
            return np.zeros(0, dtype=np.int64), None
        rows = np.concatenate([g for g, _ in self.cands])
        merged = concat([r for _, r in self.cands])
        order = np.asarray(fit_rows(merged, **self.budgets).pareto, dtype=np.int64)
        return rows[order], merged.take(order)

    def plotted(self, front_rows: Any = None) -> tuple[SweepResult | None, list[int]]:
        """The plot's rows, and the front's rows among them (highlighted), in grid order."""
        import numpy as np

        from perceiver_calc.sweep import concat

        parts = list(self.plot_parts)
        if front_rows is not None and len(front_rows):
            rows, res = self.front()
            assert res is not None
            parts.append((rows, res))
        if not parts:
            return None, []
        rows = np.concatenate([g for g, _ in parts])
        res = concat([r for _, r in parts])
        uniq, first = np.unique(rows, return_index=True)  # sorted: grid order, once each
        shown = res.take(first)
        where = [] if front_rows is None else np.searchsorted(uniq, front_rows).tolist()
        return shown, where


def _stream(
    path: Path,
    axes: dict[str, list[Any]],
    model: str | None,
    wl: Workload,
    consume: Callable[[Iterator[SweepResult]], None],
) -> None:
    """Evaluate the grid block by block (sweep_io.evaluate_blocks: bounded memory, a
    progress bar on stderr) and hand the blocks to ``consume``; bad input is exit 2."""
    # numpy and the sweep machinery load only when a planning command runs: `report` stays
    # quick to start.
    from perceiver_calc.sweep_io import evaluate_blocks

    try:
        cfg = load_config(locate(path))
        total = math.prod(len(v) for v in axes.values())
        with _Bar(total) as bar:
            consume(
                evaluate_blocks(
                    cfg,
                    axes,
                    model=model,
                    workload=wl,
                    progress=bar.update if bar.bar is not None else None,
                )
            )
    except ConfigError as err:
        _fail(f"error: {path}: {err}", 2)
    except (PerceiverCalcError, ValueError) as err:
        _fail(f"error: {err}", 2)


TABLE_ROWS = 50
"""The table format shows at most this many valid rows and invalid reasons (the first ones);
csv, json, jsonl and parquet give every row."""


def _emit(
    blocks: Iterable[Block],
    names: list[str],
    kinds: dict[str, Any],
    fmt: OutFormat,
    output: Path | None,
    title: Callable[[SweepResult, int], str],
) -> None:
    """Write the blocks' rows in ``fmt``: to stdout, or streamed to ``output`` through a
    temporary file renamed over it once complete (a failure leaves an existing file as it
    was)."""
    from perceiver_calc import sweep_io

    if fmt is OutFormat.table:
        _table(blocks, names, title)
        return
    written = [0, 0]  # rows, valid rows

    def counted() -> Iterator[Block]:
        for res, rows in blocks:
            written[0] += len(res) if rows is None else len(rows)
            written[1] += int(res.valid.sum() if rows is None else res.valid[rows].sum())
            yield res, rows

    def write_text(out: IO[str]) -> None:
        if fmt is OutFormat.csv:
            sweep_io.write_csv(counted(), names, out)
        else:
            sweep_io.write_json(counted(), names, out, lines=fmt is OutFormat.jsonl)

    if output is None:
        write_text(sys.stdout)
        return
    from perceiver_calc.output import replace_atomically

    def write_file(tmp: Path) -> None:
        if fmt is OutFormat.parquet:
            sweep_io.write_parquet(counted(), kinds, tmp)
            return
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            write_text(fh)

    try:
        replace_atomically(output, write_file)
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)
    typer.echo(
        f"wrote {written[0]:,} rows ({written[1]:,} valid) to {output} ({fmt.value})", err=True
    )


def _table(
    blocks: Iterable[Block], names: list[str], title: Callable[[SweepResult, int], str]
) -> None:
    """A bounded summary: the first :data:`TABLE_ROWS` valid rows and invalid reasons, and how
    many there are in all (rows past those are counted, never converted)."""
    import numpy as np
    from rich.table import Table

    shown: list[dict[str, Any]] = []
    invalid: list[str] = []
    n_rows = n_valid = 0
    last: SweepResult | None = None
    for res, rows in blocks:
        last = res
        idx = np.arange(len(res)) if rows is None else rows
        valid = res.valid[idx]
        n_rows += len(idx)
        n_valid += int(valid.sum())
        for i in idx[valid][: TABLE_ROWS - len(shown)].tolist():
            shown.append(res.row(i))
        for i in idx[~valid][: TABLE_ROWS - len(invalid)].tolist():
            row = res.row(i)
            vals = ", ".join(f"{n}={_cell(row[n])}" for n in names)
            invalid.append(f"  {vals}: {row['reason']}")
    console = _stdout()
    table = Table(title=title(last, n_rows) if last is not None else None, box=None)
    for n in names:
        table.add_column(n, justify="right")
    for c in ("params", "forward_flops", "training_flops", "memory_bytes"):
        table.add_column(c, justify="right")
    for row in shown:
        table.add_row(
            *(_cell(row[n]) for n in names),
            f"{row['params']:,}",
            f"{row['forward_flops']:.3e}",
            f"{row['training_flops']:.3e}",
            f"{row['memory_bytes'] / 2**30:.2f} GiB",
        )
    console.print(table)
    n_invalid = n_rows - n_valid
    every = "--format csv or json gives all rows, -o FILE.csv|.json|.jsonl|.parquet writes them"
    if len(shown) < n_valid:
        console.print(
            f"(first {len(shown)} of {n_valid:,} valid rows shown; {every})", markup=False
        )
    if invalid:
        console.print(f"invalid ({n_invalid:,}):", markup=False)
        for line in invalid:
            console.print(line, markup=False)
        if len(invalid) < n_invalid:
            console.print(f"  ... {n_invalid - len(invalid):,} more ({every})", markup=False)


def _cell(v: Any) -> str:
    if isinstance(v, tuple | list):
        return "x".join(str(x) for x in v)
    return str(v)


def _kinds(axes: dict[str, list[Any]]) -> dict[str, Any]:
    from perceiver_calc.sweep_io import column_kinds

    return dict(column_kinds(axes))


def _sweep_title(res: SweepResult, n_rows: int) -> str:
    return f"{res.sweep.model}: {n_rows:,} configs"


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


def _plot(res: SweepResult | None, out: Path, rows: list[int] | None = None) -> None:
    from perceiver_calc.plan import plot_sweep

    if res is None or not any(res.valid):
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
        format: FormatOpt = None,
        output: OutputOpt = None,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="out.png, out.svg or out.pdf")
        ] = None,
        reasons: ReasonsOpt = ReasonsChoice.text,
    ) -> None:
        """Counts for every config of a grid; invalid points listed with their reason.

        --vary takes FIELD=START:STOP[:STEP], FIELD=V1,V2,... or FIELD='[JSON array]';
        list values as AxB (image_size=224x224,384x384). Every row is evaluated and written
        block by block, in bounded memory (a grid of 10^7 rows streams to a file)."""
        fmt = _plan_output(format, output)
        _check_plot(plot)
        wl = _workload(workload)
        axes = _axes_or_exit(vary)
        keep = _Collect(axes, plot is not None, None)
        codes = reasons is ReasonsChoice.codes

        def write(results: Iterator[SweepResult]) -> None:
            blocks = ((r.with_reason_codes() if codes else r, None) for r in results)
            _emit(
                ((keep.see(r), rows) for r, rows in blocks),
                list(axes),
                _kinds(axes),
                fmt,
                output,
                _sweep_title,
            )

        _stream(path, axes, model, wl, write)
        if plot is not None:  # the first PLOT_SERIES lines of the grid, kept while streaming
            _plot(keep.plotted()[0], plot)

    @app.command()
    # fit trains by default; with --mode inference the budgets and the front read the forward
    # FLOPs and the inference peak (serving) instead of a training step's
    @workload_options(mode="training")
    def fit(
        path: Path,
        vary: VaryOpt,
        workload: WorkloadOptions,
        max_params: Annotated[int | None, typer.Option("--max-params")] = None,
        max_flops: Annotated[int | None, typer.Option("--max-flops")] = None,
        max_memory: Annotated[int | None, typer.Option("--max-memory")] = None,
        model: ModelOpt = None,
        format: FormatOpt = None,
        output: OutputOpt = None,
        plot: Annotated[
            Path | None, typer.Option("--plot", help="out.png, out.svg or out.pdf")
        ] = None,
    ) -> None:
        """Configs within budget (FLOPs, memory, parameters), and the Pareto front: most
        parameters for the least compute (the rows printed or written). FLOPs and memory are a
        training step's (--max-flops: training FLOPs per step), or with --mode inference a
        forward pass's and the inference peak."""
        fmt = _plan_output(format, output)
        _check_plot(plot)
        wl = _workload(workload)
        axes = _axes_or_exit(vary)
        # memory_bytes is already the mode's (training total or inference peak)
        flops = "training_flops" if wl.mode == "training" else "forward_flops"
        budgets = {
            "max_params": max_params,
            "max_flops": max_flops,
            "max_memory": max_memory,
            "flops": flops,
        }
        keep = _Collect(axes, plot is not None, budgets)

        def consume(results: Iterator[SweepResult]) -> None:
            for r in results:
                keep.see(r)

        _stream(path, axes, model, wl, consume)
        rows, front = keep.front()
        if fmt is OutFormat.table:
            _stdout().print(f"{keep.within:,} of {keep.offset:,} configs within budget")
        _emit(
            [] if front is None else [(front, None)],
            list(axes),
            _kinds(axes),
            fmt,
            output,
            lambda _r, _n: f"Pareto front: most params for least {flops.split('_')[0]} FLOPs",
        )
        if plot is not None:
            shown, where = keep.plotted(rows)
            _plot(shown, plot, where)

    @app.command()
    # compared on a training step by default (memory_bytes: the step's total); --mode
    # inference compares the inference peak
    @workload_options(mode="training")
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
    # plan trains: --mode takes only "training" (the flag is accepted so that every workload
    # flag works on every command); --checkpointing/--no-checkpointing chooses the rows, which
    # are both when neither is given
    @workload_options(mode="training", dtype="mixed-bf16")
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
        """Per-GPU memory for DDP, ZeRO-1/2/3 and FSDP, step time and time to train, with and
        without activation checkpointing (or as --checkpointing/--no-checkpointing says)."""
        from perceiver_calc.plan import training_plan

        if workload.given.get("mode", "training") != "training":
            _fail(
                f"error: --mode {workload.given['mode']}: plan plans training (memory per GPU "
                "under each sharding strategy, step time); for inference use "
                "`perceiver-calc report --mode inference`",
                2,
            )
        if samples is not None and device is None:
            _fail(
                "error: --samples needs --device: the time to train comes from its peak FLOP/s", 2
            )
        ckpt = workload.given.get("checkpointing")
        try:
            resolved = validate_config(locate(path), model)
            wl = _workload(workload)
            tp = training_plan(
                resolved,
                wl,
                gpus=gpus,
                device=device,
                mfu=mfu,
                samples=samples,
                checkpointing=None if ckpt is None else bool(ckpt),
            )
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
        if tp.step_seconds is not None and tp.step_seconds_checkpointing is not None:
            step = _per_choice(
                tp.step_seconds * 1e3, tp.step_seconds_checkpointing * 1e3, "ms", tp.checkpointing
            )
            out.print(f"step: {step} at MFU {mfu:.0%} on {device}")
        if tp.train_seconds is not None and tp.train_seconds_checkpointing is not None:
            hours = _per_choice(
                tp.train_seconds / 3600,
                tp.train_seconds_checkpointing / 3600,
                "h",
                tp.checkpointing,
            )
            out.print(f"{samples:,} samples: {tp.steps:,} steps, {hours}")


def _per_choice(without: float, with_: float, unit: str, checkpointing: bool | None) -> str:
    """A time without and with checkpointing, or the one the plan was asked for."""
    digits = _DIGITS[unit]
    if checkpointing is None:
        return f"{without:.{digits}f} {unit} ({with_:.{digits}f} {unit} with checkpointing)"
    value = with_ if checkpointing else without
    return f"{value:.{digits}f} {unit} ({'with' if checkpointing else 'without'} checkpointing)"


_DIGITS = {"ms": 1, "h": 2}
