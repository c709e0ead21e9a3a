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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from perceiver_calc.arith import is_scalar, total
from perceiver_calc.modules import Module, PerceiverLayer, ResolvedModel, Shape

__all__ = [
    "MAX_LISTED_COPIES",
    "ParamCounts",
    "buffer_shapes",
    "copies_of",
    "count_params",
    "iter_parameter_shapes",
    "module_params",
    "one_copy_shapes",
    "parameter_shapes",
    "params_total",
]

MAX_LISTED_COPIES = 1024
"""Above this many copies of a shared block, its per-tensor names are not listed in
``ParamCounts.tensors`` (every copy has copy 0's shapes; listing 2^31 of them would cost
gigabytes); :func:`iter_parameter_shapes` still yields them one by one, on demand."""

_EMPTY: Mapping[str, int] = MappingProxyType({})


def copies_of(m: Module) -> int:
    """Identical weight sets ``m`` stands for (a shared block's copies; else 1)."""
    return m.n_copies()


def one_copy_shapes(m: Module) -> dict[str, Shape]:
    """Parameter name -> shape of one copy of ``m``: a shared block's copy 0
    (``self_attends.0.…``; every copy has these shapes), any other module's all."""
    return m.shapes()


def buffer_shapes(m: Module) -> dict[str, Shape]:
    """Buffers (not parameters): BatchNorm2d running statistics and its step counter."""
    return m.buffers()


def _copy_shapes(m: Module) -> Iterator[dict[str, Shape]]:
    if isinstance(m, PerceiverLayer) and m.is_block:
        for i in range(m.copies):
            yield m.copy_shapes(i)
    else:
        yield m.shapes()


def parameter_shapes(m: Module) -> dict[str, Shape]:
    """Full transformers parameter name -> shape, for one resolved module; a shared block's
    every copy (``self_attends.0.…`` ...). Refuses (ValueError) a block of more than
    :data:`MAX_LISTED_COPIES` copies: use :func:`iter_parameter_shapes`, or
    :func:`one_copy_shapes` and :func:`copies_of`."""
    if m.n_copies() > MAX_LISTED_COPIES:
        raise ValueError(
            f"{m.path} has {m.n_copies()} copies; per-tensor names are listed up to "
            f"{MAX_LISTED_COPIES}"
        )
    out: dict[str, Shape] = {}
    for shapes in _copy_shapes(m):
        out |= shapes
    return out


def iter_parameter_shapes(resolved: ResolvedModel) -> Iterator[tuple[str, Shape]]:
    """Every parameter tensor of the model, transformers' name -> shape, one at a time (a
    shared block's copies expanded lazily: memory stays that of one copy)."""
    for m in resolved.modules:
        for shapes in _copy_shapes(m):
            yield from shapes.items()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamCounts:
    """Parameter counts of a resolved model (read-only mappings)."""

    total: int
    trainable: int
    by_module: Mapping[str, int]
    """Resolved module path -> parameters (a module per PerceiverLayer, embedding, ...; the
    shared block ``encoder.self_attends`` is one key counting all its copies)."""
    tensors: Mapping[str, Shape]
    """Every parameter tensor, transformers' name -> shape (a shared block of more than
    MAX_LISTED_COPIES copies left out: see ``tensors_note``)."""
    copies: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    """Module path -> identical weight sets, for the shared blocks (by_module counts all)."""
    tensors_note: str | None = None
    """Why some tensors are not listed in ``tensors``, if any are not."""
    buffers: Mapping[str, Shape]
    buffer_elements: int

    def _repr_html_(self) -> str:
        """Jupyter shows the counts as an HTML table (perceiver_calc.report renders it)."""
        from perceiver_calc.report import params_html

        return params_html(self)


def module_params(m: Module) -> int:
    """Parameters of one resolved module, all its copies (closed form)."""
    return total(math.prod(s) for s in m.shapes().values()) * m.n_copies()


def params_total(resolved: ResolvedModel) -> int:
    """``count_params(resolved).total`` without listing the tensors (the sweep's path)."""
    return total(module_params(m) for m in resolved.modules)


def count_params(resolved: ResolvedModel) -> ParamCounts:
    """Closed form: a shared block counts copies x one copy, whatever the number of copies."""
    tensors: dict[str, Shape] = {}
    buffers: dict[str, Shape] = {}
    by_module: dict[str, int] = {}
    copies: dict[str, int] = {}
    notes: list[str] = []
    for m in resolved.modules:
        one = m.shapes()
        n_copies = m.n_copies()
        if isinstance(m, PerceiverLayer) and m.is_block:
            copies[m.path] = n_copies
            if is_scalar(n_copies) and n_copies <= MAX_LISTED_COPIES:
                tensors |= parameter_shapes(m)
            else:
                notes.append(
                    f"{m.path}: {n_copies} copies of the {len(one)} tensors of "
                    f"{m.path}.0 not listed (over {MAX_LISTED_COPIES})"
                )
        else:
            tensors |= one
        buffers |= m.buffers()
        if one:
            # ParameterDicts (multimodal padding, masks) are several Parameter entries of one
            # module path: add them up.
            n = module_params(m)
            by_module[m.path] = by_module.get(m.path, 0) + n
    n_params = total(by_module.values())
    return ParamCounts(
        total=n_params,
        trainable=n_params,
        by_module=MappingProxyType(by_module),
        tensors=MappingProxyType(tensors),
        buffers=MappingProxyType(buffers),
        buffer_elements=sum(math.prod(s) for s in buffers.values()),
        copies=MappingProxyType(copies),
        tensors_note="; ".join(notes) or None,
    )
