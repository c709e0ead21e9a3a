"""A sweep streamed in bounded memory: sub-grids evaluated one block at a time, written as CSV,
JSON, JSON lines or Parquet.

Why blocks. A :class:`~perceiver_calc.sweep.SweepResult` holds about 200 bytes a row (the
swept columns, their codes, 8 int64 counts, validity), so a 10^7-row grid held whole takes
about 2 GB. :func:`evaluate_blocks` instead cuts the grid into sub-grids of at most
``block_rows`` rows *in grid order* (the last axis varies fastest, as in
:func:`~perceiver_calc.sweep.grid`): the outer axes are fixed to one value each, one axis is
cut into runs of values, the inner axes are taken whole. Each sub-grid goes through the public
``grid`` + ``evaluate``, is written, and is dropped; rows, their order and their values are
those of the whole grid (``evaluate`` is row-wise exact, so a row's counts do not depend on
the other rows of its block).

Output formats (one header / schema for the whole stream; every format has the same columns:
the swept fields, ``valid``, the :data:`~perceiver_calc.sweep.COUNTS`, ``reason``):

* ``csv``: a header line, then one line per row; counts are empty where the row is invalid
  and ``reason`` is empty where it is valid; a list value (``image_size``) is ``224x224``, the
  form ``--vary`` reads.
* ``json``: one JSON array, streamed: ``[``, one object per line, ``]``. An object has the
  swept fields and ``valid``, then the counts (valid rows) or ``reason`` (invalid rows), as
  :meth:`SweepResult.row <perceiver_calc.sweep.SweepResult.row>` gives it.
* ``jsonl``: the same objects, one per line, no array (JSON lines: ``jq -c``, ``pandas
  .read_json(lines=True)``).
* ``parquet`` (pyarrow, extra ``parquet``): one row group per block; counts are int64 and
  *null* where the row is invalid (``SweepResult.columns()`` gives 0 there), ``reason`` is a
  null string where valid. A swept column's type comes from all of its axis values: int64
  (nulls allowed), bool, string, list<int64> (``image_size``), else the values' JSON text.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from perceiver_calc.config import PerceiverConfig, load_config
from perceiver_calc.errors import InputError
from perceiver_calc.memory import Device
from perceiver_calc.sweep import COUNTS, SweepResult, check_grid_size, evaluate, grid
from perceiver_calc.workload import Workload

__all__ = [
    "BLOCK_ROWS",
    "FILE_SUFFIXES",
    "Block",
    "block_axes",
    "check_parquet_extra",
    "column_kinds",
    "evaluate_blocks",
    "header",
    "write_csv",
    "write_json",
    "write_parquet",
]

BLOCK_ROWS = 1 << 18
"""Rows per sub-grid. ``evaluate`` holds about 350 bytes a row, so ~90 MB a block (measured
peak RSS in docs/benchmarks/sweep.md), with few enough blocks that each block's fixed cost
(the fit at its nodes, the validity verdicts) stays small beside its rows."""

FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "json": (".json",),
    "jsonl": (".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
}
"""``--output`` file names each format accepts (the suffix says what the file holds)."""

Kind = Literal["int", "bool", "str", "ints", "json"]
Block = tuple[SweepResult, npt.NDArray[np.int64] | None]
"""A block of results and the rows of it to write (``None``: all, in order)."""


def block_axes(
    axes: Mapping[str, Sequence[Any]], block_rows: int = BLOCK_ROWS
) -> Iterator[dict[str, list[Any]]]:
    """Sub-grids of ``axes`` of at most ``block_rows`` rows (at least one value of the
    innermost axis), whose grids concatenated are the grid of ``axes`` in its row order."""
    names = list(axes)
    sizes = [len(axes[k]) for k in names]
    if not names or 0 in sizes:
        yield {k: list(v) for k, v in axes.items()}
        return
    # j: the outermost axis whose inner axes together fit in a block
    j = next(a for a in range(len(names)) if math.prod(sizes[a + 1 :]) <= block_rows)
    step = max(1, block_rows // math.prod(sizes[j + 1 :]))
    inner = {k: list(axes[k]) for k in names[j + 1 :]}
    for outer in itertools.product(*(range(s) for s in sizes[:j])):
        fixed = {names[a]: [axes[names[a]][outer[a]]] for a in range(j)}
        for lo in range(0, sizes[j], step):
            yield fixed | {names[j]: list(axes[names[j]][lo : lo + step])} | inner


def evaluate_blocks(
    base: PerceiverConfig | Mapping[str, Any],
    axes: Mapping[str, Sequence[Any]],
    *,
    model: str | None = None,
    workload: Workload | None = None,
    device: Device = "cuda",
    block_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[SweepResult]:
    """The grid of ``axes`` evaluated block by block (see the module docstring): the
    results' rows, concatenated, are ``evaluate(grid(base, axes, ...))``'s. The size limit and
    the field names are checked before the first block is built (``ValueError``).
    ``block_rows``: at most this many rows a block (default :data:`BLOCK_ROWS`)."""
    total = check_grid_size(axes)
    cfg = base if isinstance(base, PerceiverConfig) else load_config(base)
    # names and model class checked now, on a one-row grid, not when the first block is built
    grid(cfg, {k: list(v[:1]) for k, v in axes.items()}, model=model, workload=workload)
    rows = BLOCK_ROWS if block_rows is None else block_rows
    return _blocks(cfg, axes, model, workload, device, rows, progress, total)


def _blocks(
    cfg: PerceiverConfig,
    axes: Mapping[str, Sequence[Any]],
    model: str | None,
    workload: Workload | None,
    device: Device,
    block_rows: int,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> Iterator[SweepResult]:
    done = 0
    for sub in block_axes(axes, block_rows):
        sw = grid(cfg, sub, model=model, workload=workload, device=device)
        if progress is None:
            res = evaluate(sw)
        else:
            res = evaluate(sw, progress=_offset(progress, done, total))
        done += len(res)
        if progress is not None:
            progress(done, total)
        yield res


def _offset(
    progress: Callable[[int, int], None], offset: int, total: int
) -> Callable[[int, int], None]:
    """A block's progress as the whole grid's."""

    def report(done: int, _n: int) -> None:
        progress(offset + done, total)

    return report


def check_parquet_extra() -> None:
    """Parquet needs pyarrow, an optional extra (README's first set-up command skips it)."""
    if importlib.util.find_spec("pyarrow") is None:
        raise InputError(
            "--format parquet needs pyarrow, which is not installed; from the repository run "
            "pip install -c constraints.txt -e '.[parquet]'"
        )


# --------------------------------------------------------------------------------------------
# Columns of a block, ready to write


def _take(res: SweepResult, rows: npt.NDArray[np.int64] | None) -> dict[str, npt.NDArray[Any]]:
    cols = res.columns()
    return cols if rows is None else {k: v[rows] for k, v in cols.items()}


def column_kinds(values: Mapping[str, Iterable[Any]]) -> dict[str, Kind]:
    """Per swept field, the type every block writes it as (from all of its values, so that
    the first block's do not decide for the others)."""
    out: dict[str, Kind] = {}
    for name, vals in values.items():
        vals = list(vals)
        types = {type(v) for v in vals if v is not None}
        if types <= {int}:  # no values at all: int64, all null
            out[name] = "int"
        elif types == {bool}:
            out[name] = "bool"
        elif types == {str}:
            out[name] = "str"
        elif types <= {tuple, list} and all(
            isinstance(x, int) and not isinstance(x, bool) for v in vals if v is not None for x in v
        ):
            out[name] = "ints"
        else:
            out[name] = "json"
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def header(names: Sequence[str]) -> list[str]:
    return [*names, "valid", *COUNTS, "reason"]


WRITE_ROWS = 1 << 16
"""Rows converted to text at a time (the Python strings of a chunk are what text output
holds beyond the block's arrays)."""


def _chunks(blocks: Iterable[Block]) -> Iterator[dict[str, npt.NDArray[Any]]]:
    """The blocks' columns, :data:`WRITE_ROWS` rows at a time."""
    for res, rows in blocks:
        cols = _take(res, rows)
        m = len(cols["valid"])
        for lo in range(0, m, WRITE_ROWS):
            yield {k: v[lo : lo + WRITE_ROWS] for k, v in cols.items()}


def _csv_cell(v: Any) -> str:
    """One CSV cell as the csv module writes it (minimal quoting): ``None`` -> empty, a list
    of integers -> ``224x224`` (the form ``--vary`` reads)."""
    if v is None:
        return ""
    if isinstance(v, tuple | list) and all(isinstance(x, int) for x in v):
        return "x".join(str(x) for x in v)
    t = str(v)
    if any(c in t for c in ',"\n\r'):
        return '"' + t.replace('"', '""') + '"'
    return t


def _json_cell(v: Any) -> str:
    return json.dumps(_plain(v))


def _lines(
    cols: Mapping[str, npt.NDArray[Any]],
    names: Sequence[str],
    cell: Callable[[Any], str],
    valid_tmpl: Callable[[str], str],
    invalid_tmpl: Callable[[str], str],
) -> str:
    """A chunk's rows as text, one line each: the swept fields' cells (integers by ``%d``,
    others by ``cell``), then the counts (valid rows) or the reason (invalid rows), each kind
    of row formatted by one ``%`` template over whole columns, then merged in row order."""
    valid = cols["valid"]
    m = len(valid)
    field_fmt = []
    values: list[list[Any]] = []
    for k in names:
        col = cols[k]
        if col.dtype == np.int64:
            field_fmt.append("%d")
            values.append(col.tolist())
        else:
            field_fmt.append("%s")
            values.append([cell(v) for v in col.tolist()])
    head = "\x00".join(field_fmt)  # replaced by the format's separator in the templates
    out = np.empty(m, dtype=object)
    vi = np.flatnonzero(valid)
    if len(vi):
        fmt = valid_tmpl(head)
        counts = [cols[k][vi].tolist() for k in COUNTS]
        if len(vi) == m:
            out[:] = [fmt % r for r in zip(*values, *counts, strict=True)]
        else:
            fv = [[col[i] for i in vi.tolist()] for col in values]
            out[vi] = [fmt % r for r in zip(*fv, *counts, strict=True)]
    ii = np.flatnonzero(~valid)
    if len(ii):
        fmt = invalid_tmpl(head)
        cache: dict[str, str] = {}
        reasons = []
        for t in cols["reason"][ii].tolist():  # few distinct texts: each formatted once
            text = cache.get(t)
            if text is None:
                text = cache[t] = cell(t)
            reasons.append(text)
        fi = [[col[i] for i in ii.tolist()] for col in values]
        out[ii] = [fmt % r for r in zip(*fi, reasons, strict=True)]
    return "".join(out.tolist())


def write_csv(blocks: Iterable[Block], names: Sequence[str], out: IO[str]) -> int:
    """Write the blocks' rows as CSV to ``out`` (header first; what the csv module writes with
    ``lineterminator="\\n"``); returns the rows written."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header(names))
    n_counts = len(COUNTS)

    def valid_tmpl(head: str) -> str:
        return (head.replace("\x00", ",") + ",True," + ",".join(["%d"] * n_counts)).lstrip(
            ","
        ) + ",\n"

    def invalid_tmpl(head: str) -> str:
        return (head.replace("\x00", ",") + ",False" + "," * n_counts).lstrip(",") + ",%s\n"

    n = 0
    for cols in _chunks(blocks):
        out.write(_lines(cols, names, _csv_cell, valid_tmpl, invalid_tmpl))
        n += len(cols["valid"])
    out.flush()
    return n


def write_json(
    blocks: Iterable[Block], names: Sequence[str], out: IO[str], *, lines: bool = False
) -> int:
    """Write the blocks' rows as one JSON array, one object per line (``lines=False``), or as
    JSON lines; each object is ``json.dumps`` of the row as :meth:`SweepResult.row
    <perceiver_calc.sweep.SweepResult.row>` gives it. Returns the rows written."""
    keys = [json.dumps(k).replace("%", "%%") for k in names]

    def obj(head: str, tail: str) -> str:
        parts = [f"{k}: {f}" for k, f in zip(keys, head.split("\x00"), strict=True)] if keys else []
        return "{" + ", ".join([*parts, tail]) + "}\n"

    counts = ", ".join(f'"{k}": %d' for k in COUNTS)

    def valid_tmpl(head: str) -> str:
        return obj(head, '"valid": true, ' + counts)

    def invalid_tmpl(head: str) -> str:
        return obj(head, '"valid": false, "reason": %s')

    n = 0
    if not lines:
        out.write("[")
    for cols in _chunks(blocks):
        text = _lines(cols, names, _json_cell, valid_tmpl, invalid_tmpl)
        if not lines:
            # "[\n{...},\n{...}\n]": the separators go between rows, across chunks too
            text = ("\n" if n == 0 else ",\n") + text[:-1].replace("}\n{", "},\n{")
        out.write(text)
        n += len(cols["valid"])
    if not lines:
        out.write("\n]\n" if n else "]\n")
    out.flush()
    return n


def write_parquet(blocks: Iterable[Block], kinds: Mapping[str, Kind], path: Path | str) -> int:
    """Write the blocks' rows to a Parquet file (one row group per block); returns the rows
    written. ``kinds``: :func:`column_kinds` of the swept fields."""
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    arrow: dict[Kind, Any] = {
        "int": pa.int64(),
        "bool": pa.bool_(),
        "str": pa.string(),
        "ints": pa.list_(pa.int64()),
        "json": pa.string(),
    }
    fields = [pa.field(k, arrow[kind]) for k, kind in kinds.items()]
    fields += [pa.field("valid", pa.bool_())]
    fields += [pa.field(k, pa.int64()) for k in COUNTS]
    fields += [pa.field("reason", pa.string())]
    schema = pa.schema(fields)
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for res, rows in blocks:
            cols = _take(res, rows)
            valid = cols["valid"]
            arrays = []
            for k, kind in kinds.items():
                col = cols[k]
                data: Any = col
                if kind == "json":
                    data = [json.dumps(_plain(v)) for v in col.tolist()]
                elif kind == "ints":  # a list, not np.array: equal lengths would make it 2-D
                    data = [None if v is None else list(v) for v in col.tolist()]
                arrays.append(pa.array(data, type=arrow[kind]))
            arrays.append(pa.array(valid, type=pa.bool_()))
            arrays += [pa.array(cols[k], type=pa.int64(), mask=~valid) for k in COUNTS]
            arrays.append(pa.array(cols["reason"], type=pa.string()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            n += len(valid)
    return n
