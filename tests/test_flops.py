"""FLOP counts against torch's FlopCounterMode on transformers' own models (meta device).

Properties, every model class, generated configs and workloads (tests/strategies.py):

* analytic forward FLOPs == FlopCounterMode on an eval-mode forward, in total and per
  resolved module path (FlopCounterMode's per-module counts are inclusive, which is what a
  resolved module - a whole PerceiverLayer, a Linear - is);
* analytic forward + backward FLOPs == FlopCounterMode around forward and ``loss.backward()``.

Pinned: deepmind/language-perceiver, batch 1, 2048 tokens: forward = 120,949,047,296 FLOPs; and
every checkpoint config in examples/ at its default workload, forward and backward.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perceiver_calc.config import load_config
from perceiver_calc.flops import count_flops
from perceiver_calc.resolve import ResolvedModel, resolve
from perceiver_calc.workload import Workload
from tests import hf_truth
from tests.strategies import valid_config, workload_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# A third of the profile's examples per model class (8 classes): dev 8, ci 33.
PER_CLASS = settings(max_examples=max(4, settings().max_examples // 3))


def ours(model_class: str, config: dict[str, Any]) -> ResolvedModel:
    return resolve(load_config(config), model_class)


def to_workload(w: hf_truth.Workload, **extra: Any) -> Workload:
    """The harness's workload as perceiver_calc's (same field names and defaults)."""
    fields: dict[str, Any] = {
        "batch_size": w.batch_size,
        "seq_len": w.seq_len,
        "image_size": w.image_size,
        "num_frames": w.num_frames,
        "audio_samples": w.audio_samples,
        "subsampled_image_points": w.subsampled_image_points,
        "subsampled_audio_points": w.subsampled_audio_points,
        "mode": "training" if w.training else "inference",
    }
    return Workload(**(fields | extra))


@pytest.mark.parametrize("model_class", hf_truth.MODEL_CLASSES)
@PER_CLASS
@given(data=st.data())
def test_forward_and_backward_flops_equal_flopcountermode(model_class: str, data: Any) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    resolved = ours(model_class, config)
    counts = count_flops(resolved, to_workload(w))

    fwd = hf_truth.hf_flops(model_class, config, w)
    assert counts.forward == fwd.total
    assert counts.macs_forward * 2 == counts.forward
    blocks = {m.path: m.copies for m in resolved.layers() if m.role == "encoder_self"}
    for path, mf in counts.by_module.items():
        if path in blocks:
            # one resolved block for transformers' L layers self_attends.0 .. L-1 (the
            # ModuleList is never called, so FlopCounterMode keys the layers): each layer is
            # one copy's share, and they sum to the block
            layers = [fwd.by_module.get(f"{path}.{i}", 0) for i in range(blocks[path])]
            assert layers == [mf.forward // blocks[path]] * blocks[path], path
            assert mf.forward == sum(layers), path
        else:
            assert mf.forward == fwd.by_module.get(path, 0), path
    # every FLOP FlopCounterMode saw is inside one of our modules
    assert sum(mf.forward for mf in counts.by_module.values()) == fwd.total

    both = hf_truth.hf_flops(model_class, config, w, backward=True)
    assert counts.forward + counts.backward == both.total
    assert counts.training_step == both.total
    assert counts.recompute == 0


def test_language_perceiver_forward_pinned() -> None:
    """deepmind/language-perceiver, batch 1, 2048 tokens (design.md; hf-perceiver-notes §6.2)."""
    config = load_config(EXAMPLES / "language-perceiver.json")
    counts = count_flops(resolve(config), Workload(batch_size=1, seq_len=2048))
    assert counts.forward == 120_949_047_296
    # every matmul's input needs a gradient (token embeddings are lookups): backward = 2x
    assert counts.backward == 2 * counts.forward
    assert counts.six_n_d == 6 * 201_108_230 * 2048
    assert 6.8 < counts.six_n_d_ratio < 6.9


def _example_configs() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        raw = json.loads(path.read_text())
        config = load_config(raw)
        cls = resolve(config).model
        out.append((path.stem, cls, raw))
    return out


def _hf_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Keys transformers' PerceiverConfig accepts (drop id2label-sized noise only)."""
    return {k: v for k, v in raw.items() if k not in ("architectures", "transformers_version")}


@pytest.mark.parametrize(("name", "model_class", "raw"), _example_configs())
def test_checkpoint_configs_equal_flopcountermode(
    name: str, model_class: str, raw: dict[str, Any]
) -> None:
    resolved = resolve(load_config(raw))
    counts = count_flops(resolved, Workload())
    w = hf_truth.Workload()
    fwd = hf_truth.hf_flops(model_class, _hf_fields(raw), w)
    assert counts.forward == fwd.total, name
    if name == "language-perceiver":  # backward at checkpoint size once (the others: forward)
        both = hf_truth.hf_flops(model_class, _hf_fields(raw), w, backward=True)
        assert counts.forward + counts.backward == both.total, name


def test_checkpointing_adds_one_forward_of_every_layer() -> None:
    config = load_config(EXAMPLES / "language-perceiver.json")
    resolved = resolve(config)
    plain = count_flops(resolved, Workload(mode="training"))
    ckpt = count_flops(resolved, Workload(mode="training", checkpointing=True))
    layers = sum(plain.by_module[m.path].forward for m in resolved.layers())
    assert ckpt.recompute == layers
    assert ckpt.training_step == plain.training_step + layers


def test_forward_terms_partition_forward() -> None:
    """The scaling terms add up to the forward count, and the input-length terms are exactly
    what changes when only the input length changes."""
    resolved = resolve(load_config(EXAMPLES / "language-perceiver.json"))
    a = count_flops(resolved, Workload(seq_len=1024))
    b = count_flops(resolved, Workload(seq_len=2048))
    assert sum(a.forward_terms.values()) == a.forward
    in_a = {k: v for k, v in a.forward_terms.items() if "inputs" in k}
    in_b = {k: v for k, v in b.forward_terms.items() if "inputs" in k}
    assert all(in_b[k] == 2 * in_a[k] for k in in_a)
    assert b.forward - a.forward == sum(in_a.values())
