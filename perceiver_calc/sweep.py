"""Vectorised evaluation of many configs: validity, parameters, FLOPs and memory over numpy
arrays, exact by construction.

How it stays exactly equal to the scalar path without restating any of its rules
------------------------------------------------------------------------------------
The scalar path (``load_config`` -> :func:`~perceiver_calc.resolve.resolve` ->
:func:`~perceiver_calc.workload.check_workload` -> ``count_params`` / ``count_flops`` /
``count_memory``) is the only place that knows transformers' defaulting and validity rules and
the counting conventions. The sweep runs *that same code* with the swept integer fields as
numpy arrays (one element per config):

1. **Types and ranges** of each swept value come from the scalar validator itself
   (``load_config`` / ``Workload``), once per distinct value of a column (an integer column:
   the two ends of its valid interval, found by bisection).
2. **Structure groups.** Rows that share every non-integer value (model class, strings,
   booleans, ``None`` vs an integer, lists such as ``train_size``) and every :data:`STRUCTURAL`
   condition (``num_blocks > 0``, ...: integers that decide which modules exist) form a
   group. A group is resolved once with its integer fields as arrays
   (``resolve_unchecked(..., rules=Rules("int"))``): module dims become arrays, and each
   validity rule, written once as ``if rules.fails(cond, code)`` (perceiver_calc.rules),
   records ``cond`` as a per-row mask instead of building its message. A row is invalid iff
   some mask is true for it; its text is the scalar path's for that row, computed when read
   (:meth:`SweepResult.reason`).
3. **Counts** are the scalar functions (:func:`scalar_counts`) on the array-valued resolved
   model: the module kinds' formulas use only ``+ - * //`` and ``arith.maximum`` / ``where``
   / ``cdiv``, so floors, conv sizes, the multimodal ``// samples_per_patch // 128`` defaults
   and the inference peak's ``max`` are exact automatically.
4. **int64 overflow, per row, without false positives.** Each group is evaluated twice: in
   int64 (exact unless an intermediate wraps) and in float64 (approximate magnitudes). A row
   whose float64 counts reach 2**62, or disagree with int64 beyond float rounding (a wrap),
   or whose tensor-size rule (``tensor_too_large``, ``activation_bytes_too_large``, decided
   by ``Rules.exceeds`` in float64) is within 1e-6 of torch's limit, is *suspect*: the same
   functions run once more on the suspect rows over object arrays of Python ints (exact at
   any size; every rule decided exactly: ``Rules("exact")``), and only where that pass
   raises (a Python int divides by zero where int64 would not, on a refused row) row by row
   through the scalar path (``SweepResult.scalar_rows`` counts both). Counts beyond int64 are
   kept exactly (that count's column becomes an object array of Python ints).

Speed: a grid is evaluated structure group by structure group, each as a grid of its own
(``_evaluate_grid``), with each axis broadcast along its own dimension, in blocks of whole
values of the group's first axis (:data:`BLOCK_ROWS`), so the many intermediate values that
depend on one swept field cost that field's size; sums add same-shape arrays first
(``arith.total``). Other sweeps (rows given as columns, not axes) are evaluated in blocks of
:data:`CHUNK_ROWS` rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from perceiver_calc.config import ModelClass, PerceiverConfig, load_config
from perceiver_calc.errors import ConfigError, PerceiverCalcError
from perceiver_calc.flops import count_flops
from perceiver_calc.memory import Device, count_memory
from perceiver_calc.params import params_total
from perceiver_calc.resolve import ResolvedModel, model_class_of, resolve, resolve_unchecked
from perceiver_calc.rules import Rules
from perceiver_calc.workload import Workload, check_workload

__all__ = [
    "COUNTS",
    "WORKLOAD_FIELDS",
    "Sweep",
    "SweepResult",
    "check_grid_size",
    "clear_fit_cache",
    "concat",
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
MAX_ROWS = 10_000_000
"""Largest grid :func:`grid` builds: about 200 bytes a row are held while it is evaluated
(columns, codes, counts), so 10^7 rows take about 2 GB. A larger grid is refused up front
(``ValueError``: exit 2 from the CLI) with its size."""
LAZY_CACHE = 1 << 16
"""Lazily computed reason texts kept per result (by row values)."""
SHARED_NAMES: frozenset[str] = frozenset(PerceiverConfig.model_fields) & WORKLOAD_FIELDS
"""Names that are both a config field and a workload field (``image_size``: the learned
classifier's position grid vs the input images; ``num_frames``: the multimodal config's vs the
input video's). Unprefixed, an axis of such a name is the workload's (the ``--image-size``,
``--num-frames`` flags); ``config.NAME`` sweeps the config field, ``workload.NAME`` says the
default explicitly. Any axis name may take either prefix."""


def _is_workload(name: str) -> bool:
    """Whether the axis ``name`` sets a Workload field (else a PerceiverConfig field)."""
    if name.startswith("config."):
        return False
    return name.startswith("workload.") or name in WORKLOAD_FIELDS


def _key(name: str) -> str:
    """The axis name without its ``config.`` / ``workload.`` prefix (the config's JSON key)."""
    return name.split(".", 1)[1] if name.startswith(("config.", "workload.")) else name


def scalar_counts(
    resolved: ResolvedModel, workload: Workload, device: Device = "cuda"
) -> dict[str, int]:
    """The scalar path: the :data:`COUNTS` of one resolved config (the reference)."""
    train = workload.model_copy(update={"mode": "training"})
    flops = count_flops(resolved, train, detail=False)
    mem = count_memory(resolved, train, device=device, detail=False)
    # inference: total_bytes is the inference peak, which does not depend on the mode (the
    # training call computes it too: weights + the no-grad working set of the same inputs)
    total = mem.total_bytes if workload.mode == "training" else mem.inference_peak_bytes
    return {
        "params": params_total(resolved),
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
    axes: dict[str, npt.NDArray[Any]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """``grid``'s axes (name -> values, last fastest): rows are their Cartesian product, so
    :func:`evaluate` can broadcast the axes instead of materialising every row's values."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 1

    def row(self, i: int) -> dict[str, Any]:
        return {k: _py(v[i]) for k, v in self.columns.items()}

    def with_columns(self, columns: dict[str, npt.NDArray[Any]]) -> Sweep:
        """The same base, model, workload and device over other rows (a subset, or blocks
        concatenated); not a grid (no ``axes``)."""
        return Sweep(
            base=self.base,
            model=self.model,
            workload=self.workload,
            columns=columns,
            device=self.device,
        )

    def config_and_workload(self, i: int) -> tuple[PerceiverConfig, Workload]:
        """Row ``i`` validated by the scalar path (raises ConfigError like load_config)."""
        return _build(self.base, self.workload, self.row(i))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _build(
    base: PerceiverConfig, workload: Workload, values: Mapping[str, Any]
) -> tuple[PerceiverConfig, Workload]:
    cfg_vals = {_key(k): v for k, v in values.items() if not _is_workload(k)}
    wl_vals = {_key(k): v for k, v in values.items() if _is_workload(k)}
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
    # transformers' keys: an aliased field by its alias only (load_config reads no other
    # spelling: label_trainable_num_channels would be an unknown key there)
    known = {f.alias or k for k, f in PerceiverConfig.model_fields.items()}
    for name in axes:
        key = _key(name)
        if not (key in WORKLOAD_FIELDS if _is_workload(name) else key in known):
            info = PerceiverConfig.model_fields.get(key)
            if info is not None and info.alias and not _is_workload(name):
                raise ValueError(
                    f"--vary {name}: transformers' name for this field is {info.alias} "
                    "(a config key spelt otherwise is not read)"
                )
            where = {"config.": "PerceiverConfig", "workload.": "workload"}.get(
                name[: len(name) - len(key)], "PerceiverConfig or workload"
            )
            raise ValueError(
                f"--vary {name}: not a {where} field (use transformers' names, e.g. d_latents, "
                "num_latents, batch_size, seq_len; config.image_size for the learned "
                "classifier's config field, image_size for the input images)"
            )
        if _key(name) != name and key in [
            _key(k) for k in axes if k != name and (_is_workload(k) == _is_workload(name))
        ]:
            raise ValueError(f"--vary {name}: that field is already an axis")
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
    sweep.axes.update({name: _column(list(axes[name])) for name in names})
    return sweep


# --------------------------------------------------------------------------------------------
# The output


@dataclass(frozen=True)
class SweepResult:
    """Counts per row (``0`` where the row is invalid), validity and reasons."""

    sweep: Sweep
    valid: BoolArray
    counts: dict[str, npt.NDArray[Any]]
    """Per count, int64 per row; an object column of Python ints where some row's exact
    count is beyond int64 (computed by the scalar path)."""
    reason_index: npt.NDArray[np.int32]
    """Per row: index into ``reasons`` (-1: valid; LAZY (-2): use :meth:`reason`, the scalar
    path's text for that row, computed when read)."""
    reasons: list[str]
    code_index: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    """Per row: index into ``codes`` (-1: valid). Known for every invalid row without the
    scalar path's text: the masks of the failing rules give it (:meth:`reason_code`)."""
    codes: list[str] = field(default_factory=list)
    """Distinct reason codes: the failing rules' codes, sorted and joined by ``,``, as the
    scalar path reports them (``_verdict``: the error findings' codes of the step that
    refused the row: ``load_config``'s field checks, else ``resolve``, else
    ``check_workload``)."""
    reason_format: Literal["text", "codes"] = "text"
    """What ``reason`` holds in :meth:`rows`, :meth:`iter_rows` and :meth:`columns`: the
    scalar path's text (computed when read, about 0.2 ms a row) or the reason code (free)."""
    scalar_rows: int = 0
    """Rows evaluated in Python ints (object arrays, or the scalar path where those raise):
    those whose float64 magnitude comes near int64's range, where an int64 intermediate may
    have wrapped."""
    groups: int = 0
    fit_points: int = 0
    """Always 0 (no polynomial fit any more); kept for callers that print it."""
    _lazy: dict[str, tuple[str, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return len(self.valid)

    def take(self, rows: Sequence[int] | npt.NDArray[np.int64]) -> SweepResult:
        """The rows ``rows`` (in that order) as a result of their own: a subset to keep (a
        Pareto front, the rows of a plot) without the rest of a block."""
        idx = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(
            self,
            sweep=self.sweep.with_columns({k: v[idx] for k, v in self.sweep.columns.items()}),
            valid=self.valid[idx],
            counts={k: v[idx] for k, v in self.counts.items()},
            reason_index=self.reason_index[idx],
            code_index=self.code_index[idx],
            scalar_rows=0,
        )

    def reason_code(self, i: int) -> str | None:
        """Row ``i``'s reason code (None if valid): its failing rules' codes, sorted, joined
        by ``,`` (see :attr:`codes`)."""
        k = int(self.code_index[i])
        if k == LAZY:
            return self._lazy_verdict(i)[1]
        return None if k < 0 else self.codes[k]

    def with_reason_codes(self) -> SweepResult:
        """This result with ``reason`` as the reason code in rows and columns."""
        return dataclasses.replace(self, reason_format="codes")

    def reason(self, i: int) -> str | None:
        """Row ``i``'s error text (None if valid): ``validate``'s, for that row."""
        k = int(self.reason_index[i])
        if k == LAZY:
            return self._lazy_reason(i)
        return None if k < 0 else self.reasons[k]

    def _lazy_reason(self, i: int) -> str:
        """The scalar path's text for an invalid row the vectorised rules flagged (asked only
        when read; cached by the row's values)."""
        return self._lazy_verdict(i)[0]

    def _lazy_verdict(self, i: int) -> tuple[str, str]:
        """Row ``i``'s (text, code) by the scalar path, cached by the row's values."""
        values = self.sweep.row(i)
        # by text: values that compare equal may differ in type (True == 1 == 1.0), and the
        # validator's verdict differs with it
        key = repr(sorted(values.items()))
        got = self._lazy.get(key)
        if got is None:
            text, codes, _, _ = _verdict(self.sweep, values)
            got = (text or "invalid", _code_text(codes))
            if len(self._lazy) < LAZY_CACHE:
                self._lazy[key] = got
        return got

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
        codes = self.reason_format == "codes"
        reason = (self.code_index if codes else self.reason_index)[start:stop].tolist()
        table = self.codes if codes else self.reasons
        read = self._lazy_verdict
        texts = {j: read(start + j)[codes] for j in range(stop - start) if reason[j] == LAZY}
        for j in range(stop - start):
            row: dict[str, Any] = {k: cols[k][j] for k in names}
            row["valid"] = valid[j]
            if valid[j]:
                row |= {k: counts[k][j] for k in counts}
            else:
                row["reason"] = texts[j] if j in texts else table[reason[j]]
            out.append(row)
        return out

    def columns(self) -> dict[str, npt.NDArray[Any]]:
        """The result as numpy columns: the swept fields, ``valid``, every count (0 where
        invalid) and ``reason`` (an object array, None where valid: the text, or the code
        when :attr:`reason_format` says so)."""
        if self.reason_format == "codes":
            table = np.array([*self.codes, None], dtype=object)
            code = table[np.where(self.code_index == LAZY, -1, self.code_index)]
            for i in np.flatnonzero(self.code_index == LAZY).tolist():
                code[i] = self._lazy_verdict(i)[1]
            return {**self.sweep.columns, "valid": self.valid, **self.counts, "reason": code}
        texts = np.empty(len(self.reasons) + 1, dtype=object)
        texts[: len(self.reasons)] = list(self.reasons)
        texts[-1] = None  # reason_index -1 (valid) picks the last entry
        reason = texts[np.where(self.reason_index == LAZY, -1, self.reason_index)]
        for i in np.flatnonzero(self.reason_index == LAZY).tolist():
            reason[i] = self._lazy_reason(i)
        return {
            **self.sweep.columns,
            "valid": self.valid,
            **self.counts,
            "reason": reason,
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


def concat(results: Sequence[SweepResult]) -> SweepResult:
    """Results of one base, model and workload (blocks of a grid, or subsets of them) as one,
    rows in order: reason and code indices renumbered; a count column holds Python ints
    where some part's does."""
    if not results:
        raise ValueError("concat needs at least one result")
    first = results[0]
    names = list(first.sweep.columns)
    columns = {k: np.concatenate([r.sweep.columns[k] for r in results]) for k in names}
    counts: dict[str, npt.NDArray[Any]] = {}
    for k in first.counts:
        parts = [r.counts[k] for r in results]
        if any(p.dtype == object for p in parts):
            parts = [p.astype(object) for p in parts]
        counts[k] = np.concatenate(parts)

    def renumber(
        index: Callable[[SweepResult], npt.NDArray[np.int32]],
        table: Callable[[SweepResult], list[str]],
    ) -> tuple[npt.NDArray[np.int32], list[str]]:
        texts: list[str] = []
        out = []
        for r in results:
            i = index(r)
            out.append(np.where(i >= 0, i + len(texts), i).astype(np.int32))
            texts += table(r)
        return np.concatenate(out), texts

    reason_index, reasons = renumber(lambda r: r.reason_index, lambda r: r.reasons)
    code_index, codes = renumber(lambda r: r.code_index, lambda r: r.codes)
    return SweepResult(
        sweep=first.sweep.with_columns(columns),
        valid=np.concatenate([r.valid for r in results]),
        counts=counts,
        reason_index=reason_index,
        reasons=reasons,
        code_index=code_index,
        codes=codes,
        reason_format=first.reason_format,
        scalar_rows=sum(r.scalar_rows for r in results),
        groups=max(r.groups for r in results),
    )


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


def _error_codes(err: PerceiverCalcError) -> tuple[str, ...]:
    """A refusal's reason codes: its error findings' codes (sorted, once each), or ``input``
    for a workload value Workload refuses (InputError carries no findings)."""
    if isinstance(err, ConfigError):
        return tuple(sorted({f.code for f in err.errors}))
    return ("input",)


def _code_text(codes: Iterable[str]) -> str:
    """Reason codes as one text: sorted, once each, joined by ``,`` (the ``codes`` column)."""
    return ",".join(sorted(set(codes))) or "invalid"


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
    except PerceiverCalcError as err:  # ConfigError included
        return _error_text(err), _error_codes(err), None, None
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

    def __init__(self, sweep: Sweep, progress: Callable[[int, int], None] | None) -> None:
        n = len(sweep)
        self.sweep = sweep
        self.n = n
        self.reasons = _Reasons()
        self.codes = _Reasons()
        self.valid = np.ones(n, dtype=bool)
        self.reason_index = np.full(n, -1, dtype=np.int32)
        self.code_index = np.full(n, -1, dtype=np.int32)
        self.counts = {k: np.zeros(n, dtype=np.int64) for k in COUNTS}
        self.big: dict[str, list[tuple[IntArray, npt.NDArray[Any]]]] = {}
        """Counts beyond int64, exact: per count, blocks of (rows, their Python ints)."""
        self.progress = progress
        self.done = 0
        self.scalar_rows = 0

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.progress and rows:
            self.progress(self.done, self.n)

    def invalidate(
        self,
        rows: IntArray,
        reason_ids: npt.NDArray[np.int32] | int,
        code_ids: npt.NDArray[np.int32] | int,
    ) -> None:
        self.valid[rows] = False
        self.reason_index[rows] = reason_ids
        self.code_index[rows] = code_ids

    def code_id(self, codes: Iterable[str]) -> int:
        """The id of a reason code: the codes sorted and joined (as ``_verdict`` gives them)."""
        return self.codes.id(_code_text(codes))


STRUCTURAL: dict[str, Callable[[Any], Any]] = {
    "num_blocks": lambda v: v > 0,
    "num_self_attends_per_block": lambda v: v > 0,
    "num_labels": lambda v: v == 1,
}
"""Integer fields whose value also decides which modules or storages exist (the encoder's
self-attention block, the regression loss): rows are grouped by these conditions as well
(``arith.decides`` asserts them uniform within a group)."""

BY_VALUE: frozenset[str] = frozenset(
    {"attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"}
)
"""Fields typed float (an int accepted too), never evaluated as arrays: each value is a
structure group of its own. The dropout probability decides whether dropout masks are saved
and counted (``p > 0`` in flops.py and memory.py, a Python ``if``); the other two feed no
count."""


def evaluate(
    sweep: Sweep,
    *,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> SweepResult:
    """Every row's validity and :data:`COUNTS`, exactly as :func:`evaluate_scalar` gives
    them, by the scalar path's own rules and formulas over numpy arrays (module docstring).

    ``progress(done, total)`` is called as rows complete (in blocks of :data:`CHUNK_ROWS`).
    ``seed`` is unused (kept for compatibility: nothing is sampled)."""
    run = _Run(sweep, progress)
    n = run.n
    cols = sweep.columns

    # 1. Types and ranges of each column, by the scalar validator (perceiver_calc.config and
    #    Workload's pydantic types): per distinct value (an integer column: the bounds of its
    #    valid interval, by bisection). A row with one bad column gets that column's text; a
    #    row with several, the scalar path's text for the row (asked when read).
    bad_cols = np.zeros(n, dtype=np.int8)
    first = np.full(n, -1, dtype=np.int32)
    first_code = np.full(n, -1, dtype=np.int32)
    bad_value: dict[str, BoolArray] = {}  # per column, per distinct value
    for name in cols:
        vals, code = _distinct(sweep, name)
        ids, cids = _range_ids(run, name, vals)
        bad_value[name] = ids >= 0
        if (ids >= 0).any():
            row_ids = ids[code]
            hit = row_ids >= 0
            bad_cols += hit
            first = np.where(hit & (first < 0), row_ids, first)
            first_code = np.where(hit & (first_code < 0), cids[code], first_code)
    bad = bad_cols > 0
    if bad.any():
        several = bad_cols[bad] > 1  # the scalar path's text and code, asked when read
        run.invalidate(
            np.flatnonzero(bad),
            np.where(several, LAZY, first[bad]),
            np.where(several, LAZY, first_code[bad]),
        )
    run.advance(int(bad.sum()))

    # 2. Structure groups: rows that share every non-integer column and STRUCTURAL condition.
    with np.errstate(all="ignore"):  # int64 wraps are detected per row (module docstring)
        n_groups = _evaluate_grid(run, bad_value) if _is_grid(sweep) else _evaluate_flat(run)
    for k in run.counts:
        run.counts[k][~run.valid] = 0
    counts: dict[str, npt.NDArray[Any]] = dict(run.counts)
    for k, parts in run.big.items():  # beyond int64: that column holds Python ints
        col = counts[k].astype(object)
        for rows, values in parts:
            col[rows] = values
        counts[k] = col
    return SweepResult(
        sweep=sweep,
        valid=run.valid,
        counts=counts,
        reason_index=run.reason_index,
        reasons=run.reasons.texts,
        code_index=run.code_index,
        codes=run.codes.texts,
        scalar_rows=run.scalar_rows,
        groups=n_groups,
    )


def _is_grid(sweep: Sweep) -> bool:
    """Whether the rows are the full grid of ``sweep.axes`` in C order (``grid`` built them)."""
    axes = sweep.axes
    return (
        bool(axes)
        and list(axes) == list(sweep.columns)
        and math.prod(len(a) for a in axes.values()) == len(sweep)
    )


@dataclass(frozen=True)
class _Keys:
    """Per distinct value of a column (:func:`_group_keys`): its structure-group key and,
    where the value is an integer (or a list of integers) within int64, that integer (or
    the list's items), evaluated as int64 arrays (a tuple of arrays for a list). An
    Optional field's ``None``, a string, a boolean, ... is a group of its own."""

    keys: IntArray
    """0 or 1 for an integer (its :data:`STRUCTURAL` condition, 0 for another field);
    ``2 + j`` for the ``j``-th distinct value otherwise; ``2 + D + L`` for a list of ``L``
    integers (``D`` distinct values)."""
    length: IntArray
    """-1: not integers; 0: an integer; L: a list of L integers."""
    ints: IntArray
    """(distinct values, max(1, longest list)): the integer in column 0, or the list's items."""


def _is_int(v: Any) -> bool:
    return type(v) is int and -(2**63) <= v < 2**63


def _group_keys(sweep: Sweep, name: str) -> _Keys:
    """The :class:`_Keys` of a column (its structure groups and integer values)."""
    vals = _distinct(sweep, name)[0]
    d = len(vals)
    if _field(name) in BY_VALUE:
        length = np.full(d, -1, dtype=np.int64)
        ints = np.zeros((d, 1), dtype=np.int64)
    elif vals.dtype == np.int64:
        length = np.zeros(d, dtype=np.int64)
        ints = vals.reshape(d, 1)
    else:
        listed = vals.tolist()
        length = np.array(
            [
                0
                if _is_int(v)
                else len(v)
                if isinstance(v, (list, tuple)) and len(v) and all(_is_int(x) for x in v)
                else -1
                for v in listed
            ],
            dtype=np.int64,
        ).reshape(d)
        ints = np.zeros((d, max(1, int(length.max(initial=0)))), dtype=np.int64)
        for j, v in enumerate(listed):
            if length[j] == 0:
                ints[j, 0] = v
            elif length[j] > 0:
                ints[j, : length[j]] = v
    cond = STRUCTURAL.get(_field(name))
    side = np.asarray(cond(ints[:, 0]), dtype=np.int64) if cond else np.zeros(d, np.int64)
    keys = np.where(
        length == 0,
        side,
        np.where(length > 0, 2 + d + length, 2 + np.arange(d, dtype=np.int64)),
    )
    return _Keys(keys=keys, length=length, ints=ints)


def _int_arrays(keys: Mapping[str, _Keys], values: Mapping[str, IntArray]) -> dict[str, Any]:
    """The integer values of one structure group's rows, per column whose values there are
    integers (an array) or lists of integers (a tuple of arrays, one per item). ``values``:
    per column, each row's index into its distinct values (of any shape)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        kk = keys[k]
        if not v.size:
            continue
        length = int(kk.length[v.flat[0]])  # one group's values are all of one kind
        if length == 0:
            out[k] = kk.ints[v, 0]
        elif length > 0:
            out[k] = tuple(kk.ints[v, c] for c in range(length))
    return out


def _evaluate_flat(run: _Run) -> int:
    """Rows that are not a grid: grouped by their structure-group keys (:func:`_group_keys`),
    each group in blocks of :data:`CHUNK_ROWS` rows. Returns the group count."""
    sweep = run.sweep
    keys = {k: _group_keys(sweep, k) for k in sweep.columns}
    all_rows = np.flatnonzero(run.valid).astype(np.int64)
    codes, dims = [], []
    for k, kk in keys.items():
        key = kk.keys
        if key.max(initial=0) > 0:  # else every value of the column is in one group
            codes.append(key[_distinct(sweep, k)[1][all_rows]])
            dims.append(int(key.max()) + 1)
    gid, _ = _combos(codes, dims, len(all_rows))
    order = np.argsort(gid, kind="stable")
    n_groups = int(gid.max()) + 1 if len(all_rows) else 0
    bounds = np.searchsorted(gid[order], np.arange(n_groups + 1))
    for g in range(n_groups):
        rows = np.sort(all_rows[order[bounds[g] : bounds[g + 1]]])
        for lo in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[lo : lo + CHUNK_ROWS]
            values = {k: _distinct(sweep, k)[1][chunk] for k in keys}
            _evaluate_rows(run, chunk, _int_arrays(keys, values), (len(chunk),))
            run.advance(len(chunk))
    return n_groups


def _evaluate_grid(run: _Run, bad_value: Mapping[str, BoolArray]) -> int:
    """A grid's rows, each structure group as a grid of its own: the group's rows are the
    product of, per axis, the indices of its values that pass step 1 and have one group key
    (:func:`_group_keys`: one side of a STRUCTURAL condition, every integer of another
    field, each other value alone). Each integer axis is then broadcast along its own
    dimension (most intermediate values cost one axis' size), in blocks of whole values of
    the group's first axis with more than one value (about :data:`BLOCK_ROWS` rows a block).
    Returns the group count (as :func:`_evaluate_flat` counts them). ``bad_value``: per axis,
    per distinct value, whether step 1 refuses it (a row is refused there iff one of its
    values is, so the rows step 1 accepts are the product of each axis' accepted values)."""
    sweep = run.sweep
    names = list(sweep.axes)
    sizes = [len(sweep.axes[k]) for k in names]
    strides = [math.prod(sizes[a + 1 :]) for a in range(len(names))]
    keys = {k: _group_keys(sweep, k) for k in names}
    classes: list[list[IntArray]] = []
    value: list[IntArray] = []  # per axis: each value's index into the distinct values
    for a, k in enumerate(names):
        at = np.arange(sizes[a], dtype=np.int64) * strides[a]  # a row of each value
        value.append(_distinct(sweep, k)[1][at])
        ok = np.flatnonzero(~bad_value[k][value[a]]).astype(np.int64)
        key = keys[k].keys[value[a][ok]]
        classes.append([ok[key == v] for v in np.unique(key).tolist()])
    accepted = int(run.valid.sum())  # by step 1
    n_groups = covered = 0
    for subsets in itertools.product(*classes):
        n_groups += 1
        lens = [len(s) for s in subsets]
        b = next((a for a, m in enumerate(lens) if m > 1), 0)
        per = math.prod(lens[b + 1 :])
        step = max(1, BLOCK_ROWS // max(per, 1))
        for i0 in range(0, lens[b], step):
            part = [s[i0 : i0 + step] if a == b else s for a, s in enumerate(subsets)]
            shape = tuple(len(s) for s in part)
            dims = len(names)
            idx = [
                s.reshape([len(s) if c == a else 1 for c in range(dims)])
                for a, s in enumerate(part)
            ]
            rows = np.zeros(shape, dtype=np.int64)
            for a in range(dims):
                rows += idx[a] * strides[a]
            values = {k: value[a][idx[a]] for a, k in enumerate(names)}
            _evaluate_rows(run, rows.reshape(-1), _int_arrays(keys, values), shape)
            run.advance(rows.size)
            covered += rows.size
    # the groups partition the accepted rows (each row lies in exactly one product)
    assert covered == accepted, (covered, accepted)
    return n_groups


LAZY = -2
"""``reason_index`` of an invalid row whose text the scalar path gives when it is read."""


def _field(name: str) -> str:
    """The attribute an axis sets (its key, less the alias' leading underscore)."""
    key = _key(name)
    return "label_trainable_num_channels" if key == "_label_trainable_num_channels" else key


def _range_ids(
    run: _Run, name: str, vals: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Per distinct value of a column: its error text's id in ``run.reasons`` and its reason
    code's in ``run.codes``, or -1 (a valid value)."""
    sweep = run.sweep
    ids = np.full(len(vals), -1, dtype=np.int32)
    cids = np.full(len(vals), -1, dtype=np.int32)

    def check(j: int) -> bool:
        got = _range_error(sweep, name, _py(vals[j]))
        if got is not None:
            ids[j] = run.reasons.id(got[0])
            cids[j] = run.code_id(got[1])
        return got is None

    if vals.dtype != np.int64:
        for j in range(len(vals)):
            check(j)
        return ids, cids
    # The valid integers of every field form an interval (pydantic ge/le bounds): find its
    # ends by bisection over the sorted values, then check each value outside it.
    order = np.argsort(vals, kind="stable").tolist()
    top = len(order) - 1
    ok_lo, ok_hi = check(order[0]), check(order[top])
    if ok_lo and ok_hi:
        return ids, cids
    samples = sorted(set(np.linspace(0, top, 65).astype(int).tolist()))
    valid_at = [j for j in samples if check(order[j])]
    if not valid_at:
        for j in order:
            check(j)
        return ids, cids
    first_ok, last_ok = 0, top
    if not ok_lo:  # order[a] invalid, order[b] valid
        a, b = 0, valid_at[0]
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (a, mid) if check(order[mid]) else (mid, b)
        first_ok = b
    if not ok_hi:  # order[c] valid, order[d] invalid
        c, d = valid_at[-1], top
        while d - c > 1:
            mid = (c + d) // 2
            c, d = (mid, d) if check(order[mid]) else (c, mid)
        last_ok = c
    for j in (*order[:first_ok], *order[last_ok + 1 :]):
        check(j)
    return ids, cids


def _range_error(sweep: Sweep, name: str, value: Any) -> tuple[str, tuple[str, ...]] | None:
    """The scalar path's (text, codes) for the base with ``name`` set to ``value`` alone."""
    try:
        _build(sweep.base, sweep.workload, {name: value})
    except PerceiverCalcError as err:  # ConfigError included
        return _error_text(err), _error_codes(err)
    return None


class _Values:
    """A config or workload with some integer fields replaced by per-row arrays: what the
    scalar path's functions read (attributes; ``model_fields_set``; ``model_copy``)."""

    def __init__(self, base: Any, arrays: Mapping[str, Any]) -> None:
        self._base = base
        self._arrays = dict(arrays)

    def __getattr__(self, name: str) -> Any:
        arrays = self.__dict__["_arrays"]
        if name in arrays:
            return arrays[name]
        return getattr(self.__dict__["_base"], name)

    @property
    def model_fields_set(self) -> set[str]:
        return set(self._base.model_fields_set) | set(self._arrays)

    def model_copy(self, *, update: Mapping[str, Any]) -> _Values:
        fixed = {k: v for k, v in update.items() if k not in self._arrays}
        arrays = {k: v for k, v in update.items() if k in self._arrays}
        return _Values(self._base.model_copy(update=fixed), self._arrays | arrays)


def _batched(
    sweep: Sweep,
    config: PerceiverConfig,
    workload: Workload,
    arrays: Mapping[str, Any],
    pass_: Literal["int", "float", "exact"],
) -> tuple[Rules, int, list[str], dict[str, Any]]:
    """The scalar path on arrays: (rules with the per-row masks, how many of those masks are
    resolve's (the rest are check_workload's), the codes of errors that hold for every row,
    the :data:`COUNTS`, each an array or an int)."""
    dtype = {"int": np.int64, "float": np.float64, "exact": object}[pass_]

    def cast_(v: Any) -> Any:  # an array, or a tuple of arrays (a list's items)
        return tuple(x.astype(dtype) for x in v) if isinstance(v, tuple) else v.astype(dtype)

    cfg_arr = {_field(k): cast_(v) for k, v in arrays.items() if not _is_workload(k)}
    wl_arr: dict[str, Any] = {_field(k): cast_(v) for k, v in arrays.items() if _is_workload(k)}
    if "image_size" in wl_arr and not isinstance(wl_arr["image_size"], tuple):
        wl_arr["image_size"] = (wl_arr["image_size"], wl_arr["image_size"])  # square inputs
    cfg = cast(PerceiverConfig, _Values(config, cfg_arr))
    wl = cast(Workload, _Values(workload, wl_arr))
    rules = Rules(pass_)
    resolved = resolve_unchecked(cfg, sweep.model, rules=rules)
    errors = [f.code for f in resolved.findings if f.severity == "error"]
    # the scalar path stops at resolve's errors: check_workload's rules count only for the
    # rows resolve accepts (the row's code is one step's, as _verdict reports it)
    split = len(rules.masks)
    if errors:  # every row is refused by resolve: the scalar path goes no further (nor can:
        return rules, split, errors, {}  # an empty train_size has no height to read)
    check_workload(resolved, wl, rules)
    return rules, split, errors, scalar_counts(resolved, wl, sweep.device)


_BIG = float(2**62)
"""Counts whose float64 value reaches this go to the scalar path: int64 (2**63) is then near
enough that an intermediate may have wrapped."""


def _evaluate_rows(
    run: _Run, rows: IntArray, arrays: Mapping[str, Any], shape: tuple[int, ...]
) -> None:
    """Rows of one structure group: validity and counts by the scalar path's functions on
    arrays, twice (int64: exact unless a value wraps; float64: magnitudes), rows the two
    cannot settle once more over Python ints (:func:`_exact_rows`). ``arrays``: the integer
    columns, each of ``shape`` or broadcastable to it; ``shape`` flattened (C order) is
    ``rows``; a list-valued column is a tuple of such arrays (its items)."""
    sweep = run.sweep
    n = len(rows)
    try:
        config, workload = _build(sweep.base, sweep.workload, sweep.row(int(rows[0])))
    except PerceiverCalcError:  # a rule across fields of this group (rare): row by row
        for i in rows.tolist():
            _scalar_row(run, i)
        return
    try:
        exact, e_split, errors, counts = _batched(sweep, config, workload, arrays, "int")
        approx, a_split, _, fcounts = _batched(sweep, config, workload, arrays, "float")
    except OverflowError:  # a fixed Python int beyond int64 met an int64 array
        _exact_rows(run, rows, arrays, shape, config, workload)
        return
    code_ids = _row_codes(run, [(exact, e_split), (approx, a_split)], shape, errors)
    if errors:  # an error that holds whatever the values (a bad string): every row
        run.invalidate(rows, LAZY, code_ids)
        return
    bad = code_ids >= 0
    suspect = (np.zeros(shape, dtype=bool) | approx.suspect).reshape(n)
    out: dict[str, IntArray] = {}
    for k in COUNTS:
        v = np.broadcast_to(np.asarray(counts[k], dtype=np.int64), shape).reshape(n)
        f = np.broadcast_to(np.asarray(fcounts[k], dtype=np.float64), shape).reshape(n)
        if f.max(initial=0.0) >= _BIG:
            suspect |= f >= _BIG
        # float64 agrees with the exact value to ~1e-12 relative; a wrapped int64 does not
        err = np.abs(v - f)
        err -= 1e-6 * f
        suspect |= err > 1e-6
        out[k] = v
    suspect &= ~bad
    if bad.any():
        run.invalidate(rows[bad], LAZY, code_ids[bad])
    ok = ~bad & ~suspect
    for k in COUNTS:
        run.counts[k][rows[ok]] = out[k][ok]
    if suspect.all():  # the whole block: its axes stay broadcast
        _exact_rows(run, rows, arrays, shape, config, workload)
    elif suspect.any():
        picked = _flat(arrays, shape, suspect)
        _exact_rows(run, rows[suspect], picked, (int(suspect.sum()),), config, workload)


def _flat(arrays: Mapping[str, Any], shape: tuple[int, ...], pick: BoolArray) -> dict[str, Any]:
    """``arrays`` (each broadcastable to ``shape``; a tuple of such for a list) as one value
    per row of flattened ``shape``, at the rows ``pick``."""

    def one(a: Any) -> Any:
        return np.broadcast_to(a, shape).reshape(-1)[pick]

    return {k: tuple(map(one, v)) if isinstance(v, tuple) else one(v) for k, v in arrays.items()}


def _row_codes(
    run: _Run, passes: Sequence[tuple[Rules, int]], shape: tuple[int, ...], errors: Sequence[str]
) -> npt.NDArray[np.int32]:
    """Per row: the id of the failing rules' codes, resolve's (and ``errors``, those that
    hold for every row) first, else check_workload's, as the scalar path reports them; -1
    where none fails."""
    resolve_masks = _step_masks(passes, "resolve", bool(errors))
    workload_masks = _step_masks(passes, "workload", False)
    code_ids = _mask_codes(run, resolve_masks, shape, errors)
    return np.where(code_ids >= 0, code_ids, _mask_codes(run, workload_masks, shape, []))


def _exact_rows(
    run: _Run,
    rows: IntArray,
    arrays: Mapping[str, Any],
    shape: tuple[int, ...],
    config: PerceiverConfig,
    workload: Workload,
) -> None:
    """Rows whose int64 evaluation may have wrapped (or met a fixed value beyond int64): the
    same functions once more, over object arrays of Python ints (exact at any size;
    ``arrays`` broadcastable to ``shape``, which flattened is ``rows``). Counts beyond int64
    are kept exactly. Where that pass
    cannot run (a Python int raises where int64 would wrap or divide by zero, on a row some
    rule refuses), the rows go one by one through the scalar path."""
    run.scalar_rows += len(rows)
    m = len(rows)
    try:
        rules, split, errors, counts = _batched(run.sweep, config, workload, arrays, "exact")
    except (ArithmeticError, TypeError, ValueError):
        run.scalar_rows -= m
        for i in rows.tolist():
            _scalar_row(run, i)
        return
    code_ids = _row_codes(run, [(rules, split)], shape, errors)
    if errors:  # an error that holds whatever the values: every row
        run.invalidate(rows, LAZY, code_ids)
        return
    bad = code_ids >= 0
    if bad.any():
        run.invalidate(rows[bad], LAZY, code_ids[bad])
    for k in COUNTS:
        values = np.broadcast_to(np.asarray(counts[k], dtype=object), shape).reshape(m)
        fits = ~bad & (values >= -(2**63)) & (values < 2**63)
        run.counts[k][rows[fits]] = values[fits].astype(np.int64)
        beyond = ~bad & ~fits  # kept exactly (Python ints)
        if beyond.any():
            run.big.setdefault(k, []).append((rows[beyond], values[beyond]))


def _step_masks(
    passes: Sequence[tuple[Rules, int]], step: str, failed: bool
) -> list[tuple[str, Any]]:
    """One step's masks (``resolve``'s or ``check_workload``'s, of every pass: (rules, how
    many of its masks are resolve's)) as the scalar path would report them: a rule asked
    under :meth:`Rules.gated` only where no rule of the step asked before the gate fails
    (nowhere when ``failed``: an error of every row came first)."""
    entries = []
    for rules, split in passes:
        pick = slice(None, split) if step == "resolve" else slice(split, None)
        entries += [(*m, *o) for m, o in zip(rules.masks[pick], rules.order[pick], strict=True)]
    out: list[tuple[str, Any]] = []
    for code, mask, _call, gate in entries:
        if gate is not None:
            if failed:
                continue
            earlier = [m for _c, m, call, g in entries if g is None and call <= gate]
            for m in earlier:
                mask = mask & ~np.asarray(m, dtype=bool)
        out.append((code, mask))
    return out


def _mask_codes(
    run: _Run, masks: Sequence[tuple[str, Any]], shape: tuple[int, ...], always: Sequence[str]
) -> npt.NDArray[np.int32]:
    """Per row (flattened ``shape``): the id in ``run.codes`` of the codes of the masks true
    for it, with ``always`` (codes failing for every row), or -1 where none is."""
    n = math.prod(shape)
    names = sorted({code for code, _ in masks} - set(always))
    if not names:
        return np.full(n, run.code_id(always) if always else -1, dtype=np.int32)
    # one bit per code (a group's resolve and workload rules have far fewer than 63 codes)
    assert len(names) < 63, names
    bits = np.zeros(shape, dtype=np.int64)
    for code, mask in masks:
        if code in names:
            bits |= np.where(mask, np.int64(1) << names.index(code), np.int64(0))
    distinct, inverse = np.unique(bits.reshape(n), return_inverse=True)
    table = np.array(
        [
            run.code_id([*always, *(c for b, c in enumerate(names) if int(v) >> b & 1)])
            if v or always
            else -1
            for v in distinct.tolist()
        ],
        dtype=np.int32,
    )
    return table[inverse.reshape(n)]


def _scalar_row(run: _Run, i: int) -> None:
    """One row by the scalar path, exactly (Python ints: counts beyond int64 are kept)."""
    run.scalar_rows += 1
    text, codes, resolved, wl = _verdict(run.sweep, run.sweep.row(i))
    if resolved is None or wl is None:
        run.invalidate(np.array([i]), run.reasons.id(text or "invalid"), run.code_id(codes))
        return
    for k, v in scalar_counts(resolved, wl, run.sweep.device).items():
        if -(2**63) <= v < 2**63:
            run.counts[k][i] = v
        else:
            run.big.setdefault(k, []).append((np.array([i]), np.array([v], dtype=object)))


CHUNK_ROWS = 1 << 14
"""Rows evaluated per step (and per progress update) when the rows are not a whole grid.
Small enough that a step's arrays stay in cache: 2^14 ran 1.5x faster than 2^16 on 5*10^5
random configs (2026-12-03, one core; 2^12 and 2^13 no faster)."""
BLOCK_ROWS = 1 << 16
"""About this many rows of a grid per step (whole values of its first axis; per progress
update): the other axes stay broadcast, so most arrays are much smaller. 2^16 ran 1.3x
faster than 2^18 on 10^6-row grids of 2 and 3 axes (2026-12-03, one core; 2^15 no faster)."""


def clear_fit_cache() -> None:
    """Nothing to clear: the sweep no longer fits polynomials (kept for existing callers)."""


def evaluate_scalar(sweep: Sweep, rows: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """The reference: each row through ``load_config`` -> ``resolve`` -> counts, one by one.
    Returns ``{"valid": bool, "reason": str | None, "reason_code": str | None, **counts}``
    per row (``reason_code``: the codes of the error findings that refused it, sorted, joined
    by ``,``)."""
    out: list[dict[str, Any]] = []
    for i in range(len(sweep)) if rows is None else rows:
        text, codes, resolved, wl = _verdict(sweep, sweep.row(i))
        if resolved is None or wl is None:
            code = _code_text(codes)
            out.append({"valid": False, "reason": text, "reason_code": code})
            continue
        counts = scalar_counts(resolved, wl, sweep.device)
        out.append({"valid": True, "reason": None, "reason_code": None, **counts})
    return out
