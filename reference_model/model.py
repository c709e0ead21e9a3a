"""An independent, readable PyTorch Perceiver: one file, every HF class.

`build_model(config, model_class)` returns a module whose parameter AND buffer names and shapes
equal those of Hugging Face transformers' model of the same class and config, so
`model.load_state_dict(hf_model.state_dict(), strict=True)` works and the outputs match.

Written from transformers 5.24's `models/perceiver/modeling_perceiver.py` (cited as `HF Lnnn`)
and ../shared/reference/hf-perceiver-notes.md, without copying its code. Module names follow HF
verbatim (`attention.self.query`, `decoding_cross_attention`, ...) because the state-dict keys
depend on them.

Notation in shape comments: B batch, N num_latents, D d_latents, C d_model, M encoder input length,
K encoder kv width (the preprocessor's output channels), O decoder queries, H heads.

Two attention kernels (`attention=`):
  "eager": HF's exact sequence of ops (matmul, /sqrt(d), +mask, softmax, dropout, matmul), so
           `torch.utils.flop_counter.FlopCounterMode` counts the same FLOPs as on HF's model.
  "sdpa":  `torch.nn.functional.scaled_dot_product_attention`, see `_attend` for when it is used.

HF behaviours kept on purpose (they are what the analytic counts must reproduce):
  * LayerNorm eps is torch's default 1e-5; `config.layer_norm_eps` is unused (HF L164, L371).
  * Self-attention weights are shared across `num_blocks` (the ModuleList is re-applied, HF L496).
  * The attention mask only reaches the encoder cross-attention (HF L752-760, L2004).
  * The masked-LM output projection is tied to the input embedding; only its bias is new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perceiver_calc.classes import (
    CLASSES,
    DEFAULT_MODEL_CLASS,
    FLOW_OUTPUT_CHANNELS,
    FLOW_PATCH_CHANNELS,
    MASKED_LM_DECODER_HEADS,
    MASKED_LM_DECODER_QK_CHANNELS,
)

__all__ = ["MODEL_CLASSES", "PerceiverOutput", "build_model"]

MODEL_CLASSES: tuple[str, ...] = tuple(CLASSES)

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


@dataclass
class PerceiverOutput:
    """What every reference model returns.

    logits: (B, P, V) masked LM; (B, num_labels) classifiers; (B, *train_size, 2) optical flow;
        a dict {"audio": (B, n), "image": (B, n, 3), "label": (B, num_labels)} multimodal;
        None for the bare PerceiverModel.
    loss: scalar, only when `labels` were given (masked LM and classifiers).
    last_hidden_state: (B, N, D), the latents after the encoder.
    """

    logits: Any = None
    loss: Tensor | None = None
    last_hidden_state: Tensor | None = None


# --------------------------------------------------------------------------------------------
# config access


def _get(config: Any, name: str, default: Any = None) -> Any:
    """`config.name`, or `default` where the attribute is missing or None.

    Used for the optional perceiver-calc fields that HF hardcodes per class (decoder_num_heads,
    fourier_num_bands, ...): None means "the class's HF value".
    """
    value = getattr(config, name, None)
    return default if value is None else value


def _activation(hidden_act: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """HF's ACT2FN for the names a Perceiver config uses (transformers/activations.py)."""
    if callable(hidden_act):
        return hidden_act
    table: dict[str, Callable[[Tensor], Tensor]] = {
        "gelu": F.gelu,  # exact erf GELU, like HF's GELUActivation
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_new": lambda x: (
            0.5
            * x
            * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
        ),
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
        "relu": F.relu,
        "silu": F.silu,
        "swish": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "mish": F.mish,
    }
    if hidden_act not in table:
        raise ValueError(f"hidden_act ({hidden_act!r}) is not one of {sorted(table)}")
    return table[hidden_act]


# --------------------------------------------------------------------------------------------
# CPU inference fast path (attention="sdpa", no grad, fp32 on CPU)
#
# Nearly all of a Perceiver's forward time on a CPU is in matrix multiplies that already run at
# the BLAS library's peak, so the fast path saves work around them instead:
# 1. weights are handed to MKL pre-packed (torch.ops.mkl._mkl_linear, what torch's compiler
#    uses on CPU), built once per weight version and row count and kept beside the weight;
# 2. self-attention computes Q, K and V with one GEMM over a concatenated weight, and
#    cross-attention K and V with one (the same input feeds them);
# 3. the 1/sqrt(d) score scale is folded into the packed query weight and bias.
# The parameters themselves are untouched (names and state dict as transformers'); the packed
# copies are plain attributes, not buffers, and cost one extra copy of the weights. Training
# and the eager path (which FlopCounterMode counts op for op) never take this path.

_MKL_LINEAR = torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def _fast_path_ok(x: Tensor) -> bool:
    return (
        _MKL_LINEAR
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
    )


class _PackedWeights:
    """MKL-packed (weight, bias) derived from some parameters; rebuilt when any of them changes
    (in-place updates bump ``_version``) or the row count does (MKL packs for a given M)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[tuple[Any, ...], Tensor, Tensor, Tensor | None]] = {}

    def linear(
        self,
        x: Tensor,
        sources: tuple[Tensor, ...],
        build: Callable[[], tuple[Tensor, Tensor | None]],
    ) -> Tensor:
        """x (..., in) -> (..., out) with the packed weight built by ``build``."""
        rows = x.numel() // x.shape[-1]
        key = tuple((t._version, t.data_ptr()) for t in sources)
        hit = self._cache.get(rows)
        if hit is None or hit[0] != key:
            if len(self._cache) >= 4:  # a few row counts (batch sizes) at most
                self._cache.clear()
            weight, bias = build()
            packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)
            hit = (key, packed, weight, bias)
            self._cache[rows] = hit
        _, packed, weight, bias = hit
        return torch.ops.mkl._mkl_linear(x, packed, weight, bias, rows)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) that uses MKL-packed weights on the fast path."""

    prepacked = False

    def forward(self, x: Tensor) -> Tensor:
        if self.prepacked and _fast_path_ok(x):
            if "_packed" not in self.__dict__:
                self.__dict__["_packed"] = _PackedWeights()
            packed: _PackedWeights = self.__dict__["_packed"]
            return packed.linear(x, (self.weight, self.bias), lambda: (self.weight, self.bias))
        return super().forward(x)


# --------------------------------------------------------------------------------------------
# attention


def _attend(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, impl: str
) -> Tensor:
    """Multi-head attention core. q (B, H, Q, dqk), k (B, H, Kl, dqk), v (B, H, Kl, dv).

    mask: additive float (B, 1, 1, Kl) (0 or finfo.min) or None. dropout_p: 0 unless training.
    Returns the context (B, H, Q, dv).
    """
    if impl == "eager":
        # HF L197-215, op for op: the scale divides the scores after the matmul.
        scores = torch.matmul(q, k.transpose(-1, -2))  # (B,H,Q,dqk) x (B,H,dqk,Kl) -> (B,H,Q,Kl)
        scores = scores / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0.0)
        return torch.matmul(probs, v)  # (B,H,Q,Kl) x (B,H,Kl,dv) -> (B,H,Q,dv)
    # SDPA's default scale is 1/sqrt(q.shape[-1]) = HF's 1/sqrt(qk_channels_per_head).
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


