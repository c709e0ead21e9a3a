"""Configs per second of ``evaluate`` (validity + every COUNTS column: params, forward and
training FLOPs, training memory) on every kind of axis: integers that change validity or not,
STRUCTURAL integers (0 removes a module: two structure groups), booleans, an Optional field's
``None`` beside integers, lists of integers (``train_size``, the input images' size), and the
workload's strings; and rows whose counts pass int64 (evaluated over object arrays of Python
ints: exact, slower).

    python benchmarks/bench_sweep_axes.py               # one core (OMP_NUM_THREADS=1)
    python benchmarks/bench_sweep_axes.py --markdown    # the table in docs/benchmarks/sweep.md

Each grid (about 10^6 rows) is built (``grid``) and evaluated ``--repeats`` times (nothing
is cached between runs); the figure is rows / (grid + evaluate) wall time: the first run
and the median. Base: docs/tutorial-base.json (deepmind/language-perceiver's dims, qk/v unset);
the optical-flow case uses a small base of its own (one head, so every width divides).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perceiver_calc as pc
from perceiver_calc.sweep import evaluate, grid
from perceiver_calc.workload import Workload

TRAIN = Workload(mode="training")
FLOW_BASE = {"num_cross_attention_heads": 1, "num_self_attention_heads": 1, "num_latents": 32}

CASES: list[tuple[str, dict[str, Any], Workload, str | None, dict[str, Any] | None]] = [
    (
        "d_model x d_latents (validity changes: heads divide both)",
        {"d_model": range(8, 8008, 8), "d_latents": range(1, 1001)},
        TRAIN,
        None,
        None,
    ),
    (
        "d_latents x num_latents x batch_size (all valid)",
        {
            "d_latents": range(256, 1056, 8),
            "num_latents": range(1, 101),
            "batch_size": range(1, 101),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "d_latents x num_latents x batch_size 1..1024",
        {
            "d_latents": range(256, 496, 8),
            "num_latents": range(1, 34),
            "batch_size": range(1, 1025),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "d_latents x num_self_attends_per_block 0..15 x num_latents x batch_size (2 groups)",
        {
            "d_latents": range(256, 1056, 32),
            "num_self_attends_per_block": range(16),
            "num_latents": range(1, 51),
            "batch_size": range(1, 51),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "num_blocks 0..3 x num_labels 1..4 x d_latents x num_latents (4 groups)",
        {
            "num_blocks": range(4),
            "num_labels": range(1, 5),
            "d_latents": range(8, 1008, 8),
            "num_latents": range(1, 501),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "use_query_residual x d_latents x num_latents x batch_size (boolean: 2 groups)",
        {
            "use_query_residual": [True, False],
            "d_latents": range(256, 1056, 8),
            "num_latents": range(1, 101),
            "batch_size": range(1, 51),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "qk_channels None, 8..1024 x d_latents (an Optional field: 2 groups)",
        {"qk_channels": [None, *range(8, 1032, 8)], "d_latents": range(8, 62008, 8)},
        TRAIN,
        None,
        None,
    ),
    (
        "seq_len None, 1..2048 x d_latents (workload Optional: 2 groups)",
        {"seq_len": [None, *range(1, 2049)], "d_latents": range(8, 4008, 8)},
        TRAIN,
        None,
        None,
    ),
    (
        "dtype x mode x d_latents x num_latents (workload strings: 10 groups)",
        {
            "dtype": ["fp32", "bf16", "fp16", "mixed-bf16", "mixed-fp16"],
            "mode": ["inference", "training"],
            "d_latents": range(8, 8008, 8),
            "num_latents": range(1, 101),
        },
        TRAIN,
        None,
        None,
    ),
    (
        "optical flow: train_size [h, 64] x d_latents (lists of integers)",
        {"train_size": [[h, 64] for h in range(8, 8008, 8)], "d_latents": range(8, 8008, 8)},
        TRAIN,
        "PerceiverForOpticalFlow",
        FLOW_BASE,
    ),
    (
        "learned classifier: input image_size [h, w] x num_latents (lists)",
        {
            "image_size": [[h, w] for h in range(8, 328, 8) for w in range(8, 328, 8)],
            "num_latents": range(1, 626),
        },
        TRAIN,
        "PerceiverForImageClassificationLearned",
        {"image_size": 64},
    ),
    (
        "num_self_attends_per_block near 2**31 x batch_size (FLOPs beyond int64: Python ints)",
        {
            "num_self_attends_per_block": range(2**31 - 1001, 2**31 - 1),
            "batch_size": range(1, 1001),
        },
        TRAIN,
        None,
        None,
    ),
]


def run(repeats: int) -> list[dict[str, Any]]:
    base = pc.load_config("docs/tutorial-base.json")
    out = []
    for name, axes, wl, model, own in CASES:
        cfg = pc.load_config(own) if own is not None else base
        walls = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            sw = grid(cfg, axes, workload=wl, model=model)
            res = evaluate(sw)
            walls.append(time.perf_counter() - t0)
        n = len(sw)
        out.append(
            {
                "case": name,
                "rows": n,
                "valid": int(res.valid.sum()),
                "groups": res.groups,
                "scalar_rows": res.scalar_rows,
                "first": n / walls[0],
                "median": n / statistics.median(walls),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = run(args.repeats)
    load = os.getloadavg()[0]
    if args.markdown:
        print(
            f"Python {platform.python_version()}, one core (OMP_NUM_THREADS=1), load {load:.1f}, "
            f"{args.repeats} runs each (the first, and the median)\n"
        )
        print(
            "| axes | rows | valid | groups | in Python ints | configs/s (first) | "
            "configs/s (median) |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|")
        for r in rows:
            print(
                f"| {r['case']} | {r['rows']:,} | {r['valid']:,} | {r['groups']} | "
                f"{r['scalar_rows']} | {r['first']:,.0f} | {r['median']:,.0f} |"
            )
        return
    for r in rows:
        print(
            f"{r['case']}: {r['rows']:,} rows ({r['valid']:,} valid, {r['groups']} groups, "
            f"{r['scalar_rows']} in Python ints): {r['first']:,.0f} configs/s first, "
            f"{r['median']:,.0f} median (load {load:.1f})"
        )


if __name__ == "__main__":
    main()
