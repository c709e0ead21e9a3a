"""Validity parity with transformers 5.24, case by case (issue 10): each test runs transformers
on the config (tests.hf_truth: build + one forward, or the config class alone) and asserts its
outcome, then asserts perceiver-calc's verdict on the same config.
"""

from __future__ import annotations

from typing import Any

import pytest
import transformers

import perceiver_calc as pc
from perceiver_calc.flops import count_flops
from perceiver_calc.memory import bytes_per_element, saved_tensors
from perceiver_calc.params import count_params
from perceiver_calc.workload import Workload, check_workload
from tests import hf_truth
from tests.hf_truth import hf_outcome

SMALL: dict[str, Any] = {
    "num_latents": 4,
    "d_latents": 8,
    "d_model": 8,
    "num_blocks": 1,
    "num_self_attends_per_block": 1,
    "num_self_attention_heads": 1,
    "num_cross_attention_heads": 1,
    "vocab_size": 5,
    "max_position_embeddings": 6,
}
MULTIMODAL: dict[str, Any] = {
    "num_frames": 2,
    "audio_samples_per_frame": 16,
    "samples_per_patch": 16,
    "output_shape": [1, 2, 8, 8],
    "image_size": 8,
    "output_num_channels": 8,
    "_label_trainable_num_channels": 8,
}


def ours(
    model_class: str, config: dict[str, Any], workload: Workload | None = None
) -> tuple[bool, list[pc.Finding]]:
    """perceiver-calc's verdict (accepted?) and its findings, config then workload."""
    try:
        resolved = pc.resolve(pc.load_config(config), model_class)
    except pc.ConfigError as err:
        return False, list(err.findings)
    found = list(resolved.findings) + check_workload(resolved, workload or Workload())
    return not any(f.severity == "error" for f in found), found


def codes(findings: list[pc.Finding]) -> set[str]:
    return {f.code for f in findings}


# --- 1. chunk_size_feed_forward --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_class", "extra", "hf_w", "w", "runs", "length"),
    [
        # latents 4: 2 divides, 3 does not (encoder cross-attention and self-attention)
        ("PerceiverModel", {"chunk_size_feed_forward": 2}, None, None, True, 0),
        ("PerceiverModel", {"chunk_size_feed_forward": 3}, None, None, False, 4),
        # the encoder of one cross-attention only is chunked too
        (
            "PerceiverModel",
            {"chunk_size_feed_forward": 3, "num_blocks": 0},
            None,
            None,
            False,
            4,
        ),
        # masked LM decoder: max_position_embeddings (6) queries
        ("PerceiverForMaskedLM", {"chunk_size_feed_forward": 2}, None, None, True, 0),
        ("PerceiverForMaskedLM", {"chunk_size_feed_forward": 4}, None, None, False, 6),
        # classification decoders: 1 query, so any chunk size > 1 fails
        (
            "PerceiverForSequenceClassification",
            {"chunk_size_feed_forward": 2},
            None,
            None,
            False,
            1,
        ),
        ("PerceiverForSequenceClassification", {"chunk_size_feed_forward": 1}, None, None, True, 0),
        # optical flow: H*W decoder queries, known from the workload only
        (
            "PerceiverForOpticalFlow",
            {"chunk_size_feed_forward": 2, "train_size": [2, 3]},
            hf_truth.Workload(image_size=(2, 3)),
            Workload(image_size=(2, 3)),
            True,
            0,
        ),
        (
            "PerceiverForOpticalFlow",
            {"chunk_size_feed_forward": 2, "train_size": [3, 3]},
            hf_truth.Workload(image_size=(3, 3)),
            Workload(image_size=(3, 3)),
            False,
            9,
        ),
        # multimodal: image + audio points + 1 label query
        (
            "PerceiverForMultimodalAutoencoding",
            {"chunk_size_feed_forward": 2, **MULTIMODAL},
            hf_truth.Workload(subsampled_image_points=2, subsampled_audio_points=1),
            Workload(subsampled_image_points=2, subsampled_audio_points=1),
            True,
            0,
        ),
        (
            "PerceiverForMultimodalAutoencoding",
            {"chunk_size_feed_forward": 2, **MULTIMODAL},
            hf_truth.Workload(subsampled_image_points=2, subsampled_audio_points=2),
            Workload(subsampled_image_points=2, subsampled_audio_points=2),
            False,
            5,
        ),
    ],
)
def test_chunk_size_feed_forward(
    model_class: str,
    extra: dict[str, Any],
    hf_w: hf_truth.Workload | None,
    w: Workload | None,
    runs: bool,
    length: int,
) -> None:
    config = {**SMALL, **extra}
    hf = hf_outcome(model_class, config, hf_w)
    c = extra["chunk_size_feed_forward"]
    if runs:
        assert hf.kind == "ok", hf
    else:
        assert hf.kind == "forward_error", hf
        assert f"chunked {length} has to be a multiple of the chunk size {c}" in hf.message
    ok, findings = ours(model_class, config, w)
    assert ok == runs, findings
    if not runs:
        (f,) = [f for f in findings if f.code == "chunk_size_feed_forward"]
        assert f"({length}) must be a multiple of chunk_size_feed_forward ({c})" in f.rule


