"""Vectorised evaluation of many configs: parameters, FLOPs and memory over numpy arrays.

How it stays exactly equal to the scalar path without restating any of its rules
------------------------------------------------------------------------------------
The scalar path (:func:`~perceiver_calc.resolve.resolve` -> ``count_params`` / ``count_flops``
/ ``count_memory``) is the only place that knows transformers' defaulting rules and the
counting conventions. This module never re-derives a width; it relies on two facts about it:

1. **Counts are polynomials in the integer fields.** Within one *structure* (same model class,
   same ``None``/explicit choices, same strings, booleans and tuples) every count is a sum of
   products of widths, token counts and layer counts, so it is a polynomial of degree <= 2 in
   each integer field (``d_latents`` enters squared through the MLP and ``num_latents``
   squared through the self-attention scores; nothing is cubic in one field). A tensor-product
   polynomial of degree <= 2 per field is fixed by its values on 3 nodes per field, so the
   scalar path is run on the ``3**k`` node combinations of the ``k`` swept integer fields and
   the monomial coefficients are solved for exactly (integer arithmetic over the least common
   denominator of the inverse Vandermonde matrices; every coefficient must come out an
   integer). Any 3 distinct values fix a quadratic, so the nodes are each field's 3 *smallest*
   swept values: the scalar path walks every self-attention layer, and small layer counts make
   it several times cheaper. A field swept over <= 3 values uses those values as nodes, so the
   fit is exact on the grid whatever the function's shape.
2. **Validity comes from the scalar validator.** Each distinct combination of the fields that
   can change validity is resolved once (with ``check_workload``); rows share its verdict and
   its error text. Which fields can change validity is found by resolving the group's
   representative with each field moved to the sweep's own values and a few probes (a field
   that never changes the set of error codes is irrelevant); when the grid has few distinct
   combinations (<= ``EXACT_VALIDITY_LIMIT``) all of them are resolved and no probing is used.

Counts that are *not* polynomial in some field (floors, ``max`` of widths: the multimodal
model's padding, the inference peak, the checkpointing recompute peak) are caught: every group
is checked against the scalar path on random rows that are not nodes, and a group that fails
(or whose coefficients are not integers) is evaluated row by row by the scalar path instead
(``SweepResult.scalar_rows`` counts them). Tests compare the two paths on generated configs.

Speed. The scalar path runs only at the nodes (shared by the 8 counts; one ``resolve`` per
node of the config fields, since workload fields do not change the resolved model), and fits
are kept across calls (:data:`FIT_CACHE_SIZE`, keyed by everything a fit depends on). Each
column's distinct values and per-row codes are computed once (``grid`` knows them). A fitted
count is evaluated once per combination of the fields' distinct values, by Horner's rule
along one field at a time (trailing zero coefficients dropped, so a linear field costs one
multiply-add per element), written in place when the rows are in grid order, else gathered.
``progress`` advances within a group: by blocks of about :data:`CHUNK_ROWS` rows (in grid
order, by whole values of the first swept field, so never finer than one such value).

Overflow: counts are int64. Each row's terms are also summed in float64 as absolute values;
a row whose bound reaches 2**63 (within a 1e-9 relative margin) is reported invalid with the
reason ``overflow``, never wrapped silently. (The int64 sums themselves may wrap: arithmetic
modulo 2**64 is exact whenever the true sum fits, which the bound guarantees. The bound is
computed per row only for counts whose exact bound over the whole group can reach 2**63.)
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from perceiver_calc.config import ModelClass, PerceiverConfig, load_config
from perceiver_calc.errors import ConfigError, PerceiverCalcError
from perceiver_calc.flops import count_flops
from perceiver_calc.memory import Device, count_memory
from perceiver_calc.params import count_params
from perceiver_calc.resolve import ResolvedModel, model_class_of, resolve, resolve_unchecked
from perceiver_calc.workload import Workload, check_workload

__all__ = [
    "COUNTS",
    "WORKLOAD_FIELDS",
    "Sweep",
    "SweepResult",
    "check_grid_size",
    "clear_fit_cache",
    "evaluate",
    "evaluate_scalar",
    "grid",
    "parse_values",
    "scalar_counts",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

COUNTS: tuple[str, ...] = (
    "params",
    "forward_flops",
    "training_flops",
    "weights_bytes",
    "gradients_bytes",
    "optimizer_bytes",
    "activations_bytes",
    "memory_bytes",
)
"""Columns of a sweep: ``count_params(...).total``; ``count_flops(...).forward`` and
``.training_step``; ``count_memory(...)`` weights, gradients, optimizer, activations and
``total_bytes`` (training: the step's total; inference: the peak) for the sweep's workload
with ``mode="training"`` for the training columns."""

WORKLOAD_FIELDS: frozenset[str] = frozenset(Workload.model_fields)
EXACT_VALIDITY_LIMIT = 4096
MAX_ROWS = 10_000_000
"""Largest grid :func:`grid` builds: about 200 bytes a row are held while it is evaluated
(columns, codes, counts), so 10^7 rows take about 2 GB. A larger grid is refused up front
(``ValueError``: exit 2 from the CLI) with its size."""
MAX_FIT_POINTS = 3**7
CHECK_ROWS = 4
_INT64_BOUND = float(2**63) * (1 - 1e-9)


def scalar_counts(
    resolved: ResolvedModel, workload: Workload, device: Device = "cuda"
) -> dict[str, int]:
    """The scalar path: the :data:`COUNTS` of one resolved config (the reference)."""
    train = workload.model_copy(update={"mode": "training"})
    flops = count_flops(resolved, train)
    mem = count_memory(resolved, train, device=device)
    total = mem.total_bytes
    if workload.mode == "inference":
        total = count_memory(resolved, workload, device=device).total_bytes
    return {
        "params": count_params(resolved).total,
        "forward_flops": flops.forward,
        "training_flops": flops.training_step,
        "weights_bytes": mem.weights_bytes,
        "gradients_bytes": mem.gradients_bytes,
        "optimizer_bytes": mem.optimizer_bytes,
        "activations_bytes": mem.activations_bytes,
        "memory_bytes": total,
    }


# --------------------------------------------------------------------------------------------
# The input: a base config, a workload, and columns of values


@dataclass(frozen=True)
class Sweep:
    """``n`` configs: ``base`` with ``columns[field][i]`` for row ``i``.

    A column names a :class:`PerceiverConfig` field (HF name) or a :class:`Workload` field
    (``batch_size``, ``seq_len``, ...). Integer columns are ``int64`` arrays; others (``None``,
    booleans, strings, tuples) are object arrays.
    """

    base: PerceiverConfig
    model: ModelClass
    workload: Workload
    columns: dict[str, npt.NDArray[Any]]
    device: Device = "cuda"
    distinct: dict[str, tuple[npt.NDArray[Any], IntArray]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """Per column, filled once: its distinct values and each row's index into them (``grid``
    knows them from its axes; :func:`evaluate` computes the others)."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 1

    def row(self, i: int) -> dict[str, Any]:
        return {k: _py(v[i]) for k, v in self.columns.items()}

    def config_and_workload(self, i: int) -> tuple[PerceiverConfig, Workload]:
        """Row ``i`` validated by the scalar path (raises ConfigError like load_config)."""
        return _build(self.base, self.workload, self.row(i))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _build(
    base: PerceiverConfig, workload: Workload, values: Mapping[str, Any]
) -> tuple[PerceiverConfig, Workload]:
    cfg_vals = {k: v for k, v in values.items() if k not in WORKLOAD_FIELDS}
    wl_vals = {k: v for k, v in values.items() if k in WORKLOAD_FIELDS}
    data = base.model_dump(by_alias=True, exclude_unset=True, exclude={"base_keys"})
    data.pop("unknown_keys", None)
    data.pop("duplicate_keys", None)
    data |= dict(base.base_keys) | dict(base.unknown_keys)
    config = load_config(data | cfg_vals) if cfg_vals else base
    if wl_vals:
        size = wl_vals.get("image_size")
        if isinstance(size, int) and not isinstance(size, bool):
            # --vary image_size=224,384: square inputs (the workload's --image-size N form)
            wl_vals = wl_vals | {"image_size": (size, size)}
        # Workload(...) names each bad field (InputError), as --batch-size etc. do
        workload = Workload(**(workload.model_dump() | wl_vals))
    return config, workload


