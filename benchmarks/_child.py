"""Run a command as a fresh child process and read its wall time, CPU time and peak memory.

Shared by the cold-start benchmarks (bench_cold_start.py, bench_flops_memory.py): a user runs
each tool as a new process, so that is what they time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

# A fresh wrapper process per run, so RUSAGE_CHILDREN's maximum RSS is this run's alone (a
# long-lived parent would report the largest child it ever had). CPU seconds next to wall
# seconds show contention: the load average only sees this VM.
_WRAPPER = (
    "import resource, subprocess, sys, time, json\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'dt': dt, 'cpu': u.ru_utime + u.ru_stime, 'rss_kib': u.ru_maxrss,"
    " 'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-600:]}))\n"
)


@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child, all its threads
    rss: int  # peak resident bytes
    out: str
    rc: int
    err: str


def run_child(cmd: list[str]) -> ChildRun:
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    res = json.loads(proc.stdout)
    return ChildRun(res["dt"], res["cpu"], res["rss_kib"] * 1024, res["out"], res["rc"], res["err"])
