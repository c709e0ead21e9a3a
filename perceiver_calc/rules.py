"""Where validity rules report: one finding at a time (the scalar path) or one mask per rule
over many configs at once (the vectorised sweep).

Every validity rule of :mod:`perceiver_calc.resolve`, :mod:`perceiver_calc.parity` and
:mod:`perceiver_calc.workload` is written once, as

.. code-block:: python

    if rules.fails(cond, "code"):
        found.append(Finding(...))  # the message, built only on the scalar path

``cond`` is a Python bool on the scalar path; in the sweep the same expression evaluates on
numpy arrays (one element per config) and :meth:`Rules.fails` records it as that rule's mask
and returns ``False``, so no message is built (the sweep asks the scalar path for a row's text
only when it is read). Rules that compare a magnitude with int64's range (a tensor too large
for torch) go through :meth:`Rules.exceeds`: exact on Python ints, decided in float64 in the
sweep, where rows too close to the limit to be sure are marked *suspect* (the sweep evaluates
those rows by the scalar path, exactly).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

__all__ = ["SCALAR", "Rules"]

Pass = Literal["scalar", "int", "float", "exact"]

_REL = 1e-6
"""Relative margin of :meth:`Rules.exceeds` in float64 (its rounding error is far smaller)."""


class Rules:
    """Scalar (``pass_="scalar"``): ``fails(cond)`` is ``bool(cond)``. Batched: records masks.

    A batched evaluation runs twice: in int64 (``"int"``: exact unless a value wraps; every
    rule but the magnitude ones is taken from it) and in float64 (``"float"``: only the
    magnitude rules, which int64 arithmetic cannot decide, are taken from it). Rows those two
    cannot settle run again over object arrays of Python ints (``"exact"``: every rule, the
    magnitude ones compared exactly)."""

    __slots__ = ("calls", "gate_from", "masks", "order", "pass_", "suspect")

    def __init__(self, pass_: Pass = "scalar") -> None:
        self.pass_ = pass_
        self.masks: list[tuple[str, Any]] = []
        """(code, per-row bool array or True) of every error rule that fails for some row."""
        self.suspect: Any = False
        """Rows the float pass cannot decide (a magnitude within _REL of its limit)."""
        self.calls = 0
        """Rules asked so far: both passes ask the same rules in the same order, so a call's
        number places the int pass's and the float pass's masks in the scalar path's order."""
        self.order: list[tuple[int, int | None]] = []
        """Per mask: (its call's number, the call number its :meth:`gated` block began at, or
        None)."""
        self.gate_from: int | None = None

    @property
    def batched(self) -> bool:
        return self.pass_ != "scalar"

    @property
    def magnitudes(self) -> bool:
        """Whether :meth:`exceeds` decides anything in this pass (not in the int64 pass)."""
        return self.pass_ != "int"

    def fails(self, cond: Any, code: str, severity: str = "error") -> bool:
        """Whether to build the finding (scalar path); else records ``cond`` as a mask."""
        if self.pass_ == "scalar":
            return bool(cond)
        self.calls += 1
        if severity == "error" and self.pass_ != "float" and _any(cond):
            self._record(code, cond)
        return False

    def exceeds(self, value: Any, limit: int, code: str, unless: Any = None) -> bool:
        """``value > limit`` for a magnitude that may not fit int64 (exact on Python ints);
        with ``unless`` (another magnitude), only where ``unless <= limit`` as well (where
        it is over, another rule reports the row)."""
        if self.pass_ == "scalar":
            return bool(value > limit) and not (unless is not None and unless > limit)
        self.calls += 1
        if self.pass_ == "exact":  # Python ints in object arrays: compared exactly
            over = value > limit
            if unless is not None:
                over = over & ~(unless > limit)
            if _any(over):
                self._record(code, over)
            return False
        if self.pass_ == "float" and _any(value > limit * (1 - _REL)):
            import numpy as np

            v = np.asarray(value, dtype=np.float64)
            over = v > limit * (1 + _REL)
            near = (v > limit * (1 - _REL)) & ~over
            if unless is not None:
                u = np.asarray(unless, dtype=np.float64)
                u_over = u > limit * (1 + _REL)
                # where value is over, unless decides: suspect when it is too near to say
                near = near | ((v > limit * (1 - _REL)) & (u > limit * (1 - _REL)) & ~u_over)
                over = over & ~(u > limit * (1 - _REL))
            if over.any():
                self._record(code, over)
            self.suspect = self.suspect | near
        return False

    def _record(self, code: str, mask: Any) -> None:
        """A failing rule's mask, with its call's number and gate (:attr:`order`)."""
        self.masks.append((code, mask))
        self.order.append((self.calls, self.gate_from))

    @contextmanager
    def gated(self) -> Iterator[None]:
        """Rules the scalar path asks only when none before them (in this step: resolve's, or
        check_workload's) has failed: ``if batched or not errors: with rules.gated(): ...``.
        The sweep asks them for every row and drops their masks where an earlier rule of the
        step fails (a row's reason code is the scalar path's)."""
        self.gate_from = self.calls
        try:
            yield
        finally:
            self.gate_from = None


def _any(cond: Any) -> bool:
    if isinstance(cond, bool):
        return cond
    return bool(cond.any()) if hasattr(cond, "any") else bool(cond)


SCALAR = Rules()
"""The scalar path's rules (stateless in that mode: shared)."""
