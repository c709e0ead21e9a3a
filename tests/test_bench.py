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
    assert "refusing to materialise the model" in big.stderr


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
