"""Validity rules that mirror transformers 5.24 exactly, each a small self-contained check.

Called with one line each from :func:`perceiver_calc.resolve.resolve_unchecked` (what the config
alone decides) and :func:`perceiver_calc.workload.check_workload` (what needs the inputs).
Every rule names the transformers source it mirrors; tests/test_parity.py pins each one against
transformers itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from perceiver_calc.arith import where
from perceiver_calc.errors import Finding
from perceiver_calc.rules import SCALAR, Rules

if TYPE_CHECKING:
    from perceiver_calc.config import PerceiverConfig
    from perceiver_calc.modules import Module, ResolvedModel
    from perceiver_calc.workload import Workload

__all__ = [
    "activation_bytes_findings",
    "chunk_findings",
    "relax_unexecuted_self_attention",
    "tensor_bytes_findings",
]

INT64_MAX = 2**63 - 1
# transformers builds every parameter in float32 (the model's default dtype) before any cast.
PARAM_BYTES = 4


def _query_length_name(key: str) -> str:
    if key == "latents":
        return "num_latents"
    return "the decoder's query count"


def chunk_findings(
    config: PerceiverConfig, query_lengths: Mapping[str, int], rules: Rules = SCALAR
) -> list[Finding]:
    """``chunk_size_feed_forward`` > 0 makes every PerceiverLayer run its MLP through
    ``apply_chunking_to_forward(..., chunk_dim=1, ...)`` (modeling_perceiver.py L402,
    pytorch_utils.py), which raises ``ValueError("The dimension to be chunked N has to be a
    multiple of the chunk size C")`` unless the layer's query length N is a multiple of C.
    The query lengths are the latents (encoder cross- and self-attention) and each decoder's
    outputs; ``query_lengths`` maps ``"latents"`` / ``"outputs"`` to those known so far.
    0 disables chunking."""
    c = config.chunk_size_feed_forward
    found: list[Finding] = []
    if rules.batched:
        c = where(c == 0, 1, c)  # (the mask below is 0 there): no division by zero
    elif c == 0:
        return found
    for key, n in query_lengths.items():
        if key not in ("latents", "outputs"):
            continue
        cond = (config.chunk_size_feed_forward != 0) & (n > 0) & (n % c != 0)
        if not rules.fails(cond, "chunk_size_feed_forward"):
            continue
        module = "perceiver.encoder" if key == "latents" else "perceiver.decoder"
        field = "num_latents" if key == "latents" else "chunk_size_feed_forward"
        multiple_below = (n // c) * c
        fix = f"use a chunk_size_feed_forward that divides {n} (1 always does), or 0 to disable"
        if key == "latents":
            fix += f"; or num_latents {multiple_below or c} or {multiple_below + c}"
        found.append(
            Finding(
                severity="error",
                code="chunk_size_feed_forward",
                fields=tuple(dict.fromkeys(("chunk_size_feed_forward", field))),
                values={"chunk_size_feed_forward": c, _query_length_name(key): n},
                module=module,
                rule=f"{_query_length_name(key)} ({n}) must be a multiple of "
                f"chunk_size_feed_forward ({c}): apply_chunking_to_forward splits each layer's "
                "queries into chunks of that size (ValueError in forward)",
                fix=fix,
            )
        )
    return found


def relax_unexecuted_self_attention(
    config: PerceiverConfig, findings: Sequence[Finding]
) -> list[Finding]:
    """With ``num_blocks == 0`` the encoder's self-attention layers are built but never run
    (modeling_perceiver.py PerceiverEncoder.forward: ``for _ in range(self.num_blocks)``), so a
    self-attention v width that differs from d_latents builds and runs in transformers: that
    error becomes a warning (the layers' parameters still count)."""
    if config.num_blocks != 0:
        return list(findings)
    out: list[Finding] = []
    for f in findings:
        if f.code == "self_attention_width" and f.severity == "error":
            f = dataclasses.replace(
                f,
                severity="warning",
                code="self_attention_width_unused",
                rule=f.rule.replace("(forward pass fails)", "")
                + "; with num_blocks 0 these layers never run, so transformers accepts it",
            )
        out.append(f)
    return out


def tensor_bytes_findings(modules: Iterable[Module], rules: Rules = SCALAR) -> list[Finding]:
    """torch refuses a tensor whose byte size overflows int64 even when its element count fits
    ("Storage size calculation overflowed", c10 computeStorageNbytes, on every device meta
    included). Parameters are built in float32: 4 bytes each. A shared block's copies have
    one copy's shapes: checking copy 0 checks them all (closed form, no loop over copies)."""
    found: list[Finding] = []
    for m in modules:
        for name, shape in m.shapes().items():
            numel = math.prod(shape)
            # where numel > INT64_MAX, tensor_too_large (resolve) is the row's error instead
            if rules.exceeds(
                numel * PARAM_BYTES, INT64_MAX, "tensor_bytes_too_large", unless=numel
            ):
                found.append(
                    Finding(
                        severity="error",
                        code="tensor_bytes_too_large",
                        fields=(),
                        values={"shape": list(shape)},
                        module=m.path,
                        rule=f"parameter {name} of shape {list(shape)} would take "
                        f"{numel * PARAM_BYTES:.3e} bytes in float32; torch's limit is 2**63 - 1 "
                        "bytes per tensor (RuntimeError: Storage size calculation overflowed)",
                        fix="use smaller dimensions",
                    )
                )
    return found


def activation_bytes_findings(
    resolved: ResolvedModel, workload: Workload, rules: Rules = SCALAR
) -> list[Finding]:
    """The largest activation of one forward (attention scores, logits, ...: every storage a
    training forward keeps, which an inference forward also materialises) in the workload's
    dtype must fit torch's int64 byte count, else the forward raises ("Storage size
    calculation overflowed"). One finding, for the largest such tensor."""
    from perceiver_calc.memory import bytes_per_element, saved_tensors

    worst: tuple[int, str, int] | None = None
    for t in saved_tensors(resolved, workload):
        nbytes = t.elements * bytes_per_element(t.kind, workload.dtype, "cpu")
        if rules.exceeds(nbytes, INT64_MAX, "activation_bytes_too_large") and (
            worst is None or nbytes > worst[0]
        ):
            worst = (nbytes, f"{t.id} ({t.kind}, saved by {t.module})", t.elements)
    if worst is None:
        return []
    nbytes, name, elements = worst
    return [
        Finding(
            severity="error",
            code="activation_bytes_too_large",
            fields=("batch_size",),
            values={"batch_size": workload.batch_size, "dtype": workload.dtype},
            module=name.rsplit("saved by ", 1)[-1].rstrip(")"),
            rule=f"activation {name} would have {elements:.3e} elements, {nbytes:.3e} bytes in "
            f"{workload.dtype}; torch's limit is 2**63 - 1 bytes per tensor (RuntimeError: "
            "Storage size calculation overflowed)",
            fix="use a smaller batch_size or shorter inputs",
        )
    ]