# --- 2. negative initializer_range -----------------------------------------------------------


@pytest.mark.parametrize(("value", "runs"), [(-0.1, False), (0.0, True), (0.02, True)])
def test_initializer_range_sign(value: float, runs: bool) -> None:
    config = {**SMALL, "initializer_range": value}
    hf = hf_outcome("PerceiverForMaskedLM", config)
    if runs:
        assert hf.kind == "ok", hf
    else:
        assert hf.kind == "build_error" and "normal expects std >= 0.0" in hf.message, hf
    ok, findings = ours("PerceiverForMaskedLM", config)
    assert ok == runs
    if not runs:
        assert codes(findings) == {"initializer_range_negative"}
        assert "initializer_range (-0.1) must be >= 0" in str(findings[0])


# --- 3. float fields: strings and booleans (and ints where transformers wants a float) -------


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("layer_norm_eps", "1e-12", False),
        ("layer_norm_eps", True, False),
        ("layer_norm_eps", 1, False),  # typed float: an int is refused too
        ("layer_norm_eps", None, False),
        ("initializer_range", "0.02", False),
        ("initializer_range", False, False),
        ("initializer_range", 0, False),
        ("attention_probs_dropout_prob", True, False),
        ("attention_probs_dropout_prob", "0.1", False),
        ("attention_probs_dropout_prob", None, False),
        ("attention_probs_dropout_prob", 1, True),  # typed float | int
        ("attention_probs_dropout_prob", 0, True),
        ("layer_norm_eps", 1e-5, True),
        ("initializer_range", 0.5, True),
    ],
)
def test_float_field_types(field: str, value: Any, accepted: bool) -> None:
    try:
        transformers.PerceiverConfig(**{**SMALL, field: value})
    except Exception as exc:  # transformers' strict dataclass validation
        assert type(exc).__name__ == "StrictDataclassFieldValidationError", exc
        hf_accepts = False
    else:
        hf_accepts = True
    assert hf_accepts == accepted
    ok, findings = ours("PerceiverModel", {**SMALL, field: value})
    assert ok == accepted, findings
    if not ok:
        assert [f.fields for f in findings] == [(field,)]


# --- 3b. image_size: a list of any length, a tuple only of two --------------------------------


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ((3,), False),
        ((1, 2, 3), False),
        ((), False),
        ([3], True),
        ([1, 2, 3], True),
        ((3, 4), True),
    ],
)
def test_image_size_tuple_length(value: Any, accepted: bool) -> None:
    """transformers types image_size ``int | list[int] | tuple[int, int]`` (a CI run's fuzz case:
    the Fourier classifier, which never reads image_size, with the tuple (3,))."""
    model_class = "PerceiverForImageClassificationFourier"
    config = {**SMALL, "image_size": value}
    try:
        transformers.PerceiverConfig(**config)
    except Exception as exc:
        assert type(exc).__name__ == "StrictDataclassFieldValidationError", exc
        hf_accepts = False
    else:
        hf_accepts = True
    assert hf_accepts == accepted
    ok, findings = ours(model_class, config)
    assert ok == accepted, findings
    if not ok:
        assert [f.fields for f in findings] == [("image_size",)]
        assert str(findings[0]).startswith(
            f"image_size (a tuple of {len(value)} items): a tuple must have exactly 2 items"
        ), str(findings[0])


# --- 4. num_labels vs id2label ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"num_labels": 3, "id2label": {"0": "a", "1": "b"}}, 3),
        ({"num_labels": 1, "id2label": {"0": "a", "1": "b"}}, 1),
        ({"id2label": {"0": "a", "00": "b"}}, 1),
        ({"id2label": {"0": "a", "00": "b", "1": "c"}}, 2),
        ({"num_labels": 3, "id2label": {}}, 3),
        ({"id2label": {"0": "a", "1": "b", "2": "c"}}, 3),
        ({"num_labels": 5}, 5),
    ],
)
def test_num_labels_as_transformers_counts(labels: dict[str, Any], expected: int) -> None:
    config = {**SMALL, **labels}
    assert transformers.PerceiverConfig(**config).num_labels == expected
    assert pc.load_config(config).num_labels == expected
    model_class = "PerceiverForSequenceClassification"
    assert hf_outcome(model_class, config).kind == "ok"
    assert count_params(pc.resolve(pc.load_config(config), model_class)).total == (
        hf_truth.hf_param_count(model_class, config)
    )


