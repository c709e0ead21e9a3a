"""Exact Perceiver training FLOPs and MFU inside Hugging Face's ``Trainer``.

Why: transformers 5.24's ``Trainer.floating_point_ops(inputs)`` (trainer.py L4224) returns
``6 * inputs[main_input_name].numel() * model.num_parameters(exclude_embeddings=True)`` for
every micro-batch; the training loop adds it to ``trainer.current_flos`` (L1933) and
``store_flos`` (L4213) moves that into ``state.total_flos``, which ends up in the ``train``
metrics (``total_flos``, L2018), ``trainer_state.json`` and every logger. For a Perceiver that
rule is far off (6.8x too high for deepmind/language-perceiver): attention runs over the
latents, not the inputs, and the decoder's queries are neither. It does not call the model's
``floating_point_ops`` either, so patching the model changes nothing.

The hook used here is the one that method's docstring names ("subclass and override this
method"), done on the instance: :func:`attach` replaces ``trainer.floating_point_ops`` with a
:class:`PerceiverFlops` counter, which reads the batch's real shapes (batch size, sequence
length, image size, ...), builds the matching :class:`~perceiver_calc.workload.Workload` in
training mode and returns perceiver-calc's exact ``count_flops(...).training_step`` (forward
+ backward matmul FLOPs, 2 per multiply-add, as ``torch.utils.flop_counter.FlopCounterMode``
counts them). It also wraps ``trainer.log`` to add, to every training log, the achieved model
FLOP/s and, when a peak is known (a device of :mod:`perceiver_calc.devices` or
``peak_flops=``), the MFU::

    from perceiver_calc.hf_trainer import attach

    trainer = Trainer(model=model, args=args, train_dataset=ds)
    flops = attach(trainer, device="h100-sxm")   # dtype from args.bf16 / args.fp16
    trainer.train()
    trainer.state.total_flos                      # exact, summed over processes
    trainer.state.log_history[-2]["mfu"]          # per device, since the previous log

:func:`training_flops` is the same count as a plain function, for a ``Trainer`` subclass or a
custom loop. transformers and torch are never imported here: the Trainer and the tensors are
duck-typed (``.shape``), so this module costs nothing to import and mypy checks it alone.

What is counted: the model's matmuls and convolutions in the forward and the backward of each
micro-batch (gradient accumulation calls it per micro-batch). Not counted, as in
FlopCounterMode: elementwise work (norms, softmax, GELU, dropout, the loss), the optimizer.
transformers' Perceiver has no gradient checkpointing switch, so no recomputation is added.
Evaluation and prediction steps are not counted (the Trainer does not call the hook there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from perceiver_calc.errors import InputError
from perceiver_calc.flops import count_flops
from perceiver_calc.modules import ResolvedModel
from perceiver_calc.workload import Dtype, Workload

__all__ = ["PerceiverFlops", "attach", "batch_workload", "peak_for", "training_flops"]

# The keys a Perceiver forward reads its main input from: ``inputs`` (every class,
# main_input_name), ``input_ids`` (masked LM, sequence classifier) and ``pixel_values`` (image
# classifiers) are accepted aliases (modeling_perceiver.py, e.g. L1139-1142).
_INPUT_KEYS = ("inputs", "input_ids", "pixel_values")


def _shape(x: Any, what: str) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise InputError(f"{what}: expected a tensor with a shape, got {type(x).__name__}")
    return tuple(int(d) for d in shape)


def _main_input(inputs: Mapping[str, Any]) -> Any:
    for key in _INPUT_KEYS:
        if inputs.get(key) is not None:
            return inputs[key]
    raise InputError(
        f"the batch has none of {', '.join(_INPUT_KEYS)} (keys: {', '.join(sorted(inputs))}); "
        "a Perceiver forward needs one"
    )


def batch_workload(
    resolved: ResolvedModel, inputs: Mapping[str, Any], *, dtype: Dtype = "fp32"
) -> Workload:
    """The training :class:`Workload` of one batch of model inputs (the Trainer's ``inputs``).

    Shapes read (B = batch size), as transformers' Perceiver classes take them:

    * bare model: ``inputs`` (B, M, d_model) -> ``seq_len=M``;
    * masked LM, sequence classifier: ``inputs``/``input_ids`` (B, M) -> ``seq_len=M``;
    * image classifiers: ``inputs``/``pixel_values`` (B, C, H, W) -> ``image_size=(H, W)``;
    * optical flow: ``inputs`` (B, 2, 27, H, W) -> ``image_size=(H, W)``;
    * multimodal: ``inputs = {"image": (B, F, C, H, W), "audio": (B, A, 1), "label": ...}``
      -> ``image_size``, ``num_frames=F``, ``audio_samples=A``; the decoded points are
      ``len(subsampled_output_points["image"/"audio"])``, or every output point when the
      batch has no ``subsampled_output_points`` (the decoder then queries them all, L755-764).
    """
    kind = resolved.spec.input_kind
    common: dict[str, Any] = {"mode": "training", "dtype": dtype}
    if kind == "multimodal":
        modal = inputs.get("inputs")
        if not isinstance(modal, Mapping) or "image" not in modal or "audio" not in modal:
            raise InputError(
                "PerceiverForMultimodalAutoencoding: the batch's 'inputs' must be a dict with "
                "'image' (B, F, C, H, W) and 'audio' (B, A, 1) tensors"
            )
        image = _shape(modal["image"], "inputs['image']")
        audio = _shape(modal["audio"], "inputs['audio']")
        if len(image) != 5 or len(audio) < 2:
            raise InputError(
                f"PerceiverForMultimodalAutoencoding: inputs['image'] has shape {image} and "
                f"inputs['audio'] {audio}; expected (B, F, C, H, W) and (B, A, 1)"
            )
        cfg = resolved.config
        sub = inputs.get("subsampled_output_points")
        if sub is not None:
            img_points = _shape(sub["image"], "subsampled_output_points['image']")[0]
            aud_points = _shape(sub["audio"], "subsampled_output_points['audio']")[0]
        else:
            shape = cfg.output_shape
            img_points = math.prod(shape[1:4]) if len(shape) == 4 else 1
            aud_points = cfg.num_frames * cfg.audio_samples_per_frame // cfg.samples_per_patch
        return Workload(
            batch_size=image[0],
            image_size=(image[3], image[4]),
            num_frames=image[1],
            audio_samples=audio[1],
            subsampled_image_points=img_points,
            subsampled_audio_points=aud_points,
            **common,
        )
    shape = _shape(_main_input(inputs), "inputs")
    if kind in ("tokens", "embeddings"):
        want = 2 if kind == "tokens" else 3
        if len(shape) != want:
            raise InputError(
                f"{resolved.model}: inputs of shape {shape}; expected "
                f"{'(B, M) token ids' if want == 2 else '(B, M, d_model) embeddings'}"
            )
        return Workload(batch_size=shape[0], seq_len=shape[1], **common)
    want = 4 if kind == "image" else 5
    if len(shape) != want:
        raise InputError(
            f"{resolved.model}: inputs of shape {shape}; expected "
            f"{'(B, C, H, W)' if want == 4 else '(B, 2, 27, H, W)'}"
        )
    return Workload(batch_size=shape[0], image_size=(shape[-2], shape[-1]), **common)


def _resolve_model(model: Any) -> ResolvedModel:
    """A ResolvedModel as given, or one from a transformers model (its config and class)."""
    if isinstance(model, ResolvedModel):
        return model
    from perceiver_calc.resolve import validate

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise InputError(
            "expected a transformers Perceiver model or a ResolvedModel, "
            f"got {type(model).__name__}"
        )
    return validate(config.to_dict(), type(model).__name__)


def training_flops(model: Any, inputs: Mapping[str, Any]) -> int:
    """Exact forward + backward FLOPs of one training micro-batch.

    ``model``: a transformers Perceiver model (its ``config`` and class name are read) or a
    :class:`ResolvedModel`; ``inputs``: the batch as the Trainer passes it to the model.
    Equal to ``FlopCounterMode``'s count of that forward, loss and ``backward()``.
    """
    resolved = _resolve_model(model)
    return count_flops(resolved, batch_workload(resolved, inputs)).training_step


def _dtype_of(args: Any) -> Dtype:
    """The number format the Trainer's matmuls run in (TrainingArguments bf16 / fp16 =
    autocast), for the device peak."""
    if getattr(args, "bf16", False):
        return "mixed-bf16"
    if getattr(args, "fp16", False):
        return "mixed-fp16"
    return "fp32"


def peak_for(device: str, dtype: Dtype) -> tuple[float, str]:
    """Dense peak FLOP/s of ``device`` for ``dtype`` and its source: ``device`` is a key of
    :data:`perceiver_calc.devices.DEVICES` (``"h100-sxm"``, as ``plan --device``) or a CUDA
    device name (``"NVIDIA A100-SXM4-80GB"``, matched as ``bench`` does). Raises InputError
    naming the known keys otherwise."""
    from perceiver_calc.devices import DEVICES, lookup_peak

    spec = DEVICES.get(device.lower())
    if spec is not None and dtype in spec.flops:
        return spec.flops[dtype], f"{spec.name}: {spec.source}"
    found = None if spec is not None else lookup_peak(device, dtype)
    if found is None:
        raise InputError(
            f"device {device!r} has no {dtype} peak in perceiver_calc.devices; use one of "
            f"{', '.join(sorted(k for k, s in DEVICES.items() if dtype in s.flops))} "
            "or pass peak_flops= (FLOP/s per device)"
        )
    return found


class PerceiverFlops:
    """A drop-in for ``Trainer.floating_point_ops``: ``counter(inputs)`` -> exact training FLOPs
    of that batch (cached per shape). Keeps ``total`` (FLOPs counted by this process) and, for
    :func:`attach`'s log hook, the FLOPs and wall time since the last training log."""

    def __init__(self, model: Any, *, dtype: Dtype = "fp32", peak_flops: float | None = None):
        self.resolved = _resolve_model(model)
        self.dtype: Dtype = dtype
        self.peak_flops = peak_flops
        self.total = 0
        self.run_total = 0
        """FLOPs counted since training began (:meth:`start`)."""
        self._since_log = 0
        self._t_log = time.perf_counter()
        self._cache: dict[tuple[object, ...], int] = {}

    def __call__(self, inputs: Mapping[str, Any]) -> int:
        workload = batch_workload(self.resolved, inputs, dtype=self.dtype)
        key = tuple(workload.model_dump().values())
        flops = self._cache.get(key)
        if flops is None:
            flops = count_flops(self.resolved, workload).training_step
            self._cache[key] = flops
        self.total += flops
        self.run_total += flops
        self._since_log += flops
        return flops

    def start(self) -> None:
        """Restart the clocks (at the start of training)."""
        self.run_total = 0
        self._since_log = 0
        self._t_log = time.perf_counter()

    def interval_metrics(self) -> dict[str, float]:
        """``train_model_flops_per_second`` and ``mfu`` since the previous call (per process,
        i.e. per device), then a new interval starts; empty when no training FLOPs were
        counted since (an evaluation log)."""
        now = time.perf_counter()
        flops, elapsed = self._since_log, now - self._t_log
        if flops == 0 or elapsed <= 0:
            return {}
        self._since_log, self._t_log = 0, now
        rate = flops / elapsed
        out = {"train_model_flops_per_second": rate}
        if self.peak_flops:
            out["mfu"] = rate / self.peak_flops
        return out