def _unchecked(
    base: PerceiverConfig, workload: Workload, model: ModelClass, values: Mapping[str, Any]
) -> tuple[ResolvedModel, Workload]:
    """A resolved model for values that may break a dimension rule (fit nodes only): the
    builders of ``resolve`` run as they do for a valid config, only the raise is skipped."""
    cfg_vals = {k: v for k, v in values.items() if k not in WORKLOAD_FIELDS}
    wl_vals = {k: v for k, v in values.items() if k in WORKLOAD_FIELDS}
    size = wl_vals.get("image_size")
    if isinstance(size, int) and not isinstance(size, bool):
        wl_vals = wl_vals | {"image_size": (size, size)}
    config = base.model_copy(update=cfg_vals)
    wl = workload.model_copy(update=wl_vals)
    resolved = resolve_unchecked(config, model)
    return resolved, wl


def parse_values(spec: str) -> list[Any]:
    """The values of one ``--vary FIELD=SPEC``:

    * ``START:STOP:STEP`` or ``START:STOP`` (integers; STOP included when the step lands on it);
    * ``V1,V2,...``: integers, ``null``/``none``, ``true``/``false``, strings, and lists of
      integers written ``AxB`` or ``AxBxC...`` (``image_size=224x224,384x384``,
      ``train_size=368x496``, ``output_shape=1x16x224x224``), given as tuples;
    * a JSON array of values, e.g. ``[[224, 224], [384, 384]]`` or ``[64, null]`` (a list in
      it is a tuple).
    """
    spec = spec.strip()
    if spec.startswith("["):
        try:
            data = json.loads(spec)
        except ValueError as err:
            raise ValueError(f"{spec!r} is not a JSON array: {err}") from None
        if not isinstance(data, list) or not data:
            raise ValueError(f"{spec!r}: a JSON array of values needs at least one value")
        return [_tupled(v) for v in data]
    if ":" in spec and "," not in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"range {spec!r} must be START:STOP or START:STOP:STEP (integers)")
        start, stop = int(parts[0]), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 else 1
        if step <= 0 or stop < start:
            raise ValueError(f"range {spec!r} needs STOP >= START and STEP >= 1")
        return list(range(start, stop + 1, step))
    out: list[Any] = []
    for tok in spec.split(","):
        t = tok.strip()
        low = t.lower()
        if low in ("null", "none"):
            out.append(None)
        elif low in ("true", "false"):
            out.append(low == "true")
        elif t.lstrip("-").isdigit():
            out.append(int(t))
        elif _SHAPE.fullmatch(t):
            out.append(tuple(int(p) for p in low.split("x")))
        elif t:
            out.append(t)
    if not out:
        raise ValueError(f"no values in {spec!r}")
    return out


_SHAPE = re.compile(r"\d+(?:[xX]\d+)+")
"""``224x224``: a list-valued field's value in ``--vary`` (and in CSV output)."""


def _tupled(v: Any) -> Any:
    """JSON lists as tuples: hashable (distinct values, fit keys) and as the config stores."""
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v


