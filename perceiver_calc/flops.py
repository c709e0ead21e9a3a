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

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from perceiver_calc.arith import is_scalar, total
from perceiver_calc.modules import (
    ACT_FLOPS,
    GELU_FLOPS,
    Conv2d,
    Elementwise,
    Embedding,
    Linear,
    Module,
    Op,
    ResolvedModel,
    TiedOutput,
)
from perceiver_calc.params import params_total
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleFlops:
    forward: int
    backward: int
    elementwise_forward: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FlopCounts:
    """FLOPs (2 per MAC, matmuls and convolutions only, as FlopCounterMode counts them)."""

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
    by_module: Mapping[str, ModuleFlops]
    """Resolved module path -> FLOPs (self-attention layers counted num_blocks times)."""
    ops: Mapping[str, int]
    """Forward FLOPs per transformers submodule / op, e.g.
    ``perceiver.encoder.cross_attention.attention.self:scores``."""
    forward_terms: Mapping[str, int]
    """Forward FLOPs grouped by the token counts they scale with: ``inputs`` (linear in the
    input length M), ``latents*inputs``, ``latents``, ``latents*latents``, ``outputs``,
    ``outputs*latents``; all are also linear in batch size."""
    lengths: Mapping[str, int]
    six_n_d: int
    """6 · parameters · tokens (the popular estimate of a training step)."""
    six_n_d_params: int
    six_n_d_tokens: int
    """batch_size · encoder input length (tokens, pixels or patches read per step)."""
    six_n_d_ratio: float
    """six_n_d / training_step (without recompute): > 1 means the rule overestimates."""

    def _repr_html_(self) -> str:
        """Jupyter shows the counts as an HTML table (perceiver_calc.report renders it)."""
        from perceiver_calc.report import flops_html

        return flops_html(self)


def tokens_of(m: Linear | TiedOutput | Embedding, lens: Mapping[str, int]) -> tuple[int, str]:
    """Rows a module is applied to, and the token count's family (``outputs.image`` ->
    ``outputs``) for the scaling terms."""
    return lens[m.tokens], m.tokens.split(".")[0]


def consumes_model_inputs(m: Module) -> bool:
    """The module's input is a raw model input that needs no gradient (pixels, flow patches),
    so autograd computes only its weight gradient."""
    return isinstance(m, (Conv2d, Linear)) and m.reads_model_inputs


def module_ops(
    m: Module, lens: Mapping[str, int], batch: int, image_size: tuple[int, int] | None = None
) -> tuple[Op, ...]:
    """The matmuls/convolutions of one module (one application), whole batch."""
    return m.ops(lens, batch, image_size)


def count_flops(resolved: ResolvedModel, workload: Workload, *, detail: bool = True) -> FlopCounts:
    """Exact matmul FLOPs of one forward, backward and training step of ``resolved`` on
    ``workload``; see the module docstring for the conventions. Closed form: a shared block's
    ops count once, times its runs (copies x num_blocks). ``detail=False`` leaves
    ``by_module``, ``ops`` and ``forward_terms`` empty (the sweep needs only the totals)."""
    lens = lengths(resolved, workload)
    inp = resolved_inputs(resolved, workload)
    b = workload.batch_size
    image = inp.image_size if resolved.input_kind == "image" else None
    cfg = resolved.config
    env = Elementwise(
        act_flops=GELU_FLOPS if cfg.hidden_act.startswith("gelu") else ACT_FLOPS,
        dropout_training=workload.mode == "training" and cfg.attention_probs_dropout_prob > 0,
    )
    by_module: dict[str, ModuleFlops] = {}
    ops: dict[str, int] = {}
    terms: dict[str, int] = {}
    fwds: list[int] = []
    bwds: list[int] = []
    recomputes: list[int] = []
    elementwises: list[int] = []
    for m in resolved.modules:
        mod_ops = m.ops(lens, b, image)
        apps = m.n_runs()  # a shared block: copies x num_blocks
        f = total(o.macs for o in mod_ops) * apps
        bw = total(o.macs * o.grad_operands for o in mod_ops) * apps
        ew = m.elementwise(lens, b, env, image)
        fwds.append(f)
        bwds.append(bw)
        elementwises.append(ew)
        if workload.checkpointing and m.kind == "layer":
            # Checkpointing keeps each layer's inputs and reruns its forward during backward.
            recomputes.append(f)
        if not detail:
            continue
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
    fwd_macs, bwd_macs = total(fwds), total(bwds)
    recompute_macs, elementwise = total(recomputes), total(elementwises)
    forward, backward, recompute = 2 * fwd_macs, 2 * bwd_macs, 2 * recompute_macs
    params = params_total(resolved)
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
        by_module=MappingProxyType(by_module),
        ops=MappingProxyType(ops),
        forward_terms=MappingProxyType(terms),
        lengths=MappingProxyType(dict(lens)),
        six_n_d=six,
        six_n_d_params=params,
        six_n_d_tokens=tokens,
        six_n_d_ratio=(six / step if step else float("inf")) if is_scalar(step) else 0.0,
    )
