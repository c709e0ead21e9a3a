"""Exact FLOP counts from resolved dimensions and a workload (no torch).

Conventions (docs/conventions.md explains each one):

1. FLOPs = 2 per multiply-add (MAC). The headline ``forward`` counts every matmul and
   convolution: the Q/K/V/output/MLP projections, the attention score matmul
   ``(B, H, Q, d) x (B, H, d, K) -> (B, H, Q, K)`` and the probabilities-times-values matmul
   ``(B, H, Q, K) x (B, H, K, dv) -> (B, H, Q, dv)``, the tied masked-LM output projection and the
   image preprocessors' convolutions. This is exactly what
   ``torch.utils.flop_counter.FlopCounterMode`` counts on transformers' model (its mm, addmm,
   bmm and convolution formulas; biases are not counted).
2. ``backward`` is what autograd runs: every matmul's gradient w.r.t. each operand that needs
   one. Reasoning behind the factor:
     (a) ``Y = X W`` costs M·K·N MACs; dX = dY Wᵀ and dW = Xᵀ dY cost M·K·N each, so a matmul
         whose input needs a gradient costs 2x its forward;
     (b) every activation in a Perceiver needs a gradient (each passes through a LayerNorm or
         Linear with trainable weights), including both operands of the two attention matmuls;
     (c) except the first operation on the raw model inputs: pixels (the conv stem,
         ``convnet_1x1``) and flow patches (``conv_after_patches``) don't require grad, so
         autograd computes only the weight gradient there: 1x forward. Token embeddings are
         lookups (no matmul) and Fourier features have no parameters.
3. ``training_step`` = forward + backward (+ the recomputed forward of every PerceiverLayer with
   activation checkpointing). Optimizer updates are elementwise (not in the headline).
4. ``elementwise_forward`` is a separate, documented estimate (LayerNorm 5 FLOPs/element,
   softmax 5, GELU 8, other activations 1, score scaling 1, bias/residual adds 1, dropout 1
   in training); never added to the headline.
5. ``six_n_d`` = 6 · parameters · tokens, tokens = batch_size · encoder input length (the
   tokens/pixels/patches the model reads), shown with its ratio to the exact training step.

Shared self-attention layers (``encoder.self_attends``) run ``num_blocks`` times: their FLOPs
count ``applications`` times, their parameters once. The block is one resolved layer standing
for ``copies`` (num_self_attends_per_block) layers: its counts multiply, never loop.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from perceiver_calc.params import count_params
from perceiver_calc.resolve import (
    BatchNorm2d,
    Conv2d,
    Embedding,
    FourierFeatures,
    Linear,
    Module,
    Parameter,
    PerceiverLayer,
    ResolvedModel,
    TiedOutput,
)
from perceiver_calc.workload import Workload, lengths, resolved_inputs

__all__ = [
    "FlopCounts",
    "ModuleFlops",
    "Op",
    "consumes_model_inputs",
    "count_flops",
    "module_ops",
    "tokens_of",
]

# Elementwise estimate, FLOPs per element (documented in docs/conventions.md).
LAYERNORM_FLOPS = 5  # subtract mean, square, normalise, scale, shift
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
GELU_FLOPS = 8  # 0.5·x·(1 + erf(x/√2)): ~3 arithmetic + erf
ACT_FLOPS = 1  # relu and other cheap activations
BATCHNORM_FLOPS = 4
MAXPOOL_FLOPS_PER_OUTPUT = 8  # 9 inputs, 8 comparisons


class Op(BaseModel):
    """One matmul (or convolution) of a module's forward pass, per application."""

    model_config = ConfigDict(frozen=True)

    name: str
    """transformers submodule (``attention.self.query``) or op (``attention.self:scores``)."""
    macs: int
    """Multiply-adds of one forward application, whole batch."""
    grad_operands: int
    """How many of its operands autograd differentiates: backward MACs = grad_operands·macs."""
    term: str
    """The token counts it is proportional to (with batch size): ``latents*inputs``, ..."""


