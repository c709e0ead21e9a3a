"""Workloads: what a forward (and backward) pass is run on, and the token counts it implies.

A :class:`Workload` names the input (batch size and, per model class, the text length, image
size, flow frame size or multimodal inputs and subsampled outputs), the number format, the mode
(inference or training), the optimizer and activation checkpointing. Fields that depend on the
config are ``None`` by default and resolved once, by :func:`resolved_inputs`, from the config the
way transformers' own usage examples do:

======================================  ===================================================
model class                             default input
======================================  ===================================================
PerceiverModel                          ``(B, max_position_embeddings, d_model)`` embeddings
PerceiverForMaskedLM / SequenceCls      ``max_position_embeddings`` token ids
ImageClassificationLearned              ``image_size x image_size`` (it needs exactly that)
ImageClassificationFourier / Conv       ``224 x 224`` (the DeepMind checkpoints' size)
OpticalFlow                             ``train_size`` (it needs H·W == that product)
MultimodalAutoencoding                  ``num_frames`` frames of ``image_size x image_size``,
                                        ``num_frames·audio_samples_per_frame`` audio samples,
                                        one label vector; decoded outputs subsampled to 1/128
                                        of the image and audio outputs (transformers' example
                                        decodes a video in 128 chunks)
======================================  ===================================================

:func:`lengths` turns a workload into the token counts the resolved modules name
(``"latents"``, ``"inputs"``, ``"outputs"``, ``"one"``), plus per-modality counts for the
multimodal model (``"inputs.audio"``, ``"outputs.image"``, ...).

:func:`check_workload` reports, as :class:`~perceiver_calc.errors.Finding` s, every input that
would make transformers' forward pass fail for this model (errors) or that transformers accepts
with a caveat (warnings).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Literal, TypeGuard, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from perceiver_calc.arith import maximum

# The closed choices live in a light module the CLI imports at start-up (its --dtype, --mode,
# --optimizer take these very types).
from perceiver_calc.choices import DTYPES, Dtype, Mode, Optimizer
from perceiver_calc.classes import (
    DEFAULT_IMAGE_SIDE,
    MULTIMODAL_CHUNKS,
    MULTIMODAL_IMAGE_PATCH,
    conv_stem_sizes,
)
from perceiver_calc.errors import Finding, InputError, short_repr
from perceiver_calc.modules import ResolvedModel
from perceiver_calc.rules import SCALAR, Rules

_T = TypeVar("_T")

__all__ = [
    "DTYPES",
    "Dtype",
    "InputShape",
    "Workload",
    "check_workload",
    "conv_stem_sizes",
    "lengths",
    "resolved_inputs",
]


# Strict like the config (docs/conventions.md, "Strictness"): a bool is not a count and a
# string is not a number, so True -> 1 and "8" -> 8 are refused rather than guessed.
_Pos = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]


class Workload(BaseModel):
    """One pass of a model: input sizes, number format, mode, optimizer, checkpointing.

    ``Workload(...)`` raises :class:`~perceiver_calc.errors.InputError` naming each bad field
    (``Workload.model_validate`` raises pydantic's ValidationError, as pydantic documents).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: object) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'workload'} ({_short_input(e.get('input'))}): "
                f"{e['msg']}"
                for e in err.errors(include_url=False)
            )
            raise InputError(f"invalid workload: {problems}") from None

    batch_size: _Pos = 1
    seq_len: _Pos | None = None
    """Text / bare model: input length M. Default: max_position_embeddings."""
    image_size: tuple[_Pos, _Pos] | None = None
    """(height, width) of the images (image classes), of each flow frame (optical flow) or of
    each video frame (multimodal). Default: see the module docstring."""
    num_frames: _Pos | None = None
    """Multimodal: video frames in the input. Default: config num_frames."""
    audio_samples: _Pos | None = None
    """Multimodal: audio samples in the input. Default: num_frames·audio_samples_per_frame."""
    subsampled_image_points: _Pos | None = None
    """Multimodal: image output points decoded (``subsampled_output_points['image']``).
    Default: prod(output_shape[1:4]) // 128, at least 1."""
    subsampled_audio_points: _Pos | None = None
    """Multimodal: audio output patches decoded. Default:
    (num_frames·audio_samples_per_frame // samples_per_patch) // 128, at least 1."""
    dtype: Dtype = "fp32"
    mode: Mode = "inference"
    optimizer: Optimizer = "adamw"
    checkpointing: StrictBool = False
    """Activation checkpointing of every PerceiverLayer (transformers' Perceiver has no
    built-in switch; this models wrapping each layer in torch.utils.checkpoint)."""