def attach(
    trainer: Any,
    *,
    device: str | None = None,
    peak_flops: float | None = None,
    dtype: Dtype | None = None,
) -> PerceiverFlops:
    """Make ``trainer`` count a Perceiver's exact training FLOPs and log its MFU.

    * ``trainer.floating_point_ops`` becomes a :class:`PerceiverFlops` for ``trainer.model``,
      so ``state.total_flos``, the ``total_flos`` train metric and ``trainer_state.json`` hold
      perceiver-calc's count instead of 6·params·tokens.
    * ``trainer.log`` adds ``train_model_flops_per_second`` (model FLOPs of this process since
      the previous log / wall seconds) and, with a peak, ``mfu`` to every training log, before
      the Trainer stores them in ``state.log_history`` and hands them to the loggers; the
      end-of-training metrics get ``train_model_flops_per_second_run`` and ``train_mfu``
      (this process's FLOPs since ``train()`` began / ``train_runtime``).
    * The peak: ``peak_flops`` (FLOP/s of one device) if given, else ``device``'s entry in
      :mod:`perceiver_calc.devices` (see :func:`peak_for`) for ``dtype`` (default: from
      ``args.bf16`` / ``args.fp16``, else fp32); neither: no ``mfu``.

    Call it after building the Trainer and before ``train()``. Raises InputError for a model
    perceiver-calc does not resolve, or a device without a peak for that dtype.
    """
    dt: Dtype = dtype or _dtype_of(getattr(trainer, "args", None))
    if peak_flops is not None and not (math.isfinite(peak_flops) and peak_flops > 0):
        raise InputError(f"peak_flops ({peak_flops}) must be a positive number of FLOP/s")
    peak = peak_flops if peak_flops is not None else (peak_for(device, dt)[0] if device else None)
    counter = PerceiverFlops(trainer.model, dtype=dt, peak_flops=peak)
    trainer.floating_point_ops = counter

    original_log: Callable[..., None] = trainer.log

    def log(logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        logs.update(counter.interval_metrics())
        runtime = logs.get("train_runtime")
        if runtime:  # the end-of-training metrics: the whole run's rate too
            rate = counter.run_total / runtime
            logs["train_model_flops_per_second_run"] = rate
            if counter.peak_flops:
                logs["train_mfu"] = rate / counter.peak_flops
        original_log(logs, *args, **kwargs)

    trainer.log = log
    trainer.add_callback(_start_clock(counter))
    return counter


def _start_clock(counter: PerceiverFlops) -> Any:
    """A TrainerCallback that restarts the counter's clocks when training begins (so the first
    interval does not include the time between :func:`attach` and ``train()``)."""
    from transformers import TrainerCallback  # the caller has a Trainer: transformers is there

    class _StartClock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            counter.start()

    return _StartClock()
