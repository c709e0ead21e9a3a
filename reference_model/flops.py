"""FLOP-counting helpers for the reference model.

torch 2.13's `torch.utils.flop_counter` registers formulas for the CUDA attention kernels
(`aten._scaled_dot_product_flash_attention`, `_efficient_attention`, `_cudnn_attention`, their
backwards, `_flash_attention_forward/backward`, `_efficient_attention_forward/backward`) but not
for the CPU flash kernel `aten._scaled_dot_product_flash_attention_for_cpu` nor its backward, so
FlopCounterMode reports 0 attention FLOPs for `attention="sdpa"` on CPU. (When SDPA falls back to
the math kernel, e.g. head dims of q and v differ or dropout is on, it decomposes into bmm/matmul,
which are already counted.)

`register_cpu_sdpa_flop_formula()` adds the two missing formulas, reusing torch's own
`sdpa_flop_count` / `sdpa_backward_flop_count` (2 FLOPs per multiply-add: forward = QK^T + PV,
backward = 2x that plus the recomputed scores' gradient, as for the CUDA kernels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter

__all__ = ["register_cpu_sdpa_flop_formula"]

_aten = torch.ops.aten


def register_cpu_sdpa_flop_formula() -> list[str]:
    """Register FLOP formulas for the CPU flash SDPA forward and backward (idempotent).

    Returns the names of the ops registered by this call (empty if already present, e.g. in a
    later torch that ships them).
    """
    registered: list[str] = []
    forward = _aten._scaled_dot_product_flash_attention_for_cpu
    backward = _aten._scaled_dot_product_flash_attention_for_cpu_backward

    if forward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward)
        def _cpu_sdpa_forward(
            query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
        ) -> int:
            # (B,H,Q,d) x (B,H,d,K) scores + (B,H,Q,K) x (B,H,K,dv) context
            return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))

        registered.append(str(forward))

    if backward not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward)
        def _cpu_sdpa_backward(
            grad_out_shape: Any,
            query_shape: Any,
            key_shape: Any,
            value_shape: Any,
            *args: Any,
            **kwargs: Any,
        ) -> int:
            return int(
                flop_counter.sdpa_backward_flop_count(
                    grad_out_shape, query_shape, key_shape, value_shape
                )
            )

        registered.append(str(backward))
    return registered
