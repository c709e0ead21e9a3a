"""Hypothesis strategies for Perceiver configs and workloads, one family per model class.

Valid configs are built *constructively* (``d_latents = lcm(heads) * m``, heads drawn from the
divisors of the encoder's kv width when that width fixes the query/key channels), never by
filtering, so every draw builds and runs in transformers. Dimensions are tiny (heads 1-4,
``d_latents`` <= 24, ``num_latents`` 1-8, 1-3 layers and blocks, vocab <= 50,
``max_position_embeddings`` <= 16) so a CPU model builds and runs in milliseconds, and include
the edge cases 1 and primes.

The kv width K of the encoder cross-attention is fixed by the class (transformers 5.24):
``d_model`` for PerceiverModel and the text classes, 512 = 256 + 256 for Learned, 261 = 3 + 258
for Fourier, 322 = 64 + 258 for Conv and OpticalFlow, ``max(samples_per_patch + 385, 243,
num_labels) + 4`` for Multimodal. With ``qk_channels`` unset and
``cross_attention_shape_for_attention == "kv"`` the cross-attention's query/key width is K, so
``num_cross_attention_heads`` must divide K.

:func:`any_config` mixes valid configs with configs that break exactly one rule
(:func:`broken_config` names the rule); :func:`tests.hf_truth.hf_outcome` decides what
transformers actually does with each, which is the point of the accept/reject property test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from tests.hf_truth import LABEL_CLASSES, Workload

__all__ = [
    "BREAKABLE_RULES",
    "any_config",
    "broken_config",
    "kv_width",
    "valid_config",
    "workload_for",
]

Config = dict[str, Any]

_HEADS = st.integers(1, 4)
_ACTS = st.sampled_from(["gelu", "relu", "gelu_new", "silu"])


def kv_width(model_class: str, config: Config) -> int:
    """K: the encoder cross-attention's kv width (``input_preprocessor.num_channels``)."""
    if model_class in (
        "PerceiverModel",
        "PerceiverForMaskedLM",
        "PerceiverForSequenceClassification",
    ):
        return int(config.get("d_model", 768))
    if model_class == "PerceiverForImageClassificationLearned":
        return 512  # conv1x1 to 256 channels + 256 projected trainable position channels
    if model_class == "PerceiverForImageClassificationFourier":
        return 261  # 3 pixel channels + 2-D Fourier features, 64 bands: 2*64*2 + 2
    if model_class in ("PerceiverForImageClassificationConvProcessing", "PerceiverForOpticalFlow"):
        return 322  # 64 conv channels + 258 Fourier channels
    spp = int(config.get("samples_per_patch", 16))
    # audio: spp + 192 bands * 2 + 1; image: 3*4*4 + 3-D Fourier 32 bands (195) = 243; label: nl
    return max(spp + 385, 243, int(config.get("num_labels", 2))) + 4


def _divisors_upto(n: int, limit: int) -> list[int]:
    return [h for h in range(1, limit + 1) if n % h == 0]


@st.composite
def _class_fields(draw: st.DrawFn, model_class: str) -> Config:
    """The fields only ``model_class`` reads, except ``d_model`` (chosen with the heads)."""
    cfg: Config = {}
    if model_class in (
        "PerceiverModel",
        "PerceiverForMaskedLM",
        "PerceiverForSequenceClassification",
    ):
        cfg["vocab_size"] = draw(st.sampled_from([1, 2, 7, 13, 50]) | st.integers(1, 50))
        cfg["max_position_embeddings"] = draw(st.integers(1, 16))
    if model_class not in ("PerceiverModel", "PerceiverForMaskedLM", "PerceiverForOpticalFlow"):
        cfg["num_labels"] = draw(st.integers(1, 5))
    if model_class == "PerceiverForImageClassificationLearned":
        cfg["image_size"] = draw(st.integers(1, 4))
    elif model_class == "PerceiverForOpticalFlow":
        cfg["train_size"] = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    elif model_class == "PerceiverForMultimodalAutoencoding":
        spp = draw(st.integers(1, 8))
        frames = draw(st.integers(1, 2))
        side = draw(st.sampled_from([4, 8]))
        cfg.update(
            samples_per_patch=spp,
            num_frames=frames,
            image_size=side,
            audio_samples_per_frame=spp * draw(st.integers(1, 3)),
            output_shape=[
                1,
                draw(st.integers(1, 2)),
                draw(st.integers(1, 4)),
                draw(st.integers(1, 4)),
            ],
            output_num_channels=draw(st.integers(1, 8)),
            _label_trainable_num_channels=draw(st.integers(1, 8)),
        )
    return cfg


