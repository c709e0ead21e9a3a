"""Resolution: a config + a model class -> every module's dimensions, each with its source.

This is the one place that knows transformers' defaulting rules (``qk_channels`` None -> ...,
the values each model class hardcodes, the widths preprocessors hand the encoder). Everything
downstream (parameter, FLOP and memory counts, reports) reads the :class:`ResolvedModel` it
returns and never a raw config field.

Sources cited as ``modeling_perceiver.py`` are transformers 5.24's
``models/perceiver/modeling_perceiver.py``.

A resolved model is a flat, ordered tuple of modules (the kinds and their formulas are in
:mod:`perceiver_calc.modules`, re-exported here); what differs between model classes is in
the table :mod:`perceiver_calc.classes`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from perceiver_calc import parity
from perceiver_calc.arith import maximum, positive
from perceiver_calc.classes import (
    CLASSES,
    CONV_STEM,
    DEFAULT_MODEL_CLASS,
    FLOW_OUTPUT_CHANNELS,
    FLOW_PATCH_CHANNELS,
    MASKED_LM_DECODER_HEADS,
    MASKED_LM_DECODER_QK_CHANNELS,
    MULTIMODAL_AUDIO_BANDS,
    MULTIMODAL_IMAGE_BANDS,
    MULTIMODAL_IMAGE_PATCH,
    MULTIMODAL_INPUT_PADDING,
    MULTIMODAL_QUERY_PADDING,
)
from perceiver_calc.config import (
    HIDDEN_ACTS,
    MODEL_CLASSES,
    ModelClass,
    PerceiverConfig,
    load_config,
)
from perceiver_calc.errors import ConfigError, Finding, InputError
from perceiver_calc.modules import (
    BatchNorm2d,
    Conv2d,
    Dim,
    Embedding,
    FourierFeatures,
    Linear,
    Module,
    Parameter,
    PerceiverLayer,
    ResolvedModel,
    Source,
    TiedOutput,
    TokenCount,
)
from perceiver_calc.rules import SCALAR, Rules

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "Dim",
    "Embedding",
    "FourierFeatures",
    "Linear",
    "Module",
    "Parameter",
    "PerceiverLayer",
    "ResolvedModel",
    "TiedOutput",
    "model_class_of",
    "resolve",
    "resolve_unchecked",
    "validate",
]

INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------------------------
# Helpers


class _Ctx:
    """Collects findings while a model class is resolved."""

    def __init__(self, config: PerceiverConfig, model: ModelClass, rules: Rules = SCALAR) -> None:
        self.config = config
        self.model = model
        self.findings: list[Finding] = []
        self.rules = rules

    def fails(self, cond: Any, code: str, severity: str = "error") -> bool:
        """``cond`` (a bool; a per-row array in the sweep): see perceiver_calc.rules."""
        return self.rules.fails(cond, code, severity)

    def field(self, name: str) -> Dim:
        value = getattr(self.config, name)
        explicit = name in self.config.model_fields_set
        return Dim(value=_int(value), source="explicit" if explicit else "default", rule=name)

    def field_source(self, name: str) -> Source:
        return "explicit" if name in self.config.model_fields_set else "default"

    def hardcoded(self, name: str, class_value: int, what: str) -> Dim:
        """A value the class hardcodes, unless the optional config field ``name`` sets it."""
        value = getattr(self.config, name)
        if value is not None:
            return Dim(value=_int(value), source="explicit", rule=name)
        return Dim(value=class_value, source="hardcoded", rule=f"{what}, hardcoded by {self.model}")

    def error(
        self,
        code: str,
        fields: tuple[str, ...],
        values: Mapping[str, object],
        module: str | None,
        rule: str,
        fix: str,
    ) -> None:
        self.findings.append(
            Finding(
                severity="error",
                code=code,
                fields=fields,
                values=dict(values),
                module=module,
                rule=rule,
                fix=fix,
            )
        )

    def warn(
        self,
        code: str,
        fields: tuple[str, ...],
        values: Mapping[str, object],
        module: str | None,
        rule: str,
        fix: str,
    ) -> None:
        self.findings.append(
            Finding(
                severity="warning",
                code=code,
                fields=fields,
                values=dict(values),
                module=module,
                rule=rule,
                fix=fix,
            )
        )


def _int(value: Any) -> int:
    """A config integer: a Python int, or the sweep's per-row array of them (kept as is)."""
    return value if hasattr(value, "dtype") else int(value)


_HEADS_FIELD = {
    "encoder_cross": "num_cross_attention_heads",
    "encoder_self": "num_self_attention_heads",
    "decoder_cross": "decoder_num_heads",
}


def _nearest_multiples(value: int, heads: int) -> str:
    """The multiples of ``heads`` just below and above ``value`` (positive ones), in O(1)."""
    below, above = value // heads * heads, -(-value // heads) * heads
    return ", ".join(str(n) for n in (below, above) if n > 0)


def _rule_fields(rule: str) -> tuple[str, ...]:
    """Config fields named at the start of a Dim's rule (``"d_model (text ...)"`` -> d_model)."""
    head = rule.split(" ")[0]
    return (head,) if head in PerceiverConfig.model_fields else ()