def _column(values: Sequence[Any]) -> npt.NDArray[Any]:
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and all(-(2**63) <= v < 2**63 for v in values):
        return np.asarray(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def check_grid_size(axes: Mapping[str, Sequence[Any]]) -> int:
    """The number of rows of the grid of ``axes``; over :data:`MAX_ROWS` raises
    ``ValueError`` with the size, before any row is built."""
    n = math.prod(len(v) for v in axes.values())
    if n > MAX_ROWS:
        shape = " x ".join(f"{len(axes[k]):,} {k}" for k in axes)
        raise ValueError(
            f"the grid has {n:,} rows ({shape}); the limit is {MAX_ROWS:,}: sweep fewer values "
            "or split the sweep"
        )
    return n


def grid(
    base: PerceiverConfig | Mapping[str, Any],
    axes: Mapping[str, Sequence[Any]],
    *,
    model: str | None = None,
    workload: Workload | None = None,
    device: Device = "cuda",
) -> Sweep:
    """The full grid (Cartesian product) of ``axes`` around ``base``; the last axis varies
    fastest. Unknown field names raise ``ValueError``."""
    cfg = base if isinstance(base, PerceiverConfig) else load_config(base)
    known = set(PerceiverConfig.model_fields) | {"_label_trainable_num_channels"}
    for name in axes:
        if name not in known and name not in WORKLOAD_FIELDS:
            raise ValueError(
                f"--vary {name}: not a PerceiverConfig or workload field "
                "(use transformers' names, e.g. d_latents, num_latents, batch_size, seq_len)"
            )
    names = list(axes)
    sizes = [len(axes[n]) for n in names]
    n = check_grid_size(axes)
    idx = np.indices(sizes).reshape(len(sizes), n) if names else np.zeros((0, 1), np.int64)
    columns: dict[str, npt.NDArray[Any]] = {}
    distinct: dict[str, tuple[npt.NDArray[Any], IntArray]] = {}
    for k, name in enumerate(names):
        col = _column(list(axes[name]))
        columns[name] = col[idx[k]]
        values, codes = _distinct_of(col)
        distinct[name] = (values, codes[idx[k]])
    sweep = Sweep(
        base=cfg,
        model=model_class_of(cfg, model),
        workload=workload or Workload(),
        columns=columns,
        device=device,
    )
    sweep.distinct.update(distinct)
    return sweep


# --------------------------------------------------------------------------------------------
# The output


@dataclass(frozen=True)
class SweepResult:
    """Counts per row (``0`` where the row is invalid), validity and reasons."""

    sweep: Sweep
    valid: BoolArray
    counts: dict[str, IntArray]
    reason_index: npt.NDArray[np.int32]
    """Per row: index into ``reasons`` (-1: valid)."""
    reasons: list[str]
    scalar_rows: int = 0
    """Rows evaluated by the scalar path because their group's counts are not polynomial."""
    groups: int = 0
    fit_points: int = 0
    """Scalar-path evaluations run at fit nodes in this call (0 for fits found in the cache)."""

    def __len__(self) -> int:
        return len(self.valid)

    def reason(self, i: int) -> str | None:
        k = int(self.reason_index[i])
        return None if k < 0 else self.reasons[k]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row: the swept values, ``valid``, the counts (or ``reason``)."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(self), CHUNK_ROWS):
            out += self.iter_rows(start, min(start + CHUNK_ROWS, len(self)))
        return out

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as :meth:`rows` gives it (without building the others)."""
        return self.iter_rows(i, i + 1)[0]

    def iter_rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows ``start`` to ``stop - 1`` as :meth:`rows` gives them (a chunk: streaming output
        converts one block of the arrays at a time, in bounded memory)."""
        out: list[dict[str, Any]] = []
        names = list(self.sweep.columns)
        cols = {k: self.sweep.columns[k][start:stop].tolist() for k in names}
        counts = {k: v[start:stop].tolist() for k, v in self.counts.items()}
        valid = self.valid[start:stop].tolist()
        reason = self.reason_index[start:stop].tolist()
        for j in range(stop - start):
            row: dict[str, Any] = {k: cols[k][j] for k in names}
            row["valid"] = valid[j]
            if valid[j]:
                row |= {k: counts[k][j] for k in counts}
            else:
                row["reason"] = self.reasons[reason[j]]
            out.append(row)
        return out

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The result as numpy columns: the swept fields, ``valid``, every count (0 where
        invalid) and ``reason`` (an object array, None where valid)."""
        texts = np.empty(len(self.reasons) + 1, dtype=object)
        texts[: len(self.reasons)] = self.reasons
        texts[-1] = None  # reason_index -1 (valid) picks the last entry
        return {
            **self.sweep.columns,
            "valid": self.valid,
            **self.counts,
            "reason": texts[self.reason_index],
        }

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of :meth:`columns` (pandas is optional: ImportError if
        missing)."""
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]

        return pd.DataFrame(self.columns())

    def to_polars(self) -> Any:
        """A ``polars.DataFrame`` of :meth:`columns` (polars is optional: ImportError if
        missing)."""
        import polars as pl  # type: ignore[import-not-found,unused-ignore]

        cols = self.columns()
        return pl.DataFrame({k: (v.tolist() if v.dtype == object else v) for k, v in cols.items()})


# --------------------------------------------------------------------------------------------
# Evaluation


class _Reasons:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.index: dict[str, int] = {}

    def id(self, text: str) -> int:
        if text not in self.index:
            self.index[text] = len(self.texts)
            self.texts.append(text)
        return self.index[text]


def _error_text(err: Exception) -> str:
    if isinstance(err, ConfigError):
        return "; ".join(str(f) for f in err.errors) or str(err)
    return str(err).splitlines()[0] if str(err) else type(err).__name__


Verdict = tuple[str | None, tuple[str, ...], ResolvedModel | None, Workload | None]


def _verdict(sweep: Sweep, values: Mapping[str, Any]) -> Verdict:
    """The scalar validator on one combination: (error text, error codes, resolved, workload)."""
    try:
        config, wl = _build(sweep.base, sweep.workload, values)
        resolved = resolve(config, sweep.model)
    except ConfigError as err:
        return _error_text(err), tuple(sorted({f.code for f in err.errors})), None, None
    except PerceiverCalcError as err:
        return _error_text(err), ("input",), None, None
    errors = [f for f in check_workload(resolved, wl) if f.severity == "error"]
    if errors:
        return (
            "; ".join(str(f) for f in errors),
            tuple(sorted({f.code for f in errors})),
            None,
            None,
        )
    return None, (), resolved, wl


