"""``perceiver-calc check``: the analytic counts agree with the reference model.

Property, every model class, generated tiny configs and training workloads (with and without
activation checkpointing; tests/strategies.py): parameters per resolved module, forward /
backward / training-step FLOPs and the training activation bytes (CPU, fp32) are equal, so
``check`` finds no mismatch. Also: exit codes, the refusal to materialise a model that would
not fit, the one-line message without torch, and that importing the command module does not
import torch.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from perceiver_calc import cli_device
from perceiver_calc.config import load_config
from perceiver_calc.resolve import resolve
from tests import hf_truth
from tests.strategies import valid_config, workload_for
from tests.test_flops import to_workload

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.json"
EXACT = ("params", "buffer elements", "forward FLOPs", "backward FLOPs", "training-step FLOPs")

app = typer.Typer(pretty_exceptions_enable=False)
cli_device.register(app)
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("model_class", hf_truth.MODEL_CLASSES)
@settings(max_examples=3)
@given(data=st.data())
def test_check_agrees_on_generated_configs(model_class: str, data: Any) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    ckpt = data.draw(st.booleans(), label="checkpointing")
    workload = to_workload(w, mode="training", checkpointing=ckpt)
    if model_class == "PerceiverForMaskedLM":  # training with labels needs M == P
        workload = workload.model_copy(update={"seq_len": None})
    res = cli_device.run_check(resolve(load_config(config), model_class), workload)
    bad = [r for r in res["rows"] if r["status"] not in ("ok", "modelled")]
    assert res["ok"] and not bad, bad
    quantities = {r["quantity"] for r in res["rows"]}
    assert {*EXACT, "activation bytes (training)"} <= quantities
    acts = next(r for r in res["rows"] if r["quantity"] == "activation bytes (training)")
    assert acts["exact"] and acts["measured"] > 0


def test_check_cli_json_and_table() -> None:
    result = run("check", str(TINY), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "PerceiverForMaskedLM"
    assert data["ok"] and data["mismatches"] == 0
    total = next(r for r in data["rows"] if r["quantity"] == "params" and r["module"] == "total")
    assert total["analytic"] == total["measured"] == 33_456
    peak = next(r for r in data["rows"] if r["quantity"].startswith("peak memory"))
    assert peak["status"] == "modelled" and not peak["exact"]
    table = run("check", str(TINY), "--meta-only")
    assert table.exit_code == 0
    assert "all exact quantities agree" in table.stdout
    assert "skipped" in table.stdout  # activations and peak memory under --meta-only


def test_check_exits_1_on_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    # check imports count_flops when it runs (not at import): patch it where it is defined.
    import perceiver_calc.flops as flops_module

    real = flops_module.count_flops

    def off_by_two(*args: Any, **kwargs: Any) -> Any:
        counts = real(*args, **kwargs)
        return dataclasses.replace(counts, forward=counts.forward + 2)

    monkeypatch.setattr(flops_module, "count_flops", off_by_two)
    result = run("check", str(TINY), "--meta-only")
    assert result.exit_code == 1
    assert "MISMATCH" in result.stdout and "1 mismatch" in result.stdout


def test_check_exits_2_on_bad_input(tmp_path: Path) -> None:
    missing = run("check", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error:")
    # seq_len beyond max_position_embeddings (32 in tiny.json): the position lookup fails
    long = run("check", str(TINY), "--seq-len", "33")
    assert long.exit_code == 2
    assert "max_position_embeddings" in long.stderr
    bad_option = run("check", str(TINY), "--batch-size", "0")
    assert bad_option.exit_code == 2


def test_check_refuses_to_materialise_what_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from perceiver_calc import hostmem

    # On the CPU the fit is decided under the process's own limit (perceiver_calc.hostmem).
    monkeypatch.setattr(hostmem, "host_memory_limit", lambda: (1000, "a test limit"))
    # Refused with exit 2 before anything is measured, naming the prediction and the limit
    # (issue 12).
    result = run("check", str(TINY), "--format", "json")
    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.replace("\n", " ")
    assert message.startswith("error: refusing to materialise the model: its predicted peak, ")
    assert "bytes (0.00 GiB: weights + gradients + optimizer states + activations), is over " in (
        message
    )
    assert "90% of the 1,000 bytes (0.00 GiB) cpu memory this process may still use " in message
    assert message.rstrip().endswith(
        "(a test limit). --meta-only checks parameters and FLOPs without building it; "
        "--force builds it anyway"
    )
    # --meta-only: nothing is built, parameters and FLOPs are checked
    meta = run("check", str(TINY), "--meta-only", "--format", "json")
    assert meta.exit_code == 0, meta.output
    acts = next(
        r for r in json.loads(meta.stdout)["rows"] if r["quantity"] == "activation bytes (training)"
    )
    assert acts["status"] == "skipped" and acts["measured"] is None
    # --force: built and measured anyway, with a note
    forced = run("check", str(TINY), "--force", "--format", "json")
    assert forced.exit_code == 0, forced.output
    data = json.loads(forced.stdout)
    assert any(
        n.startswith("--force: building the model although its predicted") for n in data["notes"]
    )
    acts = next(r for r in data["rows"] if r["quantity"] == "activation bytes (training)")
    assert acts["status"] == "ok"


def _without_torch(code: str) -> subprocess.CompletedProcess[str]:
    wrapper = "import sys; sys.modules['torch'] = None\n" + code
    return subprocess.run(
        [sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["check", "bench"])
def test_missing_torch_is_one_line(command: str) -> None:
    code = (
        "import typer\n"
        "from perceiver_calc.cli_device import register\n"
        "app = typer.Typer(pretty_exceptions_enable=False)\n"
        "register(app)\n"
        f"app([{command!r}, {str(TINY)!r}])\n"
    )
    proc = _without_torch(code)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: reference_model needs torch: from a clone of perceiver-calc, "
        "pip install -c constraints.txt -e '.[torch]' (constraints.txt pins the CPU wheel)"
    ]


def test_command_module_does_not_import_torch() -> None:
    code = (
        "import sys, perceiver_calc.cli_device\n"
        "print([m for m in ('torch', 'reference_model') if m in sys.modules])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "[]", proc.stderr