def _attention(
    ctx: _Ctx,
    path: str,
    role: Literal["encoder_cross", "encoder_self", "decoder_cross"],
    *,
    q_dim: Dim,
    kv_dim: Dim,
    qk_channels: Dim | None,
    v_channels: Dim | None,
    num_heads: Dim,
    widening_factor: Dim,
    use_query_residual: bool,
    use_query_residual_source: Source,
    q_len: TokenCount,
    kv_len: TokenCount,
    applications: int = 1,
    copies: int = 1,
    query_is_parameter: bool = False,
) -> PerceiverLayer:
    """Resolve one ``PerceiverLayer`` by transformers' channel defaulting and check its heads.

    PerceiverAttention (L271-290) and PerceiverSelfAttention (L152-162)::

        if is_cross and qk_channels is None:
            qk = q_dim if shape == "q" else kv_dim if shape == "kv" else ValueError
            (shape = config.cross_attention_shape_for_attention)
        else:
            qk = qk_channels if not None else q_dim
        v = v_channels if not None else qk
        output width = q_dim if is_cross else v
        qk % num_heads == 0 and v % num_heads == 0, else ValueError
    """
    is_cross = role != "encoder_self"
    shape = ctx.config.cross_attention_shape_for_attention
    if qk_channels is not None:
        qk = qk_channels
    elif is_cross:
        if shape == "q":
            qk = Dim(
                value=q_dim.value,
                source="derived",
                rule="q_dim (qk_channels unset, cross_attention_shape_for_attention 'q')",
            )
        elif shape == "kv":
            qk = Dim(
                value=kv_dim.value,
                source="derived",
                rule="kv_dim (qk_channels unset, cross_attention_shape_for_attention 'kv')",
            )
        else:
            ctx.error(
                "cross_attention_shape",
                ("cross_attention_shape_for_attention",),
                {"cross_attention_shape_for_attention": shape},
                path,
                f"cross_attention_shape_for_attention ({shape!r}) must be 'q' or 'kv' "
                "when a cross-attention's qk_channels is unset",
                "use 'kv' (transformers' default) or 'q'",
            )
            qk = Dim(value=kv_dim.value, source="derived", rule="kv_dim (assumed, shape invalid)")
    else:
        qk = Dim(value=q_dim.value, source="derived", rule="q_dim (qk_channels unset)")
    if v_channels is not None:
        v = v_channels
    else:
        v = Dim(value=qk.value, source="derived", rule=f"qk_channels of this layer ({qk.rule})")
    out = (
        Dim(value=q_dim.value, source="derived", rule="q_dim (cross-attention output)")
        if is_cross
        else Dim(value=v.value, source="derived", rule="v_channels (self-attention output)")
    )
    heads = num_heads.value
    heads_field = (
        _HEADS_FIELD[role] if num_heads.source != "hardcoded" or role == "decoder_cross" else None
    )
    prefix = "decoder_" if role == "decoder_cross" else ""
    for name, dim in (("qk_channels", qk), ("v_channels", v)):
        if name == "v_channels" and v_channels is None:
            continue  # v defaults to qk: the qk_channels error (if any) already says it
        if ctx.fails(dim.value % heads != 0, f"heads_divide_{name}"):
            origin = "" if dim.rule in (name, f"decoder_{name}") else f" = {dim.rule}"
            heads_label = heads_field or "num_heads"
            heads_origin = "" if num_heads.source != "hardcoded" else f", {num_heads.rule}"
            near = _nearest_multiples(dim.value, heads)
            if dim.rule in (name, f"decoder_{name}"):
                fix = f"choose a multiple of {heads} for {dim.rule} ({near}) or leave it unset"
            else:
                alternatives = [f"set {prefix}{name} to a multiple of {heads} ({near})"]
                alternatives += [f"make {f} a multiple of {heads}" for f in _rule_fields(dim.rule)]
                fix = (
                    # gcd and the nearest multiples: O(1) in the numbers (no trial division)
                    f"choose {heads_label} dividing {dim.value} (gcd({dim.value}, {heads}) = "
                    f"{math.gcd(dim.value, heads)} does), or " + ", or ".join(alternatives)
                )
            fields = tuple(
                f for f in (heads_field, f"{prefix}{name}", *_rule_fields(dim.rule)) if f
            )
            ctx.error(
                f"heads_divide_{name}",
                tuple(dict.fromkeys(fields)),
                {name: dim.value, heads_label: heads},
                re.sub(r"self_attends$", "self_attends.*", path),
                f"{name} ({dim.value}{origin}) must be divisible by {heads_label} "
                f"({heads}{heads_origin})",
                fix,
            )
    return PerceiverLayer(
        path=path,
        role=role,
        is_cross=is_cross,
        q_dim=q_dim,
        kv_dim=kv_dim,
        qk_channels=qk,
        v_channels=v,
        output_channels=out,
        num_heads=num_heads,
        widening_factor=widening_factor,
        use_query_residual=use_query_residual,
        use_query_residual_source=use_query_residual_source,
        q_len=q_len,
        kv_len=kv_len,
        applications=applications,
        copies=copies,
        query_is_parameter=query_is_parameter,
    )


