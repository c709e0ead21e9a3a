"""Cold start of `perceiver-calc report` vs the fastest exact alternative, side by side.

The alternative: import torch + transformers, build the model on the meta device (no weights),
count parameters and run FlopCounterMode over a forward pass. Every tool runs as a fresh
process, as a user would run it; the tools take turns (one run of each, then the next round),
so that a change in the machine's load during the benchmark hits them all alike. Each is timed
several times (median wall time, and the CPU time of the process), and its peak resident
memory is read from the kernel (ru_maxrss of the finished child).

    python benchmarks/bench_cold_start.py [--runs 5] [--config examples/language-perceiver.json]

The package's bytecode is compiled first (as pip does on install): with
PYTHONDONTWRITEBYTECODE set, every run would otherwise compile perceiver_calc from source.

Writes docs/benchmarks/cold-start.md (the figures, where the time goes, the command) unless
--no-write.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _child  # benchmarks/_child.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

ALTERNATIVE = r"""
import json, sys
import torch, transformers
from torch.utils.flop_counter import FlopCounterMode
import transformers.models.perceiver.modeling_perceiver as mp
# An all-ones mask becomes None in transformers (create_bidirectional_mask), but deciding that
# reads tensor values, which a meta tensor has not: skip the check, as the result is None.
mp.create_bidirectional_mask = lambda **kwargs: None
data = json.load(open(sys.argv[1]))
cls = getattr(transformers, (data.get("architectures") or ["PerceiverForMaskedLM"])[0])
cfg = transformers.PerceiverConfig(**{k: v for k, v in data.items() if k != "architectures"})
with torch.device("meta"):
    model = cls(cfg).eval()
    n = sum(p.numel() for p in model.parameters())
    ids = torch.zeros((1, cfg.max_position_embeddings), dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        model(inputs=ids)
print(json.dumps({"params": n, "flops": fc.get_total_flops()}))
"""

# What `report --format json` does, step by step, timed inside one fresh process. The order
# makes each step's figure its own: pydantic's import, then what its first model class costs
# (the plugin discovery, which imports importlib.metadata and reads every installed package's
# entry points, and the schema machinery), then the package, one layer at a time.
STEPS = r"""
import time, sys, json
_t = [time.perf_counter()]
_rows = []
def step(name):
    _t.append(time.perf_counter()); _rows.append((name, _t[-1] - _t[-2]))
import pydantic_core
step("pydantic_core (import; its core_schema module and the Rust extension)")
from pydantic import BaseModel
step("pydantic (import of BaseModel and what it needs)")
class _First(BaseModel):
    x: int = 1
step("pydantic's first model class (plugin discovery: importlib.metadata; schema machinery)")
import perceiver_calc.errors, perceiver_calc.arith, perceiver_calc.classes, perceiver_calc.modules
import perceiver_calc.params
step("perceiver_calc core modules (errors, classes, modules, params: dataclasses, tables)")
import perceiver_calc.config
step("perceiver_calc.config (the PerceiverConfig model: its schema build)")
import perceiver_calc.workload
step("perceiver_calc.workload (the Workload model: its schema build)")
import perceiver_calc.resolve, perceiver_calc.flops, perceiver_calc.memory, perceiver_calc.report
import perceiver_calc.hub, perceiver_calc.cli_fast, perceiver_calc.cli
step("perceiver_calc rest (resolve, flops, memory, report, CLI entry)")
from pathlib import Path
from perceiver_calc.cli_fast import _workload, build
from perceiver_calc.report import render_json
p = Path(sys.argv[1])
rep = build(p, None, False, lambda: _workload({}))  # report with no workload option
text = render_json(rep)
step("the work: read, validate, resolve, count, render JSON")
print(json.dumps(_rows), file=sys.stderr)
"""


ANALYSIS = """
### What is left, and why the target is blocked

* **The target is under pydantic's own floor.** The row "pydantic floor" is a process that
  imports pydantic, defines one model class and validates one value: the least any run that
  validates its input with pydantic does. On this machine it takes about as long as the whole
  0.12 s target (the row above, measured in the same rounds as the report),
  and 40x faster than the meta-device run would need well under it. The issue asks to keep
  pydantic at the edge (the user's config and flags are pydantic models, as the design
  requires), so the target cannot be met without validating the config without pydantic on
  the CLI path (a second, hand-written validator kept equal to PerceiverConfig, or
  pydantic_core from a prebuilt schema, which still needs the model class and so pydantic).
  The step table shows the split: pydantic_core, pydantic and its first model class are about
  80% of the steps; pydantic 2.14.4 imports `importlib.metadata` for its plugin loader when the
  first validator is built (`PYDANTIC_DISABLE_PLUGINS` skips reading the entry points, not the
  import: no measurable gain here).
* **perceiver-calc's own part** is the difference between the report row and the floor (35 ms in
  the run above): the core modules (about 24 frozen dataclasses on the report path; `dataclasses`
  compiles their methods with `exec`, about 0.5 ms a class), the PerceiverConfig and Workload
  schema builds, the rest of the package and the work itself (read, validate, resolve, count,
  render: about 3 ms; the step table). Not done: a base class with generic methods under
  `typing.dataclass_transform` would save an estimated 8-10 ms of the dataclass cost; it would
  not reach the target.
