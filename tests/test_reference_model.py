"""The reference model against transformers: same state-dict keys and shapes, same outputs.

For every HF Perceiver class: build HF's model (seeded), build the reference model, load HF's
state dict with strict=True, and compare outputs in fp32 eval mode (atol = rtol = 1e-5) with both
attention kernels. Tiny dims keep the whole file to a few seconds of CPU.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from reference_model import MODEL_CLASSES, build_model  # noqa: E402
from reference_model.flops import register_cpu_sdpa_flop_formula  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ATTENTIONS = ("eager", "sdpa")

warnings.filterwarnings("ignore", module="transformers")


def tiny_config(**overrides: Any) -> Any:
    """A PerceiverConfig small enough to build every class in milliseconds."""
    fields: dict[str, Any] = {
        "num_latents": 5,
        "d_latents": 16,
        "d_model": 16,
        "num_blocks": 2,
        "num_self_attends_per_block": 2,
        "num_self_attention_heads": 2,
        "num_cross_attention_heads": 1,  # image/flow/multimodal K is odd-ish: 1 always divides
        "vocab_size": 11,
        "max_position_embeddings": 7,
        "image_size": 4,
        "num_labels": 3,
        "train_size": [4, 6],
        "num_frames": 2,
        "audio_samples_per_frame": 8,
        "samples_per_patch": 4,
        "output_shape": [1, 2, 8, 8],
        "output_num_channels": 6,
        "_label_trainable_num_channels": 10,
    }
    fields.update(overrides)
    return transformers.PerceiverConfig(**fields)


def example_inputs(model_class: str, config: Any, batch: int = 2) -> dict[str, Any]:
    """Forward kwargs shared by HF's model and the reference model (seeded)."""
    g = torch.Generator().manual_seed(0)
    if model_class == "PerceiverModel":
        return {"inputs": torch.randn(batch, 6, config.d_model, generator=g)}
    if model_class in ("PerceiverForMaskedLM", "PerceiverForSequenceClassification"):
        p = config.max_position_embeddings
        ids = torch.randint(0, config.vocab_size, (batch, p), generator=g)
        mask = torch.ones(batch, p, dtype=torch.long)
        mask[-1, p // 2 :] = 0  # padding: exercises the encoder cross-attention mask
        return {"inputs": ids, "attention_mask": mask}
    if model_class == "PerceiverForImageClassificationLearned":
        s = config.image_size
        return {"inputs": torch.randn(batch, 3, s, s, generator=g)}
    if model_class in (
        "PerceiverForImageClassificationFourier",
        "PerceiverForImageClassificationConvProcessing",
    ):
        return {"inputs": torch.randn(batch, 3, 9, 11, generator=g)}
    if model_class == "PerceiverForOpticalFlow":
        return {"inputs": torch.randn(batch, 2, 27, *config.train_size, generator=g)}
    if model_class == "PerceiverForMultimodalAutoencoding":
        n_audio = config.num_frames * config.audio_samples_per_frame
        return {
            "inputs": {
                "audio": torch.randn(batch, n_audio, 1, generator=g),
                "image": torch.randn(batch, config.num_frames, 3, 8, 8, generator=g),
                "label": torch.zeros(batch, config.num_labels),
            },
            "subsampled_output_points": {
                "audio": torch.arange(0, 3),
                "image": torch.arange(5, 20),
                "label": None,
            },
        }
    raise AssertionError(model_class)


def hf_model(model_class: str, config: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return getattr(transformers, model_class)(config).eval()


def main_output(model_class: str, out: Any) -> Any:
    return out.last_hidden_state if model_class == "PerceiverModel" else out.logits


def assert_same_model(model_class: str, config: Any, attentions: tuple[str, ...] = ATTENTIONS):
    hf = hf_model(model_class, config)
    state = hf.state_dict()
    kwargs = example_inputs(model_class, config)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = main_output(model_class, hf(**kwargs))
    for attention in attentions:
        ref = build_model(config, model_class, attention=attention).eval()
        assert [(k, tuple(v.shape)) for k, v in ref.state_dict().items()] == [
            (k, tuple(v.shape)) for k, v in state.items()
        ]
        assert [(k, tuple(p.shape)) for k, p in ref.named_parameters()] == [
            (k, tuple(p.shape)) for k, p in hf.named_parameters()
        ]
        ref.load_state_dict(state, strict=True)
        with torch.no_grad():
            torch.manual_seed(1)  # multimodal draws Bernoulli masks, as HF does
            got = main_output(model_class, ref(**kwargs))
        if isinstance(expected, dict):
            assert got.keys() == expected.keys()
            for key in expected:
                torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _config_for(model_class: str, **overrides: Any) -> Any:
    if model_class == "PerceiverForMaskedLM":
        # the masked-LM decoder has 8 heads over d_model: d_model % 8 == 0
        overrides = {"num_cross_attention_heads": 2, **overrides}
    return tiny_config(**overrides)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_matches_transformers(model_class: str) -> None:
    assert_same_model(model_class, _config_for(model_class))


@settings(max_examples=6, deadline=None)
@given(
    model_class=st.sampled_from(
        [
            "PerceiverModel",
            "PerceiverForMaskedLM",
            "PerceiverForSequenceClassification",
            "PerceiverForImageClassificationLearned",
        ]
    ),
    head_dim=st.sampled_from([4, 8]),
    heads=st.sampled_from([1, 2]),
    num_blocks=st.integers(1, 2),
    layers=st.integers(0, 2),
    widening=st.integers(1, 2),
    shape=st.sampled_from(["kv", "q"]),
    use_query_residual=st.booleans(),
    set_qk=st.booleans(),
)
def test_matches_transformers_random_configs(
    model_class: str,
    head_dim: int,
    heads: int,
    num_blocks: int,
    layers: int,
    widening: int,
    shape: str,
    use_query_residual: bool,
    set_qk: bool,
) -> None:
    d = heads * head_dim
    overrides: dict[str, Any] = {
        "d_latents": d,
        "d_model": 16,
        "num_self_attention_heads": heads,
        "num_cross_attention_heads": heads,
        "num_blocks": num_blocks,
        "num_self_attends_per_block": layers,
        "self_attention_widening_factor": widening,
        "cross_attention_widening_factor": 3 - widening,
        "cross_attention_shape_for_attention": shape,
        "use_query_residual": use_query_residual,
    }
    if set_qk:  # self-attention v must stay d (residual), qk may shrink
        overrides |= {"qk_channels": heads * 2, "v_channels": d}
    assert_same_model(model_class, _config_for(model_class, **overrides))


def test_bare_model_has_no_logits() -> None:
    config = tiny_config()
    out = build_model(config, "PerceiverModel")(**example_inputs("PerceiverModel", config))
    assert out.logits is None
    assert out.last_hidden_state.shape == (2, config.num_latents, config.d_latents)


def test_default_model_class_from_architectures() -> None:
    config = tiny_config(architectures=["PerceiverForSequenceClassification"])
    assert "perceiver.decoder.decoder.final_layer.weight" in build_model(config).state_dict()
    assert (
        "embedding_decoder.bias"
        in build_model(tiny_config(num_cross_attention_heads=2)).state_dict()
    )


@pytest.mark.parametrize(
    "model_class", ["PerceiverForMaskedLM", "PerceiverForSequenceClassification"]
)
def test_loss_matches_transformers(model_class: str) -> None:
    config = _config_for(model_class)
    hf = hf_model(model_class, config)
    ref = build_model(config, model_class)
    ref.load_state_dict(hf.state_dict(), strict=True)
    ref.eval()
    kwargs = example_inputs(model_class, config)
    if model_class == "PerceiverForMaskedLM":
        labels = kwargs["inputs"].clone()
        labels[0, 0] = -100
    else:
        labels = torch.tensor([0, 2])
    with torch.no_grad():
        expected = hf(**kwargs, labels=labels).loss
        got = ref(**kwargs, labels=labels).loss
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_optional_decoder_and_preprocessor_fields_change_shapes() -> None:
    """perceiver-calc's optional fields (read with getattr) override the class's HF values."""
    config = _config_for("PerceiverForMaskedLM")
    config.decoder_qk_channels = 24
    config.decoder_num_heads = 4
    sd = build_model(config, "PerceiverForMaskedLM").state_dict()
    assert sd["perceiver.decoder.decoding_cross_attention.attention.self.query.weight"].shape == (
        24,
        16,
    )
    config = tiny_config()
    config.preprocessor_out_channels = 32
    config.fourier_num_bands = 8
    sd = build_model(config, "PerceiverForImageClassificationConvProcessing").state_dict()
    assert sd["perceiver.input_preprocessor.convnet.conv.weight"].shape == (32, 3, 7, 7)
    k = 32 + 2 + 2 * 2 * 8  # conv width + 2-D Fourier features with 8 bands
    assert sd["perceiver.encoder.cross_attention.attention.self.key.weight"].shape == (k, k)


def test_eager_flops_equal_transformers() -> None:
    config = _config_for("PerceiverForMaskedLM")
    hf = hf_model("PerceiverForMaskedLM", config)
    ref = build_model(config, "PerceiverForMaskedLM", attention="eager").eval()
    kwargs = {"inputs": example_inputs("PerceiverForMaskedLM", config)["inputs"]}
    counts = []
    for model in (hf, ref):
        with FlopCounterMode(display=False) as counter:
            model(**kwargs)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_cpu_sdpa_flop_formula_counts_like_eager() -> None:
    register_cpu_sdpa_flop_formula()
    assert register_cpu_sdpa_flop_formula() == []  # idempotent
    # equal q/v head widths and no mask: the CPU flash kernel runs (forward and backward)
    config = tiny_config(num_cross_attention_heads=2, qk_channels=16, v_channels=16)
    kwargs = example_inputs("PerceiverModel", config)
    counts = {}
    for attention in ATTENTIONS:
        model = build_model(config, "PerceiverModel", attention=attention)
        with FlopCounterMode(display=False) as counter:
            model(**kwargs).last_hidden_state.sum().backward()
        counts[attention] = counter.get_total_flops()
    assert counts["sdpa"] == counts["eager"] > 0


def test_missing_torch_gives_one_line_message() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import reference_model\n"
        "except ImportError as e:\n    print(type(e).__name__, '|', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == (
        "MissingTorchError | reference_model needs torch: from a clone of perceiver-calc, "
        "pip install -c constraints.txt -e '.[torch]' (constraints.txt pins the CPU wheel)"
    )


def test_fast_path_repacks_after_weight_updates() -> None:
    """The sdpa inference fast path keeps MKL-packed copies of the weights: loading new weights
    in place must rebuild them (the cache is keyed on the parameters' versions)."""
    config = transformers.PerceiverConfig(
        num_latents=4,
        d_latents=16,
        d_model=8,
        num_self_attends_per_block=2,
        num_self_attention_heads=2,
        num_cross_attention_heads=2,
        vocab_size=20,
        max_position_embeddings=6,
    )
    kwargs = example_inputs("PerceiverForMaskedLM", config)
    fast = build_model(config, "PerceiverForMaskedLM", attention="sdpa").eval()
    with torch.no_grad():
        fast(**kwargs)  # packs the first weights
    for seed in (1, 2):
        hf = hf_model("PerceiverForMaskedLM", config, seed=seed)
        fast.load_state_dict(hf.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(
                fast(**kwargs).logits, hf(**kwargs).logits, atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_gradients_match_transformers(model_class: str) -> None:
    """With autograd on (what a training step runs), both kernels give HF's outputs and HF's
    parameter gradients. The no-grad comparisons above take the sdpa inference fast path; this
    one covers the plain sdpa and eager paths that `bench`'s training step and `check` time."""
    config = _config_for(model_class)
    hf = hf_model(model_class, config)
    kwargs = example_inputs(model_class, config)

    def scalar(model: Any) -> Any:
        torch.manual_seed(1)  # multimodal draws Bernoulli masks, as HF does
        out = main_output(model_class, model(**kwargs))
        parts = out.values() if isinstance(out, dict) else [out]
        return sum(
            (part * torch.linspace(-1, 1, part.numel()).view_as(part)).sum() for part in parts
        )

    scalar(hf).backward()
    expected = {name: p.grad for name, p in hf.named_parameters() if p.grad is not None}
    for attention in ATTENTIONS:
        ref = build_model(config, model_class, attention=attention).eval()
        ref.load_state_dict(hf.state_dict(), strict=True)
        scalar(ref).backward()
        got = {name: p.grad for name, p in ref.named_parameters() if p.grad is not None}
        assert got.keys() == expected.keys(), attention
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
