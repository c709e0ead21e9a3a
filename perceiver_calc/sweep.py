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
   the monomial coefficients are solved for exactly (rational arithmetic; every coefficient
   must come out an integer). A field swept over <= 3 values uses those values as nodes, so
   the fit is exact on the grid whatever the function's shape.
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

Overflow: counts are int64. Each row's terms are also summed in float64 as absolute values;
a row whose bound reaches 2**63 (within a 1e-9 relative margin) is reported invalid with the
reason ``overflow``, never wrapped silently.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    data |= dict(base.base_keys) | dict(base.unknown_keys)
    config = load_config(data | cfg_vals) if cfg_vals else base
    if wl_vals:
        try:
            workload = Workload.model_validate(workload.model_dump() | wl_vals)
        except ValueError as err:
            raise PerceiverCalcError(f"workload: {err}".splitlines()[0]) from None
    return config, workload


def _unchecked(
    base: PerceiverConfig, workload: Workload, model: ModelClass, values: Mapping[str, Any]
) -> tuple[ResolvedModel, Workload]:
    """A resolved model for values that may break a dimension rule (fit nodes only): the
    builders of ``resolve`` run as they do for a valid config, only the raise is skipped."""
    cfg_vals = {k: v for k, v in values.items() if k not in WORKLOAD_FIELDS}
    wl_vals = {k: v for k, v in values.items() if k in WORKLOAD_FIELDS}
    config = base.model_copy(update=cfg_vals)
    wl = workload.model_copy(update=wl_vals)
    resolved = resolve_unchecked(config, model)
    return resolved, wl


def parse_values(spec: str) -> list[Any]:
    """``START:STOP:STEP`` (STOP included when the step lands on it) or ``V1,V2,...``.

    Values are JSON-ish: integers, ``null``/``none``, ``true``/``false``, strings.
    """
    spec = spec.strip()
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
        elif t:
            out.append(t)
    if not out:
        raise ValueError(f"no values in {spec!r}")
    return out


