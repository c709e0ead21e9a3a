"""The CPUs this process may run on, their physical cores, and how busy the machine is
(torch-free; Linux files, with portable fallbacks).

``bench`` times CPU runs with one torch thread per physical core it may use (hyper-threads
share a core's arithmetic units, so more threads than cores mostly add contention) and warns
when the load average says other work competes for those CPUs: on a shared 2-core machine a
training step that takes 12 ms alone was timed at 1.84 s (issue 13).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

__all__ = ["available_cpus", "busy_warning", "load_average", "physical_cores"]

_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP = Path("/sys/fs/cgroup")


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _cgroup_cpu_quota() -> int | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` quota (``"200000 100000"`` -> 2), if any."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, rel = line.rstrip("\n").split(":", 2)
            if controllers != "":
                continue
            for folder in (_CGROUP / rel.lstrip("/"), _CGROUP):
                path = folder / "cpu.max"
                if path.exists():
                    quota, period = path.read_text().split()[:2]
                    if quota == "max":
                        return None
                    return max(1, math.ceil(int(quota) / int(period)))
    return None


def available_cpus() -> int:
    """Logical CPUs this process may use: its affinity mask (``os.sched_getaffinity``), capped
    by a cgroup v2 CPU quota."""
    n = len(_affinity()) or 1
    quota = _cgroup_cpu_quota()
    return min(n, quota) if quota else n


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use: the distinct
    ``topology/core_cpus_list`` (older kernels: ``thread_siblings_list``) of each CPU in the
    affinity mask, capped by :func:`available_cpus`; the CPU count where sysfs is missing."""
    cpus = _affinity()
    cores: set[str] = set()
    for cpu in cpus:
        topo = _SYS_CPU / f"cpu{cpu}" / "topology"
        for name in ("core_cpus_list", "thread_siblings_list"):
            with contextlib.suppress(OSError):
                cores.add((topo / name).read_text().strip())
                break
        else:
            cores.add(f"cpu{cpu}")  # no topology: count the CPU as its own core
    return max(1, min(len(cores) or len(cpus), available_cpus()))


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``), or None where unsupported."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (one, five, fifteen)


def busy_warning(load: tuple[float, float, float] | None, cpus: int) -> str | None:
    """The warning ``bench`` prints when the 1-minute load average exceeds the CPUs available
    to this process (other work is competing for them), else None."""
    if load is None or load[0] <= cpus:
        return None
    return (
        f"warning: the machine is busy: 1-minute load average {load[0]:.2f} is above the "
        f"{cpus} CPU{'s' if cpus != 1 else ''} available to this process; "
        "timings are unreliable (run again on an idle machine)"
    )