# --- 5. num_blocks 0 with a self-attention v width != d_latents ------------------------------


@pytest.mark.parametrize("model_class", ["PerceiverModel", "PerceiverForMaskedLM"])
def test_unexecuted_self_attention_width(model_class: str) -> None:
    config = {**SMALL, "num_blocks": 0, "v_channels": 4}
    assert hf_outcome(model_class, config).kind == "ok"
    ok, findings = ours(model_class, config)
    assert ok, findings
    assert "self_attention_width_unused" in codes(findings)
    resolved = pc.resolve(pc.load_config(config), model_class)
    assert count_params(resolved).total == hf_truth.hf_param_count(model_class, config)
    w = hf_truth.Workload()
    assert (
        count_flops(resolved, Workload()).forward == hf_truth.hf_flops(model_class, config, w).total
    )
    # with one block the same layers run, and fail
    broken = {**config, "num_blocks": 1}
    assert hf_outcome(model_class, broken).kind == "forward_error"
    ok, findings = ours(model_class, broken)
    assert not ok and "self_attention_width" in codes(findings)


# --- 6. masked LM training on inputs shorter than max_position_embeddings --------------------


@pytest.mark.parametrize(("seq_len", "batch"), [(3, 1), (1, 2), (6, 1)])
def test_masked_lm_training_short_inputs(seq_len: int, batch: int) -> None:
    model_class = "PerceiverForMaskedLM"
    config = {**SMALL, "attention_probs_dropout_prob": 0.0}
    hw = hf_truth.Workload(batch_size=batch, seq_len=seq_len, training=True, with_labels=True)
    assert hf_outcome(model_class, config, hw).kind == "ok"
    w = Workload(batch_size=batch, seq_len=seq_len, mode="training")
    ok, findings = ours(model_class, config, w)
    assert ok, findings
    resolved = pc.resolve(pc.load_config(config), model_class)
    counts = count_flops(resolved, w)
    both = hf_truth.hf_flops(model_class, config, hw, backward=True)
    assert counts.forward + counts.backward == both.total
    measured = hf_truth.hf_saved_activations(model_class, config, hw, device="cpu")
    tensors = saved_tensors(resolved, w, with_labels=True)
    ours_bytes = sum(t.elements * bytes_per_element(t.kind, "fp32", "cpu") for t in tensors)
    assert ours_bytes == measured.total_bytes, measured.by_dtype


# --- 7. tensors whose bytes overflow int64 ---------------------------------------------------


def test_parameter_bytes_overflow() -> None:
    """vocab_size x d_model = (2**31 - 1)**2 elements fits in int64, 4x that in bytes does not."""
    import torch

    big = 2**31 - 1
    config = {**SMALL, "vocab_size": big, "d_model": big}
    with pytest.raises(RuntimeError, match="Storage size calculation overflowed"):
        torch.empty((big, big), dtype=torch.float32, device="meta")
    with pytest.raises(RuntimeError, match="Storage size calculation overflowed"):
        hf_truth.build_hf_model("PerceiverForSequenceClassification", config, device="meta")
    ok, findings = ours("PerceiverForSequenceClassification", config)
    assert not ok
    f = next(f for f in findings if f.code == "tensor_bytes_too_large")
    assert "embeddings.weight" in f.rule and "2**63 - 1 bytes" in f.rule