def _encoder(ctx: _Ctx, prefix: str, kv_dim: Dim, kv_len: TokenCount) -> list[PerceiverLayer]:
    """``{prefix}embeddings`` latents are separate; this is ``{prefix}encoder`` (L418-466)."""
    cfg = ctx.config
    d_latents = ctx.field("d_latents")
    hs = ctx.field("num_self_attention_heads")
    hc = ctx.field("num_cross_attention_heads")
    qk = ctx.field("qk_channels") if cfg.qk_channels is not None else None
    v = ctx.field("v_channels") if cfg.v_channels is not None else None
    # PerceiverEncoder's own checks (L426-435), before any layer is built.
    for heads in (hs, hc):
        if ctx.fails(d_latents.value % heads.value != 0, f"d_latents_divisible_by_{heads.rule}"):
            ctx.error(
                f"d_latents_divisible_by_{heads.rule}",
                ("d_latents", heads.rule),
                {"d_latents": d_latents.value, heads.rule: heads.value},
                f"{prefix}encoder",
                f"d_latents ({d_latents.value}) must be divisible by {heads.rule} ({heads.value})",
                f"choose d_latents as a multiple of {heads.value} or change {heads.rule}",
            )
    layers = [
        _attention(
            ctx,
            f"{prefix}encoder.cross_attention",
            "encoder_cross",
            q_dim=d_latents,
            kv_dim=kv_dim,
            qk_channels=qk,
            v_channels=v,
            num_heads=hc,
            widening_factor=ctx.field("cross_attention_widening_factor"),
            use_query_residual=cfg.use_query_residual,
            use_query_residual_source=ctx.field_source("use_query_residual"),
            q_len="latents",
            kv_len=kv_len,
            query_is_parameter=True,
        )
    ]
    if positive(cfg.num_self_attends_per_block):
        # ModuleList of L identical PerceiverLayers (L447-462), each applied num_blocks times:
        # resolved once, with its number of copies (no loop over layers, no per-layer findings).
        layer = _attention(
            ctx,
            f"{prefix}encoder.self_attends",
            "encoder_self",
            q_dim=d_latents,
            kv_dim=d_latents,
            qk_channels=qk,
            v_channels=v,
            num_heads=hs,
            widening_factor=ctx.field("self_attention_widening_factor"),
            use_query_residual=True,
            use_query_residual_source="hardcoded",
            q_len="latents",
            kv_len="latents",
            applications=cfg.num_blocks,
            copies=cfg.num_self_attends_per_block,
        )
        layers.append(layer)
        _check_self_attention_width(ctx, layer, prefix)
    return layers


def _check_self_attention_width(ctx: _Ctx, layer: PerceiverLayer, prefix: str) -> None:
    """Self-attention adds the query residual to an output of width v_channels (L329): it
    must equal d_latents, or the forward pass raises (the model still builds)."""
    v, d = layer.v_channels.value, layer.q_dim.value
    path = f"{prefix}encoder.self_attends.*"
    values = {
        "v_channels": ctx.config.v_channels,
        "qk_channels": ctx.config.qk_channels,
        "d_latents": d,
    }
    if ctx.fails((v == 1) & (v != d), "self_attention_width_broadcast", "warning"):
        ctx.warn(
            "self_attention_width_broadcast",
            ("v_channels", "qk_channels", "d_latents"),
            values,
            path,
            f"self-attention output width ({v}, from {layer.v_channels.rule}) is 1, not "
            f"d_latents ({d}): the residual add broadcasts it silently",
            f"set v_channels to d_latents ({d})",
        )
        return
    # With num_blocks 0 the layers never run: parity.relax_unexecuted_self_attention makes
    # this error a warning (the sweep groups rows by num_blocks > 0).
    error = (v != d) & (v != 1)
    fails = ctx.fails(error & positive(ctx.config.num_blocks), "self_attention_width")
    if not fails and (ctx.rules.batched or not error):
        return
    ctx.error(
        "self_attention_width",
        ("v_channels", "qk_channels", "d_latents"),
        values,
        path,
        f"self-attention v_channels ({v}, from {layer.v_channels.rule}) must equal d_latents "
        f"({d}): the query residual adds a width-{v} output to width-{d} latents (forward "
        "pass fails)",
        f"set v_channels to {d} (qk_channels may stay {ctx.config.qk_channels})"
        if ctx.config.qk_channels is not None
        else f"set v_channels to {d} or leave it unset",
    )


def _latents(ctx: _Ctx, prefix: str) -> Parameter:
    return Parameter(
        path=f"{prefix}embeddings",
        name="latents",
        shape=(ctx.field("num_latents"), ctx.field("d_latents")),
        note="the latent array (N, D), expanded over the batch",
    )


def _text_preprocessor(ctx: _Ctx) -> tuple[list[Module], Dim]:
    """``PerceiverTextPreprocessor`` (L2661-2696): token + position embeddings of width d_model."""
    d_model = ctx.field("d_model")
    mods: list[Module] = [
        Embedding(
            path="perceiver.input_preprocessor.embeddings",
            num_embeddings=ctx.field("vocab_size"),
            embedding_dim=d_model,
            tokens="inputs",
        ),
        Embedding(
            path="perceiver.input_preprocessor.position_embeddings",
            num_embeddings=ctx.field("max_position_embeddings"),
            embedding_dim=d_model,
            tokens="inputs",
        ),
    ]
    kv = Dim(value=d_model.value, source="derived", rule="d_model (text preprocessor num_channels)")
    return mods, kv


