"""The resolved module kinds, each owning its formulas in one place.

A resolved model (:class:`ResolvedModel`, built by :mod:`perceiver_calc.resolve`) is a flat,
ordered tuple of modules, each with its transformers module path:

* :class:`PerceiverLayer` - ``PerceiverLayer`` (attention + MLP), cross or self;
* :class:`Embedding`, :class:`Linear`, :class:`Conv2d`, :class:`BatchNorm2d`,
  :class:`Parameter` (latents, trainable positions) - the parameter-holding pieces around it;
* :class:`FourierFeatures` - a parameter-free position encoding, listed for its width;
* :class:`TiedOutput` - the masked-LM output projection that reuses the input embedding.

Each kind is a frozen dataclass with the formulas for that kind, and nowhere else (as torch's
``flop_counter`` registers one formula per op):

=================  ==========================================================================
``shapes()``       parameter name -> shape of one copy (``params``)
``buffers()``      buffer name -> shape (``params``, ``memory``)
``ops()``          the matmuls of one application: MACs and how many operands autograd
                   differentiates (``flops``)
``elementwise()``  the separate estimate of elementwise FLOPs (``flops``)
``save_for_backward()``  storages a training forward keeps (``memory``; layers and the stem)
``working_set()``  transient elements of a no-grad forward (``memory``'s inference peak)
``describe()``     the dims a report shows (``report``)
=================  ==========================================================================

The formulas use only ``+ - * //`` and :mod:`perceiver_calc.arith`'s ``maximum``/``where``/
``cdiv``, so they evaluate on Python ints (exact) and on numpy int64 arrays alike.

Token counts are named, not numbers: ``"latents"`` (num_latents), ``"inputs"`` (the encoder's
input length M, known only with a workload), ``"outputs"`` (decoder queries).

Sources cited as ``modeling_perceiver.py`` are transformers 5.24's
``models/perceiver/modeling_perceiver.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from perceiver_calc.arith import Int, cdiv, maximum

if TYPE_CHECKING:
    from perceiver_calc.classes import ModelClassSpec
    from perceiver_calc.config import ModelClass, PerceiverConfig
    from perceiver_calc.errors import Finding

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "Dim",
    "Embedding",
    "FourierFeatures",
    "InputKind",
    "Linear",
    "Module",
    "Op",
    "Parameter",
    "PerceiverLayer",
    "ResolvedModel",
    "Shape",
    "Source",
    "TiedOutput",
    "TokenCount",
]

Source = Literal["explicit", "default", "hardcoded", "derived"]
"""explicit: the config gives it; default: transformers' PerceiverConfig default;
hardcoded: fixed by the model class in transformers (configurable here by an optional field);
derived: computed from other values by a rule of transformers'."""

TokenCount = Literal[
    "latents", "inputs", "outputs", "one", "outputs.audio", "outputs.image", "outputs.label"
]
"""Named token counts (values come from a workload, see perceiver_calc.workload.lengths).
``outputs.<modality>``: the multimodal postprocessors each see only their modality's slice of
the decoder output (PerceiverMultimodalPostprocessor.restructure)."""

InputKind = Literal["tokens", "embeddings", "image", "flow", "multimodal"]

Shape = tuple[int, ...]
Lens = Mapping[str, Int]
ImageSize = tuple[Int, Int] | None
Kind = Literal["float", "stat", "index", "mask"]
"""Saved-tensor kinds: float: an activation in the compute dtype; stat: LayerNorm/BatchNorm
statistics; index: int64 (token ids, labels, max-pool indices); mask: the dropout mask."""

# Elementwise estimate, FLOPs per element (documented in docs/conventions.md).
LAYERNORM_FLOPS = 5  # subtract mean, square, normalise, scale, shift
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
GELU_FLOPS = 8  # 0.5·x·(1 + erf(x/√2)): ~3 arithmetic + erf
ACT_FLOPS = 1  # relu and other cheap activations
BATCHNORM_FLOPS = 4
MAXPOOL_FLOPS_PER_OUTPUT = 8  # 9 inputs, 8 comparisons


