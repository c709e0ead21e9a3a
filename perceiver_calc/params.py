"""Exact parameter counts from resolved dimensions (no torch).

Convention: parameters are unique tensors, as ``sum(p.numel() for p in model.parameters())``
counts them, under transformers' own parameter names:

* the ``encoder.self_attends`` layers are applied ``num_blocks`` times but exist once: their
  parameters count once (their FLOPs and activations count ``num_blocks`` times);
* the masked-LM output projection (``embedding_decoder``) reuses the input embedding's weight:
  only its bias (vocab_size) is a new parameter;
* every parameter of transformers' Perceiver has ``requires_grad=True``, so trainable == total;
* buffers (BatchNorm running statistics) are not parameters and are listed apart.

The shared block ``encoder.self_attends`` is one resolved layer with ``copies`` identical
weight sets: its count is ``copies`` x one copy's, in closed form. Its per-tensor names
(``self_attends.{i}.…``) are listed only up to :data:`MAX_LISTED_COPIES` copies.
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

__all__ = [
    "MAX_LISTED_COPIES",
    "ParamCounts",
    "buffer_shapes",
    "copies_of",
    "count_params",
    "one_copy_shapes",
    "parameter_shapes",
]

MAX_LISTED_COPIES = 1024
"""Above this many copies of a shared block, its per-tensor names are not listed (every copy
has copy 0's shapes; listing 2^31 of them would cost gigabytes)."""

Shape = tuple[int, ...]


def _linear(prefix: str, n_in: int, n_out: int, bias: bool = True) -> dict[str, Shape]:
    # nn.Linear stores weight as (out_features, in_features).
    shapes: dict[str, Shape] = {f"{prefix}.weight": (n_out, n_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (n_out,)
    return shapes


def _layernorm(prefix: str, n: int) -> dict[str, Shape]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _layer(m: PerceiverLayer, p: str) -> dict[str, Shape]:
    """``PerceiverLayer`` parameters (modeling_perceiver.py L136-415), named under ``p``."""
    q, kv = m.q_dim.value, m.kv_dim.value
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


def copies_of(m: Module) -> int:
    """Identical weight sets ``m`` stands for (a shared block's copies; else 1)."""
    return m.copies if isinstance(m, PerceiverLayer) else 1


def _is_block(m: Module) -> bool:
    return isinstance(m, PerceiverLayer) and m.role == "encoder_self"


def parameter_shapes(m: Module) -> dict[str, Shape]:
    """Full transformers parameter name -> shape, for one resolved module; a shared block's
    every copy (``self_attends.0.…`` ...). Refuses (ValueError) a block of more than
    :data:`MAX_LISTED_COPIES` copies: use :func:`one_copy_shapes` and :func:`copies_of`."""
    if isinstance(m, PerceiverLayer) and _is_block(m):
        if m.copies > MAX_LISTED_COPIES:
            raise ValueError(
                f"{m.path} has {m.copies} copies; per-tensor names are listed up to "
                f"{MAX_LISTED_COPIES}"
            )
        out: dict[str, Shape] = {}
        for i in range(m.copies):
            out |= _layer(m, f"{m.path}.{i}")
        return out
    return one_copy_shapes(m)


def one_copy_shapes(m: Module) -> dict[str, Shape]:
    """Parameter name -> shape of one copy of ``m``: a shared block's copy 0
    (``self_attends.0.…``; every copy has these shapes), any other module's all."""
    match m:
        case PerceiverLayer():
            return _layer(m, f"{m.path}.0" if _is_block(m) else m.path)
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
    """Every parameter tensor, transformers' name -> shape (a shared block of more than
    MAX_LISTED_COPIES copies left out: see ``tensors_note``)."""
    copies: dict[str, int] = {}
    """Module path -> identical weight sets, for the shared blocks (by_module counts all)."""
    tensors_note: str | None = None
    """Why some tensors are not listed in ``tensors``, if any are not."""
    buffers: dict[str, Shape]
    buffer_elements: int


def count_params(resolved: ResolvedModel) -> ParamCounts:
    tensors: dict[str, Shape] = {}
    buffers: dict[str, Shape] = {}
    by_module: dict[str, int] = {}
    copies: dict[str, int] = {}
    notes: list[str] = []
    for m in resolved.modules:
        one = one_copy_shapes(m)
        n_copies = copies_of(m)
        if _is_block(m):
            copies[m.path] = n_copies
            if n_copies <= MAX_LISTED_COPIES:
                tensors |= parameter_shapes(m)
            else:
                notes.append(
                    f"{m.path}: {n_copies} copies of the {len(one)} tensors of "
                    f"{m.path}.0 not listed (over {MAX_LISTED_COPIES})"
                )
        else:
            tensors |= one
        buffers |= buffer_shapes(m)
        if one:
            # ParameterDicts (multimodal padding, masks) are several Parameter entries of one
            # module path: add them up.
            n = sum(math.prod(s) for s in one.values()) * n_copies
            by_module[m.path] = by_module.get(m.path, 0) + n
    total = sum(by_module.values())
    return ParamCounts(
        total=total,
        trainable=total,
        by_module=by_module,
        tensors=tensors,
        buffers=buffers,
        buffer_elements=sum(math.prod(s) for s in buffers.values()),
        copies=copies,
        tensors_note="; ".join(notes) or None,
    )
