"""``perceiver-calc check | bench``: the analytic counts against the reference model.

* ``check``: parameters per module, forward / backward / training-step FLOPs and the training
  activation bytes, analytic (this package) vs measured (``reference_model.measure``), side by
  side; exit 1 on any mismatch of an exact quantity. Peak memory is shown with its relative
  difference but never fails the check: the analytic peak is a model (see docs/check-and-bench.md).
* ``bench``: times forward passes and training steps on a device; latency, throughput,
  achieved FLOP/s, model FLOP utilisation, peak memory, predicted vs measured.

Thin like cli.py. torch is imported only inside the command bodies (through
``reference_model``): without it the commands print one line naming the extra and exit 2.
Exit codes: 0 agree / done, 1 mismatch (check), 2 bad input, a model whose predicted peak does
not fit the effective memory limit (unless ``--force``), or no torch.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from perceiver_calc.cli_options import WorkloadOptions, finite_positive, workload_options
from perceiver_calc.console import fail as _fail
from perceiver_calc.console import stdout as _stdout
from perceiver_calc.errors import ConfigError, PerceiverCalcError
from perceiver_calc.hub import locate
from perceiver_calc.resolve import validate as validate_config

# The counting modules, the device table and rich are imported by the commands that use them:
# importing perceiver_calc.cli (every command, `validate` too) registers these commands only.
if TYPE_CHECKING:
    from rich.console import Console

    from perceiver_calc.resolve import ResolvedModel
    from perceiver_calc.workload import Workload

__all__ = ["FIT_FRACTION", "register"]

# Refuse to materialise a model whose predicted bytes exceed this share of the free memory:
# the prediction leaves out the allocator's slack, torch's workspaces and the CUDA context.
FIT_FRACTION = 0.9
_GIB = 2**30


class OutFormat(StrEnum):
    table = "table"
    json = "json"


class DeviceChoice(StrEnum):
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class AttentionChoice(StrEnum):
    eager = "eager"
    sdpa = "sdpa"


PathArg = Annotated[
    Path, typer.Argument(help="A config.json, a folder holding one, or a hub id (org/name).")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model class.")]
FormatOpt = Annotated[OutFormat, typer.Option("--format", "-f", help="Output format.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where to run.")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Build the model even when its predicted peak memory does not fit the limit.",
    ),
]


class _Warnings(list[str]):
    """run_bench's warnings, printed on stderr as they come (before the timed runs)."""

    def append(self, text: str) -> None:
        typer.echo(text, err=True)
        super().append(text)


# --------------------------------------------------------------------------------------------
# shared steps


def _measure_module() -> ModuleType:
    """``reference_model.measure``, or exit 2 with one line when torch is missing."""
    try:
        from reference_model import measure
    except ImportError as err:  # reference_model.MissingTorchError is an ImportError
        if type(err).__name__ == "MissingTorchError":
            _fail(f"error: {err}", 2)
        _fail(
            f"error: torch could not be imported ({err}): from a clone of perceiver-calc, "
            "pip install -c constraints.txt -e '.[torch]' (constraints.txt pins the CPU wheel)",
            2,
        )
    return measure


def _resolve(
    path: Path, model: str | None, options: WorkloadOptions, *, mode: str | None = None
) -> tuple[ResolvedModel, Workload]:
    """Config and workload (``mode``, when given, in place of the options' mode), or exit 2
    naming the problem (workload errors included)."""
    from perceiver_calc.workload import check_workload

    try:
        resolved = validate_config(locate(path), model)
        given = options.given if mode is None else {**options.given, "mode": mode}
        workload = WorkloadOptions(given=given, defaults=options.defaults).build()
    except ConfigError as err:
        _fail(f"error: {path}: {err}", 2)
    except PerceiverCalcError as err:
        _fail(f"error: {err}", 2)
    errors = [f for f in check_workload(resolved, workload) if f.severity == "error"]
    if errors:
        _fail(f"error: {errors[0].rule}; {errors[0].fix}", 2)
    return resolved, workload