def _classification_decoder(ctx: _Ctx) -> list[Module]:
    """``PerceiverClassificationDecoder`` as the classifier classes build it (L949-960 etc.):
    a BasicDecoder with one trainable query of width d_latents, 1 head, query residual, and
    final_layer Linear(d_latents, num_labels)."""
    d_latents = ctx.field("d_latents")
    prefix = "perceiver.decoder.decoder"
    return [
        Parameter(
            path=f"{prefix}.output_position_encodings",
            name="position_embeddings",
            shape=(Dim(value=1, source="hardcoded", rule="index_dims=1"), d_latents),
            note="the single trainable decoder query (1, d_latents)",
        ),
        _attention(
            ctx,
            f"{prefix}.decoding_cross_attention",
            "decoder_cross",
            q_dim=Dim(value=d_latents.value, source="hardcoded", rule="num_channels=d_latents"),
            kv_dim=d_latents,
            qk_channels=_opt(ctx, "decoder_qk_channels"),
            v_channels=_opt(ctx, "decoder_v_channels"),
            num_heads=ctx.hardcoded("decoder_num_heads", 1, "num_heads=1 (BasicDecoder default)"),
            widening_factor=ctx.hardcoded("decoder_widening_factor", 1, "widening_factor=1"),
            use_query_residual=_bool(ctx, "decoder_use_query_residual", True),
            use_query_residual_source=_bool_source(ctx, "decoder_use_query_residual"),
            q_len="outputs",
            kv_len="latents",
            query_is_parameter=True,
        ),
        Linear(
            path=f"{prefix}.final_layer",
            in_features=d_latents,
            out_features=ctx.field("num_labels"),
            tokens="outputs",
        ),
    ]


def _opt(ctx: _Ctx, name: str) -> Dim | None:
    value = getattr(ctx.config, name)
    return None if value is None else Dim(value=_int(value), source="explicit", rule=name)


def _bool(ctx: _Ctx, name: str, class_value: bool) -> bool:
    value = getattr(ctx.config, name)
    return class_value if value is None else bool(value)


def _bool_source(ctx: _Ctx, name: str) -> Source:
    return "hardcoded" if getattr(ctx.config, name) is None else "explicit"


def _fourier(ctx: _Ctx, path: str, num_dims: int, default_bands: int = 64) -> FourierFeatures:
    """``PerceiverFourierPositionEncoding`` with concat_pos=True, sine_only=False:
    output_size = num_bands * d * 2 + d (L2622-2632)."""
    bands = ctx.hardcoded("fourier_num_bands", default_bands, f"num_bands={default_bands}")
    size = bands.value * num_dims * 2 + num_dims
    return FourierFeatures(
        path=path,
        num_bands=bands,
        num_dims=num_dims,
        concat_pos=True,
        sine_only=False,
        output_size=Dim(
            value=size, source="derived", rule=f"num_bands * {num_dims} * 2 + {num_dims}"
        ),
    )


# --------------------------------------------------------------------------------------------
# Model classes


def _masked_lm(ctx: _Ctx) -> list[Module]:
    """``PerceiverForMaskedLM`` (L806-835)."""
    cfg = ctx.config
    pre, kv = _text_preprocessor(ctx)
    d_model = ctx.field("d_model")
    d_latents = ctx.field("d_latents")
    positions = ctx.field("max_position_embeddings")
    mods: list[Module] = [
        *pre,
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
    ]
    # The decoder's queries are P trainable positions of width text_preprocessor.num_channels
    # (= d_model): the model always emits max_position_embeddings outputs (L812-815, 823).
    mods.append(
        Parameter(
            path="perceiver.decoder.output_position_encodings",
            name="position_embeddings",
            shape=(positions, d_model),
            note="the P decoder queries (max_position_embeddings, d_model)",
        )
    )
    q_dim = Dim(value=d_model.value, source="derived", rule="d_model (num_channels)")
    v_default = Dim(
        value=d_model.value,
        source="hardcoded",
        rule="d_model (v_channels as PerceiverForMaskedLM sets it)",
    )
    mods.append(
        _attention(
            ctx,
            "perceiver.decoder.decoding_cross_attention",
            "decoder_cross",
            q_dim=q_dim,
            kv_dim=d_latents,
            qk_channels=ctx.hardcoded(
                "decoder_qk_channels", MASKED_LM_DECODER_QK_CHANNELS, "qk_channels=8*32"
            ),
            v_channels=_opt(ctx, "decoder_v_channels") or v_default,
            num_heads=ctx.hardcoded("decoder_num_heads", MASKED_LM_DECODER_HEADS, "num_heads=8"),
            widening_factor=ctx.hardcoded("decoder_widening_factor", 1, "widening_factor=1"),
            use_query_residual=_bool(ctx, "decoder_use_query_residual", False),
            use_query_residual_source=_bool_source(ctx, "decoder_use_query_residual"),
            q_len="outputs",
            kv_len="latents",
            query_is_parameter=True,
        )
    )
    out_width = d_model
    if cfg.decoder_final_project:
        # BasicDecoder(final_project=True) adds final_layer
        # Linear(num_channels, output_num_channels)
        # with output_num_channels=d_latents as PerceiverForMaskedLM passes it (L811).
        mods.append(
            Linear(
                path="perceiver.decoder.final_layer",
                in_features=d_model,
                out_features=d_latents,
                tokens="outputs",
            )
        )
        out_width = d_latents
        if ctx.fails(d_latents.value != d_model.value, "final_project_width"):
            ctx.error(
                "final_project_width",
                ("decoder_final_project", "d_latents", "d_model"),
                {"d_latents": d_latents.value, "d_model": d_model.value},
                "embedding_decoder",
                f"with decoder_final_project the decoder outputs d_latents ({d_latents.value}) "
                f"channels, but the tied output projection needs d_model ({d_model.value})",
                "leave decoder_final_project unset, or make d_latents equal d_model",
            )
    mods.append(
        TiedOutput(
            path="embedding_decoder",
            tied_to="perceiver.input_preprocessor.embeddings.weight",
            in_features=out_width,
            vocab_size=ctx.field("vocab_size"),
            tokens="outputs",
        )
    )
    return mods