def test_activation_bytes_overflow() -> None:
    """Self-attention scores (B, 1, N, N) = 2**30 * 2**16 * 2**16 = 2**62 elements fit in int64;
    their fp32 bytes (2**64) do not, and transformers' forward (meta device) raises."""
    import torch

    config = {**SMALL, "num_latents": 2**16}
    w = hf_truth.Workload(batch_size=2**30, seq_len=2)
    model = hf_truth.build_hf_model("PerceiverModel", config, device="meta")
    kwargs = hf_truth.make_inputs("PerceiverModel", config, w, device="meta")
    overflow = pytest.raises(RuntimeError, match="Storage size calculation overflowed")
    with torch.no_grad(), hf_truth._meta_safe("meta"), overflow:
        model(**kwargs)
    ok, findings = ours("PerceiverModel", config, Workload(batch_size=2**30, seq_len=2))
    assert not ok
    (f,) = [f for f in findings if f.code == "activation_bytes_too_large"]
    assert "4.612e+18 elements, 1.845e+19 bytes in fp32" in f.rule
    # half the batch: 2**63 bytes is still one too many (torch: 2**61 fp32 elements overflow,
    # 2**61 - 1 do not); a quarter fits
    with pytest.raises(RuntimeError, match="Storage size calculation overflowed"):
        torch.empty(2**61, dtype=torch.float32, device="meta")
    assert torch.empty(2**61 - 1, dtype=torch.float32, device="meta").numel() == 2**61 - 1
    assert not ours("PerceiverModel", config, Workload(batch_size=2**29, seq_len=2))[0]
    assert ours("PerceiverModel", config, Workload(batch_size=2**28, seq_len=2))[0]


# --- 8. deliberate refusals (docs/conventions.md "Deliberate refusals") ----------------------


@pytest.mark.parametrize(
    ("model_class", "extra", "field", "reason"),
    [
        # transformers' @strict PerceiverConfig checks types only (configuration_perceiver.py
        # L73-101): 0 latents, a 0 width, a negative field the class never reads all build/run
        ("PerceiverModel", {"num_latents": 0}, "num_latents", "count <= 0"),
        ("PerceiverModel", {"d_latents": 0}, "d_latents", "count <= 0"),
        ("PerceiverForSequenceClassification", {"num_labels": 0}, "num_labels", "count <= 0"),
        (
            "PerceiverForImageClassificationFourier",
            {"vocab_size": -1, "num_cross_attention_heads": 1},
            "vocab_size",
            "count <= 0",
        ),
        # pytorch_utils.py L175: apply_chunking_to_forward chunks only `if chunk_size > 0`
        (
            "PerceiverForMaskedLM",
            {"chunk_size_feed_forward": -1},
            "chunk_size_feed_forward",
            "count <= 0",
        ),
        # configuration_utils.py L420 (chunk_size_feed_forward: int, not type-checked) and
        # L568-572 (num_labels setter: range(True) is one label)
        (
            "PerceiverForMaskedLM",
            {"chunk_size_feed_forward": True},
            "chunk_size_feed_forward",
            "bool/float count",
        ),
        (
            "PerceiverForSequenceClassification",
            {"num_labels": True},
            "num_labels",
            "bool/float count",
        ),
        # modeling_perceiver.py L1014-1033: an unknown problem_type matches no loss branch
        (
            "PerceiverForSequenceClassification",
            {"problem_type": "bogus"},
            "problem_type",
            "unknown problem_type",
        ),
        # configuration_utils.py L560-565: num_labels = len(id2label) = 0
        ("PerceiverForSequenceClassification", {"id2label": {}}, "id2label", "zero labels"),
    ],
)
def test_deliberate_refusals(
    model_class: str, extra: dict[str, Any], field: str, reason: str
) -> None:
    """transformers builds and runs these; perceiver-calc refuses them on purpose, naming the
    field, and the differential fuzzer (tests/differential.py) tolerates exactly such refusals."""
    from tests.differential import documented_refusal

    config = {**SMALL, **extra}
    hw = hf_truth.Workload(image_size=(2, 2)) if "Image" in model_class else None
    assert hf_outcome(model_class, config, hw).kind == "ok"
    ok, findings = ours(model_class, config, Workload(image_size=(2, 2)) if hw else None)
    assert not ok
    errors = [f for f in findings if f.severity == "error"]
    assert [f.fields for f in errors] == [(field,)]
    assert documented_refusal(errors) == reason


@pytest.mark.parametrize(
    ("model_class", "extra", "text"),
    [
        # a float chunk size reaches tensor.chunk(num_chunks: float) (pytorch_utils.py L190-193)
        ("PerceiverForMaskedLM", {"chunk_size_feed_forward": 2.0}, "must be int, not float"),
        # num_labels setter: range(2.0) (configuration_utils.py L572)
        (
            "PerceiverForSequenceClassification",
            {"num_labels": 2.0},
            "cannot be interpreted as an integer",
        ),
    ],
)
def test_float_counts_fail_in_transformers_too(
    model_class: str, extra: dict[str, Any], text: str
) -> None:
    config = {**SMALL, **extra}
    hf = hf_outcome(model_class, config)
    assert not hf.ok and text in hf.message, hf
    assert not ours(model_class, config)[0]
