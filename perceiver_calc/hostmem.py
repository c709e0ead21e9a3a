"""How much memory this process may still take on the host (torch-free).

``MemAvailable`` alone is not the limit a process runs under: ``ulimit -v`` (RLIMIT_AS) caps
its address space, and a container's cgroup caps its resident memory, each possibly far below
what the machine has free. ``check`` and ``bench`` build real models only when the predicted
peak fits under the smallest of these (see :func:`host_memory_limit`).
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

__all__ = ["host_memory_limit"]

_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text().strip()
        return None if text == "max" else int(text)
    return None


def _status_kib(key: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def _meminfo(key: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def _own_cgroup() -> tuple[Path | None, Path | None]:
    """This process's cgroup v2 folder and v1 memory-controller folder, where mounted."""
    v2 = v1 = None
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, rel = line.rstrip("\n").split(":", 2)
            rel = rel.lstrip("/")
            if controllers == "" and (_CGROUP / rel / "memory.max").exists():
                v2 = _CGROUP / rel
            elif "memory" in controllers.split(","):
                for base in (_CGROUP / "memory", _CGROUP / "memory" / rel):
                    if (base / "memory.limit_in_bytes").exists():
                        v1 = base
    if v2 is None and (_CGROUP / "memory.max").exists():
        v2 = _CGROUP
    return v2, v1


def host_memory_limit() -> tuple[int, str] | None:
    """Bytes this process may still allocate, and which limit binds; None if none is known.

    The smallest of: RLIMIT_AS minus the address space already mapped (VmSize); cgroup v2
    ``memory.max - memory.current``; cgroup v1 ``memory.limit_in_bytes - memory.usage_in_bytes``;
    ``MemAvailable`` from /proc/meminfo.
    """
    limits: list[tuple[int, str]] = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _status_kib("VmSize") or 0
        limits.append((max(soft - used, 0), f"ulimit -v (RLIMIT_AS {soft:,} bytes)"))
    v2, v1 = _own_cgroup()
    if v2 is not None:
        cap, cur = _read_int(v2 / "memory.max"), _read_int(v2 / "memory.current")
        if cap is not None:
            limits.append((max(cap - (cur or 0), 0), f"cgroup v2 memory.max ({cap:,} bytes)"))
    if v1 is not None:
        cap, cur = _read_int(v1 / "memory.limit_in_bytes"), _read_int(v1 / "memory.usage_in_bytes")
        # v1 reports "no limit" as a huge page-aligned number (2**63 rounded down).
        if cap is not None and cap < 2**62:
            limits.append(
                (max(cap - (cur or 0), 0), f"cgroup v1 memory.limit_in_bytes ({cap:,} bytes)")
            )
    available = _meminfo("MemAvailable")
    if available is not None:
        limits.append((available, "/proc/meminfo MemAvailable"))
    return min(limits) if limits else None