def _spec(m: ModuleType, resolved: ResolvedModel, workload: Workload) -> Any:
    """The inputs; labels where the class takes them and the workload trains."""
    from perceiver_calc.workload import resolved_inputs

    sizes = resolved_inputs(resolved, workload).as_dict()
    # classes whose forward computes a loss from labels train with labels (as count_memory
    # assumes): the class table says which
    labels = workload.mode == "training" and resolved.spec.takes_labels
    return m.InputSpec.of(resolved.model, sizes, with_labels=labels)


def _config(m: ModuleType, resolved: ResolvedModel) -> Any:
    return m.config_namespace(resolved.config.model_dump(by_alias=True))


def _device_ready(device: str) -> str | None:
    """Why ``device`` cannot be used, or None."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: torch.cuda.is_available() is False"
    if device == "mps" and not torch.backends.mps.is_available():
        return "--device mps: torch.backends.mps.is_available() is False"
    return None


def _fits(m: ModuleType, device: str, needed: int) -> tuple[bool, str]:
    if device == "cpu":
        # The process's own limits (ulimit -v, cgroups), not only what the machine has free.
        from perceiver_calc.hostmem import host_memory_limit

        found = host_memory_limit()
        free, source = found if found else (None, "")
    else:
        free = m.available_memory(device)
        source = {"cuda": "torch.cuda.mem_get_info", "mps": "torch.mps"}.get(device, "")
    if free is None:
        return True, f"free memory on {device} unknown; going ahead"
    msg = (
        f"its predicted peak, {needed:,} bytes ({needed / _GIB:.2f} GiB: weights + gradients + "
        f"optimizer states + activations), is over {FIT_FRACTION:.0%} of the {free:,} bytes "
        f"({free / _GIB:.2f} GiB) {device} memory this process may still use ({source})"
    )
    return needed <= FIT_FRACTION * free, msg


def _refusal(msg: str, override: str) -> str:
    """The exit-2 message when the predicted peak does not fit (issue 12)."""
    return f"error: refusing to materialise the model: {msg}. {override}"


def _rel(predicted: int | float, measured: int | float | None) -> float | None:
    if measured is None or measured == 0:
        return None
    return (predicted - measured) / measured


def _gib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / _GIB:.3f} GiB"


# --------------------------------------------------------------------------------------------
# check


def _row(
    quantity: str, module: str, analytic: int | None, measured: int | None, exact: bool
) -> dict[str, Any]:
    if measured is None or analytic is None:
        status = "skipped"
    elif exact:
        status = "ok" if analytic == measured else "MISMATCH"
    else:
        status = "modelled"
    return {
        "quantity": quantity,
        "module": module,
        "analytic": analytic,
        "measured": measured,
        "exact": exact,
        "relative_difference": (None if analytic is None or exact else _rel(analytic, measured)),
        "status": status,
    }


def run_check(
    resolved: ResolvedModel,
    workload: Workload,
    *,
    device: str = "cpu",
    meta_only: bool = False,
    force: bool = False,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Analytic vs measured; see the module docstring. ``notes`` collects why something was
    skipped. Returns the JSON-ready result (``mismatches``: how many exact rows differ).
    Exits 2 before building the model when its predicted peak does not fit the memory limit,
    unless ``meta_only`` (nothing is built) or ``force`` (built anyway, with a note)."""
    from perceiver_calc.flops import count_flops
    from perceiver_calc.memory import count_memory
    from perceiver_calc.params import count_params

    m = _measure_module()
    notes = notes if notes is not None else []
    cfg = _config(m, resolved)
    train = workload.model_copy(update={"mode": "training"})
    spec = _spec(m, resolved, train)
    rows: list[dict[str, Any]] = []

    # Whether the model may be built on the real device, decided before any work: the larger
    # of the training and the chosen mode's predicted peak against the effective limit.
    dev: str = device
    mem_train = count_memory(resolved, train, device="cpu" if dev == "cpu" else "cuda")
    mem = count_memory(resolved, workload, device="cpu" if dev == "cpu" else "cuda")
    why = None if meta_only else _device_ready(dev)
    if not meta_only and why is None:
        ok, msg = _fits(m, dev, max(mem_train.total_bytes, mem.total_bytes))
        if not ok and not force:
            _fail(
                _refusal(
                    msg,
                    "--meta-only checks parameters and FLOPs without building it; "
                    "--force builds it anyway",
                ),
                2,
            )
        if not ok:
            notes.append(f"--force: building the model although {msg}")

    # parameters, per resolved module path (meta device: no memory)
    import torch

    params = count_params(resolved)
    meta = m.build_model(cfg, resolved.model, device="meta")
    got = m.measure_params(meta, [mod.path for mod in resolved.modules])
    for path in dict.fromkeys([*params.by_module, *got.by_module]):
        rows.append(
            _row("params", path, params.by_module.get(path, 0), got.by_module.get(path, 0), True)
        )
    for name, n in got.unassigned.items():
        rows.append(_row("params", f"{name} (no resolved module)", 0, n, True))
    rows.append(_row("params", "total", params.total, got.total, True))
    rows.append(
        _row(
            "buffer elements",
            "total",
            params.buffer_elements,
            sum(int(torch.Size(s).numel()) for s in got.buffers.values()),
            True,
        )
    )
    del meta

    # FLOPs: FlopCounterMode on the eager model, meta device
    flops = count_flops(resolved, train)
    mf = m.measure_flops(cfg, spec, checkpointing=workload.checkpointing)
    rows.append(_row("forward FLOPs", "total", flops.forward, mf.forward, True))
    rows.append(
        _row("backward FLOPs", "total", flops.backward + flops.recompute, mf.backward, True)
    )
    rows.append(_row("training-step FLOPs", "total", flops.training_step, mf.training, True))

    # activations and peak memory: a real device (the fit was decided above)
    exact_acts = workload.dtype == "fp32" and dev in ("cpu", "cuda")
    measured_acts: int | None = None
    measured_peak: int | None = None
    peak_method = ""
    if meta_only:
        notes.append("--meta-only: activations and peak memory not measured")
    elif why is not None:
        notes.append(f"{why}: activations and peak memory not measured")
    else:
        acts = m.measure_saved_activations(
            cfg, spec, device=dev, dtype=workload.dtype, checkpointing=workload.checkpointing
        )
        measured_acts = int(acts.total_bytes)
        peak = m.measure_peak_memory(
            cfg,
            spec,
            device=dev,
            dtype=workload.dtype,
            training=workload.mode == "training",
            optimizer=workload.optimizer,
            checkpointing=workload.checkpointing,
        )
        measured_peak = peak.bytes
        peak_method = str(peak.method)
    rows.append(
        _row(
            "activation bytes (training)",
            "total",
            mem_train.activations_bytes,
            measured_acts,
            exact_acts,
        )
    )
    peak_row = _row(
        f"peak memory bytes ({workload.mode})", "total", mem.total_bytes, measured_peak, False
    )
    peak_row["method"] = peak_method
    rows.append(peak_row)
    if measured_peak is None and measured_acts is not None:
        notes.append("peak memory: no tracker on this platform")
    mismatches = sum(1 for r in rows if r["status"] == "MISMATCH")
    return {
        "model": resolved.model,
        "device": dev,
        "workload": workload.model_dump(),
        "rows": rows,
        "mismatches": mismatches,
        "ok": mismatches == 0,
        "notes": notes,
    }