def _bare(ctx: _Ctx) -> list[Module]:
    """``PerceiverModel`` on its own: no preprocessor (kv_dim = d_model, L583), no decoder."""
    d_model = ctx.field("d_model")
    kv = Dim(value=d_model.value, source=d_model.source, rule="d_model (no input_preprocessor)")
    return [_latents(ctx, ""), *_encoder(ctx, "", kv, "inputs")]


def _sequence_classification(ctx: _Ctx) -> list[Module]:
    """``PerceiverForSequenceClassification`` (L939-960)."""
    pre, kv = _text_preprocessor(ctx)
    return [
        *pre,
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
        *_classification_decoder(ctx),
    ]


def _image_learned(ctx: _Ctx) -> list[Module]:
    """``PerceiverForImageClassificationLearned`` (L1061-1090): conv1x1 to 256 channels,
    trainable positions (image_size², 256) projected by Linear(256, 256), concatenated."""
    cfg = ctx.config
    p = "perceiver.input_preprocessor"
    out_ch = ctx.hardcoded("preprocessor_out_channels", 256, "out_channels=256")
    pos_ch = ctx.hardcoded("preprocessor_position_num_channels", 256, "trainable num_channels=256")
    proj = ctx.hardcoded("preprocessor_project_pos_dim", 256, "project_pos_dim=256")
    if isinstance(cfg.image_size, tuple):
        ctx.error(
            "image_size_int",
            ("image_size",),
            {"image_size": list(cfg.image_size)},
            f"{p}.position_embeddings",
            f"image_size ({list(cfg.image_size)}) must be one whole number for "
            "PerceiverForImageClassificationLearned (it builds image_size**2 positions)",
            "give the side of the square image, e.g. 224",
        )
        side = 1
    else:
        side = cfg.image_size
    n_pos = Dim(
        value=side * side,
        source="derived",
        rule="image_size**2",
    )
    if ctx.fails(pos_ch.value != out_ch.value, "position_projection_width"):
        # build_position_encoding makes positions_projection Linear(out_channels, project_pos_dim)
        # (L1811): its in-features is the conv width, not the encoding's width.
        ctx.error(
            "position_projection_width",
            ("preprocessor_position_num_channels", "preprocessor_out_channels"),
            {
                "preprocessor_position_num_channels": pos_ch.value,
                "preprocessor_out_channels": out_ch.value,
            },
            f"{p}.positions_projection",
            f"the trainable position width ({pos_ch.value}) must equal preprocessor_out_channels "
            f"({out_ch.value}): positions_projection is Linear(out_channels, project_pos_dim)",
            "set both to the same value",
        )
    kv = Dim(
        value=out_ch.value + proj.value,
        source="derived",
        rule="out_channels + project_pos_dim (concat)",
    )
    mods: list[Module] = [
        Conv2d(
            path=f"{p}.convnet_1x1",
            in_channels=Dim(value=3, source="hardcoded", rule="in_channels=3"),
            out_channels=out_ch,
            kernel_size=1,
            stride=1,
            bias=True,
            same_padding=False,
        ),
        Parameter(
            path=f"{p}.position_embeddings",
            name="position_embeddings",
            shape=(n_pos, pos_ch),
            note="trainable positions (image_size², channels): inputs need image_size² pixels",
        ),
        Linear(
            path=f"{p}.positions_projection", in_features=out_ch, out_features=proj, tokens="inputs"
        ),
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
        *_classification_decoder(ctx),
    ]
    return mods


def _image_fourier(ctx: _Ctx) -> list[Module]:
    """``PerceiverForImageClassificationFourier`` (L1186-1215): raw pixels (3 channels)
    concatenated with 2-D Fourier features; no preprocessor parameters."""
    ff = _fourier(ctx, "perceiver.input_preprocessor.position_embeddings", 2)
    kv = Dim(value=3 + ff.output_size.value, source="derived", rule="3 pixels + Fourier width")
    _image_size_unused(ctx)
    return [
        ff,
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
        *_classification_decoder(ctx),
    ]


def _image_conv(ctx: _Ctx) -> list[Module]:
    """``PerceiverForImageClassificationConvProcessing`` (L1309-1340): Conv2DDownsample
    (7x7/2 conv without bias, BatchNorm, ReLU, 3/2 max-pool) then 2-D Fourier features."""
    p = "perceiver.input_preprocessor"
    out_ch = ctx.hardcoded("preprocessor_out_channels", 64, "out_channels=64")
    ff = _fourier(ctx, f"{p}.position_embeddings", 2)
    kv = Dim(
        value=out_ch.value + ff.output_size.value,
        source="derived",
        rule="conv out_channels + Fourier width",
    )
    _image_size_unused(ctx)
    conv = Conv2d(
        path=f"{p}.convnet.conv",
        in_channels=Dim(value=3, source="hardcoded", rule="in_channels=3"),
        out_channels=out_ch,
        kernel_size=CONV_STEM["kernel"],
        stride=CONV_STEM["stride"],
        bias=False,
        same_padding=True,
    )
    return [
        conv,
        BatchNorm2d(path=f"{p}.convnet.batchnorm", num_features=out_ch, conv=conv),
        ff,
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
        *_classification_decoder(ctx),
    ]


def _image_size_unused(ctx: _Ctx) -> None:
    if "image_size" in ctx.config.model_fields_set:
        ctx.warn(
            "image_size_unused",
            ("image_size",),
            {"image_size": ctx.config.image_size},
            "perceiver.input_preprocessor",
            f"image_size has no effect in {ctx.model} (any input height and width work)",
            "remove it, or use PerceiverForImageClassificationLearned if you meant a fixed size",
        )


