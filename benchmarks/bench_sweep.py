"""Configs per second: vectorised sweep vs the scalar path vs FlopCounterMode on meta models.

    python benchmarks/bench_sweep.py            # 507,904-config grid, one core

All three compute parameters + forward FLOPs (+ training memory for the two calculator paths)
for configs around deepmind/language-perceiver (qk/v unset). The vectorised figure is
``grid`` + ``evaluate`` together, cold: the fit cache (``sweep.clear_fit_cache``) is cleared
before each of ``--repeats`` runs; the headline is the first run, the median is shown beside
it, and a warm call (fits cached) is shown apart. The scalar path and FlopCounterMode are timed
on a sample of the grid and reported per config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import perceiver_calc as pc
from perceiver_calc.sweep import clear_fit_cache, evaluate, evaluate_scalar, grid
from perceiver_calc.workload import Workload

BASE = json.load(open("docs/tutorial-base.json"))  # noqa: SIM115
AXES = {
    "d_latents": list(range(128, 2049, 64)),  # 31
    "num_latents": list(range(32, 1025, 32)),  # 32
    "num_self_attends_per_block": list(range(2, 34, 2)),  # 16
    "self_attention_widening_factor": [1, 2, 4, 8],
    "batch_size": [1, 2, 4, 8, 16, 32, 64, 128],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3, help="cold runs of grid + evaluate")
    args = parser.parse_args()
    load = os.getloadavg()
    wl = Workload(seq_len=2048, dtype="mixed-bf16", mode="training")
    colds = []
    for _ in range(max(1, args.repeats)):
        clear_fit_cache()
        t = time.perf_counter()
        sw = grid(BASE, AXES, workload=wl)
        res = evaluate(sw)
        colds.append(time.perf_counter() - t)
    vec = colds[0]
    t = time.perf_counter()
    evaluate(grid(BASE, AXES, workload=wl))
    warm = time.perf_counter() - t
    n = len(sw)
    sample = list(range(0, n, n // 200))[:200]
    t = time.perf_counter()
    evaluate_scalar(sw, sample)
    scalar = (time.perf_counter() - t) / len(sample)

    import sys

    import torch
    import transformers

    sys.path.insert(0, ".")
    from tests.hf_truth import Workload as HfWorkload
    from tests.hf_truth import hf_flops, hf_param_count

    t = time.perf_counter()
    k = 5
    for i in sample[:k]:
        row = sw.row(i)
        cfg = {**BASE, **{f: v for f, v in row.items() if f != "batch_size"}}
        hf_param_count("PerceiverForMaskedLM", cfg)
        hf_flops(
            "PerceiverForMaskedLM", cfg, HfWorkload(batch_size=row["batch_size"], seq_len=2048)
        )
    hf = (time.perf_counter() - t) / k
    print(
        f"grid: {n:,} configs ({int(res.valid.sum()):,} valid), {res.groups} group(s), "
        f"{res.fit_points} scalar fit points, {res.scalar_rows} scalar fallback rows"
    )
    med = statistics.median(colds)
    print(f"{'path':42} {'configs/s':>14} {'vs scalar':>10}")
    print(
        f"{'vectorised, cold (params+FLOPs+memory)':42} {n / vec:>14,.0f} {scalar * n / vec:>9.0f}x"
    )
    print(f"{f'  median of {len(colds)} cold runs':42} {n / med:>14,.0f} {scalar * n / med:>9.0f}x")
    print(f"{'  warm (fits cached)':42} {n / warm:>14,.0f} {scalar * n / warm:>9.0f}x")
    print(f"{'scalar resolve+count (params+FLOPs+memory)':42} {1 / scalar:>14,.0f} {1:>9.0f}x")
    print(f"{'transformers meta + FlopCounterMode':42} {1 / hf:>14,.1f} {scalar / hf:>9.3f}x")
    print(
        f"(pc {pc.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )


if __name__ == "__main__":
    main()
