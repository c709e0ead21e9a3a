"""Planning on top of the counts: budget search, Pareto fronts, comparison, training plans.

* :func:`fit` - the rows of a sweep within parameter / FLOP / memory budgets, and the Pareto
  front among them (by default: most parameters for the least training compute).
* :func:`compare` - several configs side by side, with the dimensions and counts that differ.
* :func:`training_plan` - per-GPU memory for data parallel, ZeRO-1/2/3 and FSDP full sharding
  over N GPUs, with and without activation checkpointing, and step time / time to train at a
  given MFU on a named device.

Sharding model (per rank, N ranks; P parameters, bytes per element w, g, o from the workload's
dtype and optimizer, as :func:`~perceiver_calc.memory.count_memory` counts them):

1. ``ddp``: every rank holds weights, gradients and optimizer states in full.
2. ``zero1``: optimizer states sharded (DeepSpeed ZeRO stage 1).
3. ``zero2``: + gradients sharded.
4. ``zero3`` / ``fsdp``: + weights sharded. FSDP2 (``fully_shard``) shards every parameter
   along dim 0 in ``torch.chunk`` pieces, so rank 0 holds ``ceil(rows / N)`` rows of each
   tensor: per-rank elements = sum over tensors of ``ceil(shape[0] / N) * prod(shape[1:])``
   (checked against torch.distributed FSDP in tests/test_fsdp.py). While a unit runs, its
   full weights are all-gathered: the plan adds the largest module's unsharded weights
   (and, in backward, its unsharded gradients) as a transient.

Activations are never sharded by these schemes (each rank runs its own micro-batch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from perceiver_calc.devices import DEVICES, GpuSpec
from perceiver_calc.flops import count_flops
from perceiver_calc.memory import Device, count_memory
from perceiver_calc.params import copies_of, count_params, one_copy_shapes
from perceiver_calc.resolve import Dim, Parameter, PerceiverLayer, ResolvedModel
from perceiver_calc.sweep import SweepResult
from perceiver_calc.workload import Workload

__all__ = [
    "DEVICES",
    "STRATEGIES",
    "Comparison",
    "FitResult",
    "GpuSpec",
    "StrategyMemory",
    "TrainingPlan",
    "compare",
    "fit",
    "pareto_front",
    "plot_shares",
    "plot_sweep",
    "training_plan",
]

Strategy = Literal["ddp", "zero1", "zero2", "zero3", "fsdp"]
STRATEGIES: tuple[Strategy, ...] = ("ddp", "zero1", "zero2", "zero3", "fsdp")


# --------------------------------------------------------------------------------------------
# Budget search and Pareto front


class FitResult(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    within: list[int]
    """Rows of the sweep that are valid and within every budget."""
    pareto: list[int]
    """Rows of ``within`` on the Pareto front (maximise ``maximize``, minimise ``minimize``),
    sorted by ``minimize``."""
    maximize: str
    minimize: str


def pareto_front(maximize: npt.NDArray[Any], minimize: npt.NDArray[Any]) -> list[int]:
    """Indices not dominated by another (no other has >= maximize and <= minimize, one
    strictly); ties keep the first. Sorted by ``minimize``. O(n log n), on arrays: after
    sorting by ``minimize`` ascending (then ``maximize`` descending, stable), a point is on
    the front exactly when its ``maximize`` beats the running maximum of those before it."""
    maximize = np.asarray(maximize)
    minimize = np.asarray(minimize)
    n = len(maximize)
    if n == 0:
        return []
    order = np.lexsort((-maximize, minimize))  # by minimize asc, then maximize desc
    m = maximize[order]
    keep = np.ones(n, dtype=bool)
    if n > 1:
        keep[1:] = m[1:] > np.maximum.accumulate(m)[:-1]
    front: list[int] = order[keep].tolist()
    return front


def fit(
    result: SweepResult,
    *,
    max_params: int | None = None,
    max_flops: int | None = None,
    max_memory: int | None = None,
    flops: str = "training_flops",
    memory: str = "memory_bytes",
    maximize: str = "params",
    minimize: str | None = None,
) -> FitResult:
    """Valid rows within the budgets, and their Pareto front (default: most ``params`` for the
    least ``flops``)."""
    ok = result.valid.copy()
    c = result.counts
    if max_params is not None:
        ok &= c["params"] <= max_params
    if max_flops is not None:
        ok &= c[flops] <= max_flops
    if max_memory is not None:
        ok &= c[memory] <= max_memory
    rows = np.flatnonzero(ok)
    minimize = minimize or flops
    front = pareto_front(c[maximize][rows], c[minimize][rows])
    return FitResult(
        within=rows.tolist(),
        pareto=[int(rows[i]) for i in front],
        maximize=maximize,
        minimize=minimize,
    )


# --------------------------------------------------------------------------------------------
# Comparison


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    names: list[str]
    models: list[str]
    dims: dict[str, list[int | None]]
    """``module path:dim`` -> value per config (None where the module is absent)."""
    counts: dict[str, list[int]]
    differing_dims: list[str]
    differing_counts: list[str]


def _dims(resolved: ResolvedModel) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in resolved.modules:
        if isinstance(m, PerceiverLayer) and m.role == "encoder_self":
            path = m.path + ".*"  # the shared block: one resolved layer for all its copies
        else:
            path = m.path
        if isinstance(m, Parameter):
            path = f"{path}.{m.name}"
        for field in dataclasses.fields(m):
            name, value = field.name, getattr(m, field.name)
            if isinstance(value, Dim):
                out[f"{path}:{name}"] = value.value
            elif isinstance(value, tuple) and value and all(isinstance(d, Dim) for d in value):
                out[f"{path}:{name}"] = math.prod(d.value for d in value)
                for i, d in enumerate(value):
                    out[f"{path}:{name}[{i}]"] = d.value
            elif name == "applications":
                out[f"{path}:{name}"] = int(value)
    out["encoder.self_attends:count"] = sum(
        m.copies
        for m in resolved.modules
        if isinstance(m, PerceiverLayer) and m.role == "encoder_self"
    )
    return out


def compare(
    resolved: Sequence[ResolvedModel],
    names: Sequence[str],
    workload: Workload | None = None,
    device: Device = "cuda",
) -> Comparison:
    """Side by side: every resolved dimension and the headline counts of each config."""
    from perceiver_calc.sweep import scalar_counts

    wl = workload or Workload()
    dims = [_dims(r) for r in resolved]
    keys = list(dict.fromkeys(k for d in dims for k in d))
    table = {k: [d.get(k) for d in dims] for k in keys}
    counts_rows = [scalar_counts(r, wl, device) for r in resolved]
    counts = {k: [c[k] for c in counts_rows] for k in counts_rows[0]}
    return Comparison(
        names=list(names),
        models=[r.model for r in resolved],
        dims=table,
        counts=counts,
        differing_dims=[k for k, v in table.items() if len(set(v)) > 1],
        differing_counts=[k for k, v in counts.items() if len(set(v)) > 1],
    )


# --------------------------------------------------------------------------------------------
# Training plans


class StrategyMemory(BaseModel):
    model_config = ConfigDict(frozen=True)

    strategy: Strategy
    checkpointing: bool
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    transient_bytes: int
    """Gathered full weights (and gradients) of the largest unit while it runs (ZeRO-3/FSDP),
    or the checkpointing recompute peak."""
    total_bytes: int
    fits: bool | None
    """Within the device's memory (None when no device is named)."""


class TrainingPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    gpus: int
    batch_size_per_gpu: int
    params: int
    sharded_params_per_rank: int
    """Elements rank 0 holds under FSDP2 dim-0 sharding (see the module docstring)."""
    checkpointing: bool | None
    """The activation checkpointing the ``memory`` rows are for: None, both (each strategy
    without, then with)."""
    memory: list[StrategyMemory]
    training_flops_per_step: int
    """Whole step over all GPUs (global batch), without / with checkpointing below."""
    training_flops_per_step_checkpointing: int
    device: str | None
    mfu: float
    step_seconds: float | None
    step_seconds_checkpointing: float | None
    samples: int | None
    steps: int | None
    train_seconds: float | None
    train_seconds_checkpointing: float | None


def sharded_elements(shapes: Mapping[str, tuple[int, ...]], n: int) -> int:
    """Rank 0's elements when each tensor is split along dim 0 in ``torch.chunk`` pieces."""
    total = 0
    for shape in shapes.values():
        if not shape:
            total += 1  # 0-d tensors are replicated... (none among Perceiver parameters)
            continue
        total += -(-shape[0] // n) * math.prod(shape[1:])
    return total


def training_plan(
    resolved: ResolvedModel,
    workload: Workload,
    *,
    gpus: int,
    device: str | None = None,
    mfu: float = 0.4,
    samples: int | None = None,
    memory_device: Device = "cuda",
    checkpointing: bool | None = None,
) -> TrainingPlan:
    """Per-GPU memory for each strategy and step time, with and without activation
    checkpointing (``checkpointing=None``) or for the one choice given.

    ``workload.batch_size`` is the per-GPU micro-batch; the global batch is ``gpus`` times it.
    The plan always trains: ``workload.mode`` and ``workload.checkpointing`` are not read
    (``checkpointing`` chooses the rows).
    """
    if gpus < 1:
        raise ValueError(f"gpus ({gpus}) must be at least 1")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu ({mfu}) must be in (0, 1]")
    spec = None
    if device is not None:
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
        spec = DEVICES[device]
        if workload.dtype not in spec.flops:
            raise ValueError(
                f"device {device!r} has no {workload.dtype} peak ({spec.source}); use a dtype it "
                f"has: {', '.join(spec.flops)}"
            )
    wl = workload.model_copy(update={"mode": "training"})
    params = count_params(resolved)
    # closed form over a shared block's copies (identical shapes): no per-copy tensor list
    shard = sum(sharded_elements(one_copy_shapes(m), gpus) * copies_of(m) for m in resolved.modules)
    plans: list[StrategyMemory] = []
    # one layer of a shared block is a module (its by_module entry counts all copies)
    largest_module = max(
        (n // params.copies.get(k, 1) for k, n in params.by_module.items() if n), default=0
    )
    flops_by_ckpt: dict[bool, int] = {}
    # both FLOP totals are kept (TrainingPlan's fields); the rows are for the choice(s) asked
    for ckpt in (False, True):
        w_ck = wl.model_copy(update={"checkpointing": ckpt})
        mem = count_memory(resolved, w_ck, device=memory_device)
        flops_by_ckpt[ckpt] = count_flops(resolved, w_ck).training_step * gpus
        p = params.total
        w_b = mem.weights_bytes // p if p else 0
        g_b = mem.gradients_bytes // p if p else 0
        o_b = mem.optimizer_bytes // p if p else 0
        recompute = mem.recompute_peak_bytes
        if checkpointing is not None and ckpt != checkpointing:
            continue
        for strat in STRATEGIES:
            w, g, o = mem.weights_bytes, mem.gradients_bytes, mem.optimizer_bytes
            transient = recompute
            if strat in ("zero1", "zero2", "zero3", "fsdp"):
                o = shard * o_b
            if strat in ("zero2", "zero3", "fsdp"):
                g = shard * g_b
            if strat in ("zero3", "fsdp"):
                w = shard * w_b + (mem.weights_bytes - p * w_b)  # buffers stay replicated
                transient += largest_module * (w_b + g_b)
            total = w + g + o + mem.activations_bytes + transient
            plans.append(
                StrategyMemory(
                    strategy=strat,
                    checkpointing=ckpt,
                    weights_bytes=w,
                    gradients_bytes=g,
                    optimizer_bytes=o,
                    activations_bytes=mem.activations_bytes,
                    transient_bytes=transient,
                    total_bytes=total,
                    fits=None if spec is None else total <= spec.memory_bytes,
                )
            )
    step = step_ck = train = train_ck = None
    steps = None
    if spec is not None:
        rate = spec.flops[wl.dtype] * mfu * gpus  # dense peak, devices.py rules 2-3
        step = flops_by_ckpt[False] / rate
        step_ck = flops_by_ckpt[True] / rate
        if samples is not None:
            steps = -(-samples // (wl.batch_size * gpus))
            train, train_ck = steps * step, steps * step_ck
    return TrainingPlan(
        model=resolved.model,
        gpus=gpus,
        batch_size_per_gpu=wl.batch_size,
        params=params.total,
        sharded_params_per_rank=shard,
        checkpointing=checkpointing,
        memory=plans,
        training_flops_per_step=flops_by_ckpt[False],
        training_flops_per_step_checkpointing=flops_by_ckpt[True],
        device=device,
        mfu=mfu,
        step_seconds=step,
        step_seconds_checkpointing=step_ck,
        samples=samples,
        steps=steps,
        train_seconds=train,
        train_seconds_checkpointing=train_ck,
    )


# --------------------------------------------------------------------------------------------
# Plots (matplotlib, optional extra "plot"; imported only here, only when called)


def plot_sweep(
    result: SweepResult,
    out: str | Path,
    *,
    x: str | None = None,
    highlight: Sequence[int] | None = None,
) -> None:
    """Parameters, training FLOPs and training memory against the swept field ``x`` (default:
    the first swept field), one line per value of the other swept fields (at most 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = result.sweep.columns
    x = x or next(iter(cols))
    others = [k for k in cols if k != x]
    keys = [tuple(cols[k][i] for k in others) for i in range(len(result))]
    series = list(dict.fromkeys(keys))[:8]
    panels = (
        ("params", "parameters", 1.0),
        ("training_flops", "training FLOPs / step", 1.0),
        ("memory_bytes", "memory (GiB)", 1 / 2**30),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, (count, label, scale) in zip(axes, panels, strict=True):
        for s in series:
            idx = [i for i in range(len(result)) if keys[i] == s and result.valid[i]]
            if not idx:
                continue
            xs = [cols[x][i] for i in idx]
            ys = [int(result.counts[count][i]) * scale for i in idx]
            name = ", ".join(f"{k}={v}" for k, v in zip(others, s, strict=True)) or None
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        if highlight:
            hs = [i for i in highlight if result.valid[i]]
            ax.scatter(
                [cols[x][i] for i in hs],
                [int(result.counts[count][i]) * scale for i in hs],
                s=60,
                facecolors="none",
                edgecolors="black",
                zorder=3,
                label="Pareto front",
            )
        ax.set_xlabel(x)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        if count != "memory_bytes":
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    if labels and any(labels):
        fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle(f"{result.sweep.model}: counts against {x}")
    _save(fig, Path(out))
    plt.close(fig)


def _save(fig: Any, out: Path) -> None:
    """Write the figure whole or not at all (an existing file stays intact on failure)."""
    from perceiver_calc.output import replace_atomically

    fmt = out.suffix.lstrip(".").lower() or "png"
    replace_atomically(out, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))


def plot_shares(resolved: ResolvedModel, workload: Workload, out: str | Path) -> None:
    """Share of forward FLOPs and of training activation memory per module (horizontal bars;
    modules under 1% in both are grouped as "other")."""
    import matplotlib

    matplotlib.use("Agg")
    import re

    import matplotlib.pyplot as plt

    wl = workload.model_copy(update={"mode": "training"})

    def grouped(d: Mapping[str, int]) -> dict[str, int]:
        # the self_attends layers are identical: one bar for all of them
        out: dict[str, int] = {}
        for k, v in d.items():
            key = re.sub(r"self_attends(\.\d+)?$", "self_attends.*", k).removeprefix("perceiver.")
            out[key] = out.get(key, 0) + v
        return out

    flops = grouped({k: v.forward for k, v in count_flops(resolved, wl).by_module.items()})
    mem = grouped(count_memory(resolved, wl).by_module)

    def short(path: str) -> str:
        return path

    ftot, mtot = sum(flops.values()) or 1, sum(mem.values()) or 1
    names = [
        k
        for k in dict.fromkeys([*flops, *mem])
        if flops.get(k, 0) / ftot >= 0.01 or mem.get(k, 0) / mtot >= 0.01
    ]
    fs = [flops.get(k, 0) / ftot * 100 for k in names]
    ms = [mem.get(k, 0) / mtot * 100 for k in names]
    names.append("other")
    fs.append(100 - sum(fs))
    ms.append(100 - sum(ms))
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5), constrained_layout=True)
    ys = np.arange(len(names))
    ax.barh(ys - 0.2, fs, height=0.4, label="forward FLOPs")
    ax.barh(ys + 0.2, ms, height=0.4, label="training activations")
    ax.set_yticks(ys, [short(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share (%)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{resolved.model}: where FLOPs and activation memory go")
    _save(fig, Path(out))
    plt.close(fig)