def _optical_flow(ctx: _Ctx) -> list[Module]:
    """``PerceiverForOpticalFlow`` (L1433-1475): 3x3 patches of 2 frames (54 channels) through
    Linear(54, 64), 2-D Fourier features over train_size; decoder queries are the
    preprocessed inputs (O = M), 1 head, final_layer Linear(322, 2)."""
    cfg = ctx.config
    p = "perceiver.input_preprocessor"
    out_ch = ctx.hardcoded("preprocessor_out_channels", 64, "out_channels=64")
    if len(cfg.train_size) != 2:
        ctx.error(
            "train_size_rank",
            ("train_size",),
            {"train_size": list(cfg.train_size)},
            f"{p}.position_embeddings",
            f"train_size ({list(cfg.train_size)}) must be [height, width]",
            "give two numbers, e.g. [368, 496]",
        )
    ff = _fourier(ctx, f"{p}.position_embeddings", len(cfg.train_size))
    kv = Dim(
        value=out_ch.value + ff.output_size.value,
        source="derived",
        rule="conv_after_patches out_channels + Fourier width",
    )
    d_latents = ctx.field("d_latents")
    q = Dim(value=kv.value, source="derived", rule="num_channels = preprocessor width")
    return [
        Linear(
            path=f"{p}.conv_after_patches",
            in_features=Dim(
                value=FLOW_PATCH_CHANNELS,
                source="hardcoded",
                rule="conv_after_patching_in_channels=54",
            ),
            out_features=out_ch,
            tokens="inputs",
            reads_model_inputs=True,
        ),
        ff,
        _latents(ctx, "perceiver."),
        *_encoder(ctx, "perceiver.", kv, "inputs"),
        _attention(
            ctx,
            "perceiver.decoder.decoder.decoding_cross_attention",
            "decoder_cross",
            q_dim=q,
            kv_dim=d_latents,
            qk_channels=_opt(ctx, "decoder_qk_channels"),
            v_channels=_opt(ctx, "decoder_v_channels"),
            num_heads=ctx.hardcoded("decoder_num_heads", 1, "num_heads=1 (BasicDecoder default)"),
            widening_factor=ctx.hardcoded("decoder_widening_factor", 1, "widening_factor=1"),
            use_query_residual=_bool(ctx, "decoder_use_query_residual", False),
            use_query_residual_source=_bool_source(ctx, "decoder_use_query_residual"),
            q_len="inputs",
            kv_len="latents",
        ),
        Linear(
            path="perceiver.decoder.decoder.final_layer",
            in_features=q,
            out_features=Dim(
                value=FLOW_OUTPUT_CHANNELS, source="hardcoded", rule="output_num_channels=2"
            ),
            tokens="inputs",
        ),
    ]