def _fmt(row: dict[str, Any], key: str) -> str:
    v = row[key]
    if v is None:
        return "-"
    if "bytes" in row["quantity"]:
        return f"{v:,} ({v / 2**20:.2f} MiB)"
    return f"{v:,}"


def _render_check(res: dict[str, Any], out: Console) -> None:
    from rich.table import Table

    table = Table(title=f"{res['model']}: analytic vs reference model ({res['device']})", box=None)
    for c in ("quantity", "module", "analytic", "measured", "diff", "status"):
        table.add_column(c, justify="right" if c in ("analytic", "measured", "diff") else "left")
    for r in res["rows"]:
        rel = r["relative_difference"]
        diff = (
            f"{rel:+.1%}"
            if rel is not None
            else ("-" if r["measured"] is None else f"{r['analytic'] - r['measured']:+,}")
        )
        style = {"MISMATCH": "bold red", "skipped": "dim", "modelled": "yellow"}.get(r["status"])
        table.add_row(
            r["quantity"],
            r["module"],
            _fmt(r, "analytic"),
            _fmt(r, "measured"),
            diff,
            r["status"],
            style=style,
        )
    out.print(table)
    for note in res["notes"]:
        out.print(f"note: {note}", markup=False)
    out.print(
        "exact rows must be equal; peak memory is a model (weights + gradients + optimizer "
        "states + activations), shown for comparison only",
        markup=False,
    )
    verdict = "all exact quantities agree" if res["ok"] else f"{res['mismatches']} mismatch(es)"
    out.print(verdict, markup=False)