def _column(values: Sequence[Any]) -> npt.NDArray[Any]:
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and all(-(2**63) <= v < 2**63 for v in values):
        return np.asarray(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


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
    n = math.prod(sizes)
    idx = np.indices(sizes).reshape(len(sizes), n) if names else np.zeros((0, 1), np.int64)
    columns: dict[str, npt.NDArray[Any]] = {}
    for k, name in enumerate(names):
        col = _column(list(axes[name]))
        columns[name] = col[idx[k]]
    return Sweep(
        base=cfg,
        model=model_class_of(cfg, model),
        workload=workload or Workload(),
        columns=columns,
        device=device,
    )


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

    def __len__(self) -> int:
        return len(self.valid)

    def reason(self, i: int) -> str | None:
        k = int(self.reason_index[i])
        return None if k < 0 else self.reasons[k]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row: the swept values, ``valid``, the counts (or ``reason``)."""
        out: list[dict[str, Any]] = []
        names = list(self.sweep.columns)
        cols = {k: self.sweep.columns[k].tolist() for k in names}
        counts = {k: v.tolist() for k, v in self.counts.items()}
        for i in range(len(self)):
            row: dict[str, Any] = {k: cols[k][i] for k in names}
            row["valid"] = bool(self.valid[i])
            if self.valid[i]:
                row |= {k: counts[k][i] for k in counts}
            else:
                row["reason"] = self.reasons[int(self.reason_index[i])]
            out.append(row)
        return out


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


def _verdict(
    sweep: Sweep, values: Mapping[str, Any]
) -> tuple[str | None, tuple[str, ...], ResolvedModel | None, Workload | None]:
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


def _unique_rows(
    arrays: list[npt.NDArray[Any]], rows: IntArray
) -> tuple[list[tuple[Any, ...]], IntArray]:
    """Distinct tuples of ``arrays`` over ``rows`` and each row's index into them."""
    if not arrays:
        return [()], np.zeros(len(rows), dtype=np.int64)
    keys: dict[tuple[Any, ...], int] = {}
    inverse = np.empty(len(rows), dtype=np.int64)
    if all(a.dtype == np.int64 for a in arrays):
        # Codes per column (1-D unique is a fast sort), then one mixed-radix key per row:
        # much faster than np.unique(axis=0), which sorts rows as structured records.
        codes, uniques = [], []
        for a in arrays:
            u, c = np.unique(a[rows], return_inverse=True)
            uniques.append(u)
            codes.append(c.reshape(-1))
        dims = [len(u) for u in uniques]
        if math.prod(dims) < 2**62:  # else the mixed-radix key would not fit in int64
            flat = np.ravel_multi_index(codes, dims)
            ukey, inv = np.unique(flat, return_inverse=True)
            parts = np.unravel_index(ukey, dims)
            combos = list(
                zip(*(u[p].tolist() for u, p in zip(uniques, parts, strict=True)), strict=True)
            )
            return combos, inv.reshape(-1).astype(np.int64)
    lists = [a[rows].tolist() for a in arrays]
    for j, key in enumerate(zip(*lists, strict=True)):
        inverse[j] = keys.setdefault(key, len(keys))
    return list(keys), inverse


def evaluate(
    sweep: Sweep,
    *,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> SweepResult:
    """Every row's :data:`COUNTS`, exactly as :func:`evaluate_scalar` gives them, vectorised.

    ``progress(done, total)`` is called as groups complete (rows).
    """
    n = len(sweep)
    rng = random.Random(seed)
    reasons = _Reasons()
    valid = np.ones(n, dtype=bool)
    reason_index = np.full(n, -1, dtype=np.int32)
    counts = {k: np.zeros(n, dtype=np.int64) for k in COUNTS}
    cols = sweep.columns

    # 1. Types and ranges, per distinct value of each column, by the scalar validator.
    for name, col in cols.items():
        uniq, inv = _unique_rows([col], np.arange(n, dtype=np.int64))
        for j, (value,) in enumerate(uniq):
            text, _, _, _ = _verdict_range(sweep, name, value)
            if text is not None:
                bad = inv == j
                fresh = bad & valid
                valid &= ~bad
                reason_index[fresh] = reasons.id(text)

    # 2. Structure groups: rows that share every non-integer column.
    obj_names = [k for k, c in cols.items() if c.dtype != np.int64]
    int_names = [k for k, c in cols.items() if c.dtype == np.int64]
    all_rows = np.flatnonzero(valid).astype(np.int64)
    groups, ginv = _unique_rows([cols[k] for k in obj_names], all_rows)
    scalar_rows = fit_points = 0
    done = n - len(all_rows)
    for g, key in enumerate(groups):
        rows = all_rows[ginv == g]
        fixed = dict(zip(obj_names, key, strict=True))
        _, fit_n, n_scalar = _evaluate_group(
            sweep, rows, fixed, int_names, rng, reasons, valid, reason_index, counts
        )
        fit_points += fit_n
        scalar_rows += n_scalar
        done += len(rows)
        if progress:
            progress(done, n)
    for k in counts:
        counts[k][~valid] = 0
    return SweepResult(
        sweep=sweep,
        valid=valid,
        counts=counts,
        reason_index=reason_index,
        reasons=reasons.texts,
        scalar_rows=scalar_rows,
        groups=len(groups),
        fit_points=fit_points,
    )


def _verdict_range(sweep: Sweep, name: str, value: Any) -> tuple[str | None, Any, Any, Any]:
    try:
        _build(sweep.base, sweep.workload, {name: value})
    except ConfigError as err:
        return _error_text(err), None, None, None
    except PerceiverCalcError as err:
        return _error_text(err), None, None, None
    return None, None, None, None


def _evaluate_group(
    sweep: Sweep,
    rows: IntArray,
    fixed: dict[str, Any],
    int_names: list[str],
    rng: random.Random,
    reasons: _Reasons,
    valid: BoolArray,
    reason_index: npt.NDArray[np.int32],
    counts: dict[str, IntArray],
) -> tuple[bool, int, int]:
    cols = sweep.columns
    varying = [k for k in int_names if len(np.unique(cols[k][rows])) > 1]
    rep = {**fixed, **{k: int(cols[k][rows[0]]) for k in int_names}}

    # --- validity ------------------------------------------------------------------------
    n_combos = math.prod(len(np.unique(cols[k][rows])) for k in varying)
    if n_combos <= EXACT_VALIDITY_LIMIT:
        relevant = varying
    else:
        relevant = _validity_fields(sweep, rows, rep, varying)
    uniq, inv = _unique_rows([cols[k] for k in relevant], rows)
    for j, combo in enumerate(uniq):
        text, _, _, _ = _verdict(sweep, {**rep, **dict(zip(relevant, combo, strict=True))})
        if text is not None:
            bad = rows[inv == j]
            valid[bad] = False
            reason_index[bad] = reasons.id(text)
    rows = rows[valid[rows]]
    if len(rows) == 0:
        return True, 0, 0

    # --- counts: exact polynomial fit, checked on random rows, else the scalar path -------
    fitted = _fit_group(sweep, rows, rep, varying, rng)
    if fitted is None:
        for i in rows.tolist():
            _scalar_row(sweep, i, valid, reason_index, reasons, counts)
        return False, 0, len(rows)
    polys, n_points = fitted
    over = np.zeros(len(rows), dtype=bool)
    x = {k: cols[k][rows] for k in varying}
    for name, poly in polys.items():
        value, bound = _eval_poly(poly, varying, x, len(rows))
        counts[name][rows] = value
        over |= bound >= _INT64_BOUND
    if over.any():
        bad = rows[over]
        valid[bad] = False
        reason_index[bad] = reasons.id(
            "overflow: a count exceeds int64 (2**63 - 1); use smaller dimensions"
        )
    return True, n_points, 0


def _scalar_row(
    sweep: Sweep,
    i: int,
    valid: BoolArray,
    reason_index: npt.NDArray[np.int32],
    reasons: _Reasons,
    counts: dict[str, IntArray],
) -> None:
    text, _, resolved, wl = _verdict(sweep, sweep.row(i))
    if resolved is None or wl is None:
        valid[i] = False
        reason_index[i] = reasons.id(text or "invalid")
        return
    row = scalar_counts(resolved, wl, sweep.device)
    if any(v > 2**63 - 1 for v in row.values()):
        valid[i] = False
        reason_index[i] = reasons.id(
            "overflow: a count exceeds int64 (2**63 - 1); use smaller dimensions"
        )
        return
    for k, v in row.items():
        counts[k][i] = v


def _validity_fields(
    sweep: Sweep, rows: IntArray, rep: dict[str, Any], varying: list[str]
) -> list[str]:
    """The varying fields whose value can change the set of error codes (probed)."""
    _, base_codes, _, _ = _verdict(sweep, rep)
    relevant: list[str] = []
    for name in varying:
        values = np.unique(sweep.columns[name][rows])
        picks = set(values[np.linspace(0, len(values) - 1, 8).astype(int)].tolist())
        x = int(rep[name])
        picks |= {1, 2, 3, x + 1, 2 * x + 1}
        for v in sorted(picks):
            _, codes, _, _ = _verdict(sweep, {**rep, name: v})
            if codes != base_codes:
                relevant.append(name)
                break
    return relevant


Poly = dict[tuple[int, ...], int]


def _nodes(values: npt.NDArray[np.int64]) -> list[int]:
    u = np.unique(values)
    if len(u) <= 3:
        return [int(v) for v in u]
    return [int(u[0]), int(u[len(u) // 2]), int(u[-1])]


def _fit_group(
    sweep: Sweep, rows: IntArray, rep: dict[str, Any], varying: list[str], rng: random.Random
) -> tuple[dict[str, Poly], int] | None:
    nodes = [_nodes(sweep.columns[k][rows]) for k in varying]
    points = math.prod(len(nd) for nd in nodes)
    if points > MAX_FIT_POINTS:
        return None
    shape = tuple(len(nd) for nd in nodes)
    values: dict[str, npt.NDArray[Any]] = {k: np.empty(shape, dtype=object) for k in COUNTS}
    for idx in itertools.product(*(range(s) for s in shape)):
        point = {**rep, **{k: nodes[a][idx[a]] for a, k in enumerate(varying)}}
        try:
            resolved, wl = _unchecked(sweep.base, sweep.workload, sweep.model, point)
            row = scalar_counts(resolved, wl, sweep.device)
        except Exception:  # a node the formulas cannot evaluate: use the scalar path
            return None
        for k in COUNTS:
            values[k][idx] = Fraction(row[k])
    inverses = [_inverse_vandermonde(nd) for nd in nodes]
    polys: dict[str, Poly] = {}
    for k in COUNTS:
        coef = values[k]
        for axis, inv_v in enumerate(inverses):
            coef = np.moveaxis(np.tensordot(inv_v, coef, axes=([1], [axis])), 0, axis)
        poly: Poly = {}
        for idx in itertools.product(*(range(s) for s in shape)):
            c = coef[idx]
            if c.denominator != 1:
                return None
            if c != 0:
                poly[tuple(idx)] = int(c)
        polys[k] = poly
    # Check rows that are not nodes against the scalar path.
    node_sets = [set(nd) for nd in nodes]
    candidates = [
        i
        for i in rows[: min(len(rows), 20000)].tolist()
        if any(int(sweep.columns[k][i]) not in node_sets[a] for a, k in enumerate(varying))
    ]
    for i in rng.sample(candidates, min(CHECK_ROWS, len(candidates))):
        _, _, checked, checked_wl = _verdict(sweep, sweep.row(i))
        if checked is None or checked_wl is None:
            continue
        truth = scalar_counts(checked, checked_wl, sweep.device)
        for k, poly in polys.items():
            got = sum(
                c
                * math.prod(int(sweep.columns[v][i]) ** e for v, e in zip(varying, ex, strict=True))
                for ex, c in poly.items()
            )
            if got != truth[k]:
                return None
    return polys, points


def _inverse_vandermonde(nodes: list[int]) -> npt.NDArray[Any]:
    """V**-1 for V[i][e] = nodes[i]**e, exact (Fractions): coefficients = V**-1 @ values."""
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
    out = np.empty((m, m), dtype=object)
    for i in range(m):
        for j in range(m):
            out[i, j] = a[i][m + j]
    return out


def _eval_poly(
    poly: Poly, varying: list[str], x: dict[str, npt.NDArray[np.int64]], n: int
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Sum of c * prod(x**e) in int64, and sum of |terms| in float64 (the overflow bound)."""
    total = np.zeros(n, dtype=np.int64)
    bound = np.zeros(n, dtype=np.float64)
    powers: dict[tuple[str, int], IntArray] = {}
    fpowers: dict[tuple[str, int], npt.NDArray[np.float64]] = {}
    for ex, c in poly.items():
        term = np.full(n, c, dtype=np.int64) if abs(c) < 2**63 else np.zeros(n, np.int64)
        fterm = np.full(n, abs(float(c)), dtype=np.float64)
        for name, e in zip(varying, ex, strict=True):
            if e == 0:
                continue
            key = (name, e)
            if key not in powers:
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