@dataclass(frozen=True, slots=True, kw_only=True)
class Dim:
    """A resolved value with where it came from."""

    value: int
    source: Source
    rule: str
    """How it was obtained, e.g. ``"qk_channels"`` or ``"kv_dim (qk_channels unset, 'kv')"``."""

    def __int__(self) -> int:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One matmul (or convolution) of a module's forward pass, per application."""

    name: str
    """transformers submodule (``attention.self.query``) or op (``attention.self:scores``)."""
    macs: Int
    """Multiply-adds of one forward application, whole batch."""
    grad_operands: int
    """How many of its operands autograd differentiates: backward MACs = grad_operands·macs."""
    term: str
    """The token counts it is proportional to (with batch size): ``latents*inputs``, ..."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Elementwise:
    """What the elementwise estimate depends on besides the module's dims."""

    act_flops: int
    """FLOPs per element of the MLP activation (GELU_FLOPS for the gelu family)."""
    dropout_training: bool
    """Training with attention-probability dropout > 0 (one more FLOP per score)."""


class SaveGraph(Protocol):
    """What ``save_for_backward`` writes to (``perceiver_calc.memory``'s graph)."""

    def new(self, name: str) -> str: ...

    def save(
        self,
        sid: str | None,
        module: str,
        elements: Int,
        kind: Kind = "float",
        *,
        layer_input: bool = False,
        in_layer: str | None = None,
        count: Int = 1,
    ) -> None: ...