def _multimodal(ctx: _Ctx) -> list[Module]:
    """``PerceiverForMultimodalAutoencoding`` (L1575-1700). All its preprocessor and decoder
    arguments are hardcoded in the class (not configurable here):

    * encoder input width K = max(audio, image, label widths) + 4 (min_padding_size=4), with
      audio = samples_per_patch + 385 (192 Fourier bands, 1-D), image = 3·4·4 + 195 (4x4
      patches, 32 bands, 3-D), label = num_labels; each modality padded to K by a trainable
      (1, K - width) vector, and a (1, K) mask token per modality;
    * decoder queries of width Qc = max(385, 195, _label_trainable_num_channels) + 2, each
      modality padded to Qc; one shared cross-attention (1 head) and final_layer to
      output_num_channels; postprocessors project to samples_per_patch, 3 and num_labels.
    """
    cfg = ctx.config
    if len(cfg.output_shape) != 4:
        ctx.error(
            "output_shape_rank",
            ("output_shape",),
            {"output_shape": list(cfg.output_shape)},
            "perceiver.decoder.modalities.image",
            f"output_shape ({list(cfg.output_shape)}) must have rank 4 "
            "(batch, frames, height, width)",
            "give four numbers, e.g. [1, 16, 224, 224]",
        )
    if isinstance(cfg.image_size, tuple):
        ctx.error(
            "image_size_int",
            ("image_size",),
            {"image_size": list(cfg.image_size)},
            "perceiver.input_preprocessor.modalities.image",
            f"image_size ({list(cfg.image_size)}) must be one whole number: it is the Fourier "
            "max_resolution of the image side",
            "give the side of the square frames, e.g. 224",
        )
    hard: Source = "hardcoded"
    spp = ctx.field("samples_per_patch")
    nl = ctx.field("num_labels")
    # audio: samples_per_patch + 1-D Fourier features (192 bands, sin/cos, + position)
    c_audio = spp.value + MULTIMODAL_AUDIO_BANDS * 2 + 1
    # image: 4x4x3 patches + 3-D Fourier features (32 bands x 3 dims, sin/cos, + 3 positions)
    c_image = 3 * MULTIMODAL_IMAGE_PATCH**2 + MULTIMODAL_IMAGE_BANDS * 3 * 2 + 3
    k = maximum(c_audio, c_image, nl.value) + MULTIMODAL_INPUT_PADDING
    kv = Dim(
        value=k,
        source="derived",
        rule="max(samples_per_patch + 385, 243, num_labels) + 4 (min_padding_size)",
    )
    t = Dim(
        value=cfg.label_trainable_num_channels,
        source="explicit" if "label_trainable_num_channels" in cfg.model_fields_set else "default",
        rule="_label_trainable_num_channels",
    )
    qc = maximum(385, 195, t.value) + MULTIMODAL_QUERY_PADDING
    q = Dim(
        value=qc,
        source="derived",
        rule="max(385, 195, _label_trainable_num_channels) + 2 (min_padding_size)",
    )
    p = "perceiver.input_preprocessor"
    d = "perceiver.decoder"
    mods: list[Module] = []
    for name, width in (("audio", c_audio), ("image", c_image), ("label", nl.value)):
        mods.append(
            Parameter(
                path=f"{p}.padding",
                name=name,
                shape=(
                    Dim(value=1, source=hard, rule="1"),
                    Dim(value=k - width, source="derived", rule=f"K - {name} width"),
                ),
                note=f"pads {name} inputs from {width} to K channels",
            )
        )
    for name in ("audio", "image", "label"):
        mods.append(
            Parameter(
                path=f"{p}.mask",
                name=name,
                shape=(Dim(value=1, source=hard, rule="1"), kv),
                note=f"mask token for {name} (mask_probs: label 1.0, others 0.0)",
            )
        )
    mods += [_latents(ctx, "perceiver."), *_encoder(ctx, "perceiver.", kv, "inputs")]
    mods.append(
        Parameter(
            path=f"{d}.modalities.label.decoder.output_position_encodings",
            name="position_embeddings",
            shape=(Dim(value=1, source=hard, rule="index_dims=1"), t),
            note="the trainable label query (1, _label_trainable_num_channels)",
        )
    )
    for name, width in (("audio", 385), ("image", 195), ("label", t.value)):
        mods.append(
            Parameter(
                path=f"{d}.padding",
                name=name,
                shape=(
                    Dim(value=1, source=hard, rule="1"),
                    Dim(value=qc - width, source="derived", rule=f"Qc - {name} query width"),
                ),
                note=f"pads {name} queries from {width} to Qc channels",
            )
        )
    mods.append(
        _attention(
            ctx,
            f"{d}.decoder.decoding_cross_attention",
            "decoder_cross",
            q_dim=q,
            kv_dim=ctx.field("d_latents"),
            qk_channels=None,
            v_channels=None,
            num_heads=Dim(value=1, source=hard, rule="num_heads=1 (BasicDecoder default)"),
            widening_factor=Dim(value=1, source=hard, rule="widening_factor=1"),
            use_query_residual=False,
            use_query_residual_source=hard,
            q_len="outputs",
            kv_len="latents",
        )
    )
    o_ch = ctx.field("output_num_channels")
    mods.append(
        Linear(path=f"{d}.decoder.final_layer", in_features=q, out_features=o_ch, tokens="outputs")
    )
    post = "perceiver.output_postprocessor.modalities"
    mods += [
        Linear(
            path=f"{post}.audio.classifier",
            in_features=o_ch,
            out_features=spp,
            tokens="outputs.audio",
        ),
        Linear(
            path=f"{post}.image.classifier",
            in_features=o_ch,
            out_features=Dim(value=3, source=hard, rule="out_channels=3"),
            tokens="outputs.image",
        ),
        Linear(
            path=f"{post}.label.classifier",
            in_features=o_ch,
            out_features=nl,
            tokens="outputs.label",
        ),
    ]
    return mods


_BUILDERS = {
    "bare": _bare,
    "masked_lm": _masked_lm,
    "sequence_classification": _sequence_classification,
    "image_learned": _image_learned,
    "image_fourier": _image_fourier,
    "image_conv": _image_conv,
    "optical_flow": _optical_flow,
    "multimodal": _multimodal,
}
"""ModelClassSpec.builder -> the function that resolves that class's modules."""