def _distinct_of(col: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], IntArray]:
    """A column's distinct values (in no particular order) and each row's index into them."""
    n = len(col)
    if col.dtype == np.int64:
        if n == 0:
            return col[:0], np.zeros(0, dtype=np.int64)
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < max(4 * n, 1 << 16):
            # Small value range: a presence table and a lookup, O(n); np.unique sorts.
            off = col - lo
            present = np.zeros(hi - lo + 1, dtype=bool)
            present[off] = True
            found = np.flatnonzero(present)
            lut = np.zeros(hi - lo + 1, dtype=np.int64)
            lut[found] = np.arange(len(found), dtype=np.int64)
            return (found + lo).astype(np.int64), lut[off]
        vals, inv = np.unique(col, return_inverse=True)
        return vals, inv.reshape(-1).astype(np.int64)
    keys: dict[tuple[type, Any], int] = {}
    first: list[Any] = []
    codes = np.empty(n, dtype=np.int64)
    for i, v in enumerate(col.tolist()):
        try:
            key: tuple[type, Any] = (type(v), v)
            hash(key)
        except TypeError:  # a list: compare by its text
            key = (type(v), repr(v))
        j = keys.get(key)
        if j is None:
            j = keys[key] = len(first)
            first.append(v)
        codes[i] = j
    vals_arr = np.empty(len(first), dtype=object)
    vals_arr[:] = first
    return vals_arr, codes


def _distinct(sweep: Sweep, name: str) -> tuple[npt.NDArray[Any], IntArray]:
    """:func:`_distinct_of` of a column, computed once per sweep (``grid`` fills it in)."""
    hit = sweep.distinct.get(name)
    if hit is None:
        hit = sweep.distinct[name] = _distinct_of(sweep.columns[name])
    return hit


def _combos(codes: Sequence[IntArray], dims: Sequence[int], n: int) -> tuple[IntArray, IntArray]:
    """Distinct combinations of per-row codes (``codes[f][i] < dims[f]``): each row's
    combination index, and the combinations as a (fields, combinations) array of codes."""
    if not codes:
        return np.zeros(n, dtype=np.int64), np.zeros((0, 1), dtype=np.int64)
    total = math.prod(dims)
    if total < 2**62:  # one mixed-radix key per row
        flat = codes[0].astype(np.int64)
        for c, d in zip(codes[1:], dims[1:], strict=True):
            flat = flat * d + c
        if total <= max(4 * n, 1 << 16):  # presence table, O(n)
            present = np.zeros(total, dtype=bool)
            present[flat] = True
            ukey = np.flatnonzero(present)
            lut = np.zeros(total, dtype=np.int64)
            lut[ukey] = np.arange(len(ukey), dtype=np.int64)
            inv = lut[flat]
        else:
            ukey, inv = np.unique(flat, return_inverse=True)
        parts = np.unravel_index(ukey, tuple(dims))
        return inv.reshape(-1).astype(np.int64), np.array(parts, dtype=np.int64)
    keys: dict[tuple[int, ...], int] = {}
    inverse = np.empty(n, dtype=np.int64)
    for j, key in enumerate(zip(*(c.tolist() for c in codes), strict=True)):
        inverse[j] = keys.setdefault(key, len(keys))
    return inverse, np.array(list(keys), dtype=np.int64).reshape(len(keys), len(codes)).T


class _Run:
    """State of one :func:`evaluate` call."""

    def __init__(
        self, sweep: Sweep, progress: Callable[[int, int], None] | None, seed: int
    ) -> None:
        n = len(sweep)
        self.sweep = sweep
        self.n = n
        self.rng = random.Random(seed)
        self.reasons = _Reasons()
        self.valid = np.ones(n, dtype=bool)
        self.reason_index = np.full(n, -1, dtype=np.int32)
        self.counts = {k: np.zeros(n, dtype=np.int64) for k in COUNTS}
        self.progress = progress
        self.done = 0
        self.scalar_rows = 0
        self.fit_points = 0
        self.verdicts: dict[tuple[tuple[str, Any], ...], Verdict] = {}

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.progress and rows:
            self.progress(self.done, self.n)

    def verdict(self, values: Mapping[str, Any]) -> Verdict:
        """:func:`_verdict`, once per combination (probes and combinations overlap)."""
        try:
            key = tuple(sorted(values.items()))
            hit = self.verdicts.get(key)
        except TypeError:  # an unhashable value (a list)
            return _verdict(self.sweep, values)
        if hit is None:
            hit = self.verdicts[key] = _verdict(self.sweep, values)
        return hit

    def invalidate(self, rows: IntArray, reason_ids: npt.NDArray[np.int32] | int) -> None:
        self.valid[rows] = False
        self.reason_index[rows] = reason_ids


