"""Command-line options shared by the commands that take a workload (report, sweep, fit,
compare, plan, check, bench: every one takes every option), and their conversion into a
:class:`~perceiver_calc.workload.Workload`.

One table (:data:`WORKLOAD_OPTIONS`, one entry per Workload field) gives every option its
flag, type and help; :func:`workload_options` adds the whole group to a command. Cheap to
import: typer and ``typing`` only (the Workload model is imported when a command builds one).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from perceiver_calc.choices import Dtype, Mode, Optimizer
from perceiver_calc.errors import InputError

if TYPE_CHECKING:  # imported by make_workload: `validate` never builds a workload
    from perceiver_calc.workload import Workload

__all__ = [
    "WORKLOAD_OPTIONS",
    "WorkloadOptions",
    "make_workload",
    "workload_options",
]


_W = "Workload"


@dataclass(frozen=True, slots=True)
class _Spec:
    """One workload option: the Workload field it sets (the parameter's name), the type typer
    parses, Workload's default, the help text."""

    type: object
    default: object
    help: str
    decls: tuple[str, ...] = ()

    def option(self, name: str) -> Any:
        flag = "--" + name.replace("_", "-")
        return typer.Option(*(self.decls or (flag,)), help=self.help, rich_help_panel=_W)


WORKLOAD_OPTIONS: Mapping[str, _Spec] = MappingProxyType(
    {
        # One entry per Workload field, in its order (tests/test_front.py checks names, order
        # and defaults against Workload.model_fields; Workload is not imported here, so that
        # `validate` and --help never load pydantic's model of it).
        "batch_size": _Spec(int, 1, "Batch size."),
        "seq_len": _Spec(
            int | None,
            None,
            "Input length (text tokens; inputs of the bare model). "
            "Default: max_position_embeddings.",
        ),
        "image_size": _Spec(
            str | None,
            None,
            "HxW of the images (image classes), of each flow frame or video frame. "
            "Default: the class's (224x224, image_size², train_size).",
        ),
        "num_frames": _Spec(int | None, None, "Multimodal: video frames. Default: num_frames."),
        "audio_samples": _Spec(
            int | None,
            None,
            "Multimodal: audio samples in the input. "
            "Default: num_frames x audio_samples_per_frame.",
        ),
        "subsampled_image_points": _Spec(
            int | None,
            None,
            "Multimodal: image output points decoded (subsampled_output_points, key 'image'). "
            "Default: prod(output_shape[1:4]) // 128.",
        ),
        "subsampled_audio_points": _Spec(
            int | None,
            None,
            "Multimodal: audio output patches decoded (subsampled_output_points, key 'audio'). "
            "Default: audio patches // 128.",
        ),
        # The choices are Workload's own Literal types (perceiver_calc/choices.py).
        "dtype": _Spec(Dtype, "fp32", "Number format (mixed-*: fp32 master weights)."),
        "mode": _Spec(Mode, "inference", "Inference or training pass."),
        "optimizer": _Spec(Optimizer, "adamw", "Training only."),
        "checkpointing": _Spec(
            bool,
            False,
            "Activation checkpointing per PerceiverLayer (training).",
            ("--checkpointing/--no-checkpointing",),
        ),
    }
)


def _opt(name: str) -> Any:
    return WORKLOAD_OPTIONS[name].option(name)


@functools.cache
def _annotated(name: str) -> Any:
    """``Annotated[type, typer.Option(...)]``, made once per option for every command (typer
    copies the OptionInfo before filling in a command's default)."""
    return Annotated[WORKLOAD_OPTIONS[name].type, _opt(name)]


_GIVEN = frozenset({"COMMANDLINE", "ENVIRONMENT"})


def _given(ctx: typer.Context, name: str) -> bool:
    # typer vendors click: compare the parameter source by name
    return getattr(ctx.get_parameter_source(name), "name", None) in _GIVEN


@dataclass(frozen=True, slots=True)
class WorkloadOptions:
    """What a command decorated with :func:`workload_options` receives as ``workload``."""

    given: Mapping[str, object]
    """The options the user gave (command line or environment), by Workload field name."""
    defaults: Mapping[str, object]
    """The command's own defaults, and the values it fixes for the options it omits."""

    def build(self) -> Workload:
        """The Workload: the command's defaults, then what the user gave. Its
        ``model_fields_set`` is exactly those names, so for a command without defaults of
        its own (report) it says what the user set. Bad values raise :class:`InputError`
        naming the option."""
        return make_workload(**{**self.defaults, **self.given})


Command = TypeVar("Command", bound=Callable[..., None])


def workload_options(
    *, omit: tuple[str, ...] = (), **defaults: object
) -> Callable[[Command], Command]:
    """Give a typer command the workload option group in place of its ``workload`` parameter.

    The command declares ``workload: WorkloadOptions``; this replaces it, in the signature
    typer reads, by one option per Workload field (help under the "Workload" panel), less
    ``omit``. ``defaults`` are the command's own defaults (shown by --help) or, for an omitted
    option, the value the command fixes (``mode="training"`` for plan).
    """
    unknown = (set(omit) | set(defaults)) - set(WORKLOAD_OPTIONS)
    if unknown:
        raise TypeError(f"not workload options: {sorted(unknown)}")

    def decorate(func: Command) -> Command:
        sig = inspect.signature(func, eval_str=True)
        params = list(sig.parameters.values())
        names = [p.name for p in params]
        at = names.index("workload")
        ctx_name = next((p.name for p in params if p.annotation is typer.Context), None)
        shown = [n for n in WORKLOAD_OPTIONS if n not in omit]
        group = [
            inspect.Parameter(
                n,
                inspect.Parameter.KEYWORD_ONLY,
                default=defaults.get(n, WORKLOAD_OPTIONS[n].default),
                annotation=_annotated(n),
            )
            for n in shown
        ]
        extra = (
            []
            if ctx_name
            else [
                inspect.Parameter("_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
            ]
        )
        # keyword-only throughout: typer calls the command with keywords, and the group's
        # defaults may then precede parameters without one
        new = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in [*params[:at], *group, *params[at + 1 :], *extra]
        ]
        fixed = {n: v for n, v in defaults.items() if n in omit or v != WORKLOAD_OPTIONS[n].default}

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            ctx: typer.Context = kwargs[ctx_name] if ctx_name else kwargs.pop("_ctx")
            values = {n: kwargs.pop(n) for n in shown}
            given = {n: v for n, v in values.items() if _given(ctx, n)}
            kwargs["workload"] = WorkloadOptions(
                given=MappingProxyType(given), defaults=MappingProxyType(fixed)
            )
            func(**kwargs)

        command.__signature__ = sig.replace(parameters=new)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in new}
        return command  # type: ignore[return-value]

    return decorate


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


def make_workload(**options: object) -> Workload:
    """The options (Workload field names; ``image_size`` as ``"HxW"``, choices as strings or
    the enums above) as a Workload; bad values raise :class:`InputError` naming the option."""

    from perceiver_calc.workload import Workload

    values = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    # Parsed outside the try below: its message already names the option.
    if isinstance(values.get("image_size"), str):
        values["image_size"] = parse_image_size(str(values["image_size"]))
    try:
        return Workload(**values)
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
