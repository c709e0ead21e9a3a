"""The closed choices of a :class:`~perceiver_calc.workload.Workload` (number format, mode,
optimizer), in a module light enough for the command line to import at start-up: ``typing``
only, no pydantic. ``Workload``'s fields are annotated with these very types and the CLI's
``--dtype``/``--mode``/``--optimizer`` options take them as their choices, so the two cannot
disagree."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DTYPES", "MODES", "OPTIMIZERS", "Dtype", "Mode", "Optimizer"]

Dtype = Literal["fp32", "bf16", "fp16", "mixed-bf16", "mixed-fp16"]
"""mixed-*: fp32 master weights, activations in the half format (docs/conventions.md)."""
Mode = Literal["inference", "training"]
Optimizer = Literal["sgd", "sgd-momentum", "adam", "adamw"]

DTYPES: tuple[Dtype, ...] = get_args(Dtype)
MODES: tuple[Mode, ...] = get_args(Mode)
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
