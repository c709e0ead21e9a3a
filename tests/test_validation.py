"""Accept/reject: perceiver-calc rejects exactly the configs transformers refuses to build or
whose forward pass crashes, and accepts every config that works.

The oracle is transformers itself (tests.hf_truth.hf_outcome: build on CPU, run one forward on
a valid input). Configs come from tests.strategies: valid ones built constructively, and valid
ones with one rule broken.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perceiver_calc as pc
from perceiver_calc.workload import Workload, check_workload
from tests.hf_truth import MODEL_CLASSES, hf_outcome
from tests.strategies import broken_config, valid_config


def calculator_accepts(model_class: str, config: dict[str, Any]) -> tuple[bool, str]:
    """perceiver-calc's verdict for the config and the default workload, which is the input
    tests.hf_truth.Workload() feeds transformers (same names, same defaults)."""
    try:
        resolved = pc.resolve(pc.load_config(config), model_class)
    except pc.ConfigError as err:
        return False, str(err)
    errors = [f for f in check_workload(resolved, Workload()) if f.severity == "error"]
    return not errors, "; ".join(map(str, errors))


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@settings(deadline=None)
@given(data=st.data())
def test_accepts_exactly_what_transformers_runs(model_class: str, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="broken"):
        config, rule = data.draw(broken_config(model_class), label="broken config")
    else:
        config, rule = data.draw(valid_config(model_class), label="valid config"), "none"
    ours, why = calculator_accepts(model_class, config)
    theirs = hf_outcome(model_class, config)
    assert ours == theirs.ok, (
        f"rule broken: {rule}; perceiver-calc {'accepts' if ours else 'rejects: ' + why}; "
        f"transformers: {theirs.kind} {theirs.exc_type}: {theirs.message}"
    )


@pytest.mark.parametrize(
    ("model_class", "config", "code", "text"),
    [
        (
            "PerceiverForMaskedLM",
            {"qk_channels": 256},
            "self_attention_width",
            "self-attention v_channels (256, from qk_channels of this layer (qk_channels)) must "
            "equal d_latents (1280): the query residual adds a width-256 output to width-1280 "
            "latents (forward pass fails) [perceiver.encoder.self_attends.*]; set v_channels to "
            "1280 (qk_channels may stay 256)",
        ),
        (
            "PerceiverForImageClassificationFourier",
            {},
            "heads_divide_qk_channels",
            "qk_channels (261 = kv_dim (qk_channels unset, cross_attention_shape_for_attention "
            "'kv')) must be divisible by num_cross_attention_heads (8) "
            "[perceiver.encoder.cross_attention]; choose num_cross_attention_heads dividing 261 "
            "(gcd(261, 8) = 1 does), or set qk_channels to a multiple of 8 (256, 264)",
        ),
        (
            "PerceiverForMaskedLM",
            {"d_latents": 1001},
            "d_latents_divisible_by_num_self_attention_heads",
            "d_latents (1001) must be divisible by num_self_attention_heads (8) "
            "[perceiver.encoder]; choose d_latents as a multiple of 8 or change "
            "num_self_attention_heads",
        ),
        (
            "PerceiverForSequenceClassification",
            {"cross_attention_shape_for_attention": "both"},
            "cross_attention_shape",
            "cross_attention_shape_for_attention ('both') must be 'q' or 'kv' when a "
            "cross-attention's qk_channels is unset [perceiver.encoder.cross_attention]; use "
            "'kv' (transformers' default) or 'q'",
        ),
        (
            "PerceiverForMultimodalAutoencoding",
            {"num_cross_attention_heads": 1, "output_shape": [16, 224, 224]},
            "output_shape_rank",
            "output_shape ([16, 224, 224]) must have rank 4 (batch, frames, height, width) "
            "[perceiver.decoder.modalities.image]; give four numbers, e.g. [1, 16, 224, 224]",
        ),
        (
            "PerceiverForImageClassificationLearned",
            {"image_size": [224, 224]},
            "image_size_int",
            "image_size ([224, 224]) must be one whole number for "
            "PerceiverForImageClassificationLearned (it builds image_size**2 positions) "
            "[perceiver.input_preprocessor.position_embeddings]; give the side of the square "
            "image, e.g. 224",
        ),
    ],
)
def test_error_text_pinned(model_class: str, config: dict[str, Any], code: str, text: str) -> None:
    with pytest.raises(pc.ConfigError) as info:
        pc.resolve(pc.load_config(config), model_class)
    match = [f for f in info.value.errors if f.code == code]
    assert match, info.value
    assert str(match[0]) == text
    # transformers agrees that this config does not work.
    assert not hf_outcome_for_pinned(model_class, config)


def hf_outcome_for_pinned(model_class: str, config: dict[str, Any]) -> bool:
    """Build on meta only (these configs are checkpoint-sized): a build error is a verdict; a
    config that builds must fail in the forward pass, which the property test covers on tiny
    configs (self_attention_width)."""
    from tests.hf_truth import build_hf_model

    try:
        build_hf_model(model_class, config, device="meta")
    except Exception:
        return False
    return model_class == "PerceiverForMaskedLM" and "qk_channels" not in config


def test_all_errors_at_once() -> None:
    config = {"d_latents": 1001, "qk_channels": 100, "cross_attention_shape_for_attention": "x"}
    with pytest.raises(pc.ConfigError) as info:
        pc.resolve(pc.load_config(config), "PerceiverForSequenceClassification")
    codes = sorted(f.code for f in info.value.errors)
    assert codes == sorted(
        [
            "d_latents_divisible_by_num_self_attention_heads",
            "d_latents_divisible_by_num_cross_attention_heads",
            "heads_divide_qk_channels",  # encoder cross-attention, 100 % 8
            "heads_divide_qk_channels",  # self-attention
            "self_attention_width",  # v = qk = 100 != 1001
            "cross_attention_shape",  # the classification decoder has no qk_channels
        ]
    )
