"""Named FLOP-counting conventions: pure post-processing of the exact counts.

perceiver-calc's FLOP counts (:mod:`perceiver_calc.flops`) are exact under one convention,
FlopCounterMode's: 2 FLOPs per multiply-add, every matmul and convolution (the attention
score and context matmuls included), nothing elementwise. Published figures are often stated
under other conventions, and a reader comparing numbers needs to know which. A convention here
is a rule applied to a :class:`~perceiver_calc.flops.FlopCounts` (its per-op forward FLOPs
``ops`` and its ``forward_terms``); it returns a new :class:`ConventionFlops` and never alters
the exact counts (which are frozen anyway).

================  ===========================================================================
``flopcounter``   the exact count (the default): what ``FlopCounterMode`` reports.
``paper``         Perceiver IO (Jaegle et al., ICLR 2022), App. D: "theoretical FLOPs with
                  multiplies and accumulates counted as separate operations", forward pass,
                  every matmul; App. E.2 names the two attention matmuls as the dominant
                  cost, so they are in. This is the exact count again: docs/papers.md shows
                  it reproduces Perceiver IO++ (Table 1), the Fourier and conv ImageNet rows
                  of Table 7 and App. A.1's "303 billion FLOPs" for 7 more cross-attends, to
                  within 1%; the rows it misses are explained there.
``macs``          multiply-adds (1 per MAC), the "fused multiply-accumulate" reading App. D
                  warns about ("will cut the figures reported here in half").
``no-attention``  without the score (QK^T) and context (AV) matmuls: the "2 x parameters x
                  tokens" family of rules. Tested against the papers: it matches the UTF-8
                  byte model of Table 1 only, and misses every other row (docs/papers.md).
``io-half``       the matmuls whose size grows with the input length M or the output count O
                  (forward_terms ``inputs``, ``inputs*latents``, ``outputs``,
                  ``latents*outputs``) at half, the latent ones in full. Not a convention
                  either paper states: it is the reading that fits the language rows of
                  Table 1 (byte and SentencePiece) and Table 15, and it misses Perceiver IO++
                  and the Fourier ImageNet row. Shown so that the observation can be checked,
                  not endorsed.
================  ===========================================================================

Only forward FLOPs are converted: the figures the Perceiver IO paper prints are forward passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

from perceiver_calc.errors import InputError

if TYPE_CHECKING:
    from perceiver_calc.flops import FlopCounts

__all__ = [
    "CONVENTIONS",
    "IO_TERMS",
    "ConventionFlops",
    "ConventionName",
    "apply_convention",
    "convention_data",
    "convention_lines",
]

ConventionName = Literal["flopcounter", "paper", "macs", "no-attention", "io-half"]

CONVENTIONS: Mapping[str, str] = MappingProxyType(
    {
        "flopcounter": "exact: 2 FLOPs per multiply-add, every matmul and convolution "
        "(torch FlopCounterMode)",
        "paper": "Perceiver IO App. D: multiplies and adds counted separately, every matmul "
        "including attention scores and context (= flopcounter)",
        "macs": "multiply-adds: 1 per multiply-add (half of flopcounter)",
        "no-attention": "flopcounter without the attention score (QK^T) and context (AV) matmuls",
        "io-half": "flopcounter with the input- and output-proportional matmuls at half "
        "(an observed fit to the papers' language rows, not a stated convention)",
    }
)

# forward_terms families that grow with the input length M or the output count O.
IO_TERMS: tuple[str, ...] = ("inputs", "inputs*latents", "outputs", "latents*outputs")

_ATTENTION_SUFFIXES = (":scores", ":context")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConventionFlops:
    """Forward FLOPs of one pass under a named convention."""

    convention: str
    forward: int
    """Forward FLOPs under the convention (integers: halves are of even counts, see below)."""
    exact_forward: int
    """The exact (flopcounter) forward FLOPs it was derived from."""
    left_out: Mapping[str, int]
    """Exact FLOPs the convention leaves out, by op (``...:scores``) or by term family
    (``inputs (half)``, ...); the sum is ``exact_forward - forward``."""

    @property
    def ratio(self) -> float:
        """forward / exact_forward."""
        return self.forward / self.exact_forward if self.exact_forward else 1.0


def apply_convention(flops: FlopCounts, name: str) -> ConventionFlops:
    """``flops``' forward FLOPs under convention ``name`` (one of :data:`CONVENTIONS`).

    Pure: reads ``flops.forward``, ``flops.ops`` and ``flops.forward_terms``, returns a new
    object. Every exact count is 2 x an integer number of multiply-adds, so the halves that
    ``macs`` and ``io-half`` take are exact integers.
    """
    if name not in CONVENTIONS:
        raise InputError(
            f"convention {name!r} is not one of {', '.join(CONVENTIONS)}: "
            "pass one of those names (flopcounter is the exact count)"
        )
    exact = flops.forward
    left: dict[str, int] = {}
    if name == "macs":
        left["multiply-adds counted once"] = exact // 2
    elif name == "no-attention":
        for key, n in flops.ops.items():
            if key.endswith(_ATTENTION_SUFFIXES) and n:
                left[key] = n
    elif name == "io-half":
        for term in IO_TERMS:
            n = flops.forward_terms.get(term, 0)
            if n:
                left[f"{term} (half)"] = n // 2
    return ConventionFlops(
        convention=name,
        forward=exact - sum(left.values()),
        exact_forward=exact,
        left_out=MappingProxyType(left),
    )


def convention_data(flops: FlopCounts, name: str) -> dict[str, object]:
    """JSON data for the CLI's ``--format json``: the convention's forward FLOPs and what it
    leaves out, beside the exact forward."""
    conv = apply_convention(flops, name)
    return {
        "convention": name,
        "description": CONVENTIONS[name],
        "forward": conv.forward,
        "exact_forward": conv.exact_forward,
        "ratio": conv.ratio,
        "left_out": dict(conv.left_out),
    }


def convention_lines(flops: FlopCounts, name: str) -> list[str]:
    """Plain-text lines for the CLI: the forward FLOPs under ``name`` beside the exact ones."""
    conv = apply_convention(flops, name)
    lines = [
        f"convention: {name} ({CONVENTIONS[name]})",
        f"  forward FLOPs ({name}): {conv.forward:,} ({conv.ratio:.4f} x the exact "
        f"{conv.exact_forward:,})",
    ]
    for key, n in conv.left_out.items():
        lines.append(f"  left out: {key}: {n:,}")
    return lines


def _check_names() -> None:  # pragma: no cover - import-time consistency
    assert set(get_args(ConventionName)) == set(CONVENTIONS)


_check_names()
