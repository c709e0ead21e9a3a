"""Planning: Pareto front, budget fit, compare, training plans, and the planning commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import perceiver_calc as pc
from perceiver_calc.cli_plan import register
from perceiver_calc.plan import compare, fit, pareto_front, training_plan
from perceiver_calc.sweep import evaluate, grid
from perceiver_calc.workload import Workload

BASE = Path(__file__).resolve().parent.parent / "docs" / "tutorial-base.json"


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_pareto_front_is_the_non_dominated_set(points: list[tuple[int, int]]) -> None:
    mx = np.array([p[0] for p in points])
    mn = np.array([p[1] for p in points])
    front = set(pareto_front(mx, mn))
    for i in range(len(points)):
        dominated = any(
            mx[j] >= mx[i] and mn[j] <= mn[i] and (mx[j] > mx[i] or mn[j] < mn[i])
            for j in range(len(points))
        )
        if dominated:
            assert i not in front
    # every non-dominated value pair is represented once
    best = {(mx[i], mn[i]) for i in front}
    assert len(best) == len(front)


def test_fit_respects_budgets() -> None:
    res = evaluate(
        grid(
            pc.load_config(BASE),
            {"d_latents": [512, 1024], "num_latents": [64, 256]},
            workload=Workload(seq_len=512),
        )
    )
    found = fit(res, max_params=150_000_000)
    assert found.within and all(res.counts["params"][i] <= 150_000_000 for i in found.within)
    assert set(found.pareto) <= set(found.within)


def test_training_plan_orders_strategies() -> None:
    r = pc.resolve(pc.load_config("examples/language-perceiver.json"))
    tp = training_plan(
        r, Workload(batch_size=4, dtype="mixed-bf16"), gpus=8, device="h100-sxm", samples=1_000_000
    )
    by = {(m.strategy, m.checkpointing): m for m in tp.memory}
    for ck in (False, True):
        assert by["ddp", ck].optimizer_bytes > by["zero1", ck].optimizer_bytes
        assert by["zero1", ck].gradients_bytes > by["zero2", ck].gradients_bytes
        assert by["zero2", ck].weights_bytes > by["zero3", ck].weights_bytes
        assert by["zero3", ck].total_bytes == by["fsdp", ck].total_bytes
    assert by["ddp", True].activations_bytes < by["ddp", False].activations_bytes
    assert tp.step_seconds and tp.step_seconds_checkpointing
    assert tp.step_seconds_checkpointing > tp.step_seconds
    assert tp.steps == -(-1_000_000 // 32)
    one = training_plan(r, Workload(), gpus=1)
    assert one.sharded_params_per_rank == one.params


def test_plan_and_bench_read_one_device_table() -> None:
    """plan's step time uses the peak bench's MFU uses (fp32: the non-TF32 figure), and a dtype
    the device has no peak for is refused with the device's source named."""
    import pytest

    from perceiver_calc.devices import DEVICES, lookup_peak

    r = pc.resolve(pc.load_config("examples/language-perceiver.json"))
    for key, cuda_name, dtype in (
        ("h100-sxm", "NVIDIA H100 80GB HBM3", "fp32"),
        ("a100-40gb", "NVIDIA A100-SXM4-40GB", "mixed-bf16"),
        ("v100-pcie-32gb", "Tesla V100-PCIE-32GB", "fp16"),
    ):
        wl = Workload(batch_size=2, dtype=dtype)
        tp = training_plan(r, wl, gpus=4, device=key, mfu=0.5)
        found = lookup_peak(cuda_name, dtype)
        assert found is not None and found[0] == DEVICES[key].flops[dtype]
        flops = pc.count_flops(r, wl.model_copy(update={"mode": "training"})).training_step
        assert tp.step_seconds == flops * 4 / (found[0] * 0.5 * 4)
        assert all(m.fits == (m.total_bytes <= DEVICES[key].memory_bytes) for m in tp.memory)
    with pytest.raises(ValueError, match=r"device 't4' has no mixed-bf16 peak .*no BF16"):
        training_plan(r, Workload(dtype="mixed-bf16"), gpus=1, device="t4")


def test_compare_highlights_differences() -> None:
    a = pc.resolve(pc.load_config(BASE))
    b = pc.resolve(pc.load_config(BASE).model_copy(update={"num_latents": 128}))
    cmp = compare([a, b], ["a", "b"], Workload(seq_len=256))
    assert "perceiver.embeddings.latents:shape[0]" in cmp.differing_dims
    assert "params" in cmp.differing_counts
    assert any("num_latents" in k or "embeddings" in k for k in cmp.dims)


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # makes typer keep subcommand names
        pass

    register(app)
    return app


def test_cli_sweep_fit_compare_plan(tmp_path: Path) -> None:
    runner = CliRunner()
    app = _app()
    r = runner.invoke(
        app,
        [
            "sweep",
            str(BASE),
            "--vary",
            "d_latents=512,1280,100",
            "--vary",
            "num_latents=64:128:64",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 6 and sum(not x["valid"] for x in rows) == 2
    r = runner.invoke(
        app,
        [
            "fit",
            str(BASE),
            "--vary",
            "d_latents=512,1024",
            "--max-params",
            "120000000",
            "--format",
            "csv",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["compare", str(BASE), "examples/language-perceiver.json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app, ["plan", str(BASE), "--gpus", "4", "--device", "a100-80gb", "--samples", "1000"]
    )
    assert r.exit_code == 0 and "fsdp" in r.output, r.output
    r = runner.invoke(app, ["sweep", str(BASE), "--vary", "d_latentz=1,2"])
    assert r.exit_code == 2