* **typer is gone from these commands**: `perceiver_calc.cli_fast` parses the common command
  lines itself and prints with the same code as the typer commands; typer 0.29 (the click it
  vendors, and its pydantic-based value coercion) is imported only for other command lines,
  `--help`, and failed runs (which rerun through typer for its exact messages and exit codes;
  tests/test_cli_fast.py). rich is imported only to draw a table; numpy and torch never.
  `difflib` and `html` are imported only when needed (an unknown key, a notebook's HTML).
* **the install**: a regular `pip install .` and the editable install of the README start
  alike (measured 2026-12-03 at load 0.7: 0.22-0.23 s each): the editable finder's import is
  paid by pydantic's own imports of the same modules otherwise.
* **load**: earlier runs of this page (0.232 s for report at load 0.7) show how much a busy
  2-core machine adds; the ratios of tests/test_import_budget.py (import time relative to the
  interpreter's own start) hold the package's part to a budget on any load.
"""


FLOOR = """
from pydantic import BaseModel


class Config(BaseModel):
    d_latents: int


Config(d_latents=1280)
"""
"""The least a run that validates its input with pydantic does: import pydantic, build one
model class (its schema, pydantic's plugin loader) and validate one value."""


def run_child(cmd: list[str]) -> _child.ChildRun:
    """One fresh run; a failed run stops the benchmark."""
    res = _child.run_child(cmd)
    if res.rc != 0:
        raise SystemExit(f"{cmd} failed: {res.err}")
    return res


def steps(config: str, runs: int) -> list[tuple[str, float, float]]:
    """(step, min seconds, median seconds) over ``runs`` fresh processes."""
    acc: dict[str, list[float]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", STEPS, config], capture_output=True, text=True, check=True
        )
        for name, dt in json.loads(proc.stderr.strip().splitlines()[-1]):
            acc.setdefault(name, []).append(dt)
    return [(name, min(v), statistics.median(v)) for name, v in acc.items()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--config", default=str(ROOT / "examples" / "language-perceiver.json"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    compileall.compile_dir(str(ROOT / "perceiver_calc"), quiet=1)
    # The console script of this environment, on this checkout (PYTHONPATH): what a user runs.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    exe = shutil.which("perceiver-calc") or str(Path(sys.executable).with_name("perceiver-calc"))
    tools = {
        "perceiver-calc report --format json": [exe, "report", args.config, "--format", "json"],
        "transformers + FlopCounterMode (meta)": [sys.executable, "-c", ALTERNATIVE, args.config],
        "perceiver-calc validate": [exe, "validate", args.config],
        "perceiver-calc explain --format json": [exe, "explain", args.config, "-f", "json"],
        "perceiver-calc report (table)": [exe, "report", args.config],
        "pydantic floor: import, one model, validate": [sys.executable, "-c", FLOOR],
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
    }
    for cmd in tools.values():
        run_child(cmd)  # warm the page cache, not the interpreter
    runs: dict[str, list[_child.ChildRun]] = {name: [] for name in tools}
    for _ in range(args.runs):
        for name, cmd in tools.items():
            runs[name].append(run_child(cmd))
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]

    rows = []
    for name, rs in runs.items():
        wall = [r.wall for r in rs]
        cpu = [r.cpu for r in rs]
        rows.append(
            (
                name,
                statistics.median(wall),
                min(wall),
                max(wall),
                statistics.median(cpu),
                max(r.rss for r in rs),
            )
        )
        print(
            f"{name:40s} median {rows[-1][1]:7.3f} s  (min {min(wall):.3f}, max {max(wall):.3f})"
            f"  cpu {rows[-1][4]:.3f} s  peak RSS {rows[-1][5] / 2**20:7.1f} MiB"
        )
    by = {r[0]: r for r in rows}
    ours = by["perceiver-calc report --format json"]
    alt = by["transformers + FlopCounterMode (meta)"]
    empty = by["python -c pass (interpreter start)"]
    floor = by["pydantic floor: import, one model, validate"]
    speedup = alt[1] / ours[1]
    mem_ratio = alt[5] / ours[5]
    print(f"speed-up {speedup:.1f}x, memory {mem_ratio:.1f}x less; load average {load:.2f}")
    stepped = steps(args.config, max(args.runs, 5))
    for name, lo, med in stepped:
        print(f"  {lo * 1000:7.1f} ms min  {med * 1000:7.1f} ms median  {name}")
    if args.no_write:
        return

    out = ROOT / "docs" / "benchmarks" / "cold-start.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = Path(args.config).resolve()
    rel = cfg.relative_to(ROOT) if cfg.is_relative_to(ROOT) else args.config
    met = ours[1] <= 0.12 and ours[5] < 40 * 2**20 and speedup >= 40
    step_total = sum(med for _, _, med in stepped)
    lines = [
        "# Cold start: `perceiver-calc report` vs transformers + FlopCounterMode",
        "",
        f"Config: `{rel}`. Each tool runs as a fresh process; the tools take turns, "
        f"{args.runs} rounds after one warm-up round. Wall time is the median (min-max), CPU "
        "the median user+system time of the process, memory the largest peak RSS of a run. "
        "The `perceiver-calc` rows run the console script.",
        "",
        "| tool | median wall (s) | min-max (s) | x interpreter start | CPU (s) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, med, lo, hi, cpu, peak in rows:
        lines.append(
            f"| {name} | {med:.3f} | {lo:.3f}-{hi:.3f} | {med / empty[1]:.1f} | {cpu:.3f} "
            f"| {peak / 2**20:.1f} |"
        )
    lines += [
        "",
        f"**perceiver-calc report --format json is {speedup:.1f}x faster than the meta-device "
        f"FlopCounterMode run and uses {mem_ratio:.1f}x less memory**; `validate` takes "
        f"{by['perceiver-calc validate'][1]:.3f} s. Target (issue 15): report at most 0.12 s, "
        f"under 40 MiB, at least 40x faster: **{'met' if met else 'not met'}** in this run "
        f"(load average {load:.1f} on {os.cpu_count()} cores while it ran; the interpreter's "
        f"empty start took {empty[1]:.3f} s). The floor of any process that validates its input "
        f"with pydantic (import, one model class, one validation) took {floor[1]:.3f} s "
        f"median in the same rounds: {ours[1] - floor[1]:.3f} s of the report run is "
        "perceiver-calc's own.",
        "",
        "## Where the time goes",
        "",
        "`report --format json` step by step, timed inside one fresh process (perf_counter "
        f"between the steps; min and median of {max(args.runs, 5)} processes; the interpreter's "
        "own start comes before the first step):",
        "",
        "| step | min (ms) | median (ms) | share of the steps (median) |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {lo * 1000:.1f} | {med * 1000:.1f} | {med / step_total:.0%} |"
            for name, lo, med in stepped
        ],
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Measured {start} with:",
        "",
        "```sh",
        f"python benchmarks/bench_cold_start.py --runs {args.runs}",
        "```",
    ]
    lines += ["", ANALYSIS.strip()]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