class ModuleFlops(BaseModel):
    model_config = ConfigDict(frozen=True)

    forward: int
    backward: int
    elementwise_forward: int = 0


class FlopCounts(BaseModel):
    """FLOPs (2 per MAC, matmuls and convolutions only, as FlopCounterMode counts them)."""

    model_config = ConfigDict(frozen=True)

    forward: int
    backward: int
    recompute: int
    """Forward FLOPs run again in backward by activation checkpointing (0 without)."""
    training_step: int
    """forward + backward + recompute."""
    macs_forward: int
    """Multiply-adds of the forward pass (= forward / 2)."""
    elementwise_forward: int
    """Estimate of LayerNorm, softmax, activation, scaling, bias and residual work; separate."""
    by_module: dict[str, ModuleFlops]
    """Resolved module path -> FLOPs (self-attention layers counted num_blocks times)."""
    ops: dict[str, int]
    """Forward FLOPs per transformers submodule / op, e.g.
    ``perceiver.encoder.cross_attention.attention.self:scores``."""
    forward_terms: dict[str, int]
    """Forward FLOPs grouped by the token counts they scale with: ``inputs`` (linear in the
    input length M), ``latents*inputs``, ``latents``, ``latents*latents``, ``outputs``,
    ``outputs*latents``; all are also linear in batch size."""
    lengths: dict[str, int]
    six_n_d: int
    """6 · parameters · tokens (the popular estimate of a training step)."""
    six_n_d_params: int
    six_n_d_tokens: int
    """batch_size · encoder input length (tokens, pixels or patches read per step)."""
    six_n_d_ratio: float
    """six_n_d / training_step (without recompute): > 1 means the rule overestimates."""


def _term(*names: str) -> str:
    parts = sorted(n for n in names if n != "one")
    return "*".join(parts) if parts else "one"


def tokens_of(m: Linear | TiedOutput | Embedding, lens: dict[str, int]) -> tuple[int, str]:
    """Rows a module is applied to, and the token count's family (``outputs.image`` ->
    ``outputs``) for the scaling terms."""
    return lens[m.tokens], m.tokens.split(".")[0]


def consumes_model_inputs(m: Module) -> bool:
    """The module's input is a raw model input that needs no gradient (pixels, flow patches),
    so autograd computes only its weight gradient."""
    return isinstance(m, (Conv2d, Linear)) and m.reads_model_inputs