class PerceiverSelfAttention(nn.Module):
    """LayerNorms + Q/K/V projections + attention; HF's `attention.self` (HF L136-220).

    Parameter names: layernorm1 (q_dim), layernorm2 (kv_dim; Identity for self-attention),
    query (qk, q_dim), key (qk, kv_dim), value (v, kv_dim).
    """

    def __init__(
        self,
        *,
        is_cross_attention: bool,
        qk_channels: int,
        v_channels: int,
        num_heads: int,
        q_dim: int,
        kv_dim: int,
        dropout_p: float,
    ) -> None:
        super().__init__()
        if qk_channels % num_heads != 0:
            raise ValueError(
                f"qk_channels ({qk_channels}) must be divisible by num_heads ({num_heads})."
            )
        if v_channels % num_heads != 0:
            raise ValueError(
                f"v_channels ({v_channels}) must be divisible by num_heads ({num_heads})."
            )
        self.num_heads = num_heads
        self.qk_channels = qk_channels
        self.v_channels = v_channels
        self.dropout_p = dropout_p
        self.attention_impl = "eager"
        self.layernorm1 = nn.LayerNorm(q_dim)
        self.layernorm2: nn.Module = nn.LayerNorm(kv_dim) if is_cross_attention else nn.Identity()
        self.query = Linear(q_dim, qk_channels)
        self.key = Linear(kv_dim, qk_channels)
        self.value = Linear(kv_dim, v_channels)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, T, H*d) -> (B, H, T, d), a view."""
        b, t, c = x.shape
        return x.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, hidden_states: Tensor, inputs: Tensor | None, mask: Tensor | None) -> Tensor:
        """hidden_states (B, Q, q_dim); inputs (B, Kl, kv_dim) for cross-attention, else None.

        Returns the context (B, Q, v).
        """
        x = self.layernorm1(hidden_states)
        kv = self.layernorm2(inputs) if inputs is not None else x
        if self.attention_impl == "sdpa" and not self.training and _fast_path_ok(x):
            return self._fast_forward(x, kv if inputs is not None else None, mask)
        q = self._heads(self.query(x))  # (B, H, Q, qk/H)
        k = self._heads(self.key(kv))  # (B, H, Kl, qk/H)
        v = self._heads(self.value(kv))  # (B, H, Kl, v/H)
        dropout_p = self.dropout_p if self.training else 0.0
        ctx = _attend(q, k, v, mask, dropout_p, self.attention_impl)  # (B, H, Q, v/H)
        b, _, t, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, t, self.v_channels)

    def _fast_forward(self, x: Tensor, kv: Tensor | None, mask: Tensor | None) -> Tensor:
        """The CPU inference fast path (see "CPU inference fast path" above): fused,
        pre-packed projections with the score scale folded into the query."""
        if "_packed" not in self.__dict__:
            self.__dict__["_packed"] = (_PackedWeights(), _PackedWeights())
        first, second = self.__dict__["_packed"]
        qk, v_ch = self.qk_channels, self.v_channels
        scale = 1.0 / math.sqrt(qk // self.num_heads)
        q_w, q_b = self.query.weight, self.query.bias
        k_w, k_b = self.key.weight, self.key.bias
        v_w, v_b = self.value.weight, self.value.bias
        if kv is None:  # self-attention: Q, K, V all read x
            qkv = first.linear(
                x,
                (q_w, q_b, k_w, k_b, v_w, v_b),
                lambda: (torch.cat([q_w * scale, k_w, v_w]), torch.cat([q_b * scale, k_b, v_b])),
            )
            q_t, k_t, v_t = qkv.split([qk, qk, v_ch], dim=-1)
        else:  # cross-attention: K and V read the inputs
            q_t = first.linear(x, (q_w, q_b), lambda: (q_w * scale, q_b * scale))
            kv_t = second.linear(
                kv, (k_w, k_b, v_w, v_b), lambda: (torch.cat([k_w, v_w]), torch.cat([k_b, v_b]))
            )
            k_t, v_t = kv_t.split([qk, v_ch], dim=-1)
        q, k, v = self._heads(q_t), self._heads(k_t), self._heads(v_t)
        if q.shape[-1] == v.shape[-1]:
            # Equal head widths: torch's fused CPU flash kernel (scale already applied).
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        else:
            # Unequal widths send SDPA to its slow math kernel; plain matmuls are faster.
            scores = torch.matmul(q, k.transpose(-1, -2))  # (B, H, Q, Kl)
            if mask is not None:
                scores = scores + mask
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v)  # (B, H, Q, v/H)
        b, _, t, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, t, self.v_channels)


class PerceiverSelfOutput(nn.Module):
    """`attention.output.dense`: v -> out (q_dim for cross-attention, v for self-attention)."""

    def __init__(self, input_channels: int, output_channels: int) -> None:
        super().__init__()
        self.dense = Linear(input_channels, output_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class PerceiverAttention(nn.Module):
    """`attention`: self (Q/K/V + attention), output (dense), optional query residual."""

    def __init__(
        self,
        config: Any,
        *,
        is_cross_attention: bool,
        qk_channels: int | None,
        v_channels: int | None,
        num_heads: int,
        q_dim: int,
        kv_dim: int,
        use_query_residual: bool,
    ) -> None:
        super().__init__()
        # Channel defaulting, HF L271-290 + L152-158: an unset cross-attention qk width follows
        # cross_attention_shape_for_attention; every unset v width follows qk.
        if is_cross_attention and qk_channels is None:
            shape = config.cross_attention_shape_for_attention
            if shape == "q":
                qk_channels = q_dim
            elif shape == "kv":
                qk_channels = kv_dim
            else:
                raise ValueError(f"Unknown value {shape} for cross_attention_shape_for_attention.")
        elif qk_channels is None:
            qk_channels = q_dim
        if v_channels is None:
            v_channels = qk_channels
        self.self = PerceiverSelfAttention(
            is_cross_attention=is_cross_attention,
            qk_channels=qk_channels,
            v_channels=v_channels,
            num_heads=num_heads,
            q_dim=q_dim,
            kv_dim=kv_dim,
            dropout_p=float(config.attention_probs_dropout_prob),
        )
        # A cross-attention projects back to the query width; a self-attention keeps v (HF L297).
        out_channels = q_dim if is_cross_attention else v_channels
        self.output = PerceiverSelfOutput(v_channels, out_channels)
        self.use_query_residual = use_query_residual

    def forward(self, hidden_states: Tensor, inputs: Tensor | None, mask: Tensor | None) -> Tensor:
        out = self.output(self.self(hidden_states, inputs, mask))
        if self.use_query_residual:
            # The residual is the raw query input, before layernorm1 (HF L325-329).
            out = out + hidden_states
        return out


class PerceiverMLP(nn.Module):
    """dense1 (W*d) -> activation -> dense2 (d)."""

    def __init__(self, config: Any, input_size: int, widening_factor: int) -> None:
        super().__init__()
        self.dense1 = Linear(input_size, widening_factor * input_size)
        self.act = _activation(config.hidden_act)
        self.dense2 = Linear(widening_factor * input_size, input_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense2(self.act(self.dense1(x)))


class PerceiverLayer(nn.Module):
    """Attention block + MLP block, pre-LayerNorm, HF L354-415.

    out = a + mlp(layernorm(a)), a = dense(attention(LN1(x), LN2(kv))) [+ x].
    """

    def __init__(
        self,
        config: Any,
        *,
        is_cross_attention: bool,
        qk_channels: int | None,
        v_channels: int | None,
        num_heads: int,
        q_dim: int,
        kv_dim: int,
        widening_factor: int,
        use_query_residual: bool = True,
    ) -> None:
        super().__init__()
        self.attention = PerceiverAttention(
            config,
            is_cross_attention=is_cross_attention,
            qk_channels=qk_channels,
            v_channels=v_channels,
            num_heads=num_heads,
            q_dim=q_dim,
            kv_dim=kv_dim,
            use_query_residual=use_query_residual,
        )
        self.layernorm = nn.LayerNorm(q_dim)
        self.mlp = PerceiverMLP(config, q_dim, widening_factor)

    def forward(
        self, hidden_states: Tensor, inputs: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """hidden_states (B, Q, q_dim), inputs (B, Kl, kv_dim) or None -> (B, Q, q_dim)."""
        a = self.attention(hidden_states, inputs, mask)
        # chunk_size_feed_forward (HF L402) splits this per token: same result, not modelled.
        return a + self.mlp(self.layernorm(a))


class PerceiverEmbeddings(nn.Module):
    """`embeddings.latents` (N, D), expanded (not copied) over the batch."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(config.num_latents, config.d_latents))

    def forward(self, batch_size: int) -> Tensor:
        return self.latents.expand(batch_size, -1, -1)


