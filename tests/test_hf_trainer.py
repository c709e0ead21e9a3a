"""perceiver_calc.hf_trainer: exact training FLOPs and MFU inside transformers' Trainer.

* Property, every model class: ``training_flops`` of a batch (the model kwargs transformers
  takes, built by tests/hf_truth.py on meta) == FlopCounterMode around that forward, the loss
  and ``backward()`` on transformers' own model.
* A real ``Trainer`` (tiny masked LM, CPU, micro-batches of 4, 4, 2 samples, gradient
  accumulation 2): ``state.total_flos`` and the ``total_flos`` metric == FlopCounterMode's
  count of the whole ``train()``; without :func:`attach` the Trainer's 6·params·tokens differs.
  MFU and model FLOP/s appear in the training logs.
* Errors: unknown device, bad peak, a batch without a known input key (pinned text).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers' Trainer needs it

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from perceiver_calc.config import load_config
from perceiver_calc.errors import InputError
from perceiver_calc.hf_trainer import attach, batch_workload, peak_for, training_flops
from perceiver_calc.resolve import resolve
from tests import hf_truth
from tests.strategies import valid_config, workload_for

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.json"
# dev 3, ci 12 examples per class (each builds transformers models twice on meta)
PER_CLASS = settings(max_examples=max(3, settings().max_examples // 8))


@pytest.mark.parametrize("model_class", hf_truth.MODEL_CLASSES)
@PER_CLASS
@given(data=st.data())
def test_training_flops_of_a_batch_equal_flopcountermode(model_class: str, data: Any) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    w = replace(w, training=True)
    kwargs = hf_truth.make_inputs(model_class, config, w, device="meta")
    resolved = resolve(load_config(config), model_class)
    measured = hf_truth.hf_flops(model_class, config, w, backward=True).total
    assert training_flops(resolved, kwargs) == measured
    # the transformers model itself is accepted too (its config and class name are read)
    model = hf_truth.build_hf_model(model_class, config, device="meta")
    assert training_flops(model, kwargs) == measured


def _tiny_lm() -> Any:
    from transformers import PerceiverConfig, PerceiverForMaskedLM

    torch.manual_seed(0)
    return PerceiverForMaskedLM(PerceiverConfig(**json.loads(TINY.read_text())))


def _trainer(tmp_path: Path, model: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    gen = torch.Generator().manual_seed(0)
    # 10 samples, batch 4: micro-batches 4, 4, 2 (the last one short), 32 tokens each
    # (tiny.json's max_position_embeddings: the masked LM decodes that many positions).
    data = [
        {
            "inputs": torch.randint(0, 64, (32,), generator=gen),
            "labels": torch.randint(0, 64, (32,), generator=gen),
        }
        for _ in range(10)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=data)


def test_trainer_total_flos_equal_flopcountermode(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, _tiny_lm())
    counter = attach(trainer, peak_flops=1e12)
    with FlopCounterMode(display=False) as fc:
        out = trainer.train()
    measured = int(fc.get_total_flops())  # forward + backward of every micro-batch
    assert trainer.state.total_flos == measured == counter.total
    # per micro-batch (4, 4, 2 samples): count_flops is linear in the batch
    resolved = resolve(load_config(TINY), "PerceiverForMaskedLM")
    per_sample = training_flops(resolved, {"inputs": torch.empty(1, 32, dtype=torch.long)})
    assert measured == 10 * per_sample
    logs = trainer.state.log_history
    steps = [entry for entry in logs if "loss" in entry]
    assert len(steps) == trainer.state.global_step == 2  # ceil(3 micro-batches / 2)
    for entry in steps:
        assert entry["train_model_flops_per_second"] > 0
        assert entry["mfu"] == pytest.approx(entry["train_model_flops_per_second"] / 1e12)
    final = logs[-1]  # the train metrics (train() returns them without total_flos)
    assert final["total_flos"] == measured and out.metrics["train_runtime"] > 0
    assert final["train_mfu"] == pytest.approx(measured / final["train_runtime"] / 1e12, rel=0.05)
    saved = tmp_path / "state.json"
    trainer.state.save_to_json(str(saved))
    assert json.loads(saved.read_text())["total_flos"] == measured


def test_trainer_without_attach_uses_six_n_d(tmp_path: Path) -> None:
    """What attach() corrects: transformers' own estimate, 6 · tokens · non-embedding params."""
    model = _tiny_lm()
    trainer = _trainer(tmp_path, model)
    trainer.train()
    six_n_d = 6 * 10 * 32 * model.num_parameters(exclude_embeddings=True)
    assert trainer.state.total_flos == six_n_d
    resolved = resolve(load_config(TINY), "PerceiverForMaskedLM")
    exact = 10 * training_flops(resolved, {"inputs": torch.empty(1, 32, dtype=torch.long)})
    assert six_n_d != exact


def test_peak_for_devices_and_dtypes() -> None:
    assert peak_for("h100-sxm", "mixed-bf16")[0] == 989e12
    assert peak_for("NVIDIA A100-SXM4-80GB", "fp32")[0] == 19.5e12
    with pytest.raises(InputError) as err:
        peak_for("t4", "bf16")
    assert str(err.value).startswith("device 't4' has no bf16 peak in perceiver_calc.devices;")
    assert "or pass peak_flops= (FLOP/s per device)" in str(err.value)


def test_attach_reads_dtype_and_refuses_bad_peaks(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, _tiny_lm())
    trainer.args.bf16 = True  # not trained: only the peak lookup reads it
    assert attach(trainer, device="h100-sxm").peak_flops == 989e12
    assert attach(trainer, device="h100-sxm", dtype="fp32").peak_flops == 67e12
    assert attach(trainer).peak_flops is None
    with pytest.raises(InputError, match=r"peak_flops \(nan\) must be a positive number"):
        attach(trainer, peak_flops=float("nan"))


def test_batch_errors_are_named() -> None:
    resolved = resolve(load_config(TINY), "PerceiverForMaskedLM")
    with pytest.raises(InputError) as err:
        batch_workload(resolved, {"labels": torch.empty(2, 32)})
    assert str(err.value) == (
        "the batch has none of inputs, input_ids, pixel_values (keys: labels); "
        "a Perceiver forward needs one"
    )
    with pytest.raises(InputError, match=r"inputs of shape \(2, 3, 4\); expected \(B, M\)"):
        batch_workload(resolved, {"input_ids": torch.empty(2, 3, 4)})
    w = batch_workload(resolved, {"input_ids": torch.empty(3, 20, dtype=torch.long)})
    assert (w.batch_size, w.seq_len, w.mode) == (3, 20, "training")


def test_module_imports_neither_torch_nor_transformers() -> None:
    """transformers stays optional: importing the module (and perceiver_calc) loads neither."""
    import subprocess
    import sys

    code = (
        "import sys, perceiver_calc.hf_trainer; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
