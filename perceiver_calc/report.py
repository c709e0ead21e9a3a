"""The Report (JSON-serialisable, no arithmetic) and its renderers: table, JSON, markdown.

A :class:`Report` is assembled from the outputs of ``resolve`` and the counting functions;
rendering only formats what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from perceiver_calc.errors import ConfigError, Finding
from perceiver_calc.flops import FlopCounts, count_flops
from perceiver_calc.memory import MemoryCounts, count_memory
from perceiver_calc.modules import Dim, Module, ResolvedModel
from perceiver_calc.params import ParamCounts, count_params
from perceiver_calc.workload import Workload, check_workload, resolved_inputs

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.table import Table


def _escape(text: str) -> str:
    """html.escape, imported when a notebook asks for HTML (not on the CLI's path)."""
    import html

    return html.escape(text)


__all__ = [
    "ModuleDims",
    "Report",
    "build_report",
    "render_explain_markdown",
    "render_json",
    "render_markdown",
    "render_table",
]


# The report's values are frozen dataclasses, not pydantic models: they are built here, never
# parsed from input, and pydantic's schema build for them cost import time on every run.
@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleDims:
    """One module's resolved dimensions, each with its source and rule."""

    path: str
    kind: str
    dims: Mapping[str, Dim]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamsSection:
    total: int
    trainable: int
    by_module: Mapping[str, int]
    tensors: Mapping[str, tuple[int, ...]]
    buffers: Mapping[str, tuple[int, ...]]
    copies: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Shared block path (by_module key) -> its identical layers (num_self_attends_per_block)."""
    tensors_note: str | None = None
    """Why some tensors are not listed (a shared block of very many copies)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Everything ``perceiver-calc report`` shows, as data (``report_data`` for JSON)."""

    model: str
    source: str | None
    params: ParamsSection
    dimensions: tuple[ModuleDims, ...]
    findings: tuple[Finding, ...]
    workload: dict[str, object] | None = None
    """The workload the FLOPs and memory are for, defaults filled in (None: not computed)."""
    flops: FlopCounts | None = None
    memory: MemoryCounts | None = None

    def _repr_html_(self) -> str:
        """Jupyter shows the report as HTML tables (:func:`report_html`)."""
        return report_html(self)


def module_dims(m: Module) -> ModuleDims:
    """The dims of one resolved module, for display (each kind describes itself)."""
    path, kind, dims, notes = m.describe()
    return ModuleDims(path=path, kind=kind, dims=MappingProxyType(dims), notes=notes)


def build_report(
    resolved: ResolvedModel,
    params: ParamCounts | None = None,
    *,
    source: str | None = None,
    workload: Workload | None = None,
    workload_explicit: bool = False,
) -> Report:
    """Assemble the report. With a workload, add FLOPs and memory for it.

    A workload that would make transformers' forward pass fail raises :class:`ConfigError`
    when the user chose it (``workload_explicit``); for the default workload its problems
    become warnings and FLOPs and memory are left out, so parameters are still reported.
    """
    p = params if params is not None else count_params(resolved)
    findings = list(resolved.findings)
    flops = memory = None
    echoed: dict[str, object] | None = None
    if workload is not None:
        problems = check_workload(resolved, workload)
        errors = [f for f in problems if f.severity == "error"]
        if errors and workload_explicit:
            raise ConfigError([*resolved.findings, *problems])
        if errors:
            findings += [
                dataclasses.replace(
                    f,
                    severity="warning",
                    fix=f.fix + " (FLOPs and memory need a valid input; pass one)",
                )
                for f in problems
            ]
        else:
            findings += problems
            flops = count_flops(resolved, workload)
            memory = count_memory(resolved, workload)
            inputs = resolved_inputs(resolved, workload).as_dict(exclude_none=True)
            echoed = {**workload.model_dump(), **inputs}
    return Report(
        model=resolved.model,
        source=source,
        params=ParamsSection(
            total=p.total,
            trainable=p.trainable,
            by_module=p.by_module,
            tensors=p.tensors,
            buffers=p.buffers,
            copies=p.copies,
            tensors_note=p.tensors_note,
        ),
        dimensions=tuple(module_dims(m) for m in resolved.modules),
        findings=tuple(findings),
        workload=echoed,
        flops=flops,
        memory=memory,
    )


# --------------------------------------------------------------------------------------------
# JSON


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses and models as dicts in field order.

    The shapes are those pydantic's ``model_dump(mode="json")`` gave (json.dumps turns tuples
    into lists and int keys into strings the same way), so the JSON output is unchanged.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):  # dicts and the read-only MappingProxyType views
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)  # a pydantic model (e.g. a config)
    if callable(dump):
        return dump(mode="json")
    return value


def report_data(report: Report, *, include: frozenset[str] | None = None) -> dict[str, Any]:
    """The report as a dict of JSON data; ``include`` keeps only those top-level keys."""
    names = [f.name for f in dataclasses.fields(report)]
    return {n: jsonable(getattr(report, n)) for n in names if include is None or n in include}


def render_json(report: Report, *, include_tensors: bool = False) -> str:
    data = report_data(report)
    if data["flops"] is not None:
        data["flops"].pop("ops", None)
    if not include_tensors:
        data["params"].pop("tensors")
    if data["flops"] is None:
        del data["flops"], data["memory"], data["workload"]
    return json.dumps(data, indent=2)


# --------------------------------------------------------------------------------------------
# Tables

_SELF = re.compile(r"^(?P<prefix>.*encoder\.self_attends)\.(?P<i>\d+)$")


def grouped_params(
    by_module: Mapping[str, int], copies: Mapping[str, int] | None = None
) -> list[tuple[str, int, str]]:
    """(label, count, note) rows, the identical self_attends layers in one row: a shared block
    (a ``copies`` key: L layers, counted as one module) or per-layer ``self_attends.i`` keys."""
    copies = copies or {}
    rows: list[tuple[str, int, str]] = []
    group: dict[str, list[int]] = {}
    for path, n in by_module.items():
        m = _SELF.match(path)
        if path in copies:
            c = copies[path]
            rows.append((f"{path}.0-{c - 1}", n, f"{c} layers x {n // c:,}" if c else ""))
        elif m:
            key = m["prefix"]
            if key not in group:
                group[key] = []
                rows.append((key, 0, ""))
            group[key].append(n)
        else:
            rows.append((path, n, ""))
    out: list[tuple[str, int, str]] = []
    for label, n, note in rows:
        if label in group:
            counts = group[label]
            note = f"{len(counts)} layers x {counts[0]:,}" if len(set(counts)) == 1 else ""
            out.append((f"{label}.0-{len(counts) - 1}", sum(counts), note))
        else:
            out.append((label, n, note))
    return out


def human_flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:,.0f} FLOP"


def human_bytes(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:,.0f} B"


def _workload_line(report: Report) -> str:
    w = report.workload or {}
    keys = (
        "batch_size",
        "seq_len",
        "image_size",
        "num_frames",
        "dtype",
        "mode",
        "optimizer",
        "checkpointing",
    )
    parts = [f"{k}={w[k]}" for k in keys if w.get(k) is not None]
    return "workload: " + ", ".join(parts)


def _flops_rows(f: FlopCounts) -> list[tuple[str, str, str]]:
    rows = [
        ("forward", f"{f.forward:,}", human_flops(f.forward)),
        ("backward", f"{f.backward:,}", human_flops(f.backward)),
    ]
    if f.recompute:
        rows.append(("recompute (checkpointing)", f"{f.recompute:,}", human_flops(f.recompute)))
    rows += [
        ("training step", f"{f.training_step:,}", human_flops(f.training_step)),
        ("forward multiply-adds (MACs)", f"{f.macs_forward:,}", "FLOPs = 2 x MACs"),
        (
            "elementwise, forward (estimate)",
            f"{f.elementwise_forward:,}",
            "LayerNorm, softmax, activation, scaling, bias, residuals: not in the lines above",
        ),
        (
            "6 x params x tokens (rule of thumb)",
            f"{f.six_n_d:,}",
            f"{f.six_n_d_ratio:.2f}x the exact training step",
        ),
    ]
    return rows


def _memory_rows(m: MemoryCounts) -> list[tuple[str, str, str]]:
    rows = [
        ("weights", m.weights_bytes),
        ("gradients", m.gradients_bytes),
        ("optimizer states", m.optimizer_bytes),
        # CUDA and CPU differ only in the dropout masks (1 B vs 4 B per element in fp32):
        # name which one the figure is for (docs/conventions.md, "CPU vs CUDA").
        (f"activations kept for backward (as on {m.device.upper()})", m.activations_bytes),
    ]
    if m.recompute_peak_bytes:
        rows.append(("recompute peak (checkpointing)", m.recompute_peak_bytes))
    rows += [
        (f"total ({m.mode})", m.total_bytes),
        ("inference peak (weights + working set)", m.inference_peak_bytes),
        ("largest attention score tensor", m.largest_attention_scores_bytes),
    ]
    return [(k, f"{v:,}", human_bytes(v)) for k, v in rows]


def _grouped_flops(f: FlopCounts, copies: Mapping[str, int]) -> list[tuple[str, int, int]]:
    fwd = grouped_params({k: v.forward for k, v in f.by_module.items()}, copies)
    bwd = dict(
        (label, n)
        for label, n, _ in grouped_params({k: v.backward for k, v in f.by_module.items()}, copies)
    )
    return [(label, n, bwd.get(label, 0)) for label, n, _ in fwd if n or bwd.get(label)]


def _flops_tables(report: Report) -> list[Table]:
    from rich import box
    from rich.table import Table

    f = report.flops
    assert f is not None
    t = Table(
        title="FLOPs (2 per multiply-add; matmuls and convolutions, as FlopCounterMode)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    t.add_column("")
    t.add_column("FLOPs", justify="right")
    t.add_column("")
    for row in _flops_rows(f):
        t.add_row(*row)
    by = Table(title="FLOPs by module", box=box.SIMPLE_HEAD, title_justify="left")
    by.add_column("module (transformers path)", no_wrap=True)
    by.add_column("forward", justify="right")
    by.add_column("backward", justify="right")
    by.add_column("share of forward", justify="right")
    for label, fw, bw in _grouped_flops(f, report.params.copies):
        share = f"{100 * fw / f.forward:.1f}%" if f.forward else "-"
        by.add_row(label, f"{fw:,}", f"{bw:,}", share)
    m = Table(title="Memory (bytes)", box=box.SIMPLE_HEAD, title_justify="left")
    m.add_column("")
    m.add_column("bytes", justify="right")
    m.add_column("", justify="right")
    assert report.memory is not None
    for row in _memory_rows(report.memory):
        m.add_row(*row)
    return [t, by, m]


PARAMS_HEADER = ("module (transformers path)", "params", "share", "note")


def _params_rows(p: ParamsSection | ParamCounts) -> list[tuple[str, str, str, str]]:
    """Parameters by module (identical layers in one row), the total, the buffers."""
    total = p.total
    rows = [
        (label, f"{n:,}", f"{100 * n / total:.1f}%" if total else "-", note)
        for label, n, note in grouped_params(p.by_module, p.copies)
    ]
    rows.append(("total", f"{total:,}", "100.0%", f"trainable {p.trainable:,}"))
    if p.buffers:
        n_buf = sum(_prod(s) for s in p.buffers.values())
        rows.append(("buffers (not parameters)", f"{n_buf:,}", "", ", ".join(p.buffers)))
    return rows


def _params_table(report: Report) -> Table:
    from rich import box
    from rich.table import Table

    t = Table(title="Parameters by module", box=box.SIMPLE_HEAD, title_justify="left")
    for col in PARAMS_HEADER:
        t.add_column(col, justify="right" if col in ("params", "share") else "left")
    t.columns[0].no_wrap = True
    for row in _params_rows(report.params):
        t.add_row(*row, style="bold" if row[0] == "total" else None)
    return t


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


LAYERS_HEADER = (
    "module",
    "q_dim",
    "kv_dim",
    "qk",
    "v",
    "heads",
    "qk/head",
    "v/head",
    "out",
    "widen",
    "q residual",
)
_LAYER_DIMS = (
    "q_dim",
    "kv_dim",
    "qk_channels",
    "v_channels",
    "num_heads",
    "qk_channels_per_head",
    "v_channels_per_head",
    "output_channels",
    "widening_factor",
)


def _layer_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per attention module (the identical self-attention layers once)."""
    return [
        (
            path,
            *(str(md.dims[k].value) for k in _LAYER_DIMS),
            "yes" if md.dims["use_query_residual"].value else "no",
        )
        for path, md in _explained_modules(report)
        if md.kind in ("encoder_cross", "encoder_self", "decoder_cross")
    ]


def _layers_table(report: Report) -> Table:
    from rich import box
    from rich.table import Table

    t = Table(title="Attention layers (resolved)", box=box.SIMPLE_HEAD, title_justify="left")
    for col in LAYERS_HEADER:
        t.add_column(col, justify="left" if col == "module" else "right", no_wrap=True)
    for row in _layer_rows(report):
        t.add_row(*row)
    return t


def _findings_group(findings: tuple[Finding, ...]) -> Group | None:
    from rich.console import Group
    from rich.text import Text

    if not findings:
        return None
    lines = [Text("Findings", style="bold")]
    for f in findings:
        style = "red" if f.severity == "error" else "yellow"
        lines.append(Text(f"  {f.severity}: {f}", style=style))
    return Group(*lines)


def render_table(report: Report, console: Console) -> None:
    from rich.text import Text

    title = Text(report.model, style="bold")
    if report.source:
        title.append(f"  ({report.source})", style="dim")
    console.print(title)
    console.print(f"parameters: {report.params.total:,}")
    console.print(_layers_table(report))
    console.print(_params_table(report))
    if report.flops is not None:
        console.print(_workload_line(report), markup=False)
        for table in _flops_tables(report):
            console.print(table)
    group = _findings_group(report.findings)
    if group is not None:
        console.print(group, soft_wrap=True)  # one line per finding: a terminal wraps it


def render_explain(report: Report, console: Console) -> None:
    """Every module's dims with source and rule: the seed notes' tables, for any config."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = Text(f"{report.model}: resolved dimensions", style="bold")
    if report.source:
        title.append(f"  ({report.source})", style="dim")
    console.print(title)
    for path, md in _explained_modules(report):
        t = Table(title=f"{path}  [{md.kind}]", box=box.SIMPLE_HEAD, title_justify="left")
        t.add_column("dimension")
        t.add_column("value", justify="right")
        t.add_column("source")
        t.add_column("from")
        for name, dim in md.dims.items():
            t.add_row(name, _dim_value(name, dim), dim.source, dim.rule)
        console.print(t)
        for note in md.notes:
            console.print(f"  {note}", style="dim")
    group = _findings_group(report.findings)
    if group is not None:
        console.print(group, soft_wrap=True)  # one line per finding: a terminal wraps it


# --------------------------------------------------------------------------------------------
# Markdown


def _cell(text: object) -> str:
    """A markdown table cell: ``|`` escaped, newlines flattened (rules are free text)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _explained_modules(report: Report) -> list[tuple[str, ModuleDims]]:
    """(display path, dims) per module, the identical self_attends layers shown once."""
    out: list[tuple[str, ModuleDims]] = []
    seen_self = False
    for md in report.dimensions:
        if md.kind == "encoder_self":
            if seen_self:
                continue
            seen_self = True
        out.append((re.sub(r"self_attends$", "self_attends.*", md.path), md))
    return out


def _dim_value(name: str, dim: Dim) -> str:
    if name == "use_query_residual":
        return "yes" if dim.value else "no"
    return str(dim.value)


def render_explain_markdown(report: Report) -> str:
    """``explain --format markdown``: each module's dimensions with value, source and rule."""
    out = [f"# {report.model}: resolved dimensions", ""]
    if report.source:
        out += [f"Config: `{report.source}`", ""]
    for path, md in _explained_modules(report):
        out += [
            f"## `{path}` ({md.kind})",
            "",
            "| dimension | value | source | from |",
            "|---|---:|---|---|",
        ]
        out += [
            f"| `{name}` | {_cell(_dim_value(name, dim))} | {dim.source} | {_cell(dim.rule)} |"
            for name, dim in md.dims.items()
        ]
        if md.notes:
            out += ["", *(f"- {_cell(note)}" for note in md.notes)]
        out.append("")
    if report.findings:
        out += ["## Findings", ""]
        out += [f"- **{f.severity}** `{f.code}`: {f}" for f in report.findings]
        out.append("")
    return "\n".join(out)


def render_markdown(report: Report) -> str:
    out = [f"# {report.model}", ""]
    if report.source:
        out += [f"Config: `{report.source}`", ""]
    out += [f"**Parameters: {report.params.total:,}** (trainable {report.params.trainable:,})", ""]
    out += [
        "## Attention layers",
        "",
        "| module | q_dim | kv_dim | qk | v | heads | out | widening | query residual |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    seen_self = False
    for md in report.dimensions:
        if md.kind not in ("encoder_cross", "encoder_self", "decoder_cross"):
            continue
        if md.kind == "encoder_self":
            if seen_self:
                continue
            seen_self = True
        d = md.dims
        path = re.sub(r"self_attends$", "self_attends.*", md.path)
        vals = " | ".join(
            str(d[k].value)
            for k in (
                "q_dim",
                "kv_dim",
                "qk_channels",
                "v_channels",
                "num_heads",
                "output_channels",
                "widening_factor",
            )
        )
        res = "yes" if d["use_query_residual"].value else "no"
        out.append(f"| `{path}` | {vals} | {res} |")
    out += ["", "## Parameters by module", "", "| module | params | note |", "|---|---:|---|"]
    for label, n, note in grouped_params(report.params.by_module, report.params.copies):
        out.append(f"| `{label}` | {n:,} | {note} |")
    out.append(f"| **total** | **{report.params.total:,}** | |")
    if report.flops is not None:
        out += [
            "",
            "## FLOPs and memory",
            "",
            _workload_line(report),
            "",
            "| | FLOPs | |",
            "|---|---:|---|",
        ]
        out += [f"| {a} | {b} | {c} |" for a, b, c in _flops_rows(report.flops)]
        out += ["", "| module | forward | backward |", "|---|---:|---:|"]
        grouped = _grouped_flops(report.flops, report.params.copies)
        out += [f"| `{label}` | {fw:,} | {bw:,} |" for label, fw, bw in grouped]
        out += ["", "| memory | bytes | |", "|---|---:|---:|"]
        assert report.memory is not None
        out += [f"| {a} | {b} | {c} |" for a, b, c in _memory_rows(report.memory)]
    if report.findings:
        out += ["", "## Findings", ""]
        out += [f"- **{f.severity}** `{f.code}`: {f}" for f in report.findings]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# HTML (Jupyter): Report, ParamCounts, FlopCounts and MemoryCounts have a _repr_html_ that
# calls these. Plain HTML tables, no rich or pandas needed; every cell escaped.

FLOPS_HEADER = ("", "FLOPs", "")
MEMORY_HEADER = ("", "bytes", "")


def html_table(
    caption: str,
    header: tuple[str, ...],
    rows: list[tuple[str, ...]],
    right: tuple[int, ...] = (1, 2),
) -> str:
    """A ``<table>``: the ``right`` columns (the counts) right-aligned; a ``total`` row in
    bold."""

    def cells(tag: str, row: tuple[str, ...]) -> str:
        out = []
        for i, v in enumerate(row):
            align = "right" if i in right else "left"
            out.append(f'<{tag} style="text-align:{align}">{_escape(v)}</{tag}>')
        return "".join(out)

    bold = ' style="font-weight:bold"'
    body = "".join(
        f"<tr{bold if row and row[0] == 'total' else ''}>{cells('td', row)}</tr>" for row in rows
    )
    return (
        f'<table><caption style="text-align:left"><b>{_escape(caption)}</b></caption>'
        f"<thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"
    )


def _html_params(p: ParamsSection | ParamCounts) -> str:
    return html_table("Parameters by module", PARAMS_HEADER, list(_params_rows(p)))


def _html_flops(f: FlopCounts, copies: Mapping[str, int]) -> str:
    by = [
        (label, f"{fw:,}", f"{bw:,}", f"{100 * fw / f.forward:.1f}%" if f.forward else "-")
        for label, fw, bw in _grouped_flops(f, copies)
    ]
    return html_table(
        "FLOPs (2 per multiply-add; matmuls and convolutions, as FlopCounterMode)",
        FLOPS_HEADER,
        list(_flops_rows(f)),
        right=(1,),
    ) + html_table(
        "FLOPs by module",
        ("module (transformers path)", "forward", "backward", "share of forward"),
        list(by),
        right=(1, 2, 3),
    )


def _html_memory(m: MemoryCounts) -> str:
    caption = f"Memory (bytes; {m.mode}, {m.dtype})"
    return html_table(caption, MEMORY_HEADER, list(_memory_rows(m)))


def params_html(p: ParamCounts) -> str:
    """``ParamCounts._repr_html_``."""
    return _html_params(p)


def flops_html(f: FlopCounts) -> str:
    """``FlopCounts._repr_html_`` (a shared block's layers are one row: its by_module key)."""
    return _html_flops(f, {})


def memory_html(m: MemoryCounts) -> str:
    """``MemoryCounts._repr_html_``."""
    return _html_memory(m)


def report_html(report: Report) -> str:
    """``Report._repr_html_``: the tables of ``perceiver-calc report``, as HTML."""
    title = f"<h4>{_escape(report.model)}"
    if report.source:
        title += f" <small>({_escape(report.source)})</small>"
    parts = [
        title + "</h4>",
        f"<p>parameters: {report.params.total:,}</p>",
        html_table(
            "Attention layers (resolved)",
            LAYERS_HEADER,
            _layer_rows(report),
            right=tuple(range(1, len(LAYERS_HEADER))),
        ),
        _html_params(report.params),
    ]
    if report.flops is not None and report.memory is not None:
        parts.append(f"<p>{_escape(_workload_line(report))}</p>")
        parts.append(_html_flops(report.flops, report.params.copies))
        parts.append(_html_memory(report.memory))
    if report.findings:
        items = "".join(
            f"<li><b>{_escape(f.severity)}</b>: {_escape(str(f))}</li>" for f in report.findings
        )
        parts.append(f"<p><b>Findings</b></p><ul>{items}</ul>")
    return "<div>" + "".join(parts) + "</div>"
