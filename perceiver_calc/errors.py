"""Errors and findings: one shape for every message the calculator gives about a config.

Exception hierarchy::

    PerceiverCalcError                 base of everything raised on purpose
    ├── InputError                     the input could not be read (missing path, bad JSON, ...)
    └── ConfigError                    the config was read but is invalid; carries every Finding

A :class:`Finding` names the config field(s), their values, the rule, the module that receives
the derived width, and what to do. Errors and warnings share the type; ``severity`` tells them
apart. Text shape (pinned by tests)::

    qk_channels (100) must be divisible by num_cross_attention_heads (8)
    [perceiver.encoder.cross_attention]; choose a multiple of 8 for qk_channels or leave it unset

(one line in practice; wrapped here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["ConfigError", "Finding", "InputError", "PerceiverCalcError", "short_repr"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem (error) or doubtful choice (warning) found in a config.

    A plain frozen dataclass, not a pydantic model: findings are built by the calculator, never
    parsed from user input, and a dataclass costs nothing to import (the report path has an
    import-time budget, tests/test_import_budget.py). Copy with ``dataclasses.replace``.
    """

    severity: Severity
    code: str
    """Stable identifier, e.g. ``heads_divide_qk_channels``; tests and scripts match on it."""
    fields: tuple[str, ...]
    """The config fields involved, HF names (``qk_channels``, ``num_cross_attention_heads``)."""
    values: Mapping[str, Any]
    """field -> the value the config gave (or the resolved value, for derived widths);
    read-only (a ``MappingProxyType`` over a private copy, whatever mapping was passed)."""
    module: str | None
    """transformers module path that gets the width, e.g. ``perceiver.encoder.cross_attention``."""
    rule: str
    """What must hold, with the values filled in."""
    fix: str
    """What to do about it."""

    def __post_init__(self) -> None:
        # Results are deeply immutable (issue 12): the caller's dict is copied, then wrapped.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def __str__(self) -> str:
        where = f" [{self.module}]" if self.module else ""
        return f"{self.rule}{where}; {self.fix}"


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for echoing user input in a message.

    Never raises: ``repr`` of an int of more than ``sys.get_int_max_str_digits()`` (4,300)
    digits raises ValueError, and a hostile object's ``__repr__`` may raise anything. Such a
    value is shown by its size or type instead.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        digits = int(value.bit_length() * 0.30103) + 1  # log10(2)
        return f"<{'negative ' if value < 0 else ''}int of about {digits:,} digits>"
    try:
        text = repr(value)
    except Exception:  # huge ints nested in a container, a failing __repr__
        text = f"<{type(value).__name__} that cannot be shown>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PerceiverCalcError(Exception):
    """Base class of every error perceiver-calc raises on purpose."""


class InputError(PerceiverCalcError):
    """The input could not be read: missing path, unreadable file, malformed JSON, not an object."""


class ConfigError(PerceiverCalcError):
    """The config is invalid. ``findings`` holds every error (and the warnings found with them)."""

    def __init__(self, findings: list[Finding] | tuple[Finding, ...], partial: Any = None) -> None:
        self.findings: tuple[Finding, ...] = tuple(findings)
        self.partial = partial
        """The config validated without its bad fields (a PerceiverConfig), when that works:
        lets ``validate`` report the dimension errors of the rest at the same time."""
        errors = [f for f in self.findings if f.severity == "error"]
        warnings = [f for f in self.findings if f.severity == "warning"]
        n = len(errors)
        lines = [f"invalid config: {n} error{'s' if n != 1 else ''}"]
        lines += [f"  - {f}" for f in errors]
        lines += [f"  warning: {f}" for f in warnings]
        super().__init__("\n".join(lines))

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")
