"""Parameter counts against transformers' real models (built on the meta device).

Every tensor name and shape, not only the total, must equal transformers'. Pinned: the
published deepmind checkpoints (whose weight-file sizes confirm these totals) and
transformers' default config for every class that builds with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perceiver_calc as pc
from tests.hf_truth import MODEL_CLASSES, build_hf_model, hf_buffer_shapes, hf_param_shapes
from tests.strategies import valid_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Totals of the public deepmind checkpoints (hub weight files: ~4 bytes per parameter, e.g.
# language-perceiver pytorch_model.bin 804,615,599 B = 4 x 201,108,230 + pickle overhead).
CHECKPOINTS = {
    "language-perceiver": ("PerceiverForMaskedLM", 201_108_230),
    "vision-perceiver-learned": ("PerceiverForImageClassificationLearned", 62_255_848),
    "vision-perceiver-fourier": ("PerceiverForImageClassificationFourier", 48_440_627),
    "vision-perceiver-conv": ("PerceiverForImageClassificationConvProcessing", 48_646_522),
    "optical-flow-perceiver": ("PerceiverForOpticalFlow", 41_057_134),
    "multimodal-perceiver": ("PerceiverForMultimodalAutoencoding", 19_858_855),
}


def hf_dict(config_json: dict[str, Any]) -> dict[str, Any]:
    """The keys transformers.PerceiverConfig takes from a config.json."""
    return {k: v for k, v in config_json.items() if k not in ("architectures",)}


def assert_matches_transformers(model_class: str, config: dict[str, Any]) -> pc.ParamCounts:
    counts = pc.count_params(pc.resolve(pc.load_config(config), model_class))
    hf = build_hf_model(model_class, config, device="meta")
    assert counts.tensors == hf_param_shapes(hf)
    assert counts.buffers == hf_buffer_shapes(hf)
    assert counts.total == sum(p.numel() for p in hf.parameters())
    assert counts.trainable == sum(p.numel() for p in hf.parameters() if p.requires_grad)
    # Per module: every transformers parameter falls in exactly one resolved module.
    for path, n in counts.by_module.items():
        hf_n = sum(p.numel() for name, p in hf.named_parameters() if name.startswith(path + "."))
        assert n == hf_n, path
    return counts


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_deepmind_checkpoints(name: str) -> None:
    model_class, total = CHECKPOINTS[name]
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    resolved = pc.resolve(pc.load_config(data))
    assert resolved.model == model_class
    counts = assert_matches_transformers(model_class, hf_dict(data))
    assert counts.total == total


def test_language_perceiver_breakdown() -> None:
    data = json.loads((EXAMPLES / "language-perceiver.json").read_text())
    counts = pc.count_params(pc.resolve(pc.load_config(data)))
    by = counts.by_module
    assert by["perceiver.encoder.cross_attention"] == 6_434_816
    # the shared block is one entry (transformers' ModuleList path) for its 26 layers
    assert by["perceiver.encoder.self_attends"] == 187_712_512 == 26 * 7_219_712
    assert counts.copies == {"perceiver.encoder.self_attends": 26}
    assert by["perceiver.decoder.decoding_cross_attention"] == 3_286_016
    # Tied output projection: only the bias is new.
    assert by["embedding_decoder"] == 262
    assert "embedding_decoder.weight" not in counts.tensors


@pytest.mark.parametrize(
    ("model_class", "total"),
    [
        ("PerceiverModel", 262_686_208),
        ("PerceiverForMaskedLM", 269_319_430),
        ("PerceiverForSequenceClassification", 274_309_890),
        ("PerceiverForImageClassificationLearned", 272_093_442),
    ],
)
def test_transformers_defaults(model_class: str, total: int) -> None:
    counts = assert_matches_transformers(model_class, {})
    assert counts.total == total


@pytest.mark.parametrize(
    "model_class",
    [
        "PerceiverForImageClassificationFourier",
        "PerceiverForImageClassificationConvProcessing",
        "PerceiverForOpticalFlow",
        "PerceiverForMultimodalAutoencoding",
    ],
)
def test_transformers_defaults_that_do_not_build(model_class: str) -> None:
    """Their preprocessor width (261, 322, 322, 405) is not divisible by the default 8
    cross-attention heads: transformers raises, and so does perceiver-calc, naming the fix."""
    with pytest.raises(ValueError, match="must be divisible by num_heads"):
        build_hf_model(model_class, {}, device="meta")
    with pytest.raises(pc.ConfigError) as info:
        pc.resolve(pc.PerceiverConfig(), model_class)
    (err,) = info.value.errors
    assert err.code == "heads_divide_qk_channels"
    assert err.module == "perceiver.encoder.cross_attention"
    assert "num_cross_attention_heads" in err.fields


def test_decoder_overrides_change_only_the_decoder() -> None:
    base = pc.count_params(pc.resolve(pc.PerceiverConfig(), "PerceiverForMaskedLM"))
    wider = pc.count_params(
        pc.resolve(pc.PerceiverConfig(decoder_qk_channels=512), "PerceiverForMaskedLM")
    )
    changed = {k for k in base.by_module if base.by_module[k] != wider.by_module[k]}
    assert changed == {"perceiver.decoder.decoding_cross_attention"}
    # query and key grow by (C + D) x 256 weights and 256 biases each... exactly:
    c, d = 768, 1280
    assert wider.total - base.total == 256 * (c + 1) + 256 * (d + 1)


def test_defaults_of_hardcoded_fields_reproduce_transformers() -> None:
    """Setting each hardcoded field to transformers' own value changes nothing."""
    explicit = pc.PerceiverConfig(
        decoder_num_heads=8,
        decoder_qk_channels=256,
        decoder_v_channels=768,
        decoder_widening_factor=1,
        decoder_use_query_residual=False,
        decoder_final_project=False,
    )
    a = pc.count_params(pc.resolve(pc.PerceiverConfig(), "PerceiverForMaskedLM"))
    b = pc.count_params(pc.resolve(explicit, "PerceiverForMaskedLM"))
    assert a == b


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@settings(deadline=None)
@given(data=st.data())
def test_params_equal_transformers(model_class: str, data: st.DataObject) -> None:
    """Property: for any valid config, every tensor equals transformers' (names and shapes)."""
    config = data.draw(valid_config(model_class))
    assert_matches_transformers(model_class, config)