class PerceiverEncoder(nn.Module):
    """Cross-attention (latents <- inputs), then `num_blocks` x the shared self-attention block."""

    def __init__(self, config: Any, kv_dim: int) -> None:
        super().__init__()
        d = config.d_latents
        for heads_field in ("num_self_attention_heads", "num_cross_attention_heads"):
            heads = getattr(config, heads_field)
            if d % heads != 0:
                raise ValueError(f"d_latents ({d}) must be divisible by {heads_field} ({heads}).")
        self.num_blocks = config.num_blocks
        self.cross_attention = PerceiverLayer(
            config,
            is_cross_attention=True,
            qk_channels=config.qk_channels,
            v_channels=config.v_channels,
            num_heads=config.num_cross_attention_heads,
            q_dim=d,
            kv_dim=kv_dim,
            widening_factor=config.cross_attention_widening_factor,
            use_query_residual=config.use_query_residual,
        )
        self.self_attends = nn.ModuleList(
            PerceiverLayer(
                config,
                is_cross_attention=False,
                qk_channels=config.qk_channels,
                v_channels=config.v_channels,
                num_heads=config.num_self_attention_heads,
                q_dim=d,
                kv_dim=d,
                widening_factor=config.self_attention_widening_factor,
            )
            for _ in range(config.num_self_attends_per_block)
        )

    def forward(self, latents: Tensor, inputs: Tensor, inputs_mask: Tensor | None) -> Tensor:
        """latents (B, N, D), inputs (B, M, K), inputs_mask (B, 1, 1, M) or None -> (B, N, D)."""
        z = self.cross_attention(latents, inputs, inputs_mask)
        for _ in range(self.num_blocks):  # weights shared across blocks
            for layer in self.self_attends:
                z = layer(z)  # no mask: the latents never pad
        return z


# --------------------------------------------------------------------------------------------
# position encodings


class PerceiverTrainablePositionEncoding(nn.Module):
    """`position_embeddings` (prod(index_dims), num_channels), HF L2535-2589."""

    def __init__(self, index_dims: int | Sequence[int], num_channels: int) -> None:
        super().__init__()
        n = index_dims if isinstance(index_dims, int) else math.prod(index_dims)
        self.num_channels = num_channels
        self.position_embeddings = nn.Parameter(torch.randn(n, num_channels))

    def output_size(self) -> int:
        return self.num_channels

    def forward(self, batch_size: int, interpolate_to: tuple[int, int] | None = None) -> Tensor:
        """-> (B, n, num_channels); optionally bicubic-resized to an (h, w) grid (HF L2561)."""
        pe = self.position_embeddings
        if interpolate_to is not None:
            side = int(pe.shape[0] ** 0.5)
            h, w = interpolate_to
            if (h, w) != (side, side):
                grid = pe.reshape(1, side, side, self.num_channels).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
                pe = grid.reshape(1, self.num_channels, -1).permute(0, 2, 1).squeeze(0)
        return pe.expand(batch_size, -1, -1)


