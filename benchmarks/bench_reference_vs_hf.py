"""Reference model vs transformers, side by side, on CPU: forward latency, training-step latency,
training-step peak memory. Run by hand; writes docs/benchmarks/reference-vs-hf.md (the figures,
the machine and the command) unless --no-write.

    python benchmarks/bench_reference_vs_hf.py            # deepmind/language-perceiver, B=1, M=2048
    python benchmarks/bench_reference_vs_hf.py --tokens 512 --repeats 5 --no-write

Method
  * Same config, batch 1, M = max_position_embeddings tokens, fp32, torch's default threads.
  * Latency: both models live in one process and are timed alternately (HF, ref eager, ref sdpa,
    HF, ...) so drift on a shared machine hits all of them alike; median of --repeats runs after
    --warmup runs. Forward: eval(), torch.no_grad(). Training step: train() (attention dropout
    on), forward with labels + backward, grads set to None before each step (no optimizer).
  * Peak memory: one fresh subprocess per model. After building the model and one warm-up step,
    the kernel's peak-RSS counter is reset (`echo 5 > /proc/self/clear_refs`), one more step runs,
    and we report VmHWM - VmRSS(before the step): the step's own high-water mark over what was
    resident (weights, grads from the warm-up are freed first). MALLOC_MMAP_THRESHOLD_=65536 is
    set in those subprocesses so glibc returns freed large blocks to the OS at once and RSS
    follows live memory instead of allocator caching. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGUAGE_PERCEIVER = {
    # deepmind/language-perceiver config.json (architecture fields); hf-perceiver-notes.md §7
    "num_latents": 256,
    "d_latents": 1280,
    "d_model": 768,
    "num_blocks": 1,
    "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8,
    "num_cross_attention_heads": 8,
    "qk_channels": 256,
    "v_channels": 1280,
    "vocab_size": 262,
    "max_position_embeddings": 2048,
}

VARIANTS = ("hf", "ref-eager", "ref-sdpa")


def _build(variant: str, cfg_kwargs: dict[str, Any]) -> Any:
    import torch
    from transformers import PerceiverConfig, PerceiverForMaskedLM

    from reference_model import build_model

    torch.manual_seed(0)
    config = PerceiverConfig(**cfg_kwargs)
    if variant == "hf":
        return PerceiverForMaskedLM(config)
    return build_model(config, "PerceiverForMaskedLM", attention=variant.removeprefix("ref-"))


def _batch(cfg_kwargs: dict[str, Any], tokens: int) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg_kwargs["vocab_size"], (1, tokens), generator=g)
    return ids, ids.clone()


def _forward(model: Any, ids: Any) -> None:
    import torch

    with torch.no_grad():
        model(inputs=ids)


def _train_step(model: Any, ids: Any, labels: Any) -> None:
    for p in model.parameters():
        p.grad = None
    model(inputs=ids, labels=labels).loss.backward()


def time_side_by_side(cfg_kwargs: dict[str, Any], tokens: int, warmup: int, repeats: int) -> dict:
    ids, labels = _batch(cfg_kwargs, tokens)
    models = {v: _build(v, cfg_kwargs) for v in VARIANTS}
    results: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
    runs: list[tuple[str, Callable[[Any], None], bool]] = [
        ("forward_s", lambda m: _forward(m, ids), False),
        ("train_step_s", lambda m: _train_step(m, ids, labels), True),
    ]
    for key, fn, training in runs:
        for m in models.values():
            m.train(training)
            for _ in range(warmup):
                fn(m)
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(repeats):
            for v, m in models.items():
                t0 = time.perf_counter()
                fn(m)
                samples[v].append(time.perf_counter() - t0)
        for v in VARIANTS:
            results[v][key] = statistics.median(samples[v])
            results[v][key + "_all"] = samples[v]  # type: ignore[assignment]
        for m in models.values():
            for p in m.parameters():
                p.grad = None
    return results


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def peak_memory_child(variant: str, cfg_kwargs: dict[str, Any], tokens: int) -> dict[str, int]:
    """Runs in a fresh subprocess: the training step's peak RSS over the resident baseline."""
    model = _build(variant, cfg_kwargs).train()
    ids, labels = _batch(cfg_kwargs, tokens)
    _train_step(model, ids, labels)  # warm-up: lazy init, allocator, thread pools
    for p in model.parameters():
        p.grad = None
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    _train_step(model, ids, labels)
    peak = _rss_kib("VmHWM")
    # (ru_maxrss is not reported: Linux carries it across exec from the forking parent, which
    # holds three models, so it says nothing about this child.)
    return {
        "rss_before_step_bytes": before * 1024,
        "step_peak_over_baseline_bytes": (peak - before) * 1024,
    }