def _term(*names: str) -> str:
    parts = sorted(n for n in names if n != "one")
    return "*".join(parts) if parts else "one"


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> dict[str, Shape]:
    # nn.Linear stores weight as (out_features, in_features).
    shapes: dict[str, Shape] = {f"{prefix}.weight": (n_out, n_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (n_out,)
    return shapes


def _layernorm(prefix: str, n: int) -> dict[str, Shape]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


_K = TypeVar("_K", bound="_Kind")


class _Kind:
    """Defaults of the formula methods: no parameters, no matmul, nothing saved."""

    __slots__ = ()
    path: str

    def n_copies(self) -> int:
        """Identical weight sets this resolved module stands for (a shared block's copies)."""
        return 1

    def n_runs(self) -> int:
        """Applications per forward pass, all copies together (copies x num_blocks)."""
        return 1

    def shapes(self) -> dict[str, Shape]:
        return {}

    def buffers(self) -> dict[str, Shape]:
        return {}

    def ops(self, lens: Lens, b: Int, image: ImageSize = None) -> tuple[Op, ...]:
        return ()

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        return 0

    def working_set(self, lens: Lens, b: Int, image: ImageSize = None) -> Int:
        return 0


# --------------------------------------------------------------------------------------------
# PerceiverLayer


@dataclass(frozen=True, slots=True, kw_only=True)
class PerceiverLayer(_Kind):
    """transformers' ``PerceiverLayer``: (cross- or self-) attention + MLP (L354-415)."""

    path: str
    """transformers module path, e.g. ``perceiver.encoder.cross_attention``."""
    kind: Literal["layer"] = "layer"
    role: Literal["encoder_cross", "encoder_self", "decoder_cross"]
    is_cross: bool
    q_dim: Dim
    kv_dim: Dim
    qk_channels: Dim
    v_channels: Dim
    output_channels: Dim
    """Width of ``attention.output.dense``: q_dim for cross-attention, v_channels for self."""
    num_heads: Dim
    widening_factor: Dim
    use_query_residual: bool
    use_query_residual_source: Source
    q_len: TokenCount
    kv_len: TokenCount
    applications: int = 1
    """Times each copy runs per forward pass: num_blocks for ``self_attends`` (weights shared)."""
    copies: int = 1
    """Distinct weight sets this one resolved layer stands for: num_self_attends_per_block for
    the shared block ``encoder.self_attends`` (path of transformers' ModuleList; its copies are
    ``self_attends.0`` .. ``self_attends.{copies-1}``, identical in shape), else 1. Counting
    multiplies by it instead of looping, so cost does not grow with the layer count."""
    query_is_parameter: bool = False
    """The queries are a batch-expanded parameter (latents, trainable decoder queries)."""

    @property
    def runs(self) -> int:
        """Layer applications per forward pass: copies x applications."""
        return self.copies * self.applications

    def n_copies(self) -> int:
        return self.copies

    def n_runs(self) -> int:
        return self.copies * self.applications

    @property
    def is_block(self) -> bool:
        """The shared self-attention block (``encoder.self_attends``, ``copies`` layers)."""
        return self.role == "encoder_self"

    @property
    def hidden(self) -> int:
        """The MLP's hidden width: widening_factor · q_dim."""
        return self.widening_factor.value * self.q_dim.value

    def copy_path(self, i: int) -> str:
        """Module path of copy ``i``: ``encoder.self_attends.{i}`` for the block."""
        return f"{self.path}.{i}" if self.is_block else self.path

    def shapes(self) -> dict[str, Shape]:
        """Parameters of one copy (modeling_perceiver.py L136-415), named under copy 0."""
        return self.copy_shapes(0)

    def copy_shapes(self, i: int) -> dict[str, Shape]:
        p = self.copy_path(i)
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v, out = self.qk_channels.value, self.v_channels.value, self.output_channels.value
        hidden = self.hidden
        shapes = _layernorm(f"{p}.attention.self.layernorm1", q)
        if self.is_cross:
            # Self-attention's layernorm2 is nn.Identity: keys/values reuse layernorm1's output.
            shapes |= _layernorm(f"{p}.attention.self.layernorm2", kv)
        shapes |= _linear(f"{p}.attention.self.query", q, qk)
        shapes |= _linear(f"{p}.attention.self.key", kv, qk)
        shapes |= _linear(f"{p}.attention.self.value", kv, v)
        shapes |= _linear(f"{p}.attention.output.dense", v, out)
        shapes |= _layernorm(f"{p}.layernorm", q)
        shapes |= _linear(f"{p}.mlp.dense1", q, hidden)
        shapes |= _linear(f"{p}.mlp.dense2", hidden, q)
        return shapes

    def copy_numel(self) -> Int:
        """Parameters of one copy, closed form (equals the sum over :meth:`shapes`)."""
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v, out = self.qk_channels.value, self.v_channels.value, self.output_channels.value
        hidden = self.widening_factor.value * q
        n = 2 * q + 2 * q  # layernorm1, layernorm
        if self.is_cross:
            n = n + 2 * kv  # layernorm2
        n = n + (q + 1) * qk + (kv + 1) * qk + (kv + 1) * v + (v + 1) * out
        return n + (q + 1) * hidden + (hidden + 1) * q

    def ops(self, lens: Lens, b: Int, image: ImageSize = None) -> tuple[Op, ...]:
        q_len, kv_len = lens[self.q_len], lens[self.kv_len]
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v, out = self.qk_channels.value, self.v_channels.value, self.output_channels.value
        hidden = self.widening_factor.value * q
        tq, tk, tqk = _term(self.q_len), _term(self.kv_len), _term(self.q_len, self.kv_len)
        a = "attention.self"
        return (
            # (B·Q, q_dim) x (q_dim, qk) -> (B·Q, qk)
            Op(name=f"{a}.query", macs=b * q_len * q * qk, grad_operands=2, term=tq),
            # (B·K, kv_dim) x (kv_dim, qk); self-attention: K rows = the latents
            Op(name=f"{a}.key", macs=b * kv_len * kv * qk, grad_operands=2, term=tk),
            Op(name=f"{a}.value", macs=b * kv_len * kv * v, grad_operands=2, term=tk),
            # per head (B·H, Q, qk/H) x (B·H, qk/H, K) -> (B·H, Q, K): B·Q·K·qk MACs
            Op(name=f"{a}:scores", macs=b * q_len * kv_len * qk, grad_operands=2, term=tqk),
            # per head (B·H, Q, K) x (B·H, K, v/H) -> (B·H, Q, v/H): B·Q·K·v MACs
            Op(name=f"{a}:context", macs=b * q_len * kv_len * v, grad_operands=2, term=tqk),
            Op(name="attention.output.dense", macs=b * q_len * v * out, grad_operands=2, term=tq),
            Op(name="mlp.dense1", macs=b * q_len * q * hidden, grad_operands=2, term=tq),
            Op(name="mlp.dense2", macs=b * q_len * hidden * q, grad_operands=2, term=tq),
        )

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        """Estimate for all ``runs`` applications (copies x num_blocks, closed form)."""
        q_len, kv_len = lens[self.q_len], lens[self.kv_len]
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v, out = self.qk_channels.value, self.v_channels.value, self.output_channels.value
        hidden = self.widening_factor.value * q
        scores = b * self.num_heads.value * q_len * kv_len
        total = LAYERNORM_FLOPS * b * q_len * q * 2  # layernorm1, layernorm
        if self.is_cross:
            total = total + LAYERNORM_FLOPS * b * kv_len * kv  # layernorm2
        # bias adds of query, key, value, output.dense, dense1, dense2
        total = total + b * (
            q_len * qk + kv_len * qk + kv_len * v + q_len * out + q_len * hidden + q_len * q
        )
        total = total + scores * (1 + SOFTMAX_FLOPS)  # scaling by 1/√d, softmax
        if env.dropout_training:
            total = total + scores
        if self.use_query_residual:
            total = total + b * q_len * out
        total = total + env.act_flops * b * q_len * hidden + b * q_len * q  # act, MLP residual
        return total * self.runs

    def scores(self, lens: Lens, b: Int) -> Int:
        """Elements of one (B, heads, queries, keys) score tensor."""
        return b * self.num_heads.value * lens[self.q_len] * lens[self.kv_len]

    def working_set(self, lens: Lens, b: Int, image: ImageSize = None) -> Int:
        """Largest set of tensors live at once in one no-grad application: inputs, LayerNorm
        outputs, Q, K, V and two score tensors (eager attention holds the raw and the scaled
        scores, then the scaled scores and the probabilities); or, in the MLP, its input, the
        attention output, the LayerNorm output and two hidden-width tensors."""
        q_len, kv_len = lens[self.q_len], lens[self.kv_len]
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v = self.qk_channels.value, self.v_channels.value
        x = b * q_len * q
        y = b * kv_len * kv if self.is_cross else 0
        qkv = b * (q_len * qk + kv_len * (qk + v))
        attention = x + 2 * y + x + qkv + 2 * self.scores(lens, b)
        mlp = x + b * q_len * self.output_channels.value + x + 2 * b * q_len * self.hidden
        return maximum(attention, mlp)

    def save_for_backward(
        self,
        g: SaveGraph,
        x: str | None,
        y: str | None,
        lens: Lens,
        b: Int,
        dropout: float,
        act_saves: int,
        count: Int = 1,
    ) -> str:
        """Storages one application saves (modeling_perceiver.py L136-415), or ``count``
        applications of same-shape layers chained one into the next (the shared block: each
        saves its own input, the previous one's output, and its own internals).

        ``x``: storage of the queries' input (None for a batch-expanded parameter), ``y``: of
        the keys/values' input (cross-attention). Returns the (last) layer output's storage."""
        p = self.path
        tag = f"{p}@0"
        q_len, kv_len = lens[self.q_len], lens[self.kv_len]
        q, kv = self.q_dim.value, self.kv_dim.value
        qk, v, out = self.qk_channels.value, self.v_channels.value, self.output_channels.value
        hidden = self.hidden
        scores = self.scores(lens, b)

        def save(name: str, n: Int, kind: Kind = "float") -> None:
            g.save(g.new(f"{tag}:{name}"), p, n, kind, in_layer=tag, count=count)

        # layernorm1 saves its input, mean and rstd (B, Q, 1) each; its output feeds query (and
        # key/value in self-attention) and is saved by those Linears.
        g.save(x, p, b * q_len * q, layer_input=True, count=count)
        save("layernorm1.mean", b * q_len, "stat")
        save("layernorm1.rstd", b * q_len, "stat")
        save("layernorm1.out", b * q_len * q)
        if self.is_cross:
            g.save(y, p, b * kv_len * kv, layer_input=True)
            save("layernorm2.mean", b * kv_len, "stat")
            save("layernorm2.rstd", b * kv_len, "stat")
            save("layernorm2.out", b * kv_len * kv)
        # torch.matmul of the per-head views folds (B, H) into one batch dim: reshape copies
        # the permuted Q, Kᵀ and V, and bmm saves those copies (views when H == 1, same size).
        save("queries", b * q_len * qk)
        save("keys", b * kv_len * qk)
        save("softmax.out", scores)  # softmax saves its output
        if 0 < dropout < 1:
            # CPU: input * noise saves the float noise; CUDA: native_dropout saves a bool mask.
            save("dropout.mask", scores, "mask")
            save("dropout.out", scores)  # saved by the context bmm
        elif dropout >= 1:
            save("dropout.zero", 1, "mask")  # input * zeros(()) saves the 0-dim zero
            save("dropout.out", scores)
        # p == 0: dropout returns its input; the context bmm saves the softmax output again.
        save("values", b * kv_len * v)
        save("context", b * q_len * v)  # permuted back, made contiguous, saved by output.dense
        save("attention.out", b * q_len * out)  # (+ query residual), saved by layernorm
        save("layernorm.mean", b * q_len, "stat")
        save("layernorm.rstd", b * q_len, "stat")
        save("layernorm.out", b * q_len * q)  # saved by mlp.dense1
        for i in range(act_saves):
            save(f"mlp.act{i}", b * q_len * hidden)
        return g.new(f"{tag}:output")

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {
            "q_dim": self.q_dim,
            "kv_dim": self.kv_dim,
            "qk_channels": self.qk_channels,
            "v_channels": self.v_channels,
            "num_heads": self.num_heads,
            "qk_channels_per_head": Dim(
                value=self.qk_channels.value // self.num_heads.value,
                source="derived",
                rule="qk_channels / num_heads",
            ),
            "v_channels_per_head": Dim(
                value=self.v_channels.value // self.num_heads.value,
                source="derived",
                rule="v_channels / num_heads",
            ),
            "output_channels": self.output_channels,
            "widening_factor": self.widening_factor,
            "use_query_residual": Dim(
                value=int(self.use_query_residual),
                source=self.use_query_residual_source,
                rule="use_query_residual" if self.role == "encoder_cross" else "class",
            ),
        }
        notes = [f"queries: {self.q_len}, keys/values: {self.kv_len}"]
        if self.copies > 1:
            notes.append(f"num_self_attends_per_block = {self.copies} layers of these dims")
        if self.applications > 1:
            notes.append(f"applied num_blocks = {self.applications} times (weights shared)")
        return self.path, self.role, dims, tuple(notes)


# --------------------------------------------------------------------------------------------
# The pieces around the layers


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedding(_Kind):
    """``nn.Embedding(num_embeddings, embedding_dim)``: one weight (num, dim)."""

    path: str
    kind: Literal["embedding"] = "embedding"
    num_embeddings: Dim
    embedding_dim: Dim
    tokens: TokenCount

    def shapes(self) -> dict[str, Shape]:
        return {f"{self.path}.weight": (self.num_embeddings.value, self.embedding_dim.value)}

    # Lookups: no matmul.
    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        # token + position embeddings are added once (counted on the position table)
        return b * lens[self.tokens] * self.embedding_dim.value if "position" in self.path else 0

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}
        return self.path, "embedding", dims, ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Linear(_Kind):
    """``nn.Linear(in_features, out_features)``, applied to ``tokens`` rows."""

    path: str
    kind: Literal["linear"] = "linear"
    in_features: Dim
    out_features: Dim
    bias: bool = True
    tokens: TokenCount
    reads_model_inputs: bool = False
    """Its input is a raw model input (flow patches), which needs no gradient: autograd
    computes only the weight gradient (1x, not 2x, the forward matmul in backward)."""

    def shapes(self) -> dict[str, Shape]:
        return _linear(self.path, self.in_features.value, self.out_features.value, self.bias)

    def rows(self, lens: Lens) -> Int:
        return lens[self.tokens]

    def ops(self, lens: Lens, b: Int, image: ImageSize = None) -> tuple[Op, ...]:
        macs = b * lens[self.tokens] * self.in_features.value * self.out_features.value
        grads = 1 if self.reads_model_inputs else 2
        return (Op(name="", macs=macs, grad_operands=grads, term=self.tokens.split(".")[0]),)

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        return b * lens[self.tokens] * self.out_features.value if self.bias else 0

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {"in_features": self.in_features, "out_features": self.out_features}
        return self.path, "linear", dims, ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv2d(_Kind):
    """``nn.Conv2d`` (or transformers' ``Conv2dSamePadding``)."""

    path: str
    kind: Literal["conv2d"] = "conv2d"
    in_channels: Dim
    out_channels: Dim
    kernel_size: int
    stride: int
    bias: bool
    same_padding: bool
    reads_model_inputs: bool = True
    """Every Perceiver convolution is the first op on the pixels: no input gradient."""

    def out_size(self, size: Int) -> Int:
        """Output side for an input side ``size``."""
        if self.same_padding:
            # Conv2dSamePadding pads k-1 in total: out = ceil(size / stride).
            return cdiv(size, self.stride)
        return (size - self.kernel_size) // self.stride + 1

    def shapes(self) -> dict[str, Shape]:
        k = self.kernel_size
        shapes: dict[str, Shape] = {
            f"{self.path}.weight": (self.out_channels.value, self.in_channels.value, k, k)
        }
        if self.bias:
            shapes[f"{self.path}.bias"] = (self.out_channels.value,)
        return shapes

    def ops(self, lens: Lens, b: Int, image: ImageSize = None) -> tuple[Op, ...]:
        assert image is not None, "convolutions read the image"
        ho, wo = self.out_size(image[0]), self.out_size(image[1])
        k2 = self.kernel_size * self.kernel_size
        macs = b * ho * wo * self.in_channels.value * self.out_channels.value * k2
        # Pixels need no gradient: only the weight gradient (a conv of the same cost).
        return (Op(name="", macs=macs, grad_operands=1, term="inputs"),)

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        if image is None or not self.bias:
            return 0
        return b * self.out_size(image[0]) * self.out_size(image[1]) * self.out_channels.value

    def working_set(self, lens: Lens, b: Int, image: ImageSize = None) -> Int:
        if image is None:
            return 0
        h, w = image
        c = self.out_channels.value
        if self.same_padding:
            pad = self.kernel_size - 1
            h1, w1 = self.out_size(h), self.out_size(w)
            # padded input, conv output, batchnorm output
            return b * self.in_channels.value * (h + pad) * (w + pad) + 2 * b * c * h1 * w1
        return 2 * b * c * h * w  # conv output and its permuted copy

    def save_for_backward(self, g: SaveGraph, b: Int, image: tuple[Int, Int]) -> None:
        """The conv saves its input (the pixels, zero-padded first by Conv2dSamePadding) for
        its weight gradient."""
        h, w = image
        pad = self.kernel_size - 1 if self.same_padding else 0
        name = "padded_pixels" if self.same_padding else "pixel_values"
        g.save(g.new(name), self.path, b * self.in_channels.value * (h + pad) * (w + pad))

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {"in_channels": self.in_channels, "out_channels": self.out_channels}
        note = (
            f"kernel {self.kernel_size}x{self.kernel_size}, stride {self.stride}"
            + (", 'same' padding" if self.same_padding else "")
            + ("" if self.bias else ", no bias")
        )
        return self.path, "conv2d", dims, (note,)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchNorm2d(_Kind):
    """``nn.BatchNorm2d``: weight, bias (parameters); running_mean, running_var,
    num_batches_tracked (buffers). In a Perceiver it sits in the conv stem (Conv2DDownsample,
    L2390-2425): BatchNorm + ReLU on the conv output ``conv_hw``, then MaxPool2d(3, 2)."""

    path: str
    kind: Literal["batchnorm2d"] = "batchnorm2d"
    num_features: Dim
    conv: Conv2d
    """The convolution before it (its output sizes are this module's input sizes)."""

    def shapes(self) -> dict[str, Shape]:
        return _layernorm(self.path, self.num_features.value)

    def buffers(self) -> dict[str, Shape]:
        n = self.num_features.value
        return {
            f"{self.path}.running_mean": (n,),
            f"{self.path}.running_var": (n,),
            f"{self.path}.num_batches_tracked": (),
        }

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        if image is None:
            return 0
        h1, w1 = self.conv.out_size(image[0]), self.conv.out_size(image[1])
        n = b * h1 * w1 * self.num_features.value
        pooled = b * lens["inputs"] * self.num_features.value
        return n * (BATCHNORM_FLOPS + ACT_FLOPS) + pooled * MAXPOOL_FLOPS_PER_OUTPUT

    def save_for_backward(self, g: SaveGraph, b: Int, image: tuple[Int, Int], pooled: Int) -> None:
        """BatchNorm saves its input and the batch statistics; ReLU its output (the pool's
        input); the max-pool its int64 indices, one per pooled output."""
        h1, w1 = self.conv.out_size(image[0]), self.conv.out_size(image[1])
        c = self.num_features.value
        g.save(g.new("conv.out"), self.path, b * c * h1 * w1)  # batchnorm input
        g.save(g.new("bn.mean"), self.path, c, "stat")
        g.save(g.new("bn.invstd"), self.path, c, "stat")
        g.save(g.new("relu.out"), self.path, b * c * h1 * w1)  # relu result = pool input
        g.save(g.new("maxpool.indices"), self.path, b * c * pooled, "index")

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        return self.path, "batchnorm2d", {"num_features": self.num_features}, ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Parameter(_Kind):
    """A bare ``nn.Parameter`` (latents, trainable position encodings, padding, masks)."""

    path: str
    kind: Literal["parameter"] = "parameter"
    name: str
    shape: tuple[Dim, ...]
    note: str

    def shapes(self) -> dict[str, Shape]:
        return {f"{self.path}.{self.name}": tuple(d.value for d in self.shape)}

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {f"dim{i}": d for i, d in enumerate(self.shape)}
        return f"{self.path}.{self.name}", "parameter", dims, (self.note,)


@dataclass(frozen=True, slots=True, kw_only=True)
class FourierFeatures(_Kind):
    """``PerceiverFourierPositionEncoding``: no parameters; width num_bands·d·2 + d."""

    path: str
    kind: Literal["fourier"] = "fourier"
    num_bands: Dim
    num_dims: int
    concat_pos: bool
    sine_only: bool
    output_size: Dim

    # sin/cos of fixed frequencies: no parameters, no matmul.
    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        # computed once per forward (not per sample): products, sin and cos of
        # n·d·num_bands values
        n = lens["inputs"] if "decoder" not in self.path else 0
        return 3 * n * self.num_dims * self.num_bands.value

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {"num_bands": self.num_bands, "output_size": self.output_size}
        note = f"{self.num_dims}-D, sin and cos, positions concatenated; no parameters"
        return self.path, "fourier", dims, (note,)


@dataclass(frozen=True, slots=True, kw_only=True)
class TiedOutput(_Kind):
    """``PerceiverEmbeddingDecoder``: logits = h @ embeddings.weight.T + bias (L2698-2719).

    The weight is the input embedding's (tied, no new parameter); only ``bias`` (V) is new.
    """

    path: str
    kind: Literal["tied_output"] = "tied_output"
    tied_to: str
    in_features: Dim
    vocab_size: Dim
    tokens: TokenCount

    @property
    def out_features(self) -> Dim:
        return self.vocab_size

    def rows(self, lens: Lens) -> Int:
        return lens[self.tokens]

    def shapes(self) -> dict[str, Shape]:
        # The weight is self.tied_to (counted there); the bias is new.
        return {f"{self.path}.bias": (self.vocab_size.value,)}

    def ops(self, lens: Lens, b: Int, image: ImageSize = None) -> tuple[Op, ...]:
        # (B·O, C) x (C, V): logits = h @ embeddings.weightᵀ (+ bias, not a matmul)
        macs = b * lens[self.tokens] * self.in_features.value * self.vocab_size.value
        return (Op(name="", macs=macs, grad_operands=2, term=self.tokens.split(".")[0]),)

    def elementwise(self, lens: Lens, b: Int, env: Elementwise, image: ImageSize = None) -> Int:
        return b * lens[self.tokens] * self.vocab_size.value

    def working_set(self, lens: Lens, b: Int, image: ImageSize = None) -> Int:
        return b * lens[self.tokens] * (self.in_features.value + self.vocab_size.value)

    def describe(self) -> tuple[str, str, dict[str, Dim], tuple[str, ...]]:
        dims = {"in_features": self.in_features, "vocab_size": self.vocab_size}
        return (
            self.path,
            "tied_output",
            dims,
            (f"weight tied to {self.tied_to}; only the bias is a new parameter",),
        )


Module = (
    PerceiverLayer
    | Embedding
    | Linear
    | Conv2d
    | BatchNorm2d
    | Parameter
    | FourierFeatures
    | TiedOutput
)


# --------------------------------------------------------------------------------------------
# The resolved model


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedModel:
    """Every module of one model class built from one config, with provenance and findings."""

    model: ModelClass
    config: PerceiverConfig
    modules: tuple[Module, ...]
    findings: tuple[Finding, ...]
    """Warnings (a resolved model has no errors: those raise ConfigError)."""
    encoder_kv_dim: Dim
    """Width of the encoder's inputs (K): the preprocessor's num_channels, or d_model."""
    fixed_lengths: Mapping[str, int]
    """Token counts known from the config: latents, and outputs where the class fixes them
    (read-only)."""
    input_kind: InputKind

    @property
    def spec(self) -> ModelClassSpec:
        """The model class's table entry (perceiver_calc.classes)."""
        from perceiver_calc.classes import CLASSES

        return CLASSES[self.model]

    def layers(self) -> tuple[PerceiverLayer, ...]:
        return tuple(m for m in self.modules if isinstance(m, PerceiverLayer))

    def module(self, path: str) -> Module:
        for m in self.modules:
            if m.path == path:
                return m
        raise KeyError(path)

    def find(self, kind: type[_K]) -> Iterator[_K]:
        """The modules of one kind, in order."""
        return (m for m in self.modules if isinstance(m, kind))