def _conv_out(size: int, m: Conv2d) -> int:
    if m.same_padding:
        # Conv2dSamePadding pads k-1 in total: out = ceil(size / stride).
        return -(-size // m.stride)
    return (size - m.kernel_size) // m.stride + 1


def module_ops(
    m: Module, lens: dict[str, int], batch: int, image_size: tuple[int, int] | None = None
) -> list[Op]:
    """The matmuls/convolutions of one module (one application), whole batch."""
    b = batch
    match m:
        case PerceiverLayer():
            q_len, kv_len = lens[m.q_len], lens[m.kv_len]
            q, kv = m.q_dim.value, m.kv_dim.value
            qk, v, out = m.qk_channels.value, m.v_channels.value, m.output_channels.value
            hidden = m.widening_factor.value * q
            tq, tk, tqk = _term(m.q_len), _term(m.kv_len), _term(m.q_len, m.kv_len)
            a = "attention.self"
            return [
                # (B·Q, q_dim) x (q_dim, qk) -> (B·Q, qk)
                Op(name=f"{a}.query", macs=b * q_len * q * qk, grad_operands=2, term=tq),
                # (B·K, kv_dim) x (kv_dim, qk); self-attention: K rows = the latents
                Op(name=f"{a}.key", macs=b * kv_len * kv * qk, grad_operands=2, term=tk),
                Op(name=f"{a}.value", macs=b * kv_len * kv * v, grad_operands=2, term=tk),
                # per head (B·H, Q, qk/H) x (B·H, qk/H, K) -> (B·H, Q, K): B·Q·K·qk MACs
                Op(name=f"{a}:scores", macs=b * q_len * kv_len * qk, grad_operands=2, term=tqk),
                # per head (B·H, Q, K) x (B·H, K, v/H) -> (B·H, Q, v/H): B·Q·K·v MACs
                Op(name=f"{a}:context", macs=b * q_len * kv_len * v, grad_operands=2, term=tqk),
                Op(
                    name="attention.output.dense",
                    macs=b * q_len * v * out,
                    grad_operands=2,
                    term=tq,
                ),
                Op(name="mlp.dense1", macs=b * q_len * q * hidden, grad_operands=2, term=tq),
                Op(name="mlp.dense2", macs=b * q_len * hidden * q, grad_operands=2, term=tq),
            ]
        case Linear():
            rows, t = tokens_of(m, lens)
            grads = 1 if consumes_model_inputs(m) else 2
            return [
                Op(
                    name="",
                    macs=b * rows * m.in_features.value * m.out_features.value,
                    grad_operands=grads,
                    term=_term(t),
                )
            ]
        case TiedOutput():
            rows, t = tokens_of(m, lens)
            # (B·O, C) x (C, V): logits = h @ embeddings.weightᵀ (+ bias, not a matmul)
            return [
                Op(
                    name="",
                    macs=b * rows * m.in_features.value * m.vocab_size.value,
                    grad_operands=2,
                    term=_term(t),
                )
            ]
        case Conv2d():
            assert image_size is not None, "convolutions read the image"
            h, w = image_size
            ho, wo = _conv_out(h, m), _conv_out(w, m)
            k2 = m.kernel_size * m.kernel_size
            macs = b * ho * wo * m.in_channels.value * m.out_channels.value * k2
            # Pixels need no gradient: only the weight gradient (a conv of the same cost).
            return [Op(name="", macs=macs, grad_operands=1, term="inputs")]
        case Embedding() | BatchNorm2d() | Parameter() | FourierFeatures():
            # Lookups, normalisation, bare parameters and parameter-free sin/cos features:
            # no matmul (their elementwise work is in the estimate).
            return []
    raise AssertionError(f"unknown module {m!r}")


def _elementwise(
    m: Module,
    lens: dict[str, int],
    b: int,
    resolved: ResolvedModel,
    training: bool,
    image_size: tuple[int, int] | None,
) -> int:
    cfg = resolved.config
    act = GELU_FLOPS if cfg.hidden_act.startswith("gelu") else ACT_FLOPS
    match m:
        case PerceiverLayer():
            q_len, kv_len = lens[m.q_len], lens[m.kv_len]
            q, kv = m.q_dim.value, m.kv_dim.value
            qk, v, out = m.qk_channels.value, m.v_channels.value, m.output_channels.value
            hidden = m.widening_factor.value * q
            heads = m.num_heads.value
            scores = b * heads * q_len * kv_len
            total = LAYERNORM_FLOPS * b * q_len * q * 2  # layernorm1, layernorm
            if m.is_cross:
                total += LAYERNORM_FLOPS * b * kv_len * kv  # layernorm2
            # bias adds of query, key, value, output.dense, dense1, dense2
            total += b * (
                q_len * qk + kv_len * qk + kv_len * v + q_len * out + q_len * hidden + q_len * q
            )
            total += scores * (1 + SOFTMAX_FLOPS)  # scaling by 1/√d, softmax
            if training and cfg.attention_probs_dropout_prob > 0:
                total += scores
            if m.use_query_residual:
                total += b * q_len * out
            total += act * b * q_len * hidden + b * q_len * q  # activation, MLP residual
            return total * m.runs  # copies x applications, closed form
        case Linear():
            rows, _ = tokens_of(m, lens)
            return b * rows * m.out_features.value if m.bias else 0
        case TiedOutput():
            rows, _ = tokens_of(m, lens)
            return b * rows * m.vocab_size.value
        case Embedding():
            # token + position embeddings are added once (counted on the position table)
            return b * lens[m.tokens] * m.embedding_dim.value if "position" in m.path else 0
        case Conv2d():
            if image_size is None:
                return 0
            ho, wo = _conv_out(image_size[0], m), _conv_out(image_size[1], m)
            return b * ho * wo * m.out_channels.value if m.bias else 0
        case BatchNorm2d():
            # follows the conv stem: BatchNorm + ReLU on the conv output, then the max-pool
            if image_size is None:
                return 0
            h1, w1 = -(-image_size[0] // 2), -(-image_size[1] // 2)
            n = b * h1 * w1 * m.num_features.value
            pooled = b * lens["inputs"] * m.num_features.value
            return n * (BATCHNORM_FLOPS + ACT_FLOPS) + pooled * MAXPOOL_FLOPS_PER_OUTPUT
        case FourierFeatures():
            # computed once per forward (not per sample): products, sin and cos of
            # n·d·num_bands values
            n = lens["inputs"] if "decoder" not in m.path else 0
            return 3 * n * m.num_dims * m.num_bands.value
        case Parameter():
            return 0
    return 0


def count_flops(resolved: ResolvedModel, workload: Workload) -> FlopCounts:
    """Exact matmul FLOPs of one forward, backward and training step of ``resolved`` on
    ``workload``; see the module docstring for the conventions."""
    lens = lengths(resolved, workload)
    inp = resolved_inputs(resolved, workload)
    b = workload.batch_size
    image = inp.image_size if resolved.input_kind == "image" else None
    training = workload.mode == "training"
    by_module: dict[str, ModuleFlops] = {}
    ops: dict[str, int] = {}
    terms: dict[str, int] = {}
    fwd_macs = bwd_macs = recompute_macs = elementwise = 0
    for m in resolved.modules:
        mod_ops = module_ops(m, lens, b, image)
        apps = m.runs if isinstance(m, PerceiverLayer) else 1  # a shared block: copies x num_blocks
        f = sum(o.macs for o in mod_ops) * apps
        bw = sum(o.macs * o.grad_operands for o in mod_ops) * apps
        ew = _elementwise(m, lens, b, resolved, training, image)
        for o in mod_ops:
            key = f"{m.path}.{o.name}" if o.name else m.path
            ops[key] = ops.get(key, 0) + 2 * o.macs * apps
            terms[o.term] = terms.get(o.term, 0) + 2 * o.macs * apps
        prev = by_module.get(m.path)
        by_module[m.path] = ModuleFlops(
            forward=2 * f + (prev.forward if prev else 0),
            backward=2 * bw + (prev.backward if prev else 0),
            elementwise_forward=ew + (prev.elementwise_forward if prev else 0),
        )
        fwd_macs += f
        bwd_macs += bw
        elementwise += ew
        if workload.checkpointing and isinstance(m, PerceiverLayer):
            # Checkpointing keeps each layer's inputs and reruns its forward during backward.
            recompute_macs += f
    forward, backward, recompute = 2 * fwd_macs, 2 * bwd_macs, 2 * recompute_macs
    params = count_params(resolved).total
    tokens = b * lens["inputs"]
    six = 6 * params * tokens
    step = forward + backward
    return FlopCounts(
        forward=forward,
        backward=backward,
        recompute=recompute,
        training_step=step + recompute,
        macs_forward=fwd_macs,
        elementwise_forward=elementwise,
        by_module=by_module,
        ops=ops,
        forward_terms=terms,
        lengths=lens,
        six_n_d=six,
        six_n_d_params=params,
        six_n_d_tokens=tokens,
        six_n_d_ratio=six / step if step else float("inf"),
    )
