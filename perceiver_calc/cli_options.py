"""Command-line options shared by the commands that take a workload (report, sweep, fit,
plan, check, bench), and their conversion into a :class:`~perceiver_calc.workload.Workload`."""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from perceiver_calc.errors import InputError

if TYPE_CHECKING:  # imported by make_workload: `validate` never builds a workload
    from perceiver_calc.workload import Workload

__all__ = [
    "AudioSamplesOpt",
    "BatchOpt",
    "CheckpointingOpt",
    "DtypeOpt",
    "ImageSizeOpt",
    "ModeOpt",
    "NumFramesOpt",
    "OptimizerOpt",
    "SeqLenOpt",
    "SubAudioOpt",
    "SubImageOpt",
    "make_workload",
    "set_by_user",
]


class DtypeChoice(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    mixed_bf16 = "mixed-bf16"
    mixed_fp16 = "mixed-fp16"


class ModeChoice(StrEnum):
    inference = "inference"
    training = "training"


class OptimizerChoice(StrEnum):
    sgd = "sgd"
    sgd_momentum = "sgd-momentum"
    adam = "adam"
    adamw = "adamw"


_W = "Workload"
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Batch size.", rich_help_panel=_W)]
SeqLenOpt = Annotated[
    int | None,
    typer.Option(
        "--seq-len",
        help="Input length (text tokens; inputs of the bare model). "
        "Default: max_position_embeddings.",
        rich_help_panel=_W,
    ),
]
ImageSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--image-size",
        help="HxW of the images (image classes), of each flow frame or video frame. "
        "Default: the class's (224x224, image_size², train_size).",
        rich_help_panel=_W,
    ),
]
NumFramesOpt = Annotated[
    int | None,
    typer.Option(
        "--num-frames", help="Multimodal: video frames. Default: num_frames.", rich_help_panel=_W
    ),
]
AudioSamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--audio-samples",
        help="Multimodal: audio samples in the input. Default: num_frames·audio_samples_per_frame.",
        rich_help_panel=_W,
    ),
]
SubImageOpt = Annotated[
    int | None,
    typer.Option(
        "--subsampled-image-points",
        help="Multimodal: image output points decoded (subsampled_output_points['image']). "
        "Default: prod(output_shape[1:4]) // 128.",
        rich_help_panel=_W,
    ),
]
SubAudioOpt = Annotated[
    int | None,
    typer.Option(
        "--subsampled-audio-points",
        help="Multimodal: audio output patches decoded (subsampled_output_points['audio']). "
        "Default: audio patches // 128.",
        rich_help_panel=_W,
    ),
]
DtypeOpt = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype", help="Number format (mixed-*: fp32 master weights).", rich_help_panel=_W
    ),
]
ModeOpt = Annotated[ModeChoice, typer.Option("--mode", rich_help_panel=_W)]
OptimizerOpt = Annotated[
    OptimizerChoice, typer.Option("--optimizer", help="Training only.", rich_help_panel=_W)
]
CheckpointingOpt = Annotated[
    bool,
    typer.Option(
        "--checkpointing/--no-checkpointing",
        help="Activation checkpointing per PerceiverLayer (training).",
        rich_help_panel=_W,
    ),
]


def workload_options() -> tuple[str, ...]:
    """Every workload option: its parameter name in the commands is the Workload field's name
    (a function: perceiver_calc.workload is imported only when a command runs)."""
    from perceiver_calc.workload import Workload

    return tuple(Workload.model_fields)


def set_by_user(ctx: typer.Context) -> set[str]:
    """The Workload fields the user gave on the command line (or by environment), whatever
    the value: ``--batch-size 1`` is a choice too. Read from click's parameter sources (typer
    vendors click, so compare the sources by name)."""
    given = {"COMMANDLINE", "ENVIRONMENT"}
    return {
        name
        for name in workload_options()
        if getattr(ctx.get_parameter_source(name), "name", None) in given
    }


def parse_image_size(text: str) -> tuple[int, int]:
    """``"224x224"``, ``"224X160"`` or ``"224"`` (square)."""
    # 1-10 digits: a side is at most 2**31 - 1 (Workload's bound); longer digit strings are
    # refused here, before int() (whose 4,300-digit limit would raise a bare ValueError).
    m = re.fullmatch(r"\s*(\d{1,10})\s*(?:[xX×]\s*(\d{1,10}))?\s*", text)
    if not m:
        shown = text if len(text) <= 40 else f"{text[:37]}... ({len(text):,} characters)"
        raise InputError(
            f"--image-size {shown!r}: expected HxW with sides of at most 10 digits, e.g. 224x224"
        )
    h = int(m[1])
    w = int(m[2]) if m[2] else h
    return h, w


def make_workload(
    *,
    batch_size: int = 1,
    seq_len: int | None = None,
    image_size: str | None = None,
    num_frames: int | None = None,
    audio_samples: int | None = None,
    subsampled_image_points: int | None = None,
    subsampled_audio_points: int | None = None,
    dtype: DtypeChoice = DtypeChoice.fp32,
    mode: ModeChoice = ModeChoice.inference,
    optimizer: OptimizerChoice = OptimizerChoice.adamw,
    checkpointing: bool = False,
) -> Workload:
    """The options as a Workload; bad values raise :class:`InputError` naming the option."""

    from perceiver_calc.workload import Workload

    # Parsed outside the try below: its message already names the option.
    size = parse_image_size(image_size) if image_size else None
    try:
        return Workload(
            batch_size=batch_size,
            seq_len=seq_len,
            image_size=size,
            num_frames=num_frames,
            audio_samples=audio_samples,
            subsampled_image_points=subsampled_image_points,
            subsampled_audio_points=subsampled_audio_points,
            dtype=dtype.value,
            mode=mode.value,
            optimizer=optimizer.value,
            checkpointing=checkpointing,
        )
    except InputError as err:
        # Workload names the field (batch_size); the user typed the option (--batch-size).
        text = str(err).removeprefix("invalid workload: ")
        field = text.split(" ", 1)[0].split(".")[0]
        raise InputError("--" + field.replace("_", "-") + text[len(field) :]) from None


def finite_positive(value: float | None) -> float | None:
    """typer callback: a float option must be a finite number > 0 (nan, inf, 0 refused:
    click's FloatRange lets nan through, since every comparison with nan is false)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number > 0")
    return value
