"""Exact parameter counts from resolved dimensions (no torch).

Convention: parameters are unique tensors, as ``sum(p.numel() for p in model.parameters())``
counts them, under transformers' own parameter names:

* the ``encoder.self_attends`` layers are applied ``num_blocks`` times but exist once: their
  parameters count once (their FLOPs and activations count ``num_blocks`` times);
* the masked-LM output projection (``embedding_decoder``) reuses the input embedding's weight:
  only its bias (vocab_size) is a new parameter;
* every parameter of transformers' Perceiver has ``requires_grad=True``, so trainable == total;
* buffers (BatchNorm running statistics) are not parameters and are listed apart.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

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

__all__ = ["ParamCounts", "buffer_shapes", "count_params", "parameter_shapes"]

Shape = tuple[int, ...]


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> dict[str, Shape]:
    # nn.Linear stores weight as (out_features, in_features).
    shapes: dict[str, Shape] = {f"{prefix}.weight": (n_out, n_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (n_out,)
    return shapes


def _layernorm(prefix: str, n: int) -> dict[str, Shape]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _layer(m: PerceiverLayer) -> dict[str, Shape]:
    """``PerceiverLayer`` parameters (modeling_perceiver.py L136-415)."""
    p, q, kv = m.path, m.q_dim.value, m.kv_dim.value
    qk, v, out = m.qk_channels.value, m.v_channels.value, m.output_channels.value
    hidden = m.widening_factor.value * q
    shapes = _layernorm(f"{p}.attention.self.layernorm1", q)
    if m.is_cross:
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


def parameter_shapes(m: Module) -> dict[str, Shape]:
    """Full transformers parameter name -> shape, for one resolved module."""
    match m:
        case PerceiverLayer():
            return _layer(m)
        case Embedding():
            return {f"{m.path}.weight": (m.num_embeddings.value, m.embedding_dim.value)}
        case Linear():
            return _linear(m.path, m.in_features.value, m.out_features.value, m.bias)
        case Conv2d():
            k = m.kernel_size
            shapes: dict[str, Shape] = {
                f"{m.path}.weight": (m.out_channels.value, m.in_channels.value, k, k)
            }
            if m.bias:
                shapes[f"{m.path}.bias"] = (m.out_channels.value,)
            return shapes
        case BatchNorm2d():
            return _layernorm(m.path, m.num_features.value)
        case Parameter():
            return {f"{m.path}.{m.name}": tuple(d.value for d in m.shape)}
        case FourierFeatures():
            return {}  # sin/cos of fixed frequencies: no parameters
        case TiedOutput():
            # The weight is m.tied_to (counted there); the bias is new.
            return {f"{m.path}.bias": (m.vocab_size.value,)}


def buffer_shapes(m: Module) -> dict[str, Shape]:
    """Buffers (not parameters): BatchNorm2d running statistics and its step counter."""
    if isinstance(m, BatchNorm2d):
        n = m.num_features.value
        return {
            f"{m.path}.running_mean": (n,),
            f"{m.path}.running_var": (n,),
            f"{m.path}.num_batches_tracked": (),
        }
    return {}


class ParamCounts(BaseModel):
    """Parameter counts of a resolved model."""

    model_config = ConfigDict(frozen=True)

    total: int
    trainable: int
    by_module: dict[str, int]
    """Resolved module path -> parameters (a module per PerceiverLayer, embedding, ...)."""
    tensors: dict[str, Shape]
    """Every parameter tensor, transformers' name -> shape."""
    buffers: dict[str, Shape]
    buffer_elements: int


def count_params(resolved: ResolvedModel) -> ParamCounts:
    tensors: dict[str, Shape] = {}
    buffers: dict[str, Shape] = {}
    by_module: dict[str, int] = {}
    for m in resolved.modules:
        shapes = parameter_shapes(m)
        tensors |= shapes
        buffers |= buffer_shapes(m)
        if shapes:
            # ParameterDicts (multimodal padding, masks) are several Parameter entries of one
            # module path: add them up.
            n = sum(math.prod(s) for s in shapes.values())
            by_module[m.path] = by_module.get(m.path, 0) + n
    total = sum(by_module.values())
    return ParamCounts(
        total=total,
        trainable=total,
        by_module=by_module,
        tensors=tensors,
        buffers=buffers,
        buffer_elements=sum(math.prod(s) for s in buffers.values()),
    )
