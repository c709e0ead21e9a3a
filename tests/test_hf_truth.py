"""Tests of the ground-truth harness itself, against facts that do not come from our formulas.

Pinned numbers: transformers 5.24 on meta (parameter counts also match the public checkpoint
weight-file sizes, see docs/reference notes §4.2); FLOPs from torch's FlopCounterMode.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hf_truth import (
    LABEL_CLASSES,
    MODEL_CLASSES,
    Workload,
    build_hf_model,
    hf_buffer_shapes,
    hf_config,
    hf_flops,
    hf_outcome,
    hf_param_count,
    hf_param_shapes,
    hf_saved_activations,
    make_inputs,
    resolve_workload,
)
from tests.strategies import BREAKABLE_RULES, broken_config, valid_config, workload_for

# deepmind/language-perceiver config.json (architecture fields).
LANGUAGE_PERCEIVER: dict[str, Any] = {
    "num_latents": 256,
    "d_latents": 1280,
    "d_model": 768,
    "num_blocks": 1,
    "num_self_attends_per_block": 26,
    "num_self_attention_heads": 8,
    "num_cross_attention_heads": 8,
    "qk_channels": 256,
    "v_channels": 1280,
    "vocab_size": 262,
    "max_position_embeddings": 2048,
}

# One small config per class that builds and runs (used where a fixed case is clearer).
TINY: dict[str, Any] = {
    "num_latents": 3,
    "d_latents": 4,
    "d_model": 8,
    "num_blocks": 2,
    "num_self_attends_per_block": 2,
    "num_self_attention_heads": 2,
    "num_cross_attention_heads": 1,
    "vocab_size": 11,
    "max_position_embeddings": 5,
    "image_size": 2,
    "train_size": [2, 3],
    "num_frames": 2,
    "audio_samples_per_frame": 4,
    "samples_per_patch": 4,
    "output_shape": [1, 2, 4, 4],
    "output_num_channels": 3,
    "_label_trainable_num_channels": 5,
    "num_labels": 3,
}
TINY_WORKLOAD: dict[str, Workload] = {
    mc: Workload(
        batch_size=2,
        image_size={
            "PerceiverForImageClassificationFourier": (3, 4),
            "PerceiverForImageClassificationConvProcessing": (9, 7),
            "PerceiverForMultimodalAutoencoding": (4, 8),
        }.get(mc),
    )
    for mc in MODEL_CLASSES
}


def test_model_classes_are_transformers_classes() -> None:
    assert len(MODEL_CLASSES) == len(set(MODEL_CLASSES)) == 8
    for mc in MODEL_CLASSES:
        assert issubclass(getattr(transformers, mc), transformers.PerceiverPreTrainedModel)
    assert set(MODEL_CLASSES) > LABEL_CLASSES


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def test_language_perceiver_parameter_count() -> None:
    # 4 bytes/param x 201,108,230 = 804,432,920 B vs the hub's pytorch_model.bin 804,615,599 B.
    assert hf_param_count("PerceiverForMaskedLM", LANGUAGE_PERCEIVER) == 201_108_230


def test_default_config_masked_lm_parameter_count() -> None:
    assert hf_param_count("PerceiverForMaskedLM", {}) == 269_319_430


def test_meta_build_has_no_storage_and_matches_cpu_shapes() -> None:
    meta = build_hf_model("PerceiverForMaskedLM", TINY, device="meta")
    cpu = build_hf_model("PerceiverForMaskedLM", TINY, device="cpu")
    assert all(p.is_meta for p in meta.parameters())
    assert hf_param_shapes(meta) == hf_param_shapes(cpu)


def test_param_shapes_are_unique_tensors() -> None:
    shapes = hf_param_shapes(build_hf_model("PerceiverForMaskedLM", TINY))
    # The output projection is tied by call to the input embedding: only its bias is a tensor.
    assert shapes["embedding_decoder.bias"] == (11,)
    assert not any(k.startswith("embedding_decoder.") and k.endswith("weight") for k in shapes)
    assert shapes["perceiver.input_preprocessor.embeddings.weight"] == (11, 8)
    assert shapes["perceiver.embeddings.latents"] == (3, 4)
    # num_blocks re-applies the same layers: 2 self_attends, not num_blocks x 2.
    assert {k.split(".")[3] for k in shapes if ".self_attends." in k} == {"0", "1"}


def test_buffers_only_in_conv_classifier() -> None:
    for mc in MODEL_CLASSES:
        buffers = hf_buffer_shapes(build_hf_model(mc, TINY))
        if mc == "PerceiverForImageClassificationConvProcessing":
            prefix = "perceiver.input_preprocessor.convnet.batchnorm."
            assert buffers == {
                prefix + "running_mean": (64,),
                prefix + "running_var": (64,),
                prefix + "num_batches_tracked": (),
            }
        else:
            assert buffers == {}, mc


def test_hf_config_passes_fields_through() -> None:
    cfg = hf_config({"d_latents": 12, "num_labels": 5, "_label_trainable_num_channels": 7})
    assert (cfg.d_latents, cfg.num_labels, cfg._label_trainable_num_channels) == (12, 5, 7)


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


def test_language_perceiver_forward_flops() -> None:
    result = hf_flops(
        "PerceiverForMaskedLM", LANGUAGE_PERCEIVER, Workload(batch_size=1, seq_len=2048)
    )
    assert result.device == "meta"
    assert result.total == 120_949_047_296
    assert sum(result.by_op.values()) == result.total
    assert set(result.by_op) == {"aten.addmm", "aten.bmm", "aten.mm"}
    m = result.by_module
    # Keys are transformers' module paths; the root ("") is inclusive of everything.
    assert m[""] == result.total
    assert m["perceiver"] + m["embedding_decoder"] == result.total
    assert (
        m["perceiver.encoder.cross_attention"]
        + sum(m[f"perceiver.encoder.self_attends.{i}"] for i in range(26))
        == m["perceiver.encoder"]
    )
    assert m["perceiver.encoder"] + m["perceiver.decoder"] == m["perceiver"]
    # The tied output projection (B·P·C·V MACs) is a plain matmul inside embedding_decoder.
    assert m["embedding_decoder"] == result.by_op["aten.mm"] == 2 * 2048 * 768 * 262


def test_repeated_self_attends_accumulate_under_one_key() -> None:
    one = hf_flops("PerceiverModel", {**TINY, "num_blocks": 1}, Workload(seq_len=4))
    three = hf_flops("PerceiverModel", {**TINY, "num_blocks": 3}, Workload(seq_len=4))
    key = "encoder.self_attends.1"
    assert three.by_module[key] == 3 * one.by_module[key] > 0
    assert three.by_module["encoder.cross_attention"] == one.by_module["encoder.cross_attention"]
    assert not any(
        k.startswith("Global") or k.startswith("PerceiverModel") for k in three.by_module
    )


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("backward", [False, True])
def test_meta_flops_equal_cpu_flops(model_class: str, backward: bool) -> None:
    """The meta run (with the no-padding mask stand-in) counts exactly what a CPU run counts."""
    w = replace(TINY_WORKLOAD[model_class], with_labels=backward and model_class in LABEL_CLASSES)
    meta = hf_flops(model_class, TINY, w, backward=backward)
    cpu = hf_flops(model_class, TINY, w, backward=backward, device="cpu")
    assert meta.device == "meta" and cpu.device == "cpu"
    assert meta.total == cpu.total > 0
    assert meta.by_module == cpu.by_module
    assert meta.by_op == cpu.by_op


def test_backward_flops_add_to_forward() -> None:
    w = TINY_WORKLOAD["PerceiverForSequenceClassification"]
    fwd = hf_flops("PerceiverForSequenceClassification", TINY, w)
    both = hf_flops("PerceiverForSequenceClassification", TINY, w, backward=True)
    # Every linear's forward addmm reappears unchanged; backward adds grad matmuls (mm, bmm).
    assert both.by_op["aten.addmm"] == fwd.by_op["aten.addmm"]
    assert both.by_op["aten.bmm"] == 3 * fwd.by_op["aten.bmm"]
    assert 2 * fwd.total < both.total <= 3 * fwd.total


def test_flops_scale_linearly_with_batch() -> None:
    for mc in MODEL_CLASSES:
        w = TINY_WORKLOAD[mc]
        one = hf_flops(mc, TINY, replace(w, batch_size=1))
        three = hf_flops(mc, TINY, replace(w, batch_size=3))
        assert three.total == 3 * one.total, mc
        # No matmul is issued directly by the root or by `perceiver`: children sum to parents.
        m = one.by_module
        assert sum(v for k, v in m.items() if k and "." not in k) == m[""] == one.total, mc
        if "perceiver" in m:
            children = (v for k, v in m.items() if k.startswith("perceiver.") and k.count(".") == 1)
            assert sum(children) == m["perceiver"], mc


# --------------------------------------------------------------------------------------------
# Accept / reject oracle
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_tiny_configs_run(model_class: str) -> None:
    assert hf_outcome(model_class, TINY, TINY_WORKLOAD[model_class]).kind == "ok"


def test_fourier_default_config_fails_to_build() -> None:
    outcome = hf_outcome("PerceiverForImageClassificationFourier", {})
    assert outcome.kind == "build_error"
    assert outcome.exc_type == "ValueError"
    assert "261" in outcome.message and "8" in outcome.message
    assert "qk_channels" in outcome.message


@pytest.mark.parametrize(
    ("model_class", "config", "workload", "kind", "exc_type"),
    [
        # Self-attention value width != d_latents: builds, then the residual add fails.
        ("PerceiverModel", {"v_channels": 8}, Workload(seq_len=3), "forward_error", "RuntimeError"),
        # Text longer than max_position_embeddings: position-embedding lookup out of range.
        ("PerceiverForMaskedLM", {}, Workload(seq_len=6), "forward_error", "IndexError"),
        # Shorter text trains: the harness pads the labels to the B·max_position_embeddings
        # decoder positions with -100, as a MaskedLM user must (tests/test_parity.py).
        ("PerceiverForMaskedLM", {}, Workload(seq_len=4, with_labels=True), "ok", ""),
        ("PerceiverForMaskedLM", {}, Workload(seq_len=5, with_labels=True), "ok", ""),
        ("PerceiverForOpticalFlow", {}, Workload(with_labels=True),
         "forward_error", "NotImplementedError"),
        # Learned: image_size must be an int (config.image_size**2).
        ("PerceiverForImageClassificationLearned", {"image_size": [2, 2]},
         Workload(image_size=(2, 2)), "build_error", "TypeError"),
        ("PerceiverForMultimodalAutoencoding", {"output_shape": [1, 2, 4]},
         TINY_WORKLOAD["PerceiverForMultimodalAutoencoding"], "build_error", "ValueError"),
        # A wrong type is refused by PerceiverConfig itself (strict dataclass).
        ("PerceiverModel", {"qk_channels": "4"}, Workload(), "build_error",
         "StrictDataclassFieldValidationError"),
    ],
)  # fmt: skip
def test_outcome_facts(
    model_class: str, config: dict[str, Any], workload: Workload, kind: str, exc_type: str
) -> None:
    outcome = hf_outcome(model_class, {**TINY, **config}, workload)
    assert (outcome.kind, outcome.exc_type) == (kind, exc_type), outcome.message


def test_outcome_refuses_big_models() -> None:
    with pytest.raises(ValueError, match="too big"):
        hf_outcome("PerceiverForMaskedLM", LANGUAGE_PERCEIVER)


# --------------------------------------------------------------------------------------------
# Saved activations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_saved_activations_are_deterministic(model_class: str) -> None:
    w = replace(
        TINY_WORKLOAD[model_class],
        training=True,
        with_labels=model_class in LABEL_CLASSES,
        seq_len=5 if model_class == "PerceiverForMaskedLM" else None,
    )
    first = hf_saved_activations(model_class, TINY, w)
    second = hf_saved_activations(model_class, TINY, w, seed=1)
    assert first == second
    assert first.total_bytes == sum(first.by_dtype.values()) > 0


def test_saved_activations_exclude_parameters() -> None:
    """Autograd does save parameter storages (transposed weights for addmm, the latents
    expanded over the batch as layernorm1's input); the harness counts everything else."""
    cfg = {**TINY, "attention_probs_dropout_prob": 0.0}
    w = Workload(batch_size=2, seq_len=4, training=True)
    model = build_hf_model("PerceiverModel", cfg, device="cpu")
    model.train()
    params = {p.untyped_storage().data_ptr(): p for p in model.parameters()}
    packed: dict[int, int] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        keep.append(t)
        packed[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**make_inputs("PerceiverModel", cfg, w)).last_hidden_state.sum()
    latents = model.embeddings.latents.untyped_storage().data_ptr()
    assert latents in packed
    param_bytes = sum(n for ptr, n in packed.items() if ptr in params)
    measured = hf_saved_activations("PerceiverModel", cfg, w)
    assert measured.total_bytes == sum(packed.values()) - param_bytes
    assert measured.num_storages == len(packed) - sum(ptr in params for ptr in packed)
    # Token ids are saved for the embedding backward: int64 (B, M), plus position ids (M,).
    text = hf_saved_activations("PerceiverForSequenceClassification", cfg, w)
    assert text.by_dtype["torch.int64"] == 8 * (2 * 4 + 4)


def test_dropout_adds_mask_and_output_per_attention_on_cpu() -> None:
    """CPU dropout saves a float32 mask and its output (the softmax output is saved anyway):
    2 x 4 bytes x (B·H·N·M cross + B·H·N·N self) more than with p = 0 (no dropout op)."""
    b, n, m, h = 2, 3, 5, 2
    cfg = {**TINY, "num_latents": n, "num_self_attends_per_block": 1, "num_blocks": 1}
    cfg.update(num_self_attention_heads=h, num_cross_attention_heads=h)
    w = Workload(batch_size=b, seq_len=m, training=True)
    p0 = hf_saved_activations("PerceiverModel", {**cfg, "attention_probs_dropout_prob": 0.0}, w)
    p1 = hf_saved_activations("PerceiverModel", {**cfg, "attention_probs_dropout_prob": 0.1}, w)
    assert p1.total_bytes - p0.total_bytes == 2 * 4 * (b * h * n * m + b * h * n * n)
    assert p1.num_storages - p0.num_storages == 4


def test_saved_activations_reject_unsupported_labels() -> None:
    with pytest.raises(ValueError, match="no loss"):
        hf_saved_activations("PerceiverForOpticalFlow", TINY, Workload(with_labels=True))


# --------------------------------------------------------------------------------------------
# Inputs, workloads and the strategies
# --------------------------------------------------------------------------------------------


def test_workload_defaults() -> None:
    r = resolve_workload("PerceiverForMaskedLM", TINY, Workload())
    assert r.seq_len == 5
    r = resolve_workload("PerceiverForImageClassificationLearned", TINY, Workload())
    assert r.image_size == (2, 2)
    r = resolve_workload("PerceiverForImageClassificationFourier", TINY, Workload())
    assert r.image_size == (224, 224)
    r = resolve_workload("PerceiverForOpticalFlow", TINY, Workload())
    assert r.image_size == (2, 3)
    r = resolve_workload("PerceiverForMultimodalAutoencoding", {}, Workload())
    assert (r.num_frames, r.audio_samples, r.image_size) == (16, 30720, (56, 56))
    # transformers' example: 128 chunks of (16·224·224) image and (30720/16) audio queries.
    assert (r.subsampled_image_points, r.subsampled_audio_points) == (6272, 15)


def test_make_inputs_shapes() -> None:
    kw = make_inputs("PerceiverForMultimodalAutoencoding", TINY, Workload(batch_size=2))
    assert kw["inputs"]["image"].shape == (2, 2, 3, 2, 2)
    assert kw["inputs"]["audio"].shape == (2, 8, 1)
    assert kw["inputs"]["label"].shape == (2, 3)
    assert kw["subsampled_output_points"]["image"].tolist() == [0]
    kw = make_inputs("PerceiverForOpticalFlow", TINY, Workload(), device="meta")
    assert kw["inputs"].shape == (1, 2, 27, 2, 3) and kw["inputs"].is_meta
    with pytest.raises(ValueError):
        make_inputs("PerceiverModel", TINY, Workload(with_labels=True))


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@settings(max_examples=4)
@given(data=st.data())
def test_valid_configs_and_workloads_run(model_class: str, data: st.DataObject) -> None:
    config = data.draw(valid_config(model_class), label="config")
    workload = data.draw(workload_for(model_class, config), label="workload")
    outcome = hf_outcome(model_class, config, workload)
    assert outcome.kind == "ok", outcome


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@settings(max_examples=4)
@given(data=st.data())
def test_broken_configs_are_refused(model_class: str, data: st.DataObject) -> None:
    config, rule = data.draw(broken_config(model_class), label="config")
    assert rule in BREAKABLE_RULES
    workload = data.draw(workload_for(model_class, config), label="workload")
    outcome = hf_outcome(model_class, config, workload)
    if rule.startswith("edge:"):
        return  # not a known rule: transformers decides, the property tests compare
    assert outcome.kind != "ok", (rule, config)
