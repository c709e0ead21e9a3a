"""``perceiver-calc bench`` on CPU with a tiny config and few repeats: output keys, predicted
vs measured fields, MFU only with a peak, exit codes; the device peak table. No timing
assertions (the test machine's load decides them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch
import typer
from typer.testing import CliRunner

from perceiver_calc import cli_device
from perceiver_calc.devices import PEAKS, lookup_peak

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.json"

app = typer.Typer(pretty_exceptions_enable=False)
cli_device.register(app)
runner = CliRunner()

PHASE_KEYS = {
    "latency_s",
    "samples_per_s",
    "tokens_per_s",
    "flops",
    "achieved_flops_per_s",
    "mfu",
    "predicted_peak_memory_bytes",
    "measured_peak_memory_bytes",
    "memory_relative_difference",
}


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_bench_json_training() -> None:
    result = run(
        "bench", str(TINY), "--warmup", "1", "--repeats", "2", "--peak-flops", "1e12", "-f", "json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "PerceiverForMaskedLM" and data["device"] == "cpu"
    assert data["repeats"] == 2 and data["tokens_per_sample"] == 32
    assert data["peak_flops_per_s"] == 1e12 and data["peak_flops_source"] == "--peak-flops"
    for phase in ("forward", "training_step"):
        p = data[phase]
        assert set(p) == PHASE_KEYS
        lat = p["latency_s"]
        assert 0 < lat["min"] <= lat["median"] <= lat["max"]
        assert p["mfu"] == pytest.approx(p["achieved_flops_per_s"] / 1e12)
        assert p["predicted_peak_memory_bytes"] > 0
    assert data["training_step"]["flops"] == 3 * data["forward"]["flops"]


def test_bench_inference_table() -> None:
    result = run("bench", str(TINY), "--warmup", "0", "--repeats", "1", "--mode", "inference")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "latency median (ms)" in out and "training step" not in out
    assert "MFU" in out and "n/a" in out  # CPU: no table entry, no --peak-flops


def test_bench_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("bench", str(TINY), "--peak-flops", "0").exit_code == 2
    if not torch.cuda.is_available():
        cuda = run("bench", str(TINY), "--device", "cuda")
        assert cuda.exit_code == 2 and "cuda" in cuda.stderr
    from perceiver_calc import hostmem

    # On the CPU the fit is decided under the process's own limit (perceiver_calc.hostmem).
    monkeypatch.setattr(hostmem, "host_memory_limit", lambda: (1000, "a test limit"))
    big = run("bench", str(TINY))
    assert big.exit_code == 2
    assert big.stderr.startswith("error: refusing to materialise the model: its predicted peak, ")
    assert "is over 90% of the 1,000 bytes (0.00 GiB) cpu memory this process may still use " in (
        big.stderr
    )
    assert big.stderr.rstrip().endswith("(a test limit). --force runs it anyway")
    assert big.stdout == ""  # refused before any run
    forced = run("bench", str(TINY), "--warmup", "0", "--repeats", "1", "--force", "-f", "json")
    assert forced.exit_code == 0, forced.output
    assert "warning: --force: running the model although its predicted peak" in forced.stderr
    assert any(w.startswith("warning: --force") for w in json.loads(forced.stdout)["warnings"])


def test_bench_threads_and_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from perceiver_calc import hostcpu

    before = torch.get_num_threads()
    quick = ("--warmup", "0", "--repeats", "1", "--mode", "inference")
    monkeypatch.setattr(hostcpu, "available_cpus", lambda: 2)
    monkeypatch.setattr(hostcpu, "load_average", lambda: (0.5, 0.25, 0.125))
    idle = run("bench", str(TINY), *quick, "--threads", "1", "-f", "json")
    assert idle.exit_code == 0, idle.output
    data = json.loads(idle.stdout)
    assert data["threads"] == 1 and data["cpus_available"] == 2
    assert data["load_average"] == {"1min": 0.5, "5min": 0.25, "15min": 0.125}
    assert data["warnings"] == [] and "warning" not in idle.stderr
    assert torch.get_num_threads() == before  # restored after the run

    monkeypatch.setattr(hostcpu, "load_average", lambda: (3.5, 2.0, 1.0))
    busy = run("bench", str(TINY), *quick, "--threads", "3")
    assert busy.exit_code == 0, busy.output
    # (the progress bar, transient, leaves only blank lines)
    assert [line for line in busy.stderr.splitlines() if line.strip()] == [
        "warning: --threads 3 is more than the 2 CPUs available to this process; "
        "timings are unreliable",
        "warning: the machine is busy: 1-minute load average 3.50 is above the 2 CPUs "
        "available to this process; timings are unreliable (run again on an idle machine)",
    ]
    assert (
        "threads: 3 of 2 CPUs available; load average (1/5/15 min) before the run: "
        "3.50 2.00 1.00" in busy.stdout
    )
    # default: one thread per physical core available to the process
    monkeypatch.setattr(hostcpu, "physical_cores", lambda: 1)
    default = run("bench", str(TINY), *quick, "-f", "json")
    assert json.loads(default.stdout)["threads"] == 1
    assert run("bench", str(TINY), "--threads", "0").exit_code == 2


def test_physical_cores_from_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4 logical CPUs on 2 hyper-threaded cores; the process may use CPUs 0, 1 and 2."""
    from perceiver_calc import hostcpu

    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_cpus_list").write_text(siblings + "\n")
    monkeypatch.setattr(hostcpu, "_SYS_CPU", tmp_path)
    monkeypatch.setattr(hostcpu, "_affinity", lambda: {0, 1, 2})
    monkeypatch.setattr(hostcpu, "_cgroup_cpu_quota", lambda: None)
    assert hostcpu.available_cpus() == 3
    assert hostcpu.physical_cores() == 2
    monkeypatch.setattr(hostcpu, "_cgroup_cpu_quota", lambda: 1)  # cpu.max "100000 100000"
    assert hostcpu.available_cpus() == 1 and hostcpu.physical_cores() == 1
    assert hostcpu.busy_warning((1.0, 0.0, 0.0), 1) is None  # at the limit: not busy
    assert hostcpu.busy_warning(None, 1) is None
    assert hostcpu.busy_warning((1.01, 0.0, 0.0), 1) == (
        "warning: the machine is busy: 1-minute load average 1.01 is above the 1 CPU available "
        "to this process; timings are unreliable (run again on an idle machine)"
    )


def test_peak_table() -> None:
    peak = lookup_peak("NVIDIA H100 80GB HBM3", "bf16")
    assert peak is not None and peak[0] == 989e12 and "datasheet" in peak[1]
    a100 = lookup_peak("NVIDIA A100-SXM4-80GB", "mixed-bf16")
    assert a100 is not None and a100[0] == 312e12
    pcie = lookup_peak("NVIDIA H100 PCIe", "fp32")
    assert pcie is not None and pcie[0] == 51e12
    assert lookup_peak("NVIDIA L40S", "bf16") is None  # not the L4
    assert lookup_peak("Tesla T4", "bf16") is None  # no bf16
    assert lookup_peak("Intel(R) Xeon(R)", "fp32") is None
    assert all(e.source or not e.flops for e in PEAKS)
