"""Configs per second of ``evaluate`` (validity + every COUNTS column: params, forward and
training FLOPs, training memory) on axes that change validity and on axes that do not.

    python benchmarks/bench_sweep_axes.py      # one core (OMP_NUM_THREADS=1), ~1M-row grids

Each grid is built (``grid``) and evaluated once, cold; the figure is rows / evaluate's wall
time. Base: docs/tutorial-base.json (deepmind/language-perceiver's dims, qk/v unset).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import perceiver_calc as pc
from perceiver_calc.sweep import evaluate, grid
from perceiver_calc.workload import Workload

CASES = [
    (
        "d_model x d_latents, training (validity changes: heads must divide both)",
        {"d_model": range(8, 8008, 8), "d_latents": range(1, 1001)},
        Workload(mode="training"),
    ),
    (
        "d_model x d_latents, inference (validity changes)",
        {"d_model": range(8, 8008, 8), "d_latents": range(1, 1001)},
        Workload(),
    ),
    (
        "d_latents x num_latents x batch_size, training (all valid)",
        {
            "d_latents": range(256, 1056, 8),
            "num_latents": range(1, 101),
            "batch_size": range(1, 101),
        },
        Workload(mode="training"),
    ),
    ("vocab_size 1..149,999, inference", {"vocab_size": range(1, 150_000)}, Workload()),
]


def main() -> None:
    base = pc.load_config("docs/tutorial-base.json")
    for name, axes, wl in CASES:
        t0 = time.perf_counter()
        sw = grid(base, axes, workload=wl)
        t1 = time.perf_counter()
        res = evaluate(sw)
        t2 = time.perf_counter()
        print(
            f"{name}: {len(sw):,} rows ({int(res.valid.sum()):,} valid, "
            f"{res.scalar_rows} by the scalar path): grid {t1 - t0:.2f} s, evaluate "
            f"{t2 - t1:.2f} s -> {len(sw) / (t2 - t1):,.0f} configs/s"
        )


if __name__ == "__main__":
    main()