def _linear_positions(index_dims: Sequence[int], device: torch.device) -> Tensor:
    """Grid of coordinates in [-1, 1]: (*index_dims, len(index_dims)), HF L2495."""
    axes = [
        torch.linspace(-1.0, 1.0, steps=n, dtype=torch.float32, device=device) for n in index_dims
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def fourier_features(
    pos: Tensor, num_bands: int, max_resolution: Sequence[int], concat_pos: bool = True
) -> Tensor:
    """Fourier position features, HF's generate_fourier_features (L2425) with sine_only=False.

    pos (B, M, d) coordinates in [-1, 1] -> (B, M, d + 2*d*num_bands), channels ordered
    [pos, sin(pi f_k x_i) for i, k, cos(...) for i, k] with f linear in [1, res_i / 2].
    Only pos[0] is featurised (as in HF): the features are the same for every batch element.
    """
    freq = torch.stack(
        [torch.linspace(1.0, res / 2, steps=num_bands, device=pos.device) for res in max_resolution]
    )  # (d, num_bands)
    per_pos = (pos[0, :, :, None] * freq[None, :, :]).reshape(pos.shape[1], -1)  # (M, d*bands)
    feats = torch.cat([torch.sin(math.pi * per_pos), torch.cos(math.pi * per_pos)], dim=-1)
    if concat_pos:
        feats = torch.cat([pos, feats.expand(pos.shape[0], -1, -1)], dim=-1)
    return feats


class PerceiverFourierPositionEncoding(nn.Module):
    """Fixed Fourier features over an index grid (no parameters)."""

    def __init__(self, num_bands: int, max_resolution: Sequence[int]) -> None:
        super().__init__()
        self.num_bands = num_bands
        self.max_resolution = tuple(max_resolution)

    def output_size(self) -> int:
        d = len(self.max_resolution)
        return d + 2 * d * self.num_bands

    def forward(
        self,
        index_dims: Sequence[int],
        batch_size: int,
        *,
        device: torch.device,
        dtype: torch.dtype,
        pos: Tensor | None = None,
    ) -> Tensor:
        """-> (B, prod(index_dims), output_size()); `pos` (B, n, d) overrides the grid."""
        if pos is None:
            grid = _linear_positions(index_dims, device)
            pos = grid[None].expand(batch_size, *grid.shape).reshape(batch_size, -1, grid.shape[-1])
        elif pos.shape[-1] != len(index_dims):
            raise ValueError("Spatial features have the wrong number of dimensions.")
        return fourier_features(pos, self.num_bands, self.max_resolution).to(dtype=dtype)


# --------------------------------------------------------------------------------------------
# preprocessors


class PerceiverTextPreprocessor(nn.Module):
    """Token + learned absolute position embeddings: (B, M) ids -> (B, M, C)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.num_channels = config.d_model
        self.embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.d_model)

    def forward(
        self, inputs: Tensor, interpolate_pos_encoding: bool = False
    ) -> tuple[Tensor, Any, Tensor]:
        tokens = self.embeddings(inputs)  # (B, M, C)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        return tokens + self.position_embeddings(positions), None, tokens


def space_to_depth(frames: Tensor, temporal_block: int = 1, spatial_block: int = 1) -> Tensor:
    """Channels-first blocks to channels-last depth, HF L2276.

    (B, C, H, W) -> (B, H/s, W/s, s*s*C); (B, T, C, H, W) -> (B, T/t, H/s, W/s, t*s*s*C),
    depth ordered (t, s_h, s_w, C).
    """
    s, t = spatial_block, temporal_block
    if frames.ndim == 4:
        b, c, h, w = frames.shape
        x = frames.view(b, c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, h // s, w // s, s * s * c)
    if frames.ndim == 5:
        b, time, c, h, w = frames.shape
        x = frames.view(b, time // t, t, c, h // s, s, w // s, s).permute(0, 1, 4, 6, 2, 5, 7, 3)
        return x.reshape(b, time // t, h // s, w // s, t * s * s * c)
    raise ValueError(
        "Frames should be of rank 4 (batch, channels, height, width)"
        " or rank 5 (batch, time, channels, height, width)"
    )


class Conv2dSamePadding(nn.Conv2d):
    """Conv2d with HF's "same" zero padding: k//2 - (1 - k%2) before, k//2 after (HF L2335).

    For the 7x7 stem that is 3 on each side, whatever the stride.
    """

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        pad = (kw // 2 + kw % 2 - 1, kw // 2, kh // 2 + kh % 2 - 1, kh // 2)
        return self._conv_forward(F.pad(x, pad), self.weight, self.bias)


class Conv2DDownsample(nn.Module):
    """4x downsampling stem: conv 7x7/2 (no bias) -> BatchNorm -> ReLU -> max-pool 3/2 (no pad).

    (B, 3, H, W) -> (B, out, Ho, Wo); 224 -> 112 -> 55.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv2dSamePadding(
            in_channels, out_channels, kernel_size=7, stride=2, bias=False
        )
        self.batchnorm = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.max_pool(self.relu(self.batchnorm(self.conv(x))))


class PerceiverImagePreprocessor(nn.Module):
    """Image/video inputs -> (B, M, K) with concatenated position features, HF L2860-3030.

    prep_type: "conv" (stem), "conv1x1", "pixels", "patches" (space_to_depth, optional Linear).
    Only the combinations the HF classes use are built (concat positions, downsample 1 except
    multimodal's 4x4 patches).
    """

    def __init__(
        self,
        *,
        prep_type: str,
        position_encoding: nn.Module,
        spatial_downsample: int = 1,
        temporal_downsample: int = 1,
        in_channels: int = 3,
        out_channels: int = 64,
        project_pos_dim: int = -1,
        conv_after_patching_in_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.prep_type = prep_type
        self.spatial_downsample = spatial_downsample
        self.temporal_downsample = temporal_downsample
        # Registration order follows HF so named_parameters() lists the same order.
        if prep_type == "conv":
            self.convnet = Conv2DDownsample(in_channels, out_channels)
        elif prep_type == "conv1x1":
            self.convnet_1x1 = nn.Conv2d(
                in_channels, out_channels, kernel_size=(1, 1), stride=(spatial_downsample,) * 2
            )
        self.position_embeddings = position_encoding
        # HF builds Linear(out_channels, project_pos_dim): its in-features are the conv width, not
        # the position width, so the two must agree for the forward to run (HF L1783).
        self.positions_projection: nn.Module = (
            Linear(out_channels, project_pos_dim) if project_pos_dim > 0 else nn.Identity()
        )
        self.conv_after_patches: nn.Module = (
            Linear(conv_after_patching_in_channels, out_channels)
            if conv_after_patching_in_channels is not None
            else nn.Identity()
        )
        pos_dim = project_pos_dim if project_pos_dim > 0 else position_encoding.output_size()
        if prep_type in ("conv", "conv1x1") or conv_after_patching_in_channels is not None:
            inp_dim = out_channels
        elif prep_type == "pixels":
            inp_dim = math.ceil(in_channels / spatial_downsample)
        else:  # patches without a projection
            inp_dim = in_channels * spatial_downsample**2 * temporal_downsample
        self.num_channels = inp_dim + pos_dim  # K

    def forward(
        self, inputs: Tensor, interpolate_pos_encoding: bool = False
    ) -> tuple[Tensor, Any, Tensor]:
        """(B, 3, H, W) or (B, T, C, H, W) -> ((B, M, K), None, (B, M, K - pos_dim))."""
        x = inputs
        if self.prep_type == "conv":
            x = self.convnet(x)
        elif self.prep_type == "conv1x1":
            x = self.convnet_1x1(x)
        elif self.prep_type == "pixels":
            # HF L2990 slices the first two axes (batch, channel): a no-op at downsample 1.
            s = self.spatial_downsample
            x = x[::s, ::s] if x.ndim == 4 else x[:, :: self.temporal_downsample, :, ::s, ::s]
        elif self.prep_type == "patches":
            x = space_to_depth(x, self.temporal_downsample, self.spatial_downsample)
            if x.ndim == 5 and x.shape[1] == 1:
                x = x.squeeze(1)  # optical flow: the 2 frames became depth
            x = self.conv_after_patches(x)
        if self.prep_type != "patches":  # channels last
            x = x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(0, 1, 3, 4, 2)
        b = x.shape[0]
        index_dims = tuple(x.shape[1:-1])
        x = x.reshape(b, math.prod(index_dims), x.shape[-1])  # (B, M, c)
        pe = self.position_embeddings
        if isinstance(pe, PerceiverTrainablePositionEncoding):
            size = tuple(index_dims[:2]) if interpolate_pos_encoding else None
            pos = pe(b, size)  # type: ignore[arg-type]
        else:
            pos = pe(index_dims, b, device=x.device, dtype=x.dtype)
        pos = self.positions_projection(pos)
        return torch.cat([x, pos], dim=-1), None, x


class PerceiverAudioPreprocessor(nn.Module):
    """(B, n_samples, 1) -> spp-sample patches + 1-D Fourier features: (B, n/spp, spp + 385)."""

    def __init__(self, samples_per_patch: int, position_encoding: PerceiverFourierPositionEncoding):
        super().__init__()
        self.samples_per_patch = samples_per_patch
        self.position_embeddings = position_encoding
        self.positions_projection = nn.Identity()
        self.num_channels = samples_per_patch + position_encoding.output_size()

    def forward(self, inputs: Tensor) -> tuple[Tensor, Any, Tensor]:
        x = inputs.reshape(inputs.shape[0], -1, self.samples_per_patch)
        pos = self.position_embeddings(x.shape[1:-1], x.shape[0], device=x.device, dtype=x.dtype)
        return torch.cat([x, self.positions_projection(pos)], dim=-1), None, x


class PerceiverOneHotPreprocessor(nn.Module):
    """(B, num_labels) -> (B, 1, num_labels)."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_channels = num_labels

    def forward(self, inputs: Tensor) -> tuple[Tensor, Any, Tensor]:
        x = inputs[:, None, :]
        return x, None, x


class PerceiverMultimodalPreprocessor(nn.Module):
    """Per-modality preprocessing, trainable channel padding to a common width K, then concat
    along tokens in sorted modality order. K = max(modality widths) + min_padding_size.
    """

    def __init__(
        self,
        modalities: Mapping[str, nn.Module],
        mask_probs: Mapping[str, float],
        min_padding_size: int,
    ) -> None:
        super().__init__()
        self.modalities = nn.ModuleDict(modalities)
        self.mask_probs = dict(mask_probs)
        widths = {name: m.num_channels for name, m in modalities.items()}
        self.num_channels = max(widths.values()) + min_padding_size
        self.padding = nn.ParameterDict(
            {n: nn.Parameter(torch.randn(1, self.num_channels - w)) for n, w in widths.items()}
        )
        self.mask = nn.ParameterDict(
            {n: nn.Parameter(torch.randn(1, self.num_channels)) for n in self.mask_probs}
        )

    def forward(
        self, inputs: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, int], dict[str, Tensor]]:
        padded: dict[str, Tensor] = {}
        sizes: dict[str, int] = {}
        without_pos: dict[str, Tensor] = {}
        for name, prep in self.modalities.items():
            out, _, without_pos[name] = prep(inputs[name])
            b, n, c = out.shape
            pad = self.padding[name].expand(b, n, self.num_channels - c)
            out = torch.cat([out, pad], dim=2)  # (B, n, K)
            if name in self.mask_probs:
                # HF L3270: Bernoulli(p) token masking; p is 0 or 1 here, so it replaces the
                # label tokens with the mask token and keeps audio/image. Kept literally (same
                # RNG draws, same arithmetic) so outputs match to the bit.
                token = self.mask[name].expand(b, -1, -1)
                full = torch.full([b, n], self.mask_probs[name], device=token.device)
                m = torch.bernoulli(full)[:, :, None]
                out = (1 - m) * out + m * token
            padded[name] = out
            sizes[name] = n
        return torch.cat([padded[k] for k in sorted(padded)], dim=1), sizes, without_pos


# --------------------------------------------------------------------------------------------
# decoders


class PerceiverBasicDecoder(nn.Module):
    """Queries (B, O, q) cross-attend to the latents (B, N, D), then `final_layer`, HF L1850-2010.

    With position_encoding_only=True it only builds queries (the multimodal sub-decoders).
    """

    def __init__(
        self,
        config: Any,
        *,
        output_num_channels: int,
        position_encoding: nn.Module | None,
        output_index_dims: Sequence[int] | int | None = None,
        num_channels: int = 128,
        qk_channels: int | None = None,
        v_channels: int | None = None,
        num_heads: int = 1,
        widening_factor: int = 1,
        use_query_residual: bool = False,
        final_project: bool = True,
        position_encoding_only: bool = False,
    ) -> None:
        super().__init__()
        if position_encoding is not None:
            self.output_position_encodings = position_encoding
            self.positions_projection = nn.Identity()
        self.output_index_dims = output_index_dims
        if not position_encoding_only:
            self.decoding_cross_attention = PerceiverLayer(
                config,
                is_cross_attention=True,
                qk_channels=qk_channels,
                v_channels=v_channels,
                num_heads=num_heads,
                q_dim=num_channels,
                kv_dim=config.d_latents,
                widening_factor=widening_factor,
                use_query_residual=use_query_residual,
            )
            self.final_layer: nn.Module = (
                Linear(num_channels, output_num_channels) if final_project else nn.Identity()
            )
        self.num_query_channels = (
            position_encoding.output_size()
            if position_encoding_only and position_encoding is not None
            else (output_num_channels if final_project else num_channels)
        )

    def decoder_query(self, inputs: Tensor, subsampled_points: Tensor | None = None) -> Tensor:
        """Position queries (B, O, q). inputs (B, ...) only give the batch size and device."""
        pe = self.output_position_encodings
        b = inputs.shape[0]
        if subsampled_points is not None:
            # Decode only some output positions: flat indices -> coordinates in [-1, 1).
            dims = tuple(self.output_index_dims)  # type: ignore[arg-type]
            idx = torch.stack(torch.unravel_index(subsampled_points.to(inputs.device), dims), dim=1)
            pos = -1 + 2 * idx / torch.tensor(dims, device=idx.device)[None, :]
            pos = pos[None].expand(b, *pos.shape)
            if isinstance(pe, PerceiverTrainablePositionEncoding):
                q = pe(b)
            else:
                q = pe(dims, b, device=inputs.device, dtype=inputs.dtype, pos=pos)
            q = self.positions_projection(q)
            return q.reshape(q.shape[0], -1, q.shape[-1])
        if isinstance(pe, PerceiverTrainablePositionEncoding):
            q = pe(b)  # (B, O, q), expanded
        else:  # HF L1948 uses inputs.shape[2:] as the grid (only sensible for raw images)
            q = pe(tuple(inputs.shape[2:]), b, device=inputs.device, dtype=inputs.dtype)
        return self.positions_projection(q)

    def forward(self, query: Tensor, z: Tensor) -> Tensor:
        """query (B, O, q), z (B, N, D) -> (B, O, final width). No mask: HF ignores query_mask."""
        return self.final_layer(self.decoding_cross_attention(query, z))


class PerceiverClassificationDecoder(nn.Module):
    """One trainable query (1, D) -> (B, num_labels) logits."""

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__()
        self.decoder = PerceiverBasicDecoder(
            config, output_num_channels=config.num_labels, output_index_dims=1, **kwargs
        )
        self.num_query_channels = self.decoder.num_query_channels

    def decoder_query(self, inputs: Tensor, subsampled_points: Tensor | None = None) -> Tensor:
        return self.decoder.decoder_query(inputs, subsampled_points)

    def forward(self, query: Tensor, z: Tensor) -> Tensor:
        return self.decoder(query, z)[:, 0, :]


class PerceiverOpticalFlowDecoder(nn.Module):
    """Queries are the preprocessed inputs (B, H*W, K); output (B, *train_size, 2) / 100."""

    def __init__(
        self, config: Any, output_image_shape: Sequence[int], rescale_factor: float, **kwargs: Any
    ) -> None:
        super().__init__()
        self.output_image_shape = list(output_image_shape)
        self.rescale_factor = rescale_factor
        self.decoder = PerceiverBasicDecoder(config, **kwargs)

    def decoder_query(self, inputs: Tensor, subsampled_points: Tensor | None = None) -> Tensor:
        if subsampled_points is not None:
            raise ValueError("FlowDecoder doesn't support subsampling yet.")
        return inputs

    def forward(self, query: Tensor, z: Tensor) -> Tensor:
        preds = self.decoder(query, z) / self.rescale_factor
        return preds.reshape([preds.shape[0], *self.output_image_shape, preds.shape[-1]])


class PerceiverBasicVideoAutoencodingDecoder(nn.Module):
    """Video query builder over output_shape[1:4] = (T, H, W) (multimodal image queries)."""

    def __init__(self, config: Any, output_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__()
        if len(output_shape) != 4:  # B, T, H, W
            raise ValueError(f"Expected rank 4 output_shape, got {output_shape}.")
        self.decoder = PerceiverBasicDecoder(
            config, output_index_dims=list(output_shape)[1:4], **kwargs
        )
        self.num_query_channels = self.decoder.num_query_channels

    def decoder_query(self, inputs: Tensor, subsampled_points: Tensor | None = None) -> Tensor:
        return self.decoder.decoder_query(inputs, subsampled_points)


class PerceiverMultimodalDecoder(nn.Module):
    """Per-modality queries, padded to a common width Qc = max + 2, concatenated (sorted order),
    then one shared cross-attention + final_layer: (B, O, Qc) -> (B, O, output_num_channels).
    """

    def __init__(
        self,
        config: Any,
        modalities: Mapping[str, nn.Module],
        output_num_channels: int,
        min_padding_size: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.modalities = nn.ModuleDict(modalities)
        widths = {n: int(m.num_query_channels) for n, m in modalities.items()}
        self.num_query_channels = max(widths.values()) + min_padding_size
        self.decoder = PerceiverBasicDecoder(
            config,
            output_num_channels=output_num_channels,
            position_encoding=None,
            num_channels=self.num_query_channels,
            **kwargs,
        )
        self.padding = nn.ParameterDict(
            {
                n: nn.Parameter(torch.randn(1, self.num_query_channels - w))
                for n, w in widths.items()
            }
        )

    def decoder_query(
        self,
        inputs: Tensor,
        modality_sizes: Mapping[str, int],
        subsampled_points: Mapping[str, Tensor] | None,
    ) -> Tensor:
        """inputs (B, M, K) the encoder inputs, split per modality -> queries (B, O, Qc)."""
        parts, start = {}, 0
        for name in sorted(modality_sizes):  # HF's restructure(): sorted, contiguous slices
            parts[name] = inputs[:, start : start + modality_sizes[name]]
            start += modality_sizes[name]
        points = subsampled_points or {}
        queries = []
        for name in sorted(self.modalities):
            q = self.modalities[name].decoder_query(parts[name], points.get(name))
            q = q.reshape(q.shape[0], math.prod(q.shape[1:-1]), q.shape[-1])
            pad = self.padding[name].expand(
                q.shape[0], q.shape[1], self.num_query_channels - q.shape[2]
            )
            queries.append(torch.cat([q, pad], dim=2))
        return torch.cat(queries, dim=1)

    def forward(self, query: Tensor, z: Tensor) -> Tensor:
        return self.decoder(query, z)


class PerceiverEmbeddingDecoder(nn.Module):
    """Tied output projection: (B, P, C) x (C, V) + bias -> (B, P, V). Only `bias` is new."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: Tensor, embedding: nn.Embedding) -> Tensor:
        b, p, c = hidden_states.shape
        out = torch.matmul(hidden_states.reshape(-1, c), embedding.weight.t()) + self.bias
        return out.reshape(b, p, -1)


class _ClassifierPostprocessor(nn.Module):
    """`classifier` Linear; audio flattens patches, label takes the single token."""

    def __init__(self, in_channels: int, out_channels: int, kind: str) -> None:
        super().__init__()
        self.classifier = Linear(in_channels, out_channels)
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        y = self.classifier(x)
        if self.kind == "audio":
            return y.reshape(x.shape[0], -1)  # (B, n_patches * spp) samples
        if self.kind == "label":
            return y[:, 0, :]
        return y


class PerceiverMultimodalPostprocessor(nn.Module):
    """Split (B, O, out) by modality (sorted order) and apply each modality's classifier."""

    def __init__(self, modalities: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.modalities = nn.ModuleDict(modalities)

    def forward(self, x: Tensor, modality_sizes: Mapping[str, int]) -> dict[str, Tensor]:
        parts, start = {}, 0
        for name in sorted(modality_sizes):
            parts[name] = x[:, start : start + modality_sizes[name]]
            start += modality_sizes[name]
        return {name: post(parts[name]) for name, post in self.modalities.items()}


# --------------------------------------------------------------------------------------------
# the model


class PerceiverModel(nn.Module):
    """Preprocessor -> latents cross-attend to inputs -> self-attention blocks -> decoder.

    Mirrors HF's PerceiverModel (L562): `input_preprocessor`, `output_postprocessor`,
    `embeddings`, `encoder`, `decoder` (registered in HF's order). Without a preprocessor the
    inputs are (B, M, d_model) and the output has only `last_hidden_state` (logits None).
    """

    def __init__(
        self,
        config: Any,
        input_preprocessor: nn.Module | None = None,
        decoder: nn.Module | None = None,
        output_postprocessor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.d_model = config.d_model
        self.input_preprocessor = input_preprocessor
        self.output_postprocessor = output_postprocessor
        self.embeddings = PerceiverEmbeddings(config)
        kv_dim = (
            input_preprocessor.num_channels if input_preprocessor is not None else config.d_model
        )
        self.encoder = PerceiverEncoder(config, kv_dim=int(kv_dim))
        self.decoder = decoder

    def forward(
        self,
        inputs: Any,
        attention_mask: Tensor | None = None,
        subsampled_output_points: Mapping[str, Tensor] | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> PerceiverOutput:
        modality_sizes: dict[str, int] | None = None
        if self.input_preprocessor is None:
            if inputs.shape[-1] != self.d_model:
                raise ValueError(
                    f"Last dimension of the inputs: {inputs.shape[-1]} doesn't correspond to "
                    f"config.d_model: {self.d_model}. Make sure to set config.d_model "
                    "appropriately."
                )
            x = inputs
        elif isinstance(self.input_preprocessor, PerceiverMultimodalPreprocessor):
            x, modality_sizes, _ = self.input_preprocessor(inputs)
        elif isinstance(self.input_preprocessor, PerceiverImagePreprocessor):
            x, _, _ = self.input_preprocessor(inputs, interpolate_pos_encoding)
        else:
            x, _, _ = self.input_preprocessor(inputs)
        b = x.shape[0]  # x: (B, M, K)
        latents = self.embeddings(b)  # (B, N, D)
        mask = _additive_mask(attention_mask, latents.dtype)
        z = self.encoder(latents, x, mask)
        logits: Any = None
        if self.decoder is not None:
            if isinstance(self.decoder, PerceiverMultimodalDecoder):
                assert modality_sizes is not None
                query = self.decoder.decoder_query(x, modality_sizes, subsampled_output_points)
            else:
                query = self.decoder.decoder_query(x)
            logits = self.decoder(query, z)
            if self.output_postprocessor is not None:
                if subsampled_output_points is not None:
                    out_sizes = {
                        "audio": subsampled_output_points["audio"].shape[0],
                        "image": subsampled_output_points["image"].shape[0],
                        "label": 1,
                    }
                else:
                    assert modality_sizes is not None
                    out_sizes = modality_sizes
                logits = self.output_postprocessor(logits, out_sizes)
        return PerceiverOutput(logits=logits, last_hidden_state=z)


def _additive_mask(attention_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """(B, M) 1 = keep, 0 = pad -> additive (B, 1, 1, M) float mask, or None if nothing is padded.

    Same values as HF's create_bidirectional_mask in eager mode (0 / finfo(dtype).min), which
    returns None for an all-ones mask; broadcast over heads and queries instead of (B, 1, N, M).
    """
    if attention_mask is None or bool(attention_mask.bool().all()):
        return None
    keep = attention_mask.bool()[:, None, None, :]
    zeros = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    return zeros.masked_fill(~keep, torch.finfo(dtype).min)


class PerceiverTaskModel(nn.Module):
    """`perceiver` (a PerceiverModel) + the task head and loss of one HF class."""

    def __init__(self, config: Any, model_class: str, perceiver: PerceiverModel) -> None:
        super().__init__()
        self.model_class = model_class
        self.num_labels = config.num_labels
        self.vocab_size = config.vocab_size
        self.problem_type = getattr(config, "problem_type", None)
        self.perceiver = perceiver
        self.spec = CLASSES[model_class]
        if self.spec.loss == "vocab_cross_entropy":  # the masked LM's tied output projection
            self.embedding_decoder = PerceiverEmbeddingDecoder(config.vocab_size)

    def forward(
        self,
        inputs: Any = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        subsampled_output_points: Mapping[str, Tensor] | None = None,
        interpolate_pos_encoding: bool = False,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
    ) -> PerceiverOutput:
        for alias in (input_ids, pixel_values):
            if alias is not None:
                if inputs is not None:
                    raise ValueError("You cannot use both `inputs` and `input_ids`/`pixel_values`")
                inputs = alias
        if labels is not None and not self.spec.takes_labels:
            raise NotImplementedError(f"{self.model_class} training is not supported (as in HF)")
        out = self.perceiver(
            inputs, attention_mask, subsampled_output_points, interpolate_pos_encoding
        )
        if self.spec.loss == "vocab_cross_entropy":
            prep = self.perceiver.input_preprocessor
            assert isinstance(prep, PerceiverTextPreprocessor)
            out.logits = self.embedding_decoder(out.logits, prep.embeddings)  # (B, P, V)
            if labels is not None:
                out.loss = F.cross_entropy(out.logits.view(-1, self.vocab_size), labels.view(-1))
        elif labels is not None:
            out.loss = self._classification_loss(out.logits, labels)
        return out

    def _classification_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """HF's ForSequenceClassificationLoss, without writing problem_type back to the config."""
        problem = self.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        if problem == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze())
            return F.mse_loss(logits, labels)
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)


# --------------------------------------------------------------------------------------------
# per-class construction (HF L775-1665)


def _classification_decoder(config: Any) -> PerceiverClassificationDecoder:
    """The decoder shared by SequenceClassification and the three image classifiers."""
    d = config.d_latents
    return PerceiverClassificationDecoder(
        config,
        position_encoding=PerceiverTrainablePositionEncoding(1, d),
        num_channels=d,
        **_decoder_options(config, num_heads=1, use_query_residual=True, final_project=True),
    )


def _decoder_options(
    config: Any,
    *,
    num_heads: int,
    use_query_residual: bool,
    final_project: bool,
    qk_channels: int | None = None,
    v_channels: int | None = None,
) -> dict[str, Any]:
    """The decoder arguments HF hardcodes per class, overridable by optional config fields."""
    return {
        "num_heads": _get(config, "decoder_num_heads", num_heads),
        "qk_channels": _get(config, "decoder_qk_channels", qk_channels),
        "v_channels": _get(config, "decoder_v_channels", v_channels),
        "widening_factor": _get(config, "decoder_widening_factor", 1),
        "use_query_residual": _get(config, "decoder_use_query_residual", use_query_residual),
        "final_project": _get(config, "decoder_final_project", final_project),
    }


def _build_perceiver(config: Any, model_class: str) -> nn.Module:
    """The PerceiverModel of ``model_class``, by the builder its class-table entry names."""
    builder = CLASSES[model_class].builder
    if builder == "bare":
        return PerceiverModel(config)

    if builder == "masked_lm":
        text = PerceiverTextPreprocessor(config)
        c = config.d_model
        decoder = PerceiverBasicDecoder(
            config,
            output_num_channels=config.d_latents,  # only used when final_project is set
            position_encoding=PerceiverTrainablePositionEncoding(config.max_position_embeddings, c),
            output_index_dims=config.max_position_embeddings,  # O = P queries, whatever M is
            num_channels=c,
            **_decoder_options(
                config,
                num_heads=MASKED_LM_DECODER_HEADS,
                use_query_residual=False,
                final_project=False,
                qk_channels=MASKED_LM_DECODER_QK_CHANNELS,
                v_channels=c,
            ),
        )
        return PerceiverModel(config, input_preprocessor=text, decoder=decoder)

    if builder == "sequence_classification":
        return PerceiverModel(
            config,
            input_preprocessor=PerceiverTextPreprocessor(config),
            decoder=_classification_decoder(config),
        )

    if builder == "image_learned":
        out_channels = _get(config, "preprocessor_out_channels", 256)
        image_size = config.image_size
        if not isinstance(image_size, int):
            raise TypeError(f"image_size ({image_size!r}) must be an int for the learned encoding")
        prep = PerceiverImagePreprocessor(
            prep_type="conv1x1",
            out_channels=out_channels,
            project_pos_dim=_get(config, "preprocessor_project_pos_dim", 256),
            position_encoding=PerceiverTrainablePositionEncoding(
                image_size**2, _get(config, "preprocessor_position_num_channels", 256)
            ),
        )
        return PerceiverModel(
            config, input_preprocessor=prep, decoder=_classification_decoder(config)
        )

    if builder in ("image_fourier", "image_conv"):
        conv = builder == "image_conv"
        fourier = PerceiverFourierPositionEncoding(
            _get(config, "fourier_num_bands", 64),
            _get(config, "fourier_max_resolution", (56, 56) if conv else (224, 224)),
        )
        prep = PerceiverImagePreprocessor(
            prep_type="conv" if conv else "pixels",
            out_channels=_get(config, "preprocessor_out_channels", 64),
            position_encoding=fourier,
        )
        return PerceiverModel(
            config, input_preprocessor=prep, decoder=_classification_decoder(config)
        )

    if builder == "optical_flow":
        bands = _get(config, "fourier_num_bands", 64)
        resolution = _get(config, "fourier_max_resolution", config.train_size)
        prep = PerceiverImagePreprocessor(
            prep_type="patches",
            temporal_downsample=2,
            out_channels=_get(config, "preprocessor_out_channels", 64),
            conv_after_patching_in_channels=FLOW_PATCH_CHANNELS,  # 3x3 patches x 3 colours x 2
            position_encoding=PerceiverFourierPositionEncoding(bands, resolution),
        )
        decoder = PerceiverOpticalFlowDecoder(
            config,
            output_image_shape=config.train_size,
            rescale_factor=100.0,
            output_num_channels=FLOW_OUTPUT_CHANNELS,
            position_encoding=PerceiverFourierPositionEncoding(bands, resolution),
            num_channels=prep.num_channels,
            **_decoder_options(config, num_heads=1, use_query_residual=False, final_project=True),
        )
        return PerceiverModel(config, input_preprocessor=prep, decoder=decoder)

    if builder == "multimodal":
        return _build_multimodal(config)

    raise ValueError(f"model_class ({model_class!r}) must be one of {', '.join(MODEL_CLASSES)}")


def _build_multimodal(config: Any) -> PerceiverModel:
    """HF L1590-1665; every width here is hardcoded there (no overrides except decoder_*)."""
    n_audio = config.num_frames * config.audio_samples_per_frame
    spp = config.samples_per_patch
    video_res = (config.num_frames, config.image_size, config.image_size)
    out_ch = config.output_num_channels
    prep = PerceiverMultimodalPreprocessor(
        modalities={
            "audio": PerceiverAudioPreprocessor(
                spp, PerceiverFourierPositionEncoding(192, (n_audio,))
            ),
            "image": PerceiverImagePreprocessor(
                prep_type="patches",
                spatial_downsample=4,
                position_encoding=PerceiverFourierPositionEncoding(32, video_res),
            ),
            "label": PerceiverOneHotPreprocessor(config.num_labels),
        },
        mask_probs={"image": 0.0, "audio": 0.0, "label": 1.0},
        min_padding_size=4,
    )
    label_channels = _get(config, "_label_trainable_num_channels", 1024)
    decoder = PerceiverMultimodalDecoder(
        config,
        modalities={
            "audio": PerceiverBasicDecoder(
                config,
                output_num_channels=out_ch,
                output_index_dims=(n_audio // spp,),
                position_encoding=PerceiverFourierPositionEncoding(192, (n_audio,)),
                position_encoding_only=True,
            ),
            "image": PerceiverBasicVideoAutoencodingDecoder(
                config,
                output_shape=config.output_shape,
                output_num_channels=out_ch,
                position_encoding=PerceiverFourierPositionEncoding(32, video_res),
                position_encoding_only=True,
            ),
            "label": PerceiverClassificationDecoder(
                config,
                position_encoding=PerceiverTrainablePositionEncoding(1, label_channels),
                position_encoding_only=True,
            ),
        },
        output_num_channels=out_ch,
        **_decoder_options(config, num_heads=1, use_query_residual=False, final_project=True),
    )
    post = PerceiverMultimodalPostprocessor(
        {
            "audio": _ClassifierPostprocessor(out_ch, spp, "audio"),
            "image": _ClassifierPostprocessor(out_ch, 3, "image"),
            "label": _ClassifierPostprocessor(out_ch, config.num_labels, "label"),
        }
    )
    return PerceiverModel(
        config, input_preprocessor=prep, decoder=decoder, output_postprocessor=post
    )


def _init_weights(model: nn.Module, std: float) -> None:
    """HF's _init_weights (PreTrainedModel + PerceiverPreTrainedModel L537-545) in spirit:
    Linear/Conv/Embedding weights ~ N(0, std), biases 0, norms (1, 0), latents, trainable
    position encodings and padding/mask tokens ~ N(0, std). Tests load HF's weights instead.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.Embedding)):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.reset_parameters()
            elif isinstance(module, PerceiverEmbeddings):
                module.latents.normal_(0.0, std)
            elif isinstance(module, PerceiverTrainablePositionEncoding):
                module.position_embeddings.normal_(0.0, std)
            elif isinstance(module, nn.ParameterDict):
                for p in module.values():
                    p.normal_(0.0, std)


def set_attention(model: nn.Module, attention: str) -> nn.Module:
    """Switch every attention in `model` to "eager" or "sdpa" (in place); returns `model`."""
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention ({attention!r}) must be one of {ATTENTION_IMPLEMENTATIONS}")
    for module in model.modules():
        if isinstance(module, PerceiverSelfAttention):
            module.attention_impl = attention
        if isinstance(module, Linear):
            # The fast path's pre-packed weights go with "sdpa" (inference on CPU only).
            module.prepacked = attention == "sdpa"
    return model


def build_model(
    config: Any,
    model_class: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    attention: str = "eager",
) -> nn.Module:
    """Build the reference model for `model_class` (default: config.architectures[0], else
    PerceiverForMaskedLM). `config` is any object with PerceiverConfig's attribute names.

    The state-dict keys and shapes equal HF's for the same class and config. Weights are
    randomly initialised (N(0, initializer_range)); load HF's with load_state_dict.
    """
    if model_class is None:
        architectures = getattr(config, "architectures", None) or [DEFAULT_MODEL_CLASS]
        model_class = architectures[0]
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"model_class ({model_class!r}) must be one of {', '.join(MODEL_CLASSES)}")
    with torch.device(device):
        perceiver = _build_perceiver(config, model_class)
        model: nn.Module = (
            perceiver
            if CLASSES[model_class].builder == "bare"
            else PerceiverTaskModel(config, model_class, perceiver)  # type: ignore[arg-type]
        )
    _init_weights(model, float(_get(config, "initializer_range", 0.02)))
    model.to(dtype=dtype)
    return set_attention(model, attention)
