"""GPUs: dense peak FLOP/s per number format and memory, each with its source. One table, read
by ``plan`` (step time at a given MFU, whether a strategy fits) and by ``bench`` (MFU = achieved
model FLOP/s / peak). No torch: ``plan`` must run without it.

Rules for the table:

1. Dense peaks only. NVIDIA datasheets print tensor-core figures "with sparsity" (2:4
   structured sparsity, 2x); the dense figure, half of it, is what a dense model can reach.
2. ``fp32`` is the non-tensor-core FP32 figure: PyTorch does not use TF32 for fp32 matmuls
   unless ``torch.backends.cuda.matmul.allow_tf32`` (or ``torch.set_float32_matmul_precision``)
   says so, and perceiver-calc's fp32 workload does not.
3. ``bf16`` / ``fp16`` and ``mixed-bf16`` / ``mixed-fp16`` run their matmuls in bf16 / fp16
   (under autocast for mixed): the bf16 / fp16 tensor-core peak. No entry where the device has
   no such tensor cores (V100 and T4 have no bf16).
4. Memory is the datasheet's figure in GB (10**9 bytes); what a program can allocate is a
   little less than the card's GiB (e.g. an H100 80GB reports 79.6 GiB = 85.5e9 bytes).
5. CPUs, MPS and unlisted GPUs: no entry. Their peak depends on the parts and clocks in use;
   ``bench`` takes ``--peak-flops`` (FLOP/s), else reports MFU as n/a.

``bench`` matches a device by a case-insensitive regular expression on
``torch.cuda.get_device_name()`` (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB",
"Tesla V100-PCIE-16GB"); the first match wins, so the PCIe and NVL variants come before the SXM
default. ``plan`` takes a device by its ``key`` (``--device h100-sxm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["DEVICES", "PEAKS", "GpuSpec", "lookup_peak"]

_T = 1e12
_GB = 10**9

_H100_SRC = (
    "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100): "
    "SXM5 FP32 67 TFLOPS, BF16/FP16 1,979 TFLOPS with sparsity (989 dense), 80 GB; "
    "PCIe FP32 51, BF16/FP16 1,513 with sparsity (756 dense), 80 GB; "
    "NVL FP32 60, BF16/FP16 1,671 with sparsity (835 dense), 94 GB"
)
_H200_SRC = (
    "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): "
    "SXM FP32 67 TFLOPS, BF16/FP16 1,979 TFLOPS with sparsity (989 dense), 141 GB"
)
_A100_SRC = (
    "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100): "
    "FP32 19.5 TFLOPS, BF16/FP16 tensor core 312 TFLOPS dense (624 with sparsity), 40 or 80 GB"
)
_A10_SRC = (
    "NVIDIA A10 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/products/a10-gpu): "
    "FP32 31.2 TFLOPS, BF16/FP16 tensor core 125 TFLOPS dense (250 with sparsity), 24 GB"
)
_L4_SRC = (
    "NVIDIA L4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/l4): "
    "FP32 30.3 TFLOPS, BF16/FP16 tensor core 242 TFLOPS with sparsity (121 dense), 24 GB"
)
_V100_SRC = (
    "NVIDIA V100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/v100): "
    "SXM2 FP32 15.7 TFLOPS, tensor (FP16) 125 TFLOPS; PCIe FP32 14, tensor 112; 16 or 32 GB; "
    "no BF16"
)
_T4_SRC = (
    "NVIDIA T4 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/tesla-t4): "
    "FP32 8.1 TFLOPS, mixed FP16/FP32 65 TFLOPS, 16 GB; no BF16"
)


@dataclass(frozen=True)
class GpuSpec:
    """One device: its ``plan`` key, a regex on its CUDA name, display name, datasheet memory,
    dense peak FLOP/s per perceiver-calc dtype, source."""

    key: str
    match: str
    name: str
    memory_bytes: int
    flops: dict[str, float] = field(default_factory=dict)
    source: str = ""


def _gpu(fp32: float, half: float, bf16: bool = True) -> dict[str, float]:
    peaks = {"fp32": fp32 * _T, "fp16": half * _T, "mixed-fp16": half * _T}
    if bf16:
        peaks |= {"bf16": half * _T, "mixed-bf16": half * _T}
    return peaks


PEAKS: tuple[GpuSpec, ...] = (
    GpuSpec(
        "h100-pcie", r"\bH100\b.*\bPCIE\b", "NVIDIA H100 PCIe", 80 * _GB, _gpu(51, 756), _H100_SRC
    ),
    GpuSpec(
        "h100-nvl", r"\bH100\b.*\bNVL\b", "NVIDIA H100 NVL", 94 * _GB, _gpu(60, 835), _H100_SRC
    ),
    GpuSpec("h100-sxm", r"\bH100\b", "NVIDIA H100 SXM5", 80 * _GB, _gpu(67, 989), _H100_SRC),
    GpuSpec("h200", r"\bH200\b", "NVIDIA H200 SXM", 141 * _GB, _gpu(67, 989), _H200_SRC),
    GpuSpec(
        "a100-40gb",
        r"\bA100\b.*\b40GB\b",
        "NVIDIA A100 40GB",
        40 * _GB,
        _gpu(19.5, 312),
        _A100_SRC,
    ),
    GpuSpec("a100-80gb", r"\bA100\b", "NVIDIA A100 80GB", 80 * _GB, _gpu(19.5, 312), _A100_SRC),
    # AWS A10G: not the A10's clocks and no public datasheet peak; listed so that the A10 entry
    # below does not match it (bench then asks for --peak-flops).
    GpuSpec("a10g", r"\bA10G\b", "NVIDIA A10G", 24 * _GB),
    GpuSpec("a10", r"\bA10\b", "NVIDIA A10", 24 * _GB, _gpu(31.2, 125), _A10_SRC),
    GpuSpec("l4", r"\bL4\b", "NVIDIA L4", 24 * _GB, _gpu(30.3, 121), _L4_SRC),
    GpuSpec(
        "v100-pcie-32gb",
        r"\bV100\b.*\bPCIE\b",
        "NVIDIA V100 PCIe 32GB",
        32 * _GB,
        _gpu(14, 112, bf16=False),
        _V100_SRC,
    ),
    GpuSpec(
        "v100-sxm2-32gb",
        r"\bV100\b",
        "NVIDIA V100 SXM2 32GB",
        32 * _GB,
        _gpu(15.7, 125, bf16=False),
        _V100_SRC,
    ),
    GpuSpec("t4", r"\bT4\b", "NVIDIA T4", 16 * _GB, _gpu(8.1, 65, bf16=False), _T4_SRC),
)

DEVICES: dict[str, GpuSpec] = {spec.key: spec for spec in PEAKS if spec.flops}
"""``plan --device KEY``: the entries of :data:`PEAKS` that have peaks, by key."""


def lookup_peak(device_name: str, dtype: str) -> tuple[float, str] | None:
    """``(peak FLOP/s, "name: source")`` for a CUDA device name and a perceiver-calc dtype, or
    None when the device is not in :data:`PEAKS` (every CPU and MPS device) or has no figure
    for that dtype."""
    for spec in PEAKS:
        if re.search(spec.match, device_name, flags=re.IGNORECASE):
            if dtype not in spec.flops:
                return None
            return spec.flops[dtype], f"{spec.name}: {spec.source}"
    return None
