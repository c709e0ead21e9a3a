"""Import-time budget of the report path, measured with ``python -X importtime``.

``perceiver-calc report --format json`` is meant to be instant (issue 15): most of a cold run is
imports. The budget is relative to the interpreter's own start (``python -X importtime -c pass``,
run in the same test, same interpreter and environment), so that it holds on a slow or loaded
machine: both runs slow down together. Each is run a few times, interleaved, and the smallest
total kept (the run least disturbed by other processes).

When this fails, the message lists the modules that cost the most: make them lazy (import
inside the function that needs them) or cheaper (no pydantic model where a dataclass does).

The package's bytecode is compiled first, as pip does on install: with PYTHONDONTWRITEBYTECODE
set (as on the dev VM), each run would otherwise compile perceiver_calc from source, a cost
that neither users nor the interpreter's start pay.
"""

from __future__ import annotations

import compileall
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "language-perceiver.json"

REPORT = ["-m", "perceiver_calc.cli", "report", str(EXAMPLE), "--format", "json"]
VALIDATE = ["-m", "perceiver_calc.cli", "validate", str(EXAMPLE)]

# Never imported by the JSON report and validate: typer (and the click it vendors) is skipped by
# perceiver_calc.cli_fast, rich draws tables only, numpy is the planning API's, torch and
# transformers are for check/bench only.
HEAVY = {"typer", "click", "rich", "numpy", "torch", "transformers"}

# Imports of the run beyond the interpreter's start, in multiples of that start's own import
# time. Measured on the 2-core dev VM (2026-12-02, after typer left these commands, bytecode
# compiled, load average 4-7): report 8.7-11.6x, validate 7.5x (before: 10-14x for both, with
# typer). Most of what is left is pydantic (docs/benchmarks/cold-start.md). The margin is for
# load: both runs slow down together, but not evenly. typer, rich, numpy or torch landing on
# the path fail test_report_json_skips_typer_rich_numpy_torch below whatever their cost.
REPORT_BUDGET = 15.0
VALIDATE_BUDGET = 13.0

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)")


def setup_module() -> None:
    compileall.compile_dir(str(ROOT / "perceiver_calc"), quiet=1)


def _importtime(args: list[str]) -> tuple[int, dict[str, int]]:
    """Total top-level cumulative import time (us) of one fresh run, and each module's self time."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    total, self_us = 0, {}
    for line in proc.stderr.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        own, cum, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        self_us[name] = own
        if indent == 1:  # a top-level import: its cumulative time holds its children's
            total += cum
    return total, self_us


def _measure(args: list[str], runs: int = 3) -> tuple[float, int, int, dict[str, int]]:
    base, cmd, selfs = [], [], {}
    for _ in range(runs):
        base.append(_importtime(["-c", "pass"])[0])
        total, selfs_i = _importtime(args)
        if not cmd or total < min(cmd):
            selfs = selfs_i
        cmd.append(total)
    b, c = min(base), min(cmd)
    return (c - b) / b, b, c, selfs


def _check(args: list[str], budget: float, what: str) -> None:
    ratio, base, total, selfs = _measure(args)
    top = sorted(selfs.items(), key=lambda kv: -kv[1])[:15]
    listing = "\n".join(f"  {us / 1000:7.1f} ms  {name}" for name, us in top)
    assert ratio <= budget, (
        f"{what}: imports beyond the interpreter's start take {ratio:.1f}x its own import time "
        f"(start {base / 1000:.1f} ms, run {total / 1000:.1f} ms); budget {budget}x.\n"
        f"Largest self times (make these lazy or cheaper):\n{listing}"
    )


def test_report_json_import_budget() -> None:
    _check(REPORT, REPORT_BUDGET, "report --format json")


def test_validate_import_budget() -> None:
    _check(VALIDATE, VALIDATE_BUDGET, "validate")


def test_report_json_skips_typer_rich_numpy_torch() -> None:
    """The JSON report and validate: typer, rich, numpy, torch stay unimported."""
    for args in (REPORT, VALIDATE):
        _, selfs = _importtime(args)
        heavy = sorted(name for name in selfs if name.split(".")[0] in HEAVY)
        assert not heavy, f"{args[2]} imported {heavy[:10]}"
