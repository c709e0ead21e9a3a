"""Array-generic integer helpers for the counting formulas.

Every formula in :mod:`perceiver_calc.modules` uses only ``+ - * //`` and these helpers, so the
same function evaluates on Python ints (exact, any size: the scalar path) and on numpy int64
arrays (the vectorised sweep, which checks overflow itself). numpy is imported only when an
array is actually passed: the scalar path never imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

__all__ = ["Int", "cdiv", "decides", "is_scalar", "maximum", "positive", "total", "where"]

Int = int
"""A count: a Python int on the scalar path; a numpy int64 array (same formulas) in the sweep.
Typed as ``int`` so the scalar path is checked strictly; the sweep passes arrays through."""


def is_scalar(*xs: Any) -> bool:
    return all(type(x) is int or type(x) is bool for x in xs)


def total(terms: Iterable[Int]) -> Int:
    """``sum(terms)``; numpy arrays of one shape are added together first (the sweep's
    per-axis arrays: most terms depend on one swept field, so few additions are full-size)."""
    acc: Int = 0
    groups: dict[Any, Any] = {}
    for t in terms:
        shape = getattr(t, "shape", None)
        if not shape:
            acc = acc + t
        elif shape in groups:
            groups[shape] = groups[shape] + t  # not in place: t may be a module's own value
        else:
            groups[shape] = t
    for shape in sorted(groups, key=lambda s: (math.prod(s), s)):
        acc = acc + groups[shape]
    return acc


def maximum(first: Int, *rest: Int) -> Int:
    """Elementwise max of counts (``max`` on ints, ``numpy.maximum`` on arrays)."""
    out = first
    for x in rest:
        if is_scalar(out, x):
            out = out if out >= x else x
        else:
            import numpy as np

            out = np.maximum(out, x)  # an int64 array where the sweep passes arrays
    return out


def where(cond: Any, a: Int, b: Int) -> Int:
    """``a if cond else b``, elementwise on arrays."""
    if is_scalar(cond) or isinstance(cond, bool):
        return a if cond else b
    import numpy as np

    return cast(Int, np.where(cond, a, b))  # an int64 array where the sweep passes arrays


def cdiv(a: Int, b: Int) -> Int:
    """Ceiling division of non-negative counts by a positive divisor: ``ceil(a / b)``."""
    return -(-a // b)


def decides(cond: Any) -> bool:
    """``cond`` where it decides which modules or storages exist (control flow, not a value):
    the sweep groups its rows so that it is the same for every row of a group
    (perceiver_calc.sweep.STRUCTURAL), else AssertionError."""
    if is_scalar(cond) or not hasattr(cond, "all"):
        return bool(cond)
    assert cond.all() or not cond.any(), "a structural condition differs within a sweep group"
    return bool(cond.all())


def positive(x: Int) -> bool:
    """``decides(x > 0)``."""
    return decides(x > 0)