def model_class_of(config: PerceiverConfig, override: str | None = None) -> ModelClass:
    """The model class: ``override`` (``--model``), else ``architectures[0]``, else MaskedLM."""
    # An empty --model is a mistake, not "no override": refused below like any unknown name.
    name = (
        override
        if override is not None
        else (config.architectures[0] if config.architectures else None)
    )
    if name is None:
        return DEFAULT_MODEL_CLASS
    for cls in MODEL_CLASSES:
        if cls == name:
            return cls
    import difflib

    close = difflib.get_close_matches(name, MODEL_CLASSES, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "use one of: " + ", ".join(MODEL_CLASSES)
    source = "--model" if override is not None else "architectures"
    raise InputError(f"{source} names {name!r}, which is not a Perceiver model class; {hint}")


def _general_findings(ctx: _Ctx) -> None:
    cfg = ctx.config
    if cfg.hidden_act not in HIDDEN_ACTS:
        import difflib

        close = difflib.get_close_matches(cfg.hidden_act, HIDDEN_ACTS, n=1)
        ctx.error(
            "hidden_act",
            ("hidden_act",),
            {"hidden_act": cfg.hidden_act},
            "mlp.intermediate_act_fn",
            f"hidden_act ({cfg.hidden_act!r}) is not an activation transformers knows (ACT2FN)",
            f"did you mean {close[0]!r}?" if close else "use 'gelu' (the default)",
        )
    if "layer_norm_eps" in cfg.model_fields_set and cfg.layer_norm_eps != 1e-5:
        ctx.warn(
            "layer_norm_eps_unused",
            ("layer_norm_eps",),
            {"layer_norm_eps": cfg.layer_norm_eps},
            None,
            f"layer_norm_eps ({cfg.layer_norm_eps}) has no effect: every nn.LayerNorm in "
            "transformers' Perceiver uses torch's default eps 1e-5",
            "ignore it, or remove it from the config",
        )
    if cfg.model_type != "perceiver":
        ctx.warn(
            "model_type",
            ("model_type",),
            {"model_type": cfg.model_type},
            None,
            f"model_type ({cfg.model_type!r}) is not 'perceiver'",
            "check that this is a Perceiver config",
        )
    from perceiver_calc.config import duplicate_key_finding, unknown_key_finding

    for key in cfg.duplicate_keys:
        ctx.findings.append(duplicate_key_finding(key, "warning"))
    for key, value in cfg.unknown_keys.items():
        ctx.findings.append(unknown_key_finding(key, value, "warning"))
    if cfg.architectures and len(cfg.architectures) > 1:
        ctx.warn(
            "architectures",
            ("architectures",),
            {"architectures": list(cfg.architectures)},
            None,
            f"architectures lists {len(cfg.architectures)} classes; using the first",
            "pass --model to choose another",
        )


def _unused_hardcoded_fields(ctx: _Ctx) -> None:
    for name, value in ctx.config.hardcoded_overrides.items():
        if name not in CLASSES[ctx.model].override_fields:
            ctx.warn(
                "field_unused",
                (name,),
                {name: value},
                None,
                f"{name} ({value!r}) has no effect in {ctx.model}",
                "remove it, or choose the model class it applies to (--model)",
            )


def _param_numel_findings(ctx: _Ctx, modules: list[Module]) -> None:
    """torch needs every tensor's element count to fit in int64. A shared block's copies
    have one copy's shapes: checking copy 0 checks them all (closed form, no loop)."""
    for m in modules:
        for name, shape in m.shapes().items():
            if ctx.rules.exceeds(math.prod(shape), INT64_MAX, "tensor_too_large"):
                ctx.error(
                    "tensor_too_large",
                    (),
                    {"shape": list(shape)},
                    m.path,
                    f"parameter {name} would have shape {list(shape)}, "
                    f"{math.prod(shape):.3e} elements; torch's limit is 2**63 - 1",
                    "use smaller dimensions",
                )


def validate(
    source: str | Path | Mapping[str, Any] | Any,
    model: str | None = None,
    *,
    strict: bool = False,
) -> ResolvedModel:
    """Load and resolve in one step, reporting every error at once.

    When some fields have the wrong type or range, the rest of the config is still resolved
    (the bad fields at their defaults) and the dimension errors that do not involve the bad
    fields are reported with them. Raises :class:`ConfigError` or :class:`InputError`.
    """
    try:
        config = load_config(source, strict=strict)
    except ConfigError as err:
        if err.partial is None:
            raise
        bad = {f for finding in err.findings for f in finding.fields}
        try:
            resolve(err.partial, model)
        except ConfigError as more:
            extra = [f for f in more.findings if not bad.intersection(f.fields)]
            raise ConfigError([*err.findings, *extra]) from None
        except InputError:
            pass
        raise
    return resolve(config, model)


def resolve(config: PerceiverConfig, model: str | None = None) -> ResolvedModel:
    """Resolve ``config`` for ``model`` (default: from ``architectures``, else MaskedLM).

    Raises :class:`ConfigError` with every error found (transformers would refuse to build the
    model, or its forward pass would fail for any input); warnings are kept on the result.
    """
    resolved = resolve_unchecked(config, model)
    if any(f.severity == "error" for f in resolved.findings):
        raise ConfigError(resolved.findings)
    return resolved


def resolve_unchecked(
    config: PerceiverConfig, model: str | None = None, *, rules: Rules = SCALAR
) -> ResolvedModel:
    """Resolve without raising: errors stay in ``findings``. For tools that evaluate the
    counts' formulas at invalid points on purpose; everything else should call
    :func:`resolve`.

    ``rules`` (the vectorised sweep): ``config``'s integer fields may be per-row int64 (or
    float64) arrays; every module's dims are then arrays too, and each validity rule records a
    per-row mask in ``rules`` instead of a finding (perceiver_calc.rules). Errors found without
    looking at a value (a bad string) are still findings, and hold for every row."""
    cls = model_class_of(config, model)
    spec = CLASSES[cls]
    ctx = _Ctx(config, cls, rules)
    _general_findings(ctx)
    _unused_hardcoded_fields(ctx)
    modules = _BUILDERS[spec.builder](ctx)
    if not rules.batched:  # batched: folded into the rule's mask (_check_self_attention_width)
        ctx.findings[:] = parity.relax_unexecuted_self_attention(config, ctx.findings)
    # Checked only for an otherwise valid config (the sweep checks every row: a row is invalid
    # if any rule fails, whichever the scalar path lists).
    if rules.magnitudes and (rules.batched or not any(f.severity == "error" for f in ctx.findings)):
        with rules.gated():
            _param_numel_findings(ctx, modules)
            ctx.findings += parity.tensor_bytes_findings(modules, rules)
    fixed = {"latents": config.num_latents, "one": 1}
    outputs = spec.fixed_outputs(config.max_position_embeddings)
    if outputs is not None and (hasattr(outputs, "dtype") or outputs):
        fixed["outputs"] = outputs  # 0 (no decoder) is not a query length to check
    ctx.findings += parity.chunk_findings(config, fixed, rules)
    return ResolvedModel(
        model=cls,
        config=config,
        modules=tuple(modules),
        findings=tuple(ctx.findings),
        encoder_kv_dim=_encoder_kv(modules),
        fixed_lengths=MappingProxyType(fixed),
        input_kind=spec.input_kind,
    )


def _encoder_kv(modules: list[Module]) -> Dim:
    for m in modules:
        if isinstance(m, PerceiverLayer) and m.role == "encoder_cross":
            return m.kv_dim
    raise AssertionError("every Perceiver has an encoder cross-attention")