def _short_input(value: object) -> str:
    return short_repr(value, 60)


@dataclass(frozen=True, slots=True, kw_only=True)
class InputShape:
    """A workload's inputs with every default filled in for one model class."""

    batch_size: int
    seq_len: int | None = None
    image_size: tuple[int, int] | None = None
    num_frames: int | None = None
    audio_samples: int | None = None
    subsampled_image_points: int | None = None
    subsampled_audio_points: int | None = None

    def as_dict(self, *, exclude_none: bool = False) -> dict[str, object]:
        """Field name -> value, in field order (``None`` ones left out on request)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if v is not None} if exclude_none else out


def _n_audio_config(resolved: ResolvedModel) -> int:
    cfg = resolved.config
    return cfg.num_frames * cfg.audio_samples_per_frame


def _image_output_points(resolved: ResolvedModel) -> int:
    shape = resolved.config.output_shape
    return math.prod(shape[1:4]) if len(shape) == 4 else 1


def resolved_inputs(resolved: ResolvedModel, workload: Workload) -> InputShape:
    """The workload's input sizes for this model class, defaults filled in."""
    cfg = resolved.config
    spec = resolved.spec
    kind = spec.input_kind
    b = workload.batch_size
    if kind in ("tokens", "embeddings"):
        seq = workload.seq_len
        return InputShape(
            batch_size=b, seq_len=seq if seq is not None else cfg.max_position_embeddings
        )
    if kind == "image":
        if workload.image_size is not None:
            size = workload.image_size
        elif spec.image_preprocessor == "learned":
            # trainable positions: the input must have exactly image_size² pixels
            side = cfg.image_size if _is_side(cfg.image_size) else DEFAULT_IMAGE_SIDE
            size = (side, side)
        else:
            size = (DEFAULT_IMAGE_SIDE, DEFAULT_IMAGE_SIDE)
        return InputShape(batch_size=b, image_size=size)
    if kind == "flow":
        ts = cfg.train_size
        default = (ts[0], ts[1]) if len(ts) == 2 else (ts[0], 1)
        return InputShape(batch_size=b, image_size=workload.image_size or default)
    # multimodal
    side = cfg.image_size if _is_side(cfg.image_size) else DEFAULT_IMAGE_SIDE
    spp = cfg.samples_per_patch
    n_audio_out = _n_audio_config(resolved) // spp
    return InputShape(
        batch_size=b,
        image_size=_or(workload.image_size, (side, side)),
        num_frames=_or(workload.num_frames, cfg.num_frames),
        audio_samples=_or(workload.audio_samples, _n_audio_config(resolved)),
        subsampled_image_points=_or(
            workload.subsampled_image_points,
            maximum(1, _image_output_points(resolved) // MULTIMODAL_CHUNKS),
        ),
        subsampled_audio_points=_or(
            workload.subsampled_audio_points, maximum(1, n_audio_out // MULTIMODAL_CHUNKS)
        ),
    )


def _or(value: _T | None, default: _T) -> _T:
    """The workload's value if given (every given size is >= 1), else the default. (Not
    ``value or default``: in the sweep a value may be a per-row array.)"""
    return default if value is None else value


def _is_side(image_size: int | tuple[int, ...]) -> TypeGuard[int]:
    """The config's image_size is one side (an int; in the sweep a per-row array), not a tuple."""
    return not isinstance(image_size, tuple)


def lengths(resolved: ResolvedModel, workload: Workload) -> dict[str, int]:
    """Token counts per sample: ``latents`` (N), ``inputs`` (encoder input length M),
    ``outputs`` (decoder queries O), ``one``; multimodal adds ``inputs.<modality>`` and
    ``outputs.<modality>`` (audio, image, label). Sizes that do not divide evenly are floored
    as transformers' reshapes would (check_workload reports them as errors)."""
    inp = resolved_inputs(resolved, workload)
    cfg = resolved.config
    spec = resolved.spec
    out: dict[str, int] = {"latents": cfg.num_latents, "one": 1}
    kind = spec.input_kind
    # The decoder's query count when the class fixes it: max_position_embeddings for the
    # masked LM (always, L812-815), 1 for the classifiers, 0 without a decoder.
    fixed_outputs = spec.fixed_outputs(cfg.max_position_embeddings)
    if kind in ("tokens", "embeddings"):
        assert inp.seq_len is not None and fixed_outputs is not None
        out["inputs"] = inp.seq_len
        out["outputs"] = fixed_outputs
        return out
    if kind == "image":
        assert inp.image_size is not None and fixed_outputs is not None
        h, w = inp.image_size
        if spec.image_preprocessor == "conv":
            _, (ho, wo) = conv_stem_sizes(h, w)
            out["inputs"] = maximum(ho, 0) * maximum(wo, 0)
        else:
            out["inputs"] = h * w
        out["outputs"] = fixed_outputs
        return out
    if kind == "flow":
        assert inp.image_size is not None
        h, w = inp.image_size
        out["inputs"] = h * w
        # The decoder queries are the preprocessed inputs (PerceiverOpticalFlowDecoder).
        out["outputs"] = h * w
        return out
    assert inp.image_size is not None and inp.num_frames is not None
    assert inp.audio_samples is not None
    assert inp.subsampled_image_points is not None and inp.subsampled_audio_points is not None
    h, w = inp.image_size
    spp = cfg.samples_per_patch
    out["inputs.audio"] = inp.audio_samples // spp
    patch = MULTIMODAL_IMAGE_PATCH  # 4x4 patches, 1 frame each
    out["inputs.image"] = inp.num_frames * (h // patch) * (w // patch)
    out["inputs.label"] = 1
    out["inputs"] = out["inputs.audio"] + out["inputs.image"] + out["inputs.label"]
    out["outputs.audio"] = inp.subsampled_audio_points
    out["outputs.image"] = inp.subsampled_image_points
    out["outputs.label"] = 1
    out["outputs"] = out["outputs.audio"] + out["outputs.image"] + out["outputs.label"]
    return out


def _error(
    code: str,
    fields: tuple[str, ...],
    values: dict[str, object],
    module: str | None,
    rule: str,
    fix: str,
    severity: Literal["error", "warning"] = "error",
) -> Finding:
    return Finding(
        severity=severity,
        code=code,
        fields=fields,
        values=values,
        module=module,
        rule=rule,
        fix=fix,
    )


def check_workload(
    resolved: ResolvedModel, workload: Workload, rules: Rules = SCALAR
) -> list[Finding]:
    """Errors for inputs transformers' forward pass would reject for this model; warnings for
    inputs it accepts with a caveat. Field names are the workload's (``seq_len``, ...) and the
    config's (``max_position_embeddings``, ...). ``rules``: per-row masks instead (the sweep:
    the workload's and the model's integers may be arrays; perceiver_calc.rules)."""
    found = _check_inputs(resolved, workload, rules)
    if rules.magnitudes and (rules.batched or not any(f.severity == "error" for f in found)):
        from perceiver_calc.parity import activation_bytes_findings

        with rules.gated():
            found += activation_bytes_findings(resolved, workload, rules)
    return found


def _check_inputs(resolved: ResolvedModel, workload: Workload, rules: Rules) -> list[Finding]:
    inp = resolved_inputs(resolved, workload)
    cfg = resolved.config
    spec = resolved.spec
    kind = spec.input_kind
    found: list[Finding] = []
    training = workload.mode == "training"
    found += _chunk_workload_findings(resolved, workload, rules)
    if kind in ("tokens", "embeddings"):
        assert inp.seq_len is not None
        m, p = inp.seq_len, cfg.max_position_embeddings
        if kind == "tokens" and rules.fails(m > p, "seq_len_too_long"):
            found.append(
                _error(
                    "seq_len_too_long",
                    ("seq_len", "max_position_embeddings"),
                    {"seq_len": m, "max_position_embeddings": p},
                    "perceiver.input_preprocessor.position_embeddings",
                    f"seq_len ({m}) must be at most max_position_embeddings ({p}): the position "
                    "embedding lookup has only that many rows (IndexError)",
                    f"use seq_len <= {p}, or raise max_position_embeddings",
                )
            )
        # MaskedLM training with seq_len < max_position_embeddings is legal: the logits always
        # have max_position_embeddings rows and the labels one entry per row, those past the
        # inputs -100 (ignored by CrossEntropyLoss), as a tokenizer padding to max_length gives.
        return found
    assert inp.image_size is not None
    h, w = inp.image_size
    if spec.image_preprocessor == "learned":
        side = cfg.image_size if _is_side(cfg.image_size) else 0
        if rules.fails(h * w != side * side, "learned_image_size"):
            found.append(
                _error(
                    "learned_image_size",
                    ("image_size",),
                    {"workload.image_size": [h, w], "image_size": cfg.image_size},
                    "perceiver.input_preprocessor.position_embeddings",
                    f"the input's height x width ({h}x{w} = {h * w}) must equal image_size² "
                    f"({side}² = {side * side}): the trainable positions are concatenated to every "
                    "pixel (RuntimeError)",
                    f"resize the images to {side}x{side} (or use interpolate_pos_encoding=True, "
                    "which this calculator does not model)",
                )
            )
    elif spec.image_preprocessor == "conv":
        (h1, w1), _ = conv_stem_sizes(h, w)
        if rules.fails((h1 < 3) | (w1 < 3), "conv_image_too_small"):
            found.append(
                _error(
                    "conv_image_too_small",
                    ("image_size",),
                    {"workload.image_size": [h, w]},
                    "perceiver.input_preprocessor.convnet",
                    f"the image ({h}x{w}) is too small for the 7x7/2 conv and the 3x3/2 max-pool: "
                    "each side must be at least 5 pixels",
                    "use images of at least 5x5 pixels",
                )
            )
    elif kind == "flow":
        ts = cfg.train_size
        need = math.prod(ts)
        if rules.fails(h * w != need, "flow_image_size"):
            found.append(
                _error(
                    "flow_image_size",
                    ("image_size", "train_size"),
                    {"workload.image_size": [h, w], "train_size": list(ts)},
                    "perceiver.decoder",
                    f"the frames' height x width ({h}x{w} = {h * w}) must equal the product of "
                    f"train_size ({list(ts)} -> {need}): the decoder reshapes its output to "
                    "train_size (RuntimeError)",
                    f"use frames of {ts[0]}x{ts[1] if len(ts) > 1 else 1} pixels",
                )
            )
        if training:
            found.append(
                _error(
                    "flow_no_labels",
                    ("mode",),
                    {"mode": "training"},
                    None,
                    "PerceiverForOpticalFlow raises NotImplementedError when given labels; "
                    "training means a loss computed outside the model on its logits",
                    "compute the loss yourself (counted here: the model's forward and backward)",
                    severity="warning",
                )
            )
    elif kind == "multimodal":
        assert inp.num_frames is not None and inp.audio_samples is not None
        assert inp.subsampled_audio_points is not None
        assert inp.subsampled_image_points is not None
        spp = cfg.samples_per_patch
        if rules.fails(inp.audio_samples % spp != 0, "audio_samples_per_patch"):
            found.append(
                _error(
                    "audio_samples_per_patch",
                    ("audio_samples", "samples_per_patch"),
                    {"audio_samples": inp.audio_samples, "samples_per_patch": spp},
                    "perceiver.input_preprocessor.modalities.audio",
                    f"audio_samples ({inp.audio_samples}) must be a multiple of samples_per_patch "
                    f"({spp}): the audio is reshaped into patches (RuntimeError)",
                    f"use a multiple of {spp} samples",
                )
            )
        patches = (h % MULTIMODAL_IMAGE_PATCH != 0) | (w % MULTIMODAL_IMAGE_PATCH != 0)
        if rules.fails(patches, "multimodal_image_patches"):
            found.append(
                _error(
                    "multimodal_image_patches",
                    ("image_size",),
                    {"workload.image_size": [h, w]},
                    "perceiver.input_preprocessor.modalities.image",
                    f"the frames' height and width ({h}x{w}) must be multiples of 4: they are cut "
                    "into 4x4 patches (RuntimeError)",
                    "use frame sizes divisible by 4",
                )
            )
        if rules.fails(inp.num_frames < 2, "multimodal_one_frame"):
            found.append(
                _error(
                    "multimodal_one_frame",
                    ("num_frames",),
                    {"workload.num_frames": inp.num_frames},
                    "perceiver.input_preprocessor.modalities.image",
                    "a one-frame video is squeezed to 2-D patches, which no longer match the 3-D "
                    "Fourier features (RuntimeError)",
                    "give at least 2 frames",
                )
            )
        n_img = _image_output_points(resolved)
        if rules.fails(inp.subsampled_image_points > n_img, "subsampled_image_points"):
            found.append(
                _error(
                    "subsampled_image_points",
                    ("subsampled_image_points", "output_shape"),
                    {
                        "subsampled_image_points": inp.subsampled_image_points,
                        "output_shape": list(cfg.output_shape),
                    },
                    "perceiver.decoder.modalities.image",
                    f"subsampled_image_points ({inp.subsampled_image_points}) must be at most "
                    f"prod(output_shape[1:4]) ({n_img}): they index the decoder's output grid",
                    f"decode at most {n_img} image points per pass",
                )
            )
        n_aud = _n_audio_config(resolved) // spp
        if rules.fails(inp.subsampled_audio_points > n_aud, "subsampled_audio_points"):
            found.append(
                _error(
                    "subsampled_audio_points",
                    ("subsampled_audio_points", "num_frames", "audio_samples_per_frame"),
                    {
                        "subsampled_audio_points": inp.subsampled_audio_points,
                        "audio output patches": n_aud,
                    },
                    "perceiver.decoder.modalities.audio",
                    f"subsampled_audio_points ({inp.subsampled_audio_points}) must be at most "
                    f"num_frames·audio_samples_per_frame // samples_per_patch ({n_aud})",
                    f"decode at most {n_aud} audio patches per pass",
                )
            )
        if training:
            found.append(
                _error(
                    "multimodal_no_labels",
                    ("mode",),
                    {"mode": "training"},
                    None,
                    "PerceiverForMultimodalAutoencoding raises NotImplementedError when given "
                    "labels; training means a loss computed outside the model on its logits",
                    "compute the loss yourself (counted here: the model's forward and backward)",
                    severity="warning",
                )
            )
    return found


def _chunk_workload_findings(
    resolved: ResolvedModel, workload: Workload, rules: Rules
) -> list[Finding]:
    """chunk_size_feed_forward against the decoder query lengths only the workload fixes
    (optical flow: H·W; multimodal: the subsampled points plus the label); the config-fixed
    lengths are checked by resolve (perceiver_calc.parity.chunk_findings)."""
    from perceiver_calc.parity import chunk_findings

    if "outputs" in resolved.fixed_lengths or (
        not rules.batched and resolved.config.chunk_size_feed_forward == 0
    ):
        return []
    n = lengths(resolved, workload).get("outputs", 0)
    return chunk_findings(resolved.config, {"outputs": n}, rules)
