"""Measurements on the reference model: what `perceiver-calc check` and `bench` compare with
perceiver-calc's analytic counts. Nothing here uses perceiver-calc's formulas.

* Parameters: ``named_parameters()`` of a model built on ``torch.device("meta")`` (no memory),
  grouped by the longest module path (given by the caller) that prefixes each name.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around an eval forward, and around a
  training forward + ``loss.backward()``, of a meta-device model with eager attention (what
  FlopCounterMode counts on transformers' model). Forward-only counting runs with grad mode on
  and every parameter's ``requires_grad`` off (FlopCounterMode's module tracker asserts under
  ``no_grad``, see docs/reference-model.md).
* Saved activations: one training forward (and the loss) on a real device under
  ``torch.autograd.graph.saved_tensors_hooks``; the bytes of the unique storages packed,
  parameters and buffers excluded (the procedure of tests/hf_truth.py, written again here).
* Peak memory: CUDA: ``torch.cuda.max_memory_allocated()`` above the allocation before the model
  was built (allocator statistics: exact for tensors, excludes the CUDA context and cuBLAS
  workspace). CPU: the process's peak resident set (``VmHWM`` in /proc/self/status, reset
  through /proc/self/clear_refs) above the resident set before the model was built, with glibc's
  mmap threshold lowered to 64 KiB (``mallopt``) so freed tensors leave the resident set at
  once; Linux only, otherwise ``None``. It includes allocator slack and torch's thread-local
  buffers, so it is a measurement of the process, not of tensors.
* Timing: warm-up runs, then repeated timed runs, synchronised on CUDA and MPS.

Activation checkpointing (``checkpointing=True``) wraps every ``PerceiverLayer.forward`` in a
reentrant ``torch.utils.checkpoint`` (a layer keeps only its inputs; its forward runs again in
backward), which is what perceiver-calc models.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

from perceiver_calc.classes import CLASSES
from reference_model import model as _model
from reference_model.model import build_model

__all__ = [
    "LABEL_CLASSES",
    "TORCH_DTYPES",
    "FlopMeasurement",
    "InputSpec",
    "ParamMeasurement",
    "PeakMeasurement",
    "SavedActivations",
    "Timings",
    "available_memory",
    "checkpointed_layers",
    "config_namespace",
    "device_name",
    "loss_of",
    "make_inputs",
    "measure_flops",
    "measure_params",
    "measure_peak_memory",
    "measure_saved_activations",
    "set_threads",
    "threads",
    "time_model",
]

# What differs between the classes (input kind, labels, loss) is read from perceiver-calc's
# class table, the one place that lists it. Classes whose forward computes a loss from
# `labels` (OpticalFlow and Multimodal raise NotImplementedError on labels, PerceiverModel has
# no labels argument):
LABEL_CLASSES = frozenset(name for name, c in CLASSES.items() if c.takes_labels)

# perceiver-calc's dtype names -> (parameter dtype, autocast dtype or None)
TORCH_DTYPES: dict[str, tuple[torch.dtype, torch.dtype | None]] = {
    "fp32": (torch.float32, None),
    "bf16": (torch.bfloat16, None),
    "fp16": (torch.float16, None),
    "mixed-bf16": (torch.float32, torch.bfloat16),
    "mixed-fp16": (torch.float32, torch.float16),
}


# --------------------------------------------------------------------------------------------
# inputs


def config_namespace(fields: Mapping[str, Any]) -> SimpleNamespace:
    """A config object for :func:`build_model` from transformers' field names, e.g.
    perceiver-calc's ``config.model_dump(by_alias=True)`` (whose private HF field
    ``_label_trainable_num_channels`` is spelled without the underscore as an attribute)."""
    return SimpleNamespace(**fields)


@dataclass(frozen=True)
class InputSpec:
    """Input sizes with every default filled in (perceiver-calc's ``InputShape`` fields).

    ``with_labels``: pass ``labels`` (only for :data:`LABEL_CLASSES`; ignored otherwise).
    """

    model_class: str
    batch_size: int = 1
    seq_len: int | None = None
    image_size: tuple[int, int] | None = None
    num_frames: int | None = None
    audio_samples: int | None = None
    subsampled_image_points: int | None = None
    subsampled_audio_points: int | None = None
    with_labels: bool = False

    @classmethod
    def of(cls, model_class: str, sizes: Mapping[str, Any], with_labels: bool) -> InputSpec:
        known = {k: v for k, v in sizes.items() if k in cls.__dataclass_fields__}
        if known.get("image_size") is not None:
            known["image_size"] = tuple(known["image_size"])
        return cls(model_class=model_class, with_labels=with_labels, **known)


def _labels(num_labels: int, b: int, device: torch.device, gen: torch.Generator | None) -> Tensor:
    if num_labels == 1:  # one label: regression on float targets, as transformers decides
        return _randn((b,), device, torch.float32, gen)
    return _randint(num_labels, (b,), device, gen)


def _randn(
    shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, gen: torch.Generator | None
) -> Tensor:
    if device.type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


def _randint(
    high: int, shape: tuple[int, ...], device: torch.device, gen: torch.Generator | None
) -> Tensor:
    if device.type == "meta":
        return torch.empty(shape, dtype=torch.long, device=device)
    return torch.randint(0, max(high, 1), shape, generator=gen).to(device)


def make_inputs(
    config: Any,
    spec: InputSpec,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, Any]:
    """Forward kwargs for the reference model (random, seeded; uninitialised on meta).

    PerceiverModel: ``inputs`` (B, M, d_model). Text: (B, M) token ids; MaskedLM labels (B, P),
    -100 past M; classifier labels (B,). Images: (B, 3, H, W). Flow: (B, 2, 27, H, W). Multimodal:
    ``{"image": (B, F, 3, H, W), "audio": (B, A, 1), "label": (B, num_labels)}`` and
    ``subsampled_output_points`` = the first n flat indices, as transformers' example does.
    Floating inputs are in ``dtype``.
    """
    dev = torch.device(device)
    gen = None if dev.type == "meta" else torch.Generator().manual_seed(seed)
    mc, b = spec.model_class, spec.batch_size
    cls = CLASSES[mc]
    labels = spec.with_labels and cls.takes_labels
    num_labels = int(config.num_labels)
    kw: dict[str, Any] = {}
    if cls.input_kind == "embeddings":
        assert spec.seq_len is not None
        kw["inputs"] = _randn((b, spec.seq_len, int(config.d_model)), dev, dtype, gen)
        return kw
    if cls.input_kind == "tokens":
        assert spec.seq_len is not None
        vocab = int(config.vocab_size)
        kw["inputs"] = _randint(vocab, (b, spec.seq_len), dev, gen)
        if labels and cls.loss == "vocab_cross_entropy":
            # One label per decoder position (P = max_position_embeddings): the M tokens'
            # labels, then -100 (ignored by the loss), as a tokenizer padding to P gives them.
            p = int(config.max_position_embeddings)
            m = min(spec.seq_len, p)
            mlm = torch.full((b, p), -100, dtype=torch.int64, device=dev)
            mlm[:, :m] = _randint(vocab, (b, m), dev, gen)
            kw["labels"] = mlm
        elif labels:
            kw["labels"] = _labels(num_labels, b, dev, gen)
        return kw
    assert spec.image_size is not None
    h, w = spec.image_size
    if cls.input_kind == "image":
        kw["inputs"] = _randn((b, 3, h, w), dev, dtype, gen)
        if labels:
            kw["labels"] = _labels(num_labels, b, dev, gen)
        return kw
    if cls.input_kind == "flow":
        # (B, 2 frames, 27 = 3 colours x 3x3 patch, H, W)
        kw["inputs"] = _randn((b, 2, 27, h, w), dev, dtype, gen)
        return kw
    assert spec.num_frames is not None and spec.audio_samples is not None
    assert spec.subsampled_image_points is not None and spec.subsampled_audio_points is not None
    kw["inputs"] = {
        "image": _randn((b, spec.num_frames, 3, h, w), dev, dtype, gen),
        "audio": _randn((b, spec.audio_samples, 1), dev, dtype, gen),
        "label": torch.zeros((b, num_labels), device=dev, dtype=dtype),
    }
    kw["subsampled_output_points"] = {
        "image": torch.arange(spec.subsampled_image_points, device=dev),
        "audio": torch.arange(spec.subsampled_audio_points, device=dev),
        "label": None,
    }
    return kw


def loss_of(out: Any) -> Tensor:
    """``out.loss`` when labels were given, else the sum of every output (a stand-in loss)."""
    if out.loss is not None:
        return out.loss  # type: ignore[no-any-return]
    logits = out.logits
    if logits is None:
        parts = [out.last_hidden_state]
    elif isinstance(logits, dict):
        parts = [logits[k] for k in sorted(logits)]
    else:
        parts = [logits]
    total: Tensor = parts[0].float().sum()
    for p in parts[1:]:
        total = total + p.float().sum()
    return total


@contextlib.contextmanager
def checkpointed_layers(enabled: bool = True) -> Iterator[None]:
    """Wrap every reference ``PerceiverLayer.forward`` in a reentrant checkpoint."""
    if not enabled:
        yield
        return
    original = _model.PerceiverLayer.forward

    def forward(
        self: nn.Module,
        hidden_states: Tensor,
        inputs: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        if not torch.is_grad_enabled():
            return original(self, hidden_states, inputs, mask)  # type: ignore[arg-type]

        def run(h: Tensor, i: Tensor | None) -> Tensor:
            return original(self, h, i, mask)  # type: ignore[arg-type]

        out: Tensor = checkpoint(run, hidden_states, inputs, use_reentrant=True)
        return out

    with mock.patch.object(_model.PerceiverLayer, "forward", forward):
        yield


# --------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class ParamMeasurement:
    """``total``: unique parameter elements. ``by_module``: per caller-given module path (the
    longest path equal to a parameter's owner or a prefix of its name). ``unassigned``: names
    no path claims. ``tensors``: every parameter name -> shape. ``buffers``: name -> shape."""

    total: int
    by_module: dict[str, int]
    unassigned: dict[str, int]
    tensors: dict[str, tuple[int, ...]]
    buffers: dict[str, tuple[int, ...]]


def measure_params(model: nn.Module, paths: Sequence[str]) -> ParamMeasurement:
    ordered = sorted(set(paths), key=len, reverse=True)
    by_module: dict[str, int] = {}
    unassigned: dict[str, int] = {}
    tensors: dict[str, tuple[int, ...]] = {}
    for name, p in model.named_parameters():
        tensors[name] = tuple(p.shape)
        owner = next((q for q in ordered if name == q or name.startswith(q + ".")), None)
        if owner is None:
            unassigned[name] = p.numel()
        else:
            by_module[owner] = by_module.get(owner, 0) + p.numel()
    return ParamMeasurement(
        total=sum(p.numel() for p in model.parameters()),
        by_module=by_module,
        unassigned=unassigned,
        tensors=tensors,
        buffers={n: tuple(b.shape) for n, b in model.named_buffers()},
    )


# --------------------------------------------------------------------------------------------
# FLOPs


@dataclass(frozen=True)
class FlopMeasurement:
    """FlopCounterMode totals (2 FLOPs per multiply-add, matmul-like ops only).

    ``forward``: one eval forward. ``training``: a train-mode forward, the loss and
    ``loss.backward()`` (with checkpointing: plus each layer's recomputed forward).
    ``by_op``: the training pass by aten op."""

    forward: int
    training: int
    by_op: dict[str, int]

    @property
    def backward(self) -> int:
        return self.training - self.forward


def _count(model: nn.Module, kwargs: dict[str, Any], backward: bool) -> tuple[int, dict[str, int]]:
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(**kwargs)
        if backward:
            loss_of(out).backward()  # type: ignore[no-untyped-call]
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def measure_flops(
    config: Any, spec: InputSpec, *, checkpointing: bool = False, device: str = "meta"
) -> FlopMeasurement:
    """Forward and forward + backward FLOPs of the eager reference model on ``device``."""
    model = build_model(config, spec.model_class, device=device, attention="eager")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    fwd, _ = _count(model, make_inputs(config, spec, device), backward=False)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    with checkpointed_layers(checkpointing):
        total, by_op = _count(model, make_inputs(config, spec, device), backward=True)
    return FlopMeasurement(forward=fwd, training=total, by_op=by_op)


# --------------------------------------------------------------------------------------------
# saved activations


@dataclass(frozen=True)
class SavedActivations:
    """Unique storages autograd saves in one training forward (+ the loss); see the module
    docstring. ``by_dtype``: bytes per dtype name."""

    total_bytes: int
    by_dtype: dict[str, int]
    num_storages: int
    device: str


def measure_saved_activations(
    config: Any,
    spec: InputSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    checkpointing: bool = False,
    seed: int = 0,
) -> SavedActivations:
    param_dtype, autocast = TORCH_DTYPES[dtype]
    torch.manual_seed(seed)
    model = build_model(config, spec.model_class, device=device, dtype=param_dtype)
    model.train()
    kwargs = make_inputs(config, spec, device, param_dtype, seed)
    excluded = {
        (t.device.type, t.untyped_storage().data_ptr())
        for t in [*model.parameters(), *model.buffers()]
    }
    seen: dict[tuple[str, int], tuple[int, str]] = {}
    keep_alive: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        keep_alive.append(t)  # a freed storage's address must not be reused and counted twice
        storage = t.untyped_storage()
        key = (t.device.type, storage.data_ptr())
        if key not in excluded and key not in seen and storage.nbytes() > 0:
            seen[key] = (storage.nbytes(), str(t.dtype))
        return t

    def unpack(t: Tensor) -> Tensor:
        return t

    with (
        _autocast(device, autocast),
        checkpointed_layers(checkpointing),
        torch.autograd.graph.saved_tensors_hooks(pack, unpack),
    ):
        out = model(**kwargs)
        loss = loss_of(out) if out.loss is not None else None
    by_dtype: dict[str, int] = {}
    for nbytes, name in seen.values():
        by_dtype[name] = by_dtype.get(name, 0) + nbytes
    del loss, out
    keep_alive.clear()
    return SavedActivations(
        total_bytes=sum(by_dtype.values()),
        by_dtype=dict(sorted(by_dtype.items())),
        num_storages=len(seen),
        device=str(device),
    )


def _autocast(device: str | torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# devices and memory


def device_name(device: str) -> str:
    """A human name of the device: the GPU's name, or the CPU model from /proc/cpuinfo."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    if dev.type == "mps":
        return "Apple MPS"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "cpu"


def available_memory(device: str) -> int | None:
    """Bytes free for new tensors: CUDA ``mem_get_info()[0]``; CPU ``MemAvailable`` from
    /proc/meminfo; MPS ``recommended_max_memory() - driver_allocated_memory()``; None if
    unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type == "mps":
        with contextlib.suppress(Exception):
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        return None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _status_kib(key: str) -> int | None:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _lower_mmap_threshold() -> bool:
    """glibc: allocations >= 64 KiB via mmap, so freed tensors leave the resident set."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 65536) == 1
        libc.mallopt(_M_TRIM_THRESHOLD, 65536)
        return bool(ok)
    except (OSError, AttributeError):
        return False


class _PeakTracker:
    """Peak bytes above a baseline taken at construction; see the module docstring."""

    def __init__(self, device: str) -> None:
        self.dev = torch.device(device)
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.dev)
            self.base = int(torch.cuda.memory_allocated(self.dev))
            self.method = "torch.cuda.max_memory_allocated (allocator statistics)"
        elif self.dev.type == "mps":
            self.base = int(torch.mps.current_allocated_memory())
            self.method = "torch.mps.current_allocated_memory after the step (no peak counter)"
        else:
            _lower_mmap_threshold()
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the peak resident set (VmHWM) to the current one
                rss = _status_kib("VmRSS")
                self.base = -1 if rss is None else rss * 1024
            except OSError:
                self.base = -1
            self.method = "peak resident set (VmHWM) above the baseline, Linux /proc"

    def peak(self) -> int | None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            return int(torch.cuda.max_memory_allocated(self.dev)) - self.base
        if self.dev.type == "mps":
            torch.mps.synchronize()
            return int(torch.mps.current_allocated_memory()) - self.base
        hwm = _status_kib("VmHWM")
        if self.base < 0 or hwm is None:
            return None
        return hwm * 1024 - self.base


@dataclass(frozen=True)
class PeakMeasurement:
    """Peak bytes of a model built and run once (``None`` where no tracker exists)."""

    bytes: int | None
    method: str


def _optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return torch.optim.AdamW(params, lr=1e-3)


@dataclass
class _Runner:
    """A built model with its inputs: one forward (no grad) or one training step."""

    model: nn.Module
    kwargs: dict[str, Any]
    device: str
    autocast: torch.dtype | None
    optimizer: torch.optim.Optimizer | None = None
    checkpointing: bool = False

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad(), _autocast(self.device, self.autocast):
            self.model(**self.kwargs)

    def train_step(self) -> None:
        self.model.train()
        with _autocast(self.device, self.autocast), checkpointed_layers(self.checkpointing):
            loss = loss_of(self.model(**self.kwargs))
        loss.backward()  # type: ignore[no-untyped-call]
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def _runner(
    config: Any,
    spec: InputSpec,
    device: str,
    dtype: str,
    attention: str,
    optimizer: str | None,
    checkpointing: bool,
) -> _Runner:
    param_dtype, autocast = TORCH_DTYPES[dtype]
    torch.manual_seed(0)
    model = build_model(
        config, spec.model_class, device=device, dtype=param_dtype, attention=attention
    )
    kwargs = make_inputs(config, spec, device, param_dtype)
    opt = _optimizer(model, optimizer) if optimizer else None
    return _Runner(model, kwargs, device, autocast, opt, checkpointing)


def measure_peak_memory(
    config: Any,
    spec: InputSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    training: bool = True,
    optimizer: str = "adamw",
    checkpointing: bool = False,
    attention: str = "eager",
) -> PeakMeasurement:
    """Peak bytes above the pre-build baseline while building the model and running, twice,
    one training step with ``optimizer`` (the second step runs with the optimizer states
    allocated) or one no-grad forward."""
    tracker = _PeakTracker(device)
    r = _runner(
        config, spec, device, dtype, attention, optimizer if training else None, checkpointing
    )
    for _ in range(2):
        r.train_step() if training else r.forward()
    peak = tracker.peak()
    del r
    gc.collect()
    return PeakMeasurement(bytes=peak, method=tracker.method)


# --------------------------------------------------------------------------------------------
# timing


@dataclass
class Timings:
    """Seconds per run (after ``warmup`` untimed runs) for a no-grad forward and a training
    step (forward, loss, backward, optimizer step, zero_grad)."""

    forward: list[float] = field(default_factory=list)
    training: list[float] = field(default_factory=list)
    peak_forward_bytes: int | None = None
    peak_training_bytes: int | None = None
    peak_method: str = ""

    @staticmethod
    def stats(xs: Sequence[float]) -> dict[str, float]:
        if not xs:
            return {}
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def _sync(device: str) -> None:
    t = torch.device(device).type
    if t == "cuda":
        torch.cuda.synchronize()
    elif t == "mps":
        torch.mps.synchronize()


def time_model(
    config: Any,
    spec: InputSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: bool = False,
    attention: str = "sdpa",
    warmup: int = 2,
    repeats: int = 5,
    training: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> Timings:
    """Time ``repeats`` forwards and (``training``) training steps after ``warmup`` each.

    ``progress(phase, done, total)`` is called after every run. Peak memory (above the
    baseline before the model was built, weights included) is read after the forward phase
    and again after the training phase (the peak counters are cumulative)."""
    report = progress or (lambda _p, _d, _t: None)
    res = Timings()
    tracker = _PeakTracker(device)
    res.peak_method = tracker.method
    r = _runner(config, spec, device, dtype, attention, optimizer, checkpointing)
    phases: list[tuple[str, Callable[[], None], list[float]]] = [
        ("forward", r.forward, res.forward)
    ]
    if training:
        phases.append(("training step", r.train_step, res.training))
    for name, fn, out in phases:
        if name == "training step":
            # the trackers' peaks are cumulative: read the forward's before training starts
            res.peak_forward_bytes = tracker.peak()
        for i in range(warmup):
            fn()
            report(f"{name} (warm-up)", i + 1, warmup)
        _sync(device)
        for i in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - t0)
            report(name, i + 1, repeats)
    if training:
        res.peak_training_bytes = tracker.peak()
    else:
        res.peak_forward_bytes = tracker.peak()
    return res


def threads() -> int:
    """torch's intra-op CPU threads."""
    return int(torch.get_num_threads())


def set_threads(n: int) -> int:
    """Set torch's intra-op CPU threads (``torch.set_num_threads``) for this process; returns
    the previous count so the caller can restore it."""
    previous = int(torch.get_num_threads())
    torch.set_num_threads(int(n))
    return previous
