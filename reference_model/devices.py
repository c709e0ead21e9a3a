"""Peak dense FLOP/s per device and number format, each with its source, for model FLOP
utilisation (MFU = achieved model FLOP/s / peak).

Rules for the table:

1. Dense peaks only. NVIDIA datasheets print tensor-core figures "with sparsity" (2:4
   structured sparsity, 2x); the dense figure, half of it, is what a dense model can reach.
2. ``fp32`` is the non-tensor-core FP32 figure: PyTorch does not use TF32 for fp32 matmuls
   unless ``torch.backends.cuda.matmul.allow_tf32`` (or ``torch.set_float32_matmul_precision``)
   says so, and perceiver-calc's fp32 workload does not.
3. ``mixed-bf16`` / ``mixed-fp16`` run their matmuls in bf16 / fp16 under autocast: the bf16 /
   fp16 tensor-core peak.
4. CPUs: no entry. Their peak depends on the core count, clocks and vector units in use; pass
   ``--peak-flops`` (FLOP/s) or MFU is reported as n/a.

Matching is by a case-insensitive regular expression on ``torch.cuda.get_device_name()``
(e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "Tesla V100-PCIE-16GB"); the first
match wins, so the PCIe and NVL variants come before the SXM default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PEAKS", "PeakEntry", "lookup_peak"]

_T = 1e12

_H100_SRC = (
    "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100): "
    "SXM5 FP32 67 TFLOPS, BF16/FP16 1,979 TFLOPS with sparsity (989 dense); "
    "PCIe FP32 51, BF16/FP16 1,513 with sparsity (756 dense); "
    "NVL FP32 60, BF16/FP16 1,671 with sparsity (835 dense)"
)
_H200_SRC = (
    "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): "
    "SXM FP32 67 TFLOPS, BF16/FP16 1,979 TFLOPS with sparsity (989 dense)"
)
_A100_SRC = (
    "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100): "
    "FP32 19.5 TFLOPS, BF16/FP16 tensor core 312 TFLOPS dense (624 with sparsity)"
)
_A10_SRC = (
    "NVIDIA A10 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/products/a10-gpu): "
    "FP32 31.2 TFLOPS, BF16/FP16 tensor core 125 TFLOPS dense (250 with sparsity)"
)
_L4_SRC = (
    "NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4): "
    "FP32 30.3 TFLOPS, BF16/FP16 tensor core 242 TFLOPS with sparsity (121 dense)"
)
_V100_SRC = (
    "NVIDIA V100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/v100): "
    "SXM2 FP32 15.7 TFLOPS, tensor (FP16) 125 TFLOPS; PCIe FP32 14, tensor 112; no BF16"
)
_T4_SRC = (
    "NVIDIA T4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/tesla-t4): "
    "FP32 8.1 TFLOPS, mixed FP16/FP32 65 TFLOPS; no BF16"
)


@dataclass(frozen=True)
class PeakEntry:
    """One device: a regex on its CUDA name, display name, peak FLOP/s per dtype, source."""

    match: str
    name: str
    flops: dict[str, float]
    source: str


def _gpu(fp32: float, half: float, bf16: bool = True) -> dict[str, float]:
    peaks = {"fp32": fp32 * _T, "fp16": half * _T, "mixed-fp16": half * _T}
    if bf16:
        peaks |= {"bf16": half * _T, "mixed-bf16": half * _T}
    return peaks


PEAKS: tuple[PeakEntry, ...] = (
    PeakEntry(r"\bH100\b.*\bPCIE\b", "NVIDIA H100 PCIe", _gpu(51, 756), _H100_SRC),
    PeakEntry(r"\bH100\b.*\bNVL\b", "NVIDIA H100 NVL", _gpu(60, 835), _H100_SRC),
    PeakEntry(r"\bH100\b", "NVIDIA H100 SXM5", _gpu(67, 989), _H100_SRC),
    PeakEntry(r"\bH200\b", "NVIDIA H200 SXM", _gpu(67, 989), _H200_SRC),
    PeakEntry(r"\bA100\b", "NVIDIA A100 (SXM4 / PCIe)", _gpu(19.5, 312), _A100_SRC),
    PeakEntry(r"\bA10G\b", "", {}, ""),  # AWS A10G: not the A10's clocks; no public datasheet peak
    PeakEntry(r"\bA10\b", "NVIDIA A10", _gpu(31.2, 125), _A10_SRC),
    PeakEntry(r"\bL4\b", "NVIDIA L4", _gpu(30.3, 121), _L4_SRC),
    PeakEntry(r"\bV100\b.*\bPCIE\b", "NVIDIA V100 PCIe", _gpu(14, 112, bf16=False), _V100_SRC),
    PeakEntry(r"\bV100\b", "NVIDIA V100 SXM2", _gpu(15.7, 125, bf16=False), _V100_SRC),
    PeakEntry(r"\bT4\b", "NVIDIA T4", _gpu(8.1, 65, bf16=False), _T4_SRC),
)


def lookup_peak(device_name: str, dtype: str) -> tuple[float, str] | None:
    """``(peak FLOP/s, "name: source")`` for a CUDA device name and a perceiver-calc dtype, or
    None when the device is not in :data:`PEAKS` (every CPU and MPS device) or has no figure
    for that dtype."""
    for entry in PEAKS:
        if re.search(entry.match, device_name, flags=re.IGNORECASE):
            if dtype not in entry.flops:
                return None
            return entry.flops[dtype], f"{entry.name}: {entry.source}"
    return None