@st.composite
def valid_config(draw: st.DrawFn, model_class: str) -> Config:
    """A config dict (PerceiverConfig field names) that transformers builds and runs.

    Always sets the architecture fields (``num_latents``, ``d_latents``, ``d_model``, layers,
    heads, ``qk_channels``, ``v_channels``, widening factors,
    ``cross_attention_shape_for_attention``, ``use_query_residual``, ``hidden_act``,
    ``attention_probs_dropout_prob``) and the fields the class reads (see ``_class_fields``).
    Rules built in:

    * ``d_latents`` = lcm(Hs, Hc) * m, so both head counts divide it.
    * ``qk_channels`` is unset or a multiple of lcm(Hs, Hc). The self-attention value width
      ``v_channels ?? qk_channels ?? d_latents`` must equal ``d_latents`` (residual add), so
      ``v_channels`` is ``d_latents``, or unset when ``qk_channels`` is unset or equal to it.
    * Cross-attention with ``qk_channels`` unset and shape "kv": Hc divides K (``kv_width``).
    * MaskedLM: ``d_model`` a multiple of 8 (its decoder has 8 heads and ``v_channels=d_model``).
    """
    cfg = draw(_class_fields(model_class))
    hs = draw(_HEADS)
    shape = draw(st.sampled_from(["kv", "q"]))
    set_qk = draw(st.booleans())
    text_like = model_class in (
        "PerceiverModel",
        "PerceiverForMaskedLM",
        "PerceiverForSequenceClassification",
    )
    kv_fixes_hc = not set_qk and shape == "kv"
    if kv_fixes_hc and not text_like:
        hc = draw(st.sampled_from(_divisors_upto(kv_width(model_class, cfg), 4)))
    else:
        hc = draw(_HEADS)
    # d_model: K for the text-like classes; any value for the others (they ignore it).
    d_model_unit = hc if (kv_fixes_hc and text_like) else 1
    if model_class == "PerceiverForMaskedLM":
        d_model_unit = math.lcm(d_model_unit, 8)
    cfg["d_model"] = d_model_unit * draw(st.integers(1, max(1, 16 // d_model_unit)))
    unit = math.lcm(hs, hc)
    d_latents = unit * draw(st.integers(1, max(1, 24 // unit)))
    if set_qk:
        qk = unit * draw(st.integers(1, max(1, 24 // unit)))
        v = None if qk == d_latents and draw(st.booleans()) else d_latents
    else:
        qk = None
        v = draw(st.sampled_from([None, d_latents]))
    cfg.update(
        num_latents=draw(st.sampled_from([1, 2, 3, 5, 7, 8]) | st.integers(1, 8)),
        d_latents=d_latents,
        num_blocks=draw(st.integers(1, 3)),
        num_self_attends_per_block=draw(st.integers(1, 3)),
        num_self_attention_heads=hs,
        num_cross_attention_heads=hc,
        qk_channels=qk,
        v_channels=v,
        cross_attention_shape_for_attention=shape,
        self_attention_widening_factor=draw(st.integers(1, 3)),
        cross_attention_widening_factor=draw(st.integers(1, 3)),
        use_query_residual=draw(st.booleans()),
        hidden_act=draw(_ACTS),
        attention_probs_dropout_prob=draw(st.sampled_from([0.0, 0.1])),
    )
    return cfg


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


def _factor_pairs(n: int) -> list[tuple[int, int]]:
    return [(a, n // a) for a in range(1, n + 1) if n % a == 0]


@st.composite
def workload_for(draw: st.DrawFn, model_class: str, config: Config) -> Workload:
    """A workload whose inputs transformers accepts for a *valid* ``config``.

    Batch 1-3; ``training`` any; ``with_labels`` only for :data:`LABEL_CLASSES` (MaskedLM labels
    are padded to max_position_embeddings with -100). Text: 1 <= M <= max_position_embeddings.
    Learned: H·W == image_size² (any factor pair). Fourier: H, W in 1-6. Conv: H, W in 5-12 (the
    conv stem needs >= 5). OpticalFlow: any factor pair of prod(train_size). Multimodal: 2-3
    frames of (4a x 4b) pixels, audio a multiple of samples_per_patch, 1-8 image and 1-4 audio
    output points within the decoder's query grids (one input frame crashes in transformers).
    Tolerates broken configs (falls back to small defaults) so it can also serve
    :func:`any_config`.
    """
    batch = draw(st.integers(1, 3))
    training = draw(st.booleans())
    labels = model_class in LABEL_CLASSES and draw(st.booleans())
    w = Workload(batch_size=batch, training=training, with_labels=labels)
    if model_class in (
        "PerceiverModel",
        "PerceiverForMaskedLM",
        "PerceiverForSequenceClassification",
    ):
        p = int(config.get("max_position_embeddings", 16))
        return _with(w, seq_len=draw(st.integers(1, max(1, p))))
    if model_class == "PerceiverForImageClassificationLearned":
        s = config.get("image_size", 2)
        n = s * s if isinstance(s, int) else 4
        return _with(w, image_size=draw(st.sampled_from(_factor_pairs(n))))
    if model_class == "PerceiverForImageClassificationFourier":
        return _with(w, image_size=(draw(st.integers(1, 6)), draw(st.integers(1, 6))))
    if model_class == "PerceiverForImageClassificationConvProcessing":
        return _with(w, image_size=(draw(st.integers(5, 12)), draw(st.integers(5, 12))))
    if model_class == "PerceiverForOpticalFlow":
        ts = list(config.get("train_size", [2, 2]))
        n = math.prod(int(t) for t in ts[:2]) if ts else 1
        return _with(w, image_size=draw(st.sampled_from(_factor_pairs(n))))
    # multimodal
    spp = max(1, int(config.get("samples_per_patch", 4)))
    n_audio_queries = int(config.get("num_frames", 1)) * int(
        config.get("audio_samples_per_frame", spp)
    )
    n_audio_queries //= spp
    out_shape = list(config.get("output_shape", [1, 1, 4, 4]))
    n_image_queries = math.prod(out_shape[1:4]) if len(out_shape) >= 2 else 1
    return _with(
        w,
        # One input frame fails in transformers: space_to_depth gives (B, 1, h, w, C), which
        # the image preprocessor squeezes to 2-D (meant for optical flow), while the Fourier
        # features are 3-D (num_frames, image_size, image_size) -> size mismatch in the concat.
        num_frames=draw(st.integers(2, 3)),
        image_size=(4 * draw(st.integers(1, 2)), 4 * draw(st.integers(1, 2))),
        audio_samples=spp * draw(st.integers(1, 6)),
        subsampled_image_points=draw(st.integers(1, max(1, min(8, n_image_queries)))),
        subsampled_audio_points=draw(st.integers(1, max(1, min(4, n_audio_queries)))),
    )


def _with(w: Workload, **changes: Any) -> Workload:
    return replace(w, **changes)


# --------------------------------------------------------------------------------------------
# Configs that break one rule
# --------------------------------------------------------------------------------------------

_Breaker = Callable[[st.DrawFn, str, Config], Config | None]


def _non_divisor(draw: st.DrawFn, n: int, lo: int = 2, hi: int = 8) -> int | None:
    options = [h for h in range(lo, hi + 1) if n % h != 0]
    return draw(st.sampled_from(options)) if options else None


def _break_self_heads(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    h = _non_divisor(draw, cfg["d_latents"])
    return None if h is None else {**cfg, "num_self_attention_heads": h}


def _break_cross_heads(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    h = _non_divisor(draw, cfg["d_latents"])
    return None if h is None else {**cfg, "num_cross_attention_heads": h}


def _break_kv_width_heads(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """Hc divides d_latents but not K (qk_channels unset, shape "kv")."""
    if cfg["qk_channels"] is not None or cfg["cross_attention_shape_for_attention"] != "kv":
        return None
    hc = _non_divisor(draw, kv_width(mc, cfg))
    if hc is None:
        return None
    d = math.lcm(cfg["num_self_attention_heads"], hc)
    v = None if cfg["v_channels"] is None else d
    return {**cfg, "num_cross_attention_heads": hc, "d_latents": d, "v_channels": v}


def _break_qk_channels(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    unit = math.lcm(cfg["num_self_attention_heads"], cfg["num_cross_attention_heads"])
    if unit == 1:
        return None
    qk = unit * draw(st.integers(0, 2)) + draw(st.integers(1, unit - 1))
    return {**cfg, "qk_channels": qk, "v_channels": cfg["d_latents"]}


def _break_self_v_channels(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """Self-attention output width != d_latents: builds, then the residual add fails.
    (v_channels == 1 broadcasts silently, so it is avoided here.)"""
    unit = math.lcm(cfg["num_self_attention_heads"], cfg["num_cross_attention_heads"])
    options = [unit * j for j in range(1, 5) if unit * j not in (1, cfg["d_latents"])]
    return {**cfg, "v_channels": draw(st.sampled_from(options))}


def _break_shape(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    # Checked only where a cross-attention is built with qk_channels unset: the encoder
    # (config.qk_channels None) or a classification / flow / multimodal decoder (always).
    if cfg["qk_channels"] is not None and mc in ("PerceiverModel", "PerceiverForMaskedLM"):
        return None
    return {**cfg, "cross_attention_shape_for_attention": draw(st.sampled_from(["qkv", "", "Q"]))}


def _break_masked_lm_d_model(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    if mc != "PerceiverForMaskedLM":
        return None
    hc = cfg["num_cross_attention_heads"]
    odd = [hc * j for j in range(1, 8) if (hc * j) % 8 != 0]
    return {**cfg, "d_model": draw(st.sampled_from(odd))}


def _break_output_shape(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    if mc != "PerceiverForMultimodalAutoencoding":
        return None
    rank = draw(st.sampled_from([3, 5]))
    return {**cfg, "output_shape": [1, *cfg["output_shape"][1:4], 1][:rank]}


def _break_learned_image_size(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    if mc != "PerceiverForImageClassificationLearned":
        return None
    s = cfg["image_size"]
    return {**cfg, "image_size": [s, s]}


def _break_hidden_act(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    return {**cfg, "hidden_act": "not_an_activation"}


def _edge_zero_layers(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """Not a known rule: 0 self-attention layers or blocks. transformers accepts both."""
    key = draw(st.sampled_from(["num_blocks", "num_self_attends_per_block"]))
    return {**cfg, key: 0}


def _break_chunk_size(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """A chunk size that does not divide num_latents (every class's encoder is chunked)."""
    c = _non_divisor(draw, cfg["num_latents"])
    return None if c is None else {**cfg, "chunk_size_feed_forward": c}


def _break_initializer_range(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    return {**cfg, "initializer_range": -draw(st.sampled_from([1e-3, 0.02, 1.0]))}


def _break_float_type(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """A string, a bool, or (for the float-only fields) an int where transformers' strict
    config wants a float."""
    key = draw(
        st.sampled_from(["layer_norm_eps", "initializer_range", "attention_probs_dropout_prob"])
    )
    bad: list[Any] = ["1e-12", True, False, None]
    if key != "attention_probs_dropout_prob":
        bad.append(1)
    return {**cfg, key: draw(st.sampled_from(bad))}


def _edge_labels(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """Not a rule: num_labels and id2label that disagree, keys colliding after int(): "0",
    "00". transformers accepts these (num_labels wins, else the int keys are counted)."""
    n = draw(st.integers(1, 3))
    keys = draw(st.lists(st.sampled_from(["0", "00", "1", "01", "2"]), min_size=1, max_size=4))
    out = {**cfg, "id2label": {k: f"L{k}" for k in keys}}
    if draw(st.booleans()):
        out["num_labels"] = n
    else:
        out.pop("num_labels", None)
    return out


def _edge_unexecuted_self_v(draw: st.DrawFn, mc: str, cfg: Config) -> Config | None:
    """Not a rule: num_blocks 0 with a self-attention v width != d_latents (never run)."""
    broken = _break_self_v_channels(draw, mc, cfg)
    return None if broken is None else {**broken, "num_blocks": 0}


BREAKABLE_RULES: dict[str, _Breaker] = {
    "chunk_size_feed_forward divides num_latents": _break_chunk_size,
    "initializer_range >= 0": _break_initializer_range,
    "float fields are JSON floats": _break_float_type,
    "edge: num_labels vs id2label": _edge_labels,
    "edge: num_blocks 0 with self-attention v width != d_latents": _edge_unexecuted_self_v,
    "num_self_attention_heads divides d_latents": _break_self_heads,
    "num_cross_attention_heads divides d_latents": _break_cross_heads,
    "num_cross_attention_heads divides the kv width": _break_kv_width_heads,
    "qk_channels divisible by heads": _break_qk_channels,
    "self-attention v_channels equals d_latents": _break_self_v_channels,
    "cross_attention_shape_for_attention in {q, kv}": _break_shape,
    "MaskedLM d_model divisible by 8": _break_masked_lm_d_model,
    "Multimodal output_shape has rank 4": _break_output_shape,
    "Learned image_size is an int": _break_learned_image_size,
    "hidden_act is a known activation": _break_hidden_act,
    "edge: zero self-attention layers or blocks": _edge_zero_layers,
}
"""Rule name -> mutation of a valid config (``None`` where it does not apply to the class or
config). Each mutation changes one rule's inputs; the result may trip more than one check."""


@st.composite
def broken_config(draw: st.DrawFn, model_class: str) -> tuple[Config, str]:
    """``(config, rule)``: a valid config with ``rule`` (a :data:`BREAKABLE_RULES` key)
    broken. The ``edge:`` entries are not known rules; transformers may accept them."""
    cfg = draw(valid_config(model_class))
    # Try the rules in a drawn order (each equally likely first); skip those that do not apply.
    for name in draw(st.permutations(list(BREAKABLE_RULES))):
        broken = BREAKABLE_RULES[name](draw, model_class, cfg)
        if broken is not None:
            return broken, name
    raise AssertionError("unreachable: the hidden_act rule applies to every class")


def any_config(model_class: str) -> st.SearchStrategy[Config]:
    """Valid configs and configs with one rule broken, about half each."""
    return st.one_of(valid_config(model_class), broken_config(model_class).map(lambda cr: cr[0]))