def evaluate(
    sweep: Sweep,
    *,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> SweepResult:
    """Every row's :data:`COUNTS`, exactly as :func:`evaluate_scalar` gives them, vectorised.

    ``progress(done, total)`` is called as rows complete: invalid rows as they are found,
    fitted rows in blocks of about :data:`CHUNK_ROWS`, scalar-fallback rows one by one.
    """
    run = _Run(sweep, progress, seed)
    n = run.n
    cols = sweep.columns

    # 1. Types and ranges, per distinct value of each column, by the scalar validator.
    for name in cols:
        vals, code = _distinct(sweep, name)
        ids = np.full(len(vals), -1, dtype=np.int32)
        for j, value in enumerate(vals.tolist()):
            text = _range_error(sweep, name, value)
            if text is not None:
                ids[j] = run.reasons.id(text)
        if (ids >= 0).any():
            row_ids = ids[code]
            fresh = (row_ids >= 0) & run.valid
            run.invalidate(np.flatnonzero(fresh), row_ids[fresh])
    run.advance(n - int(run.valid.sum()))

    # 2. Structure groups: rows that share every non-integer column.
    obj_names = [k for k, c in cols.items() if c.dtype != np.int64]
    int_names = [k for k, c in cols.items() if c.dtype == np.int64]
    all_rows = np.flatnonzero(run.valid).astype(np.int64)
    gid, gparts = _combos(
        [_distinct(sweep, k)[1][all_rows] for k in obj_names],
        [len(_distinct(sweep, k)[0]) for k in obj_names],
        len(all_rows),
    )
    n_groups = gparts.shape[1] if len(all_rows) else 0
    order = np.argsort(gid, kind="stable")
    bounds = np.searchsorted(gid[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = all_rows[order[bounds[g] : bounds[g + 1]]]
        fixed = {k: _py(_distinct(sweep, k)[0][gparts[f, g]]) for f, k in enumerate(obj_names)}
        _evaluate_group(run, rows, fixed, int_names)
    for k in run.counts:
        run.counts[k][~run.valid] = 0
    return SweepResult(
        sweep=sweep,
        valid=run.valid,
        counts=run.counts,
        reason_index=run.reason_index,
        reasons=run.reasons.texts,
        scalar_rows=run.scalar_rows,
        groups=n_groups,
        fit_points=run.fit_points,
    )


def _range_error(sweep: Sweep, name: str, value: Any) -> str | None:
    try:
        _build(sweep.base, sweep.workload, {name: value})
    except PerceiverCalcError as err:  # ConfigError included
        return _error_text(err)
    return None


@dataclass
class _Axis:
    """A varying integer field within one group: its distinct values there and each row's
    index into them."""

    name: str
    values: IntArray
    codes: IntArray

    def compact(self) -> _Axis:
        """Without the values no row has."""
        present = np.zeros(len(self.values), dtype=bool)
        present[self.codes] = True
        if present.all():
            return self
        found = np.flatnonzero(present)
        lut = np.zeros(len(self.values), dtype=np.int64)
        lut[found] = np.arange(len(found), dtype=np.int64)
        return _Axis(self.name, self.values[found], lut[self.codes])

    def keep(self, mask: BoolArray) -> _Axis:
        return _Axis(self.name, self.values, self.codes[mask]).compact()


def _evaluate_group(run: _Run, rows: IntArray, fixed: dict[str, Any], int_names: list[str]) -> None:
    sweep = run.sweep
    cols = sweep.columns
    axes: list[_Axis] = []
    for k in int_names:
        vals, code = _distinct(sweep, k)
        axis = _Axis(k, vals, code if len(rows) == run.n else code[rows]).compact()
        if len(axis.values) > 1:
            axes.append(axis)
    rep = {**fixed, **{k: int(cols[k][rows[0]]) for k in int_names}}

    # --- validity: one scalar verdict per distinct combination of the relevant fields ------
    if math.prod(len(a.values) for a in axes) <= EXACT_VALIDITY_LIMIT:
        relevant = axes
    else:
        names = _validity_fields(run, rep, axes)
        relevant = [a for a in axes if a.name in names]
    cid, parts = _combos([a.codes for a in relevant], [len(a.values) for a in relevant], len(rows))
    ids = np.full(parts.shape[1], -1, dtype=np.int32)
    for j in range(parts.shape[1]):
        point = {a.name: int(a.values[parts[f, j]]) for f, a in enumerate(relevant)}
        text = run.verdict({**rep, **point})[0]
        if text is not None:
            ids[j] = run.reasons.id(text)
    if (ids >= 0).any():
        row_ids = ids[cid]
        bad = row_ids >= 0
        run.invalidate(rows[bad], row_ids[bad])
        run.advance(int(bad.sum()))
        keep = ~bad
        rows = rows[keep]
        axes = [a.keep(keep) for a in axes]
    if len(rows) == 0:
        return

    # --- counts: exact polynomial fit, checked on random rows, else the scalar path -------
    fitted = _fit_group(run, rows, rep, axes)
    if fitted is None:
        for i in rows.tolist():  # milliseconds a row: progress row by row
            _scalar_row(run, i)
            run.advance(1)
        run.scalar_rows += len(rows)
        return
    _write_counts(run, rows, axes, fitted)


def _scalar_row(run: _Run, i: int) -> None:
    text, _, resolved, wl = _verdict(run.sweep, run.sweep.row(i))
    if resolved is None or wl is None:
        run.invalidate(np.array([i]), run.reasons.id(text or "invalid"))
        return
    row = scalar_counts(resolved, wl, run.sweep.device)
    if any(v > 2**63 - 1 for v in row.values()):
        run.invalidate(np.array([i]), run.reasons.id(_OVERFLOW))
        return
    for k, v in row.items():
        run.counts[k][i] = v


_OVERFLOW = "overflow: a count exceeds int64 (2**63 - 1); use smaller dimensions"


def _validity_fields(run: _Run, rep: dict[str, Any], axes: list[_Axis]) -> set[str]:
    """The varying fields whose value can change the set of error codes (probed)."""
    base_codes = run.verdict(rep)[1]
    relevant: set[str] = set()
    for a in axes:
        values = np.sort(a.values)
        picks = set(values[np.linspace(0, len(values) - 1, 8).astype(int)].tolist())
        x = int(rep[a.name])
        picks |= {1, 2, 3, x + 1, 2 * x + 1}
        for v in sorted(picks):
            if run.verdict({**rep, a.name: v})[1] != base_codes:
                relevant.add(a.name)
                break
    return relevant


# --------------------------------------------------------------------------------------------
# The polynomial fit


@dataclass(frozen=True)
class _Fit:
    """Integer coefficients: ``coef[c][e_1, ..., e_k]`` multiplies ``prod x_a ** e_a`` in
    count ``COUNTS[c]``; ``nodes[a]`` are the values of field ``a`` it was fitted on."""

    names: tuple[str, ...]
    nodes: tuple[tuple[int, ...], ...]
    coef: npt.NDArray[Any]  # object array of Python ints, shape (len(COUNTS), *node counts)


_FIT_CACHE: OrderedDict[tuple[Any, ...], _Fit] = OrderedDict()
FIT_CACHE_SIZE = 64
"""Fits kept across :func:`evaluate` calls (least recently used dropped). The key is everything
a fit depends on (model class, base config, workload, device, the group's fixed values, the
swept fields and their nodes), and a fit is a pure function of it."""


def clear_fit_cache() -> None:
    """Forget the fits kept across calls (benchmarks time cold calls with it)."""
    _FIT_CACHE.clear()


def _fit_key(sweep: Sweep, rep: Mapping[str, Any], nodes: Mapping[str, tuple[int, ...]]) -> Any:
    fixed = tuple(sorted((k, repr(v)) for k, v in rep.items() if k not in nodes))
    return (
        sweep.model,
        sweep.device,
        sweep.base.model_dump_json(),
        repr(sorted(sweep.base.model_fields_set)),
        sweep.workload.model_dump_json(),
        fixed,
        tuple(nodes.items()),
    )


def _fit_group(run: _Run, rows: IntArray, rep: dict[str, Any], axes: list[_Axis]) -> _Fit | None:
    """The group's polynomials, or None when they are not polynomials of degree <= 2 per field
    with integer coefficients (a node the formulas cannot evaluate, a fractional coefficient,
    or a check row where the scalar path disagrees)."""
    sweep = run.sweep
    # Nodes: the 3 smallest values of each field. Any 3 distinct values fix a quadratic
    # exactly; the smallest make the scalar path cheapest (it walks every self-attention
    # layer: on the benchmark grid, nodes 2/4/6 of num_self_attends_per_block instead of
    # 2/18/32 make the fit 2.7x cheaper).
    nodes = {a.name: tuple(int(v) for v in np.sort(a.values)[:3]) for a in axes}
    key = _fit_key(sweep, rep, nodes)
    fit = _FIT_CACHE.get(key)
    if fit is None:
        fit = _solve(run, rep, nodes)
        if fit is None:
            return None
        _FIT_CACHE[key] = fit
        while len(_FIT_CACHE) > FIT_CACHE_SIZE:
            _FIT_CACHE.popitem(last=False)
    else:
        _FIT_CACHE.move_to_end(key)
    # Check rows that are not nodes against the scalar path (validated, full path).
    off = np.zeros(len(rows), dtype=bool)
    for a in axes:
        is_node = np.isin(a.values, nodes[a.name])
        off |= ~is_node[a.codes]
    candidates = np.flatnonzero(off)
    picks = run.rng.sample(range(len(candidates)), min(CHECK_ROWS, len(candidates)))
    for p in picks:
        i = int(rows[candidates[p]])
        _, _, checked, checked_wl = run.verdict(sweep.row(i))
        if checked is None or checked_wl is None:
            continue
        truth = scalar_counts(checked, checked_wl, sweep.device)
        x = [int(sweep.columns[name][i]) for name in fit.names]
        for c, k in enumerate(COUNTS):
            if _eval_exact(fit.coef[c], x) != truth[k]:
                return None
    return fit


def _solve(run: _Run, rep: dict[str, Any], nodes: dict[str, tuple[int, ...]]) -> _Fit | None:
    """Run the scalar path on every node combination and solve for the coefficients exactly."""
    sweep = run.sweep
    names = tuple(nodes)
    shape = tuple(len(nd) for nd in nodes.values())
    cfg_rep = {k: v for k, v in rep.items() if k not in WORKLOAD_FIELDS}
    wl_rep = {k: v for k, v in rep.items() if k in WORKLOAD_FIELDS}
    cfg_axes = [a for a, k in enumerate(names) if k not in WORKLOAD_FIELDS]
    resolved: dict[tuple[int, ...], ResolvedModel] = {}
    values = np.empty((len(COUNTS), *shape), dtype=object)
    for idx in itertools.product(*(range(s) for s in shape)):
        point = {k: nodes[k][idx[a]] for a, k in enumerate(names)}
        ckey = tuple(idx[a] for a in cfg_axes)
        try:
            # One resolve per config node: workload fields do not change the resolved model.
            model = resolved.get(ckey)
            if model is None:
                cfg_vals = cfg_rep | {k: v for k, v in point.items() if k not in WORKLOAD_FIELDS}
                config = sweep.base.model_copy(update=cfg_vals)
                model = resolved[ckey] = resolve_unchecked(config, sweep.model)
            wl_vals = wl_rep | {k: v for k, v in point.items() if k in WORKLOAD_FIELDS}
            row = scalar_counts(model, sweep.workload.model_copy(update=wl_vals), sweep.device)
        except Exception:  # a node the formulas cannot evaluate: use the scalar path
            return None
        for c, k in enumerate(COUNTS):
            values[(c, *idx)] = row[k]
    run.fit_points += math.prod(shape)
    # coefficients = (V_1**-1 (x) ... (x) V_k**-1) values, with V_a**-1 = A_a / d_a integer.
    coef = values
    denom = 1
    for nd in nodes.values():
        a_int, d = _inverse_vandermonde(list(nd))
        coef = np.tensordot(coef, a_int, axes=([1], [1]))  # contracted axis -> last
        denom *= d
    flat = coef.reshape(-1).tolist()
    out = np.empty(len(flat), dtype=object)
    for j, c in enumerate(flat):
        q, r = divmod(c, denom)
        if r:
            return None  # a fractional coefficient: not a polynomial with integer coefficients
        out[j] = q
    return _Fit(names=names, nodes=tuple(nodes.values()), coef=out.reshape(coef.shape))


def _inverse_vandermonde(nodes: list[int]) -> tuple[npt.NDArray[Any], int]:
    """``(A, d)`` with ``A / d == V**-1`` for ``V[i][e] = nodes[i]**e``, ``A`` integer (object
    array) and ``d`` the least common denominator: coefficients = V**-1 @ values."""
    m = len(nodes)
    a = [
        [Fraction(x) ** e for e in range(m)] + [Fraction(int(i == j)) for j in range(m)]
        for i, x in enumerate(nodes)
    ]
    for col in range(m):  # Gauss-Jordan; the nodes are distinct so pivots are nonzero
        piv = next(r for r in range(col, m) if a[r][col] != 0)
        a[col], a[piv] = a[piv], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for r in range(m):
            if r != col and a[r][col] != 0:
                factor = a[r][col]
                a[r] = [v - factor * w for v, w in zip(a[r], a[col], strict=True)]
    d = math.lcm(*(a[i][m + j].denominator for i in range(m) for j in range(m)))
    out = np.empty((m, m), dtype=object)
    for i in range(m):
        for j in range(m):
            v = a[i][m + j] * d
            out[i, j] = v.numerator
    return out, d


def _eval_exact(coef: npt.NDArray[Any], x: Sequence[int]) -> int:
    """One count of the fit at one point, in Python integers."""
    total = 0
    for idx in itertools.product(*(range(s) for s in coef.shape)):
        c = coef[idx]
        if c:
            total += c * math.prod(v**e for v, e in zip(x, idx, strict=True))
    return int(total)


def _wrap64(v: int) -> int:
    """``v`` modulo 2**64 as a signed int64: int64 arithmetic wraps modulo 2**64, so a sum of
    wrapped products is the exact value whenever the exact value fits in int64."""
    return (v + 2**63) % 2**64 - 2**63


CHUNK_ROWS = 1 << 16
"""Rows written per step (and per progress update) when the fitted counts are gathered."""


def _write_counts(run: _Run, rows: IntArray, axes: list[_Axis], fit: _Fit) -> None:
    """Evaluate the fit on every row: once per combination of the fields' distinct values (a
    tensor contraction; a grid has as many combinations as rows), written in place when the
    rows are in grid order, else gathered row by row."""
    by_name = {a.name: a for a in axes}
    ordered = [by_name[k] for k in fit.names]
    dims = [len(a.values) for a in ordered]
    n_rows = len(rows)
    if math.prod(dims) > 2 * n_rows + 4096:
        _write_counts_rowwise(run, rows, ordered, fit)
        return
    # Per count: an exact bound on |count| over the group (coefficients and values in
    # absolute value); only counts that can reach 2**63 need the per-row overflow bound.
    top = [max(abs(int(v)) for v in a.values.tolist()) for a in ordered]
    monomials = list(itertools.product(*(range(s) for s in fit.coef.shape[1:])))
    coef_rows = fit.coef.reshape(len(COUNTS), -1).tolist()
    risky = [
        sum(
            abs(coef) * math.prod(t**e for t, e in zip(top, ex, strict=True))
            for coef, ex in zip(coef_rows[c], monomials, strict=True)
        )
        >= 2**63
        for c in range(len(COUNTS))
    ]
    wrapped = np.vectorize(_wrap64, otypes=[np.int64])(fit.coef)
    absolute = np.vectorize(lambda v: float(min(abs(v), 2**1000)), otypes=[np.float64])
    partials = [_partial(wrapped[c], ordered) for c in range(len(COUNTS))]
    bounds = [
        _partial(absolute(fit.coef[c]), ordered, absolute=True)
        for c in range(len(COUNTS))
        if risky[c]
    ]
    strides = [math.prod(dims[a + 1 :]) for a in range(len(dims))]
    flat = np.zeros(n_rows, dtype=np.int64)
    for ax, st in zip(ordered, strides, strict=True):
        flat += ax.codes * st
    contiguous = n_rows == 0 or int(rows[-1]) - int(rows[0]) == n_rows - 1
    in_order = (
        contiguous
        and n_rows == math.prod(dims)
        and bool((flat == np.arange(n_rows, dtype=np.int64)).all())
    )
    # Blocks of the first field's values, about CHUNK_ROWS rows each.
    per_value = math.prod(dims[1:])
    step = max(1, CHUNK_ROWS // max(per_value, 1))
    blocks = [(i, min(i + step, dims[0])) for i in range(0, dims[0], step)] if dims else [(0, 1)]
    if in_order:
        start = int(rows[0]) if n_rows else 0
        dests = [run.counts[k][start : start + n_rows].reshape(dims) for k in COUNTS]
        for i0, i1 in blocks:
            for c in range(len(COUNTS)):
                _finish(partials[c], ordered, i0, i1, dests[c])
            if bounds:
                over = np.zeros((i1 - i0, *dims[1:]), dtype=bool)
                part = np.empty((i1 - i0, *dims[1:]), dtype=np.float64)
                for b in bounds:
                    _finish(b, ordered, i0, i1, part, absolute=True)
                    over |= part >= _INT64_BOUND
                if over.any():
                    bad = rows[i0 * per_value : i1 * per_value][over.reshape(-1)]
                    run.invalidate(bad, run.reasons.id(_OVERFLOW))
            run.advance((i1 - i0) * per_value if dims else n_rows)
        return
    tables = []
    for c in range(len(COUNTS)):
        table = np.empty(dims, dtype=np.int64)
        for i0, i1 in blocks:
            _finish(partials[c], ordered, i0, i1, table)
        tables.append(table.reshape(-1))
    over_table = None
    if bounds:
        over_table = np.zeros(dims, dtype=bool)
        part = np.empty(dims, dtype=np.float64)
        for b in bounds:
            for i0, i1 in blocks:
                _finish(b, ordered, i0, i1, part, absolute=True)
            over_table |= part >= _INT64_BOUND
        over_table = over_table.reshape(-1)
    for lo in range(0, n_rows, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n_rows)
        for c, k in enumerate(COUNTS):
            run.counts[k][rows[lo:hi]] = tables[c][flat[lo:hi]]
        if over_table is not None:
            over = over_table[flat[lo:hi]]
            if over.any():
                run.invalidate(rows[lo:hi][over], run.reasons.id(_OVERFLOW))
        run.advance(hi - lo)


def _powers(a: _Axis, absolute: bool) -> npt.NDArray[Any]:
    return np.abs(a.values.astype(np.float64)) if absolute else a.values


def _partial(
    coef: npt.NDArray[Any], ordered: list[_Axis], *, absolute: bool = False
) -> npt.NDArray[Any]:
    """One count's coefficients ``coef[e_1, ..., e_k]`` summed against the powers of every
    field but the first: shape ``(e_1, m_2, ..., m_k)``. Trailing zero coefficients are
    dropped per axis (exactly: they add nothing), so a field a count is linear in costs one
    multiply-add per element, and one it does not depend on stays a size-1 axis (broadcast)."""
    out = coef
    for axis in range(coef.ndim - 1, -1, -1):
        others = tuple(d for d in range(out.ndim) if d != axis)
        nonzero = np.flatnonzero(np.any(out != 0, axis=others))
        keep = int(nonzero[-1]) + 1 if len(nonzero) else 1
        out = out[(slice(None),) * axis + (slice(0, keep),)]
        if axis > 0:
            out = _horner(out, axis, _powers(ordered[axis], absolute))
    return out


def _horner(t: npt.NDArray[Any], axis: int, x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``sum_e t[..., e, ...] * x**e`` along ``axis``, the values of ``x`` replacing it (a
    size-1 axis when ``t`` has one term there). int64 wraps modulo 2**64: see ``_wrap64``."""
    d = t.shape[axis]
    if d == 1:
        return t

    def term(e: int) -> npt.NDArray[Any]:
        return t[(slice(None),) * axis + (slice(e, e + 1),)]

    xb = x.reshape((1,) * axis + (len(x),) + (1,) * (t.ndim - axis - 1))
    with np.errstate(over="ignore"):
        acc: npt.NDArray[Any] = term(d - 1) * xb
        for e in range(d - 2, -1, -1):
            acc += term(e)
            if e:
                acc *= xb
        return acc


def _finish(
    partial: npt.NDArray[Any],
    ordered: list[_Axis],
    i0: int,
    i1: int,
    out: npt.NDArray[Any],
    *,
    absolute: bool = False,
) -> None:
    """Rows ``i0:i1`` of the first field's values: ``out[i0:i1]`` (or all of ``out`` when it
    has ``i1 - i0`` rows) = the partial sum over the first field's powers."""
    if not ordered:
        out[...] = partial
        return
    dest = out[i0:i1] if out.shape[0] == len(ordered[0].values) else out
    x = _powers(ordered[0], absolute)[i0:i1].reshape((-1,) + (1,) * (partial.ndim - 1))
    d = partial.shape[0]
    with np.errstate(over="ignore"):
        if d == 1:
            dest[...] = partial
            return
        np.multiply(partial[d - 1 : d], x, out=dest)
        for e in range(d - 2, -1, -1):
            np.add(dest, partial[e : e + 1], out=dest)
            if e:
                np.multiply(dest, x, out=dest)


def _write_counts_rowwise(run: _Run, rows: IntArray, ordered: list[_Axis], fit: _Fit) -> None:
    """The fit evaluated term by term on each row (rows with few repeated values)."""
    x = {a.name: a.values[a.codes] for a in ordered}
    over = np.zeros(len(rows), dtype=bool)
    monomials = list(itertools.product(*(range(s) for s in fit.coef.shape[1:])))
    for c, name in enumerate(COUNTS):
        poly: Poly = {}
        for ex in monomials:
            v = int(fit.coef[(c, *ex)])
            if v:
                poly[ex] = v
        value, bound = _eval_poly(poly, list(fit.names), x, len(rows))
        run.counts[name][rows] = value
        over |= bound >= _INT64_BOUND
    if over.any():
        run.invalidate(rows[over], run.reasons.id(_OVERFLOW))
    run.advance(len(rows))


Poly = dict[tuple[int, ...], int]


def _eval_poly(
    poly: Poly, varying: list[str], x: dict[str, npt.NDArray[np.int64]], n: int
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Sum of c * prod(x**e) in int64 (wrapping: exact when the sum fits), and sum of |terms|
    in float64 (the overflow bound)."""
    total = np.zeros(n, dtype=np.int64)
    bound = np.zeros(n, dtype=np.float64)
    powers: dict[tuple[str, int], IntArray] = {}
    fpowers: dict[tuple[str, int], npt.NDArray[np.float64]] = {}
    for ex, c in poly.items():
        term = np.full(n, _wrap64(c), dtype=np.int64)
        fterm = np.full(n, float(min(abs(c), 2**1000)), dtype=np.float64)
        for name, e in zip(varying, ex, strict=True):
            if e == 0:
                continue
            key = (name, e)
            if key not in powers:
                with np.errstate(over="ignore"):
                    powers[key] = x[name] ** e
                fpowers[key] = np.abs(x[name].astype(np.float64)) ** e
            with np.errstate(over="ignore"):
                term = term * powers[key]
            fterm = fterm * fpowers[key]
        with np.errstate(over="ignore"):
            total = total + term
        bound = bound + fterm
    return total, bound


def evaluate_scalar(sweep: Sweep, rows: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """The reference: each row through ``load_config`` -> ``resolve`` -> counts, one by one.
    Returns ``{"valid": bool, "reason": str | None, **counts}`` per row."""
    out: list[dict[str, Any]] = []
    for i in range(len(sweep)) if rows is None else rows:
        text, _, resolved, wl = _verdict(sweep, sweep.row(i))
        if resolved is None or wl is None:
            out.append({"valid": False, "reason": text})
            continue
        out.append({"valid": True, "reason": None, **scalar_counts(resolved, wl, sweep.device)})
    return out
