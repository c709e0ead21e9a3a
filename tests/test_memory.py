"""Memory counts against what transformers' model actually saves for backward (CPU).

Property, every model class, generated tiny configs and workloads (tests/strategies.py): the
bytes of the storages our model says autograd keeps (``saved_tensors(..., device="cpu")``)
equal ``tests.hf_truth.hf_saved_activations`` - a training forward (+ the loss) under
``torch.autograd.graph.saved_tensors_hooks``, unique storages, parameters and buffers excluded.

Checkpointing: with every PerceiverLayer wrapped in ``torch.utils.checkpoint`` (reentrant, so
the layer inputs are what the checkpoint saves), the bytes equal our checkpointed figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import transformers.models.perceiver.modeling_perceiver as modeling_perceiver
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.checkpoint import checkpoint

from perceiver_calc.config import load_config
from perceiver_calc.memory import bytes_per_element, count_memory, saved_tensors
from perceiver_calc.params import count_params
from perceiver_calc.resolve import resolve
from perceiver_calc.workload import Workload
from tests import hf_truth
from tests.strategies import valid_config, workload_for
from tests.test_flops import to_workload

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PER_CLASS = settings(max_examples=max(4, settings().max_examples // 3))


def _cpu_bytes(model_class: str, config: dict[str, Any], w: hf_truth.Workload) -> int:
    resolved = resolve(load_config(config), model_class)
    tensors = saved_tensors(resolved, to_workload(w), with_labels=w.with_labels)
    return sum(t.elements * bytes_per_element(t.kind, "fp32", "cpu") for t in tensors)


@pytest.mark.parametrize("model_class", hf_truth.MODEL_CLASSES)
@PER_CLASS
@given(data=st.data())
def test_saved_activation_bytes_equal_transformers(model_class: str, data: Any) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    measured = hf_truth.hf_saved_activations(model_class, config, w, device="cpu")
    assert _cpu_bytes(model_class, config, w) == measured.total_bytes, measured.by_dtype


@contextmanager
def _checkpointed_layers() -> Iterator[None]:
    """Wrap every transformers PerceiverLayer.forward in a reentrant checkpoint: autograd then
    keeps only the layer's tensor inputs (CheckpointFunction.save_for_backward)."""
    original = modeling_perceiver.PerceiverLayer.forward

    def forward(
        self: Any,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        inputs: torch.Tensor | None = None,
        inputs_mask: torch.Tensor | None = None,
        output_attentions: bool | None = False,
    ) -> Any:
        def run(h: torch.Tensor, i: torch.Tensor | None) -> Any:
            return original(self, h, attention_mask, i, inputs_mask, output_attentions)

        return checkpoint(run, hidden_states, inputs, use_reentrant=True)

    with mock.patch.object(modeling_perceiver.PerceiverLayer, "forward", forward):
        yield


@pytest.mark.parametrize("model_class", hf_truth.MODEL_CLASSES)
@settings(max_examples=max(2, settings().max_examples // 6))
@given(data=st.data())
def test_checkpointed_activation_bytes_equal_transformers(model_class: str, data: Any) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    with _checkpointed_layers():
        measured = hf_truth.hf_saved_activations(model_class, config, w, device="cpu")
    resolved = resolve(load_config(config), model_class)
    mem = count_memory(resolved, to_workload(w, checkpointing=True, mode="training"), device="cpu")
    if not w.with_labels and model_class in hf_truth.LABEL_CLASSES:
        # count_memory trains with labels where the class takes them; drop the loss's share
        loss = sum(v for k, v in mem.by_module.items() if k == "loss")
        assert mem.activations_bytes - loss == measured.total_bytes
    else:
        assert mem.activations_bytes == measured.total_bytes


def test_language_perceiver_training_memory() -> None:
    """AdamW, fp32, batch 1, 2048 tokens: 16 B/param for weights, grads and Adam states."""
    resolved = resolve(load_config(EXAMPLES / "language-perceiver.json"))
    mem = count_memory(resolved, Workload(mode="training", optimizer="adamw"), device="cuda")
    params = 201_108_230
    assert mem.weights_bytes == 4 * params
    assert mem.gradients_bytes == 4 * params
    assert mem.optimizer_bytes == 8 * params
    assert mem.total_bytes == 16 * params + mem.activations_bytes
    cpu = count_memory(resolved, Workload(mode="training"), device="cpu")
    # CUDA keeps the dropout masks as bool (1 B) instead of float32 (4 B): 3 B/element less
    # on B·H·Q·K elements per attention application.
    masks = sum(
        t.elements for t in saved_tensors(resolved, Workload(mode="training")) if t.kind == "mask"
    )
    assert cpu.activations_bytes - mem.activations_bytes == 3 * masks


def test_checkpointing_keeps_less_and_recomputes_one_layer() -> None:
    resolved = resolve(load_config(EXAMPLES / "language-perceiver.json"))
    plain = count_memory(resolved, Workload(mode="training"))
    ckpt = count_memory(resolved, Workload(mode="training", checkpointing=True))
    assert ckpt.activations_bytes < plain.activations_bytes
    assert ckpt.activations_bytes == plain.activations_checkpointing_bytes
    assert 0 < ckpt.recompute_peak_bytes < plain.activations_bytes


def test_inference_peak_holds_two_score_tensors() -> None:
    resolved = resolve(load_config(EXAMPLES / "optical-flow-perceiver.json"))
    mem = count_memory(resolved, Workload())
    # (1, 1 head, 182,528 queries, 2048 latents) fp32 scores, from the flow decoder
    assert mem.largest_attention_scores_bytes == 4 * 182_528 * 2048
    assert mem.inference_peak_bytes > mem.weights_bytes + 2 * mem.largest_attention_scores_bytes
    assert mem.total_bytes == mem.inference_peak_bytes
    assert mem.gradients_bytes == mem.optimizer_bytes == mem.activations_bytes == 0


@pytest.mark.parametrize(
    ("dtype", "optimizer", "per_param"),
    [
        ("fp32", "adamw", 16),
        ("fp32", "sgd", 8),
        ("fp32", "sgd-momentum", 12),
        ("bf16", "adam", 8),
        ("mixed-bf16", "adamw", 6 + 4 + 8),
        ("mixed-fp16", "sgd-momentum", 6 + 4 + 4),
    ],
)
def test_state_bytes_per_parameter(dtype: Any, optimizer: Any, per_param: int) -> None:
    resolved = resolve(load_config(EXAMPLES / "tiny.json"))
    mem = count_memory(resolved, Workload(mode="training", dtype=dtype, optimizer=optimizer))
    params = count_params(resolved).total  # tiny.json has no buffers
    assert mem.weights_bytes + mem.gradients_bytes + mem.optimizer_bytes == per_param * params
