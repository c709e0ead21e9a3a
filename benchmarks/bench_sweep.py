"""Sweeps side by side in one run: configs/s (vectorised vs scalar path vs FlopCounterMode on
meta), end-to-end CLI sweeps streamed to CSV and Parquet (time, peak RSS), fit on 10^6 rows.

    python benchmarks/bench_sweep.py            # full: 10^6 and 10^7 rows end to end (~10 min)
    python benchmarks/bench_sweep.py --quick    # CI size: 10^5 and 10^6 rows (~2 min)

Every calculator figure computes parameters + forward and training FLOPs + training memory
(8 counts) for configs around deepmind/language-perceiver (docs/tutorial-base.json, qk/v
unset), seq_len 2048, mixed bf16, training, on one core (OMP_NUM_THREADS=1):

1. throughput: ``grid`` + ``evaluate`` together, cold (``sweep.clear_fit_cache`` before each
   of ``--repeats`` runs; the first run is the headline, the median beside it, a warm call
   apart), on a grid whose axes never change validity and on one whose axes do
   (``d_latents`` x ``num_self_attention_heads``); the scalar path and FlopCounterMode on
   meta models are timed on a sample of the grid and reported per config;
2. end to end: ``perceiver-calc sweep ... -o FILE`` as a fresh process per run (wall time,
   peak RSS of that process alone: benchmarks/_child.py), the file's rows counted back;
3. fit: ``perceiver-calc fit --max-flops`` on 10^6 rows end to end, and ``plan.fit`` (budget
   mask + Pareto front on the arrays) timed alone on the evaluated result.

``--markdown`` prints the tables as Markdown (docs/benchmarks/sweep.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perceiver_calc as pc
from benchmarks._child import run_child
from perceiver_calc.sweep import clear_fit_cache, evaluate, evaluate_scalar, grid
from perceiver_calc.workload import Workload

BASE_PATH = "docs/tutorial-base.json"
BASE = json.loads(Path(BASE_PATH).read_text())
WL = Workload(seq_len=2048, dtype="mixed-bf16", mode="training")
WL_FLAGS = ["--seq-len", "2048", "--dtype", "mixed-bf16"]

# axes that never change validity (every d_latents is a multiple of the 8 heads)
STEADY = {
    "d_latents": list(range(128, 2049, 64)),  # 31
    "num_latents": list(range(32, 1025, 32)),  # 32
    "num_self_attends_per_block": list(range(2, 34, 2)),  # 16
    "self_attention_widening_factor": [1, 2, 4, 8],
    "batch_size": [1, 2, 4, 8, 16, 32, 64, 128],
}  # 507,904 rows
# axes that change validity: d_latents must be a multiple of num_self_attention_heads
CHANGING = {
    "d_latents": list(range(8, 2049, 8)),  # 256
    "num_self_attention_heads": list(range(1, 17)),  # 16
    "num_latents": list(range(32, 1025, 32)),  # 32
    "batch_size": list(range(1, 9)),  # 8
}  # 1,048,576 rows
# end to end: 16,384 configs x batch sizes
E2E = ["d_latents=64:2048:64", "num_latents=32:1024:32", "num_self_attends_per_block=2:32:2"]
E2E_PER_BATCH = 32 * 32 * 16


def _quick(axes: dict[str, list[int]], keep: int) -> dict[str, list[int]]:
    """A smaller grid: the first ``keep`` values of the first two axes."""
    return {k: (v[:keep] if i < 2 else v) for i, (k, v) in enumerate(axes.items())}


def throughput(axes: dict[str, list[int]], repeats: int) -> dict[str, Any]:
    colds = []
    for _ in range(max(1, repeats)):
        clear_fit_cache()
        t = time.perf_counter()
        sw = grid(BASE, axes, workload=WL)
        res = evaluate(sw)
        colds.append(time.perf_counter() - t)
    t = time.perf_counter()
    evaluate(grid(BASE, axes, workload=WL))
    warm = time.perf_counter() - t
    n = len(sw)
    sample = list(range(0, n, max(1, n // 200)))[:200]
    t = time.perf_counter()
    evaluate_scalar(sw, sample)
    scalar = (time.perf_counter() - t) / len(sample)
    return {
        "n": n,
        "valid": int(res.valid.sum()),
        "cold": n / colds[0],
        "median": n / statistics.median(colds),
        "repeats": len(colds),
        "warm": n / warm,
        "scalar": 1 / scalar,
        "sw": sw,
        "groups": res.groups,
        "scalar_rows": res.scalar_rows,
    }


def flop_counter(sw: Any, k: int) -> float:
    """Configs/s of transformers on meta + FlopCounterMode (params + forward FLOPs only)."""
    from tests.hf_truth import Workload as HfWorkload
    from tests.hf_truth import hf_flops, hf_param_count

    n = len(sw)
    t = time.perf_counter()
    for i in range(0, n, n // k)[:k]:
        row = sw.row(i)
        cfg = {**BASE, **{f: v for f, v in row.items() if f != "batch_size"}}
        hf_param_count("PerceiverForMaskedLM", cfg)
        hf_flops(
            "PerceiverForMaskedLM", cfg, HfWorkload(batch_size=row["batch_size"], seq_len=2048)
        )
    return k / (time.perf_counter() - t)


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "perceiver_calc.cli", *args]


def end_to_end(batches: int, fmt: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"sweep.{fmt}"
    vary = [x for v in [*E2E, f"batch_size=1:{batches}"] for x in ("--vary", v)]
    run = run_child(cli(["sweep", BASE_PATH, *vary, *WL_FLAGS, "-o", str(out)]))
    if run.rc != 0:
        raise SystemExit(f"sweep -o {out} failed ({run.rc}): {run.err}")
    if fmt == "csv":
        with out.open("rb") as fh:
            rows = sum(1 for _ in fh) - 1
    else:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out).metadata.num_rows
    size = out.stat().st_size
    out.unlink()
    return {"rows": rows, "wall": run.wall, "rss": run.rss, "size": size, "fmt": fmt}


CHANGING_VARY = [
    "d_latents=8:2048:8",
    "num_self_attention_heads=1:16",
    "num_latents=32:1024:32",
]


def reasons_bench(batches: int, reasons: str, tmp: Path) -> dict[str, Any]:
    """The validity-changing grid (59% invalid) to CSV: ``--reasons codes`` (from the rules'
    masks) or ``text`` (the scalar path's text, per invalid row)."""
    out = tmp / "changing.csv"
    vary = [x for v in [*CHANGING_VARY, f"batch_size=1:{batches}"] for x in ("--vary", v)]
    args = ["sweep", BASE_PATH, *vary, *WL_FLAGS, "--reasons", reasons, "-o", str(out)]
    run = run_child(cli(args))
    if run.rc != 0:
        raise SystemExit(f"sweep --reasons {reasons} failed ({run.rc}): {run.err}")
    with out.open("rb") as fh:
        rows = sum(1 for _ in fh) - 1
    out.unlink()
    return {"rows": rows, "wall": run.wall, "rss": run.rss, "reasons": reasons}


def fit_bench(batches: int, tmp: Path, budget: int | None = None) -> dict[str, Any]:
    """``plan.fit`` on the whole grid's arrays (timed alone; skipped when ``budget`` is given:
    10^7 rows held at once are ~3.5 GB) and ``perceiver-calc fit -o`` end to end (streamed
    block by block)."""
    axes: dict[str, list[int]] = {
        "d_latents": list(range(64, 2049, 64)),
        "num_latents": list(range(32, 1025, 32)),
        "num_self_attends_per_block": list(range(2, 33, 2)),
        "batch_size": list(range(1, batches + 1)),
    }
    n = math.prod(len(v) for v in axes.values())
    lib = within = front_lib = None
    if budget is None:
        res = evaluate(grid(BASE, axes, workload=WL))
        budget = int(sorted(res.counts["training_flops"][:: max(1, len(res) // 1000)])[500])
        t = time.perf_counter()
        found = pc.fit(res, max_flops=budget)
        lib = time.perf_counter() - t
        within, front_lib = len(found.within), len(found.pareto)
        del res
    vary = [x for v in [*E2E, f"batch_size=1:{batches}"] for x in ("--vary", v)]
    out = tmp / "front.jsonl"
    run = run_child(
        cli(["fit", BASE_PATH, *vary, *WL_FLAGS, "--max-flops", str(budget), "-o", str(out)])
    )
    if run.rc != 0:
        raise SystemExit(f"fit failed ({run.rc}): {run.err}")
    front = len(out.read_text().splitlines())
    assert front_lib is None or front == front_lib, (front, front_lib)
    return {
        "rows": n,
        "budget": budget,
        "within": within,
        "front": front,
        "lib": lib,
        "wall": run.wall,
        "rss": run.rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3, help="cold runs of grid + evaluate")
    parser.add_argument("--quick", action="store_true", help="CI size: 10^5 and 10^6 rows")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    load = os.getloadavg()
    started = time.perf_counter()
    steady_axes = _quick(STEADY, 8) if args.quick else STEADY
    changing_axes = _quick(CHANGING, 32) if args.quick else CHANGING
    steady = throughput(steady_axes, args.repeats)
    changing = throughput(changing_axes, 1 if args.quick else max(1, args.repeats - 2))
    hf = flop_counter(steady["sw"], 2 if args.quick else 5)
    sizes = [7, 61] if args.quick else [61, 610]  # x 16,384: ~10^5 and 10^6, or 10^6 and 10^7
    with tempfile.TemporaryDirectory(dir=".") as d:
        tmp = Path(d)
        e2e = [end_to_end(b, fmt, tmp) for b in sizes for fmt in ("csv", "parquet")]
        fitted = fit_bench(61, tmp)
        fitted_big = None if args.quick else fit_bench(610, tmp, budget=fitted["budget"])
        # codes on the whole validity-changing grid; text (~0.2 ms per invalid row) on 1/8
        with_reasons = [
            reasons_bench(1 if args.quick else 8, "codes", tmp),
            reasons_bench(1, "text", tmp),
        ]
    total = time.perf_counter() - started

    import torch
    import transformers

    md = args.markdown
    sep = " | " if md else "  "

    def line(*cells: Any) -> None:
        print(("| " + sep.join(map(str, cells)) + " |") if md else sep.join(map(str, cells)))

    def rule(k: int) -> None:
        if md:
            print("|" + "---|" * k)

    print("## throughput (params + forward/training FLOPs + training memory, one core)\n")
    line("path", "grid", "configs/s", "vs scalar")
    rule(4)
    for name, r in (("steady axes", steady), ("validity-changing axes", changing)):
        label = f"{r['n']:,} rows ({r['valid']:,} valid)"
        line(
            f"vectorised, cold, first run, {name}",
            label,
            f"{r['cold']:,.0f}",
            f"{r['cold'] / r['scalar']:,.0f}x",
        )
        line(
            f"  median of {r['repeats']} cold runs",
            label,
            f"{r['median']:,.0f}",
            f"{r['median'] / r['scalar']:,.0f}x",
        )
        line(
            "  warm (second call, same process)",
            label,
            f"{r['warm']:,.0f}",
            f"{r['warm'] / r['scalar']:,.0f}x",
        )
        line(f"scalar resolve + counts, {name}", "200-row sample", f"{r['scalar']:,.0f}", "1x")
    line(
        "transformers meta + FlopCounterMode (params + forward only)",
        "sample",
        f"{hf:,.1f}",
        f"{hf / steady['scalar']:.4f}x",
    )
    print("\n## end to end: perceiver-calc sweep ... -o FILE (fresh process)\n")
    line("rows", "format", "wall s", "rows/s", "peak RSS MiB", "file MiB")
    rule(6)
    for r in e2e:
        line(
            f"{r['rows']:,}",
            r["fmt"],
            f"{r['wall']:.1f}",
            f"{r['rows'] / r['wall']:,.0f}",
            f"{r['rss'] / 2**20:,.0f}",
            f"{r['size'] / 2**20:,.1f}",
        )
    print("\n## validity-changing grid to CSV: invalid rows' reasons (fresh process)\n")
    line("rows", "--reasons", "wall s", "rows/s", "peak RSS MiB")
    rule(5)
    for r in with_reasons:
        line(
            f"{r['rows']:,}",
            r["reasons"],
            f"{r['wall']:.1f}",
            f"{r['rows'] / r['wall']:,.0f}",
            f"{r['rss'] / 2**20:,.0f}",
        )
    print(
        f"\n## fit on {fitted['rows']:,} rows (--max-flops: {fitted['within']:,} within, "
        f"front {fitted['front']:,})\n"
    )
    line("step", "seconds", "peak RSS MiB")
    rule(3)
    line("plan.fit on the arrays (mask + Pareto front)", f"{fitted['lib']:.3f}", "-")
    line(
        "perceiver-calc fit ... -o front.jsonl (sweep + fit + write, streamed)",
        f"{fitted['wall']:.1f}",
        f"{fitted['rss'] / 2**20:,.0f}",
    )
    if fitted_big is not None:
        line(
            f"the same on {fitted_big['rows']:,} rows (front {fitted_big['front']:,})",
            f"{fitted_big['wall']:.1f}",
            f"{fitted_big['rss'] / 2**20:,.0f}",
        )
    print(
        f"\n(pc {pc.__version__}, numpy {__import__('numpy').__version__}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"benchmark ran {total:.0f} s{', --quick' if args.quick else ''})"
    )


if __name__ == "__main__":
    main()