def measure_memory(cfg_kwargs: dict[str, Any], tokens: int) -> dict[str, dict[str, int]]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    out = {}
    for v in VARIANTS:
        cmd = [sys.executable, __file__, "--child-memory", v, "--tokens", str(tokens)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[v] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child-memory", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-write", action="store_true", help="do not write the docs page")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    cfg_kwargs = dict(LANGUAGE_PERCEIVER)

    if args.child_memory:
        print(json.dumps(peak_memory_child(args.child_memory, cfg_kwargs, args.tokens)))
        return

    import torch
    import transformers

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    timing = time_side_by_side(cfg_kwargs, args.tokens, args.warmup, args.repeats)
    memory = measure_memory(cfg_kwargs, args.tokens)
    load_end = os.getloadavg()
    mib = 1 / 2**20
    print(
        f"deepmind/language-perceiver MaskedLM, CPU, batch 1, {args.tokens} tokens, fp32, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"{'':10} {'forward (s)':>12} {'x HF':>6} {'train step (s)':>15} {'x HF':>6}"
        f" {'step peak (MiB)':>16} {'x HF':>6}"
    )
    hf_t, hf_m = timing["hf"], memory["hf"]["step_peak_over_baseline_bytes"]
    for v in VARIANTS:
        f, s = timing[v]["forward_s"], timing[v]["train_step_s"]
        m = memory[v]["step_peak_over_baseline_bytes"]
        print(
            f"{v:10} {f:12.3f} {f / hf_t['forward_s']:6.2f} {s:15.3f}"
            f" {s / hf_t['train_step_s']:6.2f} {m * mib:16.1f} {m / hf_m:6.2f}"
        )
    elapsed = time.perf_counter() - t0
    print(f"(total benchmark time {elapsed:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"timing": timing, "memory": memory}, indent=2))
    if args.no_write:
        return
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
    load = (
        f"{load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} at the start, "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end (1 / 5 / 15 min)"
    )
    out = write_doc(timing, memory, args, machine, load, elapsed)
    print(f"wrote {out}")


LABELS = {"hf": "transformers", "ref-eager": "reference, eager", "ref-sdpa": "reference, sdpa"}


def write_doc(
    timing: dict[str, Any],
    memory: dict[str, dict[str, int]],
    args: argparse.Namespace,
    machine: str,
    load: str,
    elapsed: float,
) -> Path:
    """docs/benchmarks/reference-vs-hf.md from this run's figures (nothing typed in by hand)."""
    hf_t, hf_m = timing["hf"], memory["hf"]["step_peak_over_baseline_bytes"]
    mib = 1 / 2**20
    rows = []
    for v in VARIANTS:
        f, s = timing[v]["forward_s"], timing[v]["train_step_s"]
        f_all, s_all = timing[v]["forward_s_all"], timing[v]["train_step_s_all"]
        m = memory[v]["step_peak_over_baseline_bytes"]
        rows.append(
            f"| {LABELS[v]} | {f:.3f} ({min(f_all):.3f}-{max(f_all):.3f}) "
            f"| {f / hf_t['forward_s']:.2f} | {s:.3f} ({min(s_all):.3f}-{max(s_all):.3f}) "
            f"| {s / hf_t['train_step_s']:.2f} | {m * mib:.1f} | {m / hf_m:.4f} |"
        )
    sdpa_fwd = timing["ref-sdpa"]["forward_s"] / hf_t["forward_s"]
    sdpa_mem = memory["ref-sdpa"]["step_peak_over_baseline_bytes"] / hf_m
    verdict = (
        f"fast path (`sdpa`) forward {sdpa_fwd:.2f}x transformers' time (target at most 0.85x: "
        f"{'met' if sdpa_fwd <= 0.85 else 'not met'}); training-step peak {sdpa_mem:.4f}x "
        f"transformers' (target at most 1: {'met' if sdpa_mem <= 1 else 'not met'})"
    )
    lines = [
        "# Reference model vs transformers on CPU",
        "",
        f"Config: deepmind/language-perceiver (`PerceiverForMaskedLM`), CPU, batch 1, "
        f"{args.tokens} tokens, fp32. Latency: median (min-max) of {args.repeats} runs after "
        f"{args.warmup} warm-ups, the three models timed alternately in one process. Peak: the "
        "training step's resident high-water mark over the resident baseline, one fresh "
        "process per model. Method in the script's docstring and in "
        "[../reference-model.md](../reference-model.md).",
        "",
        "| variant | forward (s) | × HF | training step (s) | × HF | step peak (MiB) | × HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**{verdict[0].upper() + verdict[1:]}.**",
        "",
        f"Machine: {machine}. Load average: {load}; the run took {elapsed:.0f} s.",
        f"Measured {time.strftime('%Y-%m-%d')} with:",
        "",
        "```sh",
        "python benchmarks/bench_reference_vs_hf.py"
        + (f" --tokens {args.tokens}" if args.tokens != 2048 else "")
        + (f" --warmup {args.warmup}" if args.warmup != 2 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 7 else ""),
        "```",
    ]
    out = ROOT / "docs" / "benchmarks" / "reference-vs-hf.md"
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    main()