# --------------------------------------------------------------------------------------------
# bench


def _timed(run: Any, progress: bool) -> Any:
    """``run(report)`` with a progress bar on stderr, or ``run(None)``."""
    if not progress:
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        return run(report)


def run_bench(
    resolved: ResolvedModel,
    workload: Workload,
    *,
    device: str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    attention: str = "sdpa",
    peak_flops: float | None = None,
    progress: bool = True,
    threads: int | None = None,
    force: bool = False,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Time the reference model on ``device``; predicted vs measured. Exits 2 if the device is
    missing or the model's predicted peak does not fit the memory limit (unless ``force``).

    ``threads``: torch's intra-op threads for the run (default: the physical cores this process
    may use), restored afterwards. ``warnings`` collects what makes the timings doubtful (a busy
    machine, more threads than CPUs, ``force``); the load average is read before the run."""
    from perceiver_calc.devices import lookup_peak
    from perceiver_calc.flops import count_flops
    from perceiver_calc.hostcpu import available_cpus, busy_warning, load_average, physical_cores
    from perceiver_calc.memory import count_memory
    from perceiver_calc.workload import lengths

    m = _measure_module()

    why = _device_ready(device)
    if why is not None:
        _fail(f"error: {why}", 2)
    training = workload.mode == "training"
    mem_cuda_or_cpu: Literal["cpu", "cuda"] = "cpu" if device == "cpu" else "cuda"
    mem_inf = count_memory(
        resolved, workload.model_copy(update={"mode": "inference"}), device=mem_cuda_or_cpu
    )
    mem_train = count_memory(
        resolved, workload.model_copy(update={"mode": "training"}), device=mem_cuda_or_cpu
    )
    needed = mem_train.total_bytes if training else mem_inf.total_bytes
    ok, msg = _fits(m, device, needed)
    warnings = warnings if warnings is not None else []
    if not ok and not force:
        _fail(_refusal(msg, "--force runs it anyway"), 2)
    if not ok:
        warnings.append(f"warning: --force: running the model although {msg}")
    cpus = available_cpus()
    n_threads = threads if threads is not None else physical_cores()
    if n_threads > cpus:
        warnings.append(
            f"warning: --threads {n_threads} is more than the {cpus} CPUs available to this "
            "process; timings are unreliable"
        )
    load = load_average()
    busy = busy_warning(load, cpus)
    if busy is not None:
        warnings.append(busy)
    flops = count_flops(resolved, workload.model_copy(update={"mode": "training"}))
    cfg = _config(m, resolved)
    spec = _spec(m, resolved, workload)
    name = str(m.device_name(device))

    def run(report: Any) -> Any:
        return m.time_model(
            cfg,
            spec,
            device=device,
            dtype=workload.dtype,
            optimizer=workload.optimizer,
            checkpointing=workload.checkpointing,
            attention=attention,
            warmup=warmup,
            repeats=repeats,
            training=training,
            progress=report,
        )

    previous_threads = int(m.set_threads(n_threads))
    try:
        t = _timed(run, progress)
    finally:
        m.set_threads(previous_threads)

    peak: float | None = peak_flops
    peak_source = "--peak-flops"
    if peak is None:
        found = lookup_peak(name, workload.dtype) if device == "cuda" else None
        peak, peak_source = found if found else (None, "not in the table: pass --peak-flops")
    b = workload.batch_size
    tokens = b * lengths(resolved, workload)["inputs"]

    def phase(xs: list[float], flop: int, predicted: int, measured: int | None) -> dict[str, Any]:
        stats = m.Timings.stats(xs)
        med = stats["median"]
        achieved = flop / med if med > 0 else None
        return {
            "latency_s": stats,
            "samples_per_s": b / med if med > 0 else None,
            "tokens_per_s": tokens / med if med > 0 else None,
            "flops": flop,
            "achieved_flops_per_s": achieved,
            "mfu": None if achieved is None or peak is None else achieved / peak,
            "predicted_peak_memory_bytes": predicted,
            "measured_peak_memory_bytes": measured,
            "memory_relative_difference": _rel(predicted, measured),
        }

    result: dict[str, Any] = {
        "model": resolved.model,
        "device": device,
        "device_name": name,
        "attention": attention,
        "workload": workload.model_dump(),
        "tokens_per_sample": tokens // b,
        "warmup": warmup,
        "repeats": repeats,
        "threads": n_threads,
        "cpus_available": cpus,
        "load_average": (
            None if load is None else dict(zip(("1min", "5min", "15min"), load, strict=True))
        ),
        "warnings": warnings,
        "peak_flops_per_s": peak,
        "peak_flops_source": peak_source,
        "peak_memory_method": t.peak_method,
        "forward": phase(t.forward, flops.forward, mem_inf.total_bytes, t.peak_forward_bytes),
        "training_step": (
            phase(t.training, flops.training_step, mem_train.total_bytes, t.peak_training_bytes)
            if training
            else None
        ),
    }
    return result


def _render_bench(res: dict[str, Any], out: Console) -> None:
    out.print(
        f"{res['model']} on {res['device']} ({res['device_name']}), {res['attention']} attention, "
        f"{res['warmup']} warm-up + {res['repeats']} timed runs",
        markup=False,
    )
    from rich.table import Table

    table = Table(box=None)
    table.add_column("")
    phases = [("forward", res["forward"])]
    if res["training_step"] is not None:
        phases.append(("training step", res["training_step"]))
    for name, _ in phases:
        table.add_column(name, justify="right")

    def cell(p: dict[str, Any], key: str) -> str:
        v = p[key]
        if v is None:
            return "n/a"
        if key == "mfu" or key == "memory_relative_difference":
            return f"{v:+.1%}" if key != "mfu" else f"{v:.1%}"
        if key.endswith("bytes"):
            return _gib(v)
        if key == "flops" or key == "achieved_flops_per_s":
            return f"{v:.3e}"
        return f"{v:,.1f}"

    lat = [p["latency_s"] for _, p in phases]
    for stat in ("median", "min", "max"):
        table.add_row(f"latency {stat} (ms)", *(f"{x[stat] * 1e3:.2f}" for x in lat))
    labels = {
        "samples_per_s": "samples/s",
        "tokens_per_s": "tokens/s",
        "flops": "FLOPs (analytic)",
        "achieved_flops_per_s": "achieved FLOP/s",
        "mfu": "MFU",
        "predicted_peak_memory_bytes": "peak memory, predicted",
        "measured_peak_memory_bytes": "peak memory, measured",
        "memory_relative_difference": "predicted vs measured",
    }
    for key, label in labels.items():
        table.add_row(label, *(cell(p, key) for _, p in phases))
    out.print(table)
    peak = res["peak_flops_per_s"]
    out.print(
        f"peak FLOP/s: {'n/a' if peak is None else f'{peak:.3e}'} ({res['peak_flops_source']})",
        markup=False,
    )
    out.print(f"peak memory: {res['peak_memory_method']}", markup=False)
    load = res["load_average"]
    load_text = "n/a" if load is None else " ".join(f"{v:.2f}" for v in load.values())
    out.print(
        f"threads: {res['threads']} of {res['cpus_available']} CPUs available; "
        f"load average (1/5/15 min) before the run: {load_text}",
        markup=False,
    )


# --------------------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add ``check`` and ``bench`` to ``app``."""

    @app.command()
    @workload_options(mode="training")
    def check(
        path: PathArg,
        workload: WorkloadOptions,
        model: ModelOpt = None,
        device: DeviceOpt = DeviceChoice.cpu,
        meta_only: Annotated[
            bool,
            typer.Option("--meta-only", help="Check parameters and FLOPs only (meta device)."),
        ] = False,
        force: ForceOpt = False,
        format: FormatOpt = OutFormat.table,
    ) -> None:
        """Analytic counts vs the reference model: parameters per module, FLOPs, activation
        bytes (exact: exit 1 on any mismatch) and peak memory (modelled, for comparison)."""
        # FLOPs and activations are checked on a training pass whatever --mode says (the
        # workload's checks too); --mode chooses the peak memory compared
        resolved, training = _resolve(path, model, workload, mode="training")
        wl = training.model_copy(update={"mode": workload.given.get("mode", "training")})
        res = run_check(resolved, wl, device=device.value, meta_only=meta_only, force=force)
        if format is OutFormat.json:
            typer.echo(json.dumps(res, indent=2))
        else:
            _render_check(res, _stdout())
        if not res["ok"]:
            raise typer.Exit(1)

    @app.command()
    @workload_options(mode="training")
    def bench(
        path: PathArg,
        workload: WorkloadOptions,
        model: ModelOpt = None,
        device: DeviceOpt = DeviceChoice.cpu,
        warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs.")] = 2,
        repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs.")] = 5,
        attention: Annotated[
            AttentionChoice, typer.Option("--attention", help="Attention kernel.")
        ] = AttentionChoice.sdpa,
        peak_flops: Annotated[
            float | None,
            typer.Option(
                "--peak-flops",
                help="Device peak FLOP/s for MFU (default: table).",
                callback=finite_positive,
            ),
        ] = None,
        threads: Annotated[
            int | None,
            typer.Option(
                "--threads",
                min=1,
                help="torch CPU threads for the run (default: the physical cores available).",
            ),
        ] = None,
        force: ForceOpt = False,
        format: FormatOpt = OutFormat.table,
    ) -> None:
        """Time forward passes and training steps of the reference model: latency,
        throughput, achieved FLOP/s, MFU and peak memory, predicted vs measured."""
        if peak_flops is not None and peak_flops <= 0:
            _fail(f"error: --peak-flops ({peak_flops}) must be positive", 2)
        resolved, wl = _resolve(path, model, workload)
        res = run_bench(
            resolved,
            wl,
            device=device.value,
            warmup=warmup,
            repeats=repeats,
            attention=attention.value,
            peak_flops=peak_flops,
            progress=True,
            threads=threads,
            force=force,
            warnings=_Warnings(),
        )
        if format is OutFormat.json:
            typer.echo(json.dumps(res, indent=2))
        else:
            _render_bench(res, _stdout())
