"""Streamed sweep output (perceiver_calc/sweep_io.py, issue 11): blocks, writers, list axes,
fit on arrays, atomic files, the parquet extra, bounded memory."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import perceiver_calc as pc
import perceiver_calc.sweep_io as sweep_io
from perceiver_calc.cli import app
from perceiver_calc.plan import fit, pareto_front
from perceiver_calc.sweep import COUNTS, evaluate, evaluate_scalar, grid, parse_values
from perceiver_calc.sweep_io import (
    block_axes,
    column_kinds,
    evaluate_blocks,
    write_csv,
    write_json,
    write_parquet,
)
from perceiver_calc.workload import Workload

TINY = "examples/tiny.json"
TRAIN = Workload(mode="training")
LEARNED = "PerceiverForImageClassificationLearned"
LEARNED_CFG = {"image_size": 32, "d_latents": 64, "num_latents": 16}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


# --- blocks ---------------------------------------------------------------------------------


@given(
    sizes=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    block_rows=st.integers(1, 40),
)
def test_blocks_concatenate_to_the_grid_in_order(sizes: list[int], block_rows: int) -> None:
    axes = {f"a{k}": [f"{k}.{v}" for v in range(s)] for k, s in enumerate(sizes)}
    whole = list(itertools.product(*axes.values()))
    got: list[tuple[str, ...]] = []
    for sub in block_axes(axes, block_rows):
        assert list(sub) == list(axes)
        part = list(itertools.product(*sub.values()))
        # at most block_rows rows, or one value of the innermost axes only
        innermost = len(axes[list(axes)[-1]]) if axes else 1
        assert len(part) <= max(block_rows, innermost)
        got += part
    assert got == whole


def test_evaluate_blocks_equals_evaluate() -> None:
    cfg = pc.load_config(TINY)
    axes = {"num_latents": [1, 2, 5], "d_latents": [4, 6, 8, 12], "qk_channels": [None, 8]}
    whole = evaluate(grid(cfg, axes))
    seen: list[tuple[int, int]] = []
    parts = list(
        evaluate_blocks(cfg, axes, block_rows=5, progress=lambda d, n: seen.append((d, n)))
    )
    assert len(parts) > 2 and sum(len(p) for p in parts) == len(whole)
    cols = whole.columns()
    got = {k: np.concatenate([p.columns()[k] for p in parts]) for k in cols}
    for k in cols:
        assert got[k].tolist() == cols[k].tolist(), k
    assert seen[-1] == (len(whole), len(whole))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_evaluate_blocks_checks_size_and_names_before_any_block(monkeypatch: Any) -> None:
    import perceiver_calc.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "MAX_ROWS", 100)
    with pytest.raises(ValueError, match=r"101 rows .*limit is 100"):
        evaluate_blocks({}, {"num_latents": list(range(101))})
    with pytest.raises(ValueError, match="not a PerceiverConfig or workload field"):
        evaluate_blocks({}, {"num_latent": [1]})


# --- writers: every format gives columns() back -------------------------------------------


def _result(axes: dict[str, list[Any]], model: str | None = None, cfg: Any = TINY) -> Any:
    base = pc.load_config(cfg)
    return evaluate(grid(base, axes, model=model, workload=TRAIN))


def _expected(res: Any) -> list[dict[str, Any]]:
    """columns() as rows: list values as lists, counts None where invalid."""
    cols = res.columns()
    names = list(res.sweep.columns)
    out = []
    for i in range(len(res)):
        ok = bool(cols["valid"][i])
        row: dict[str, Any] = {}
        for k in names:
            v = cols[k][i]
            v = v.item() if isinstance(v, np.generic) else v
            row[k] = list(v) if isinstance(v, tuple) else v
        row["valid"] = ok
        row |= {k: int(cols[k][i]) if ok else None for k in COUNTS}
        row["reason"] = cols["reason"][i]
        out.append(row)
    return out


def _check_all_formats(res: Any, tmp_path: Path, rows: Any = None) -> None:
    names = list(res.sweep.columns)
    want = _expected(res)
    if rows is not None:
        want = [want[i] for i in rows]
    blocks = [(res, rows)]
    # CSV: cells as text; list values as AxB, None as empty
    buf = io.StringIO()
    assert write_csv(blocks, names, buf) == len(want)
    got = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(got) == len(want)

    def cell(v: Any) -> str:
        if v is None:
            return ""
        return "x".join(map(str, v)) if isinstance(v, list) else str(v)

    for g, w in zip(got, want, strict=True):
        assert g == {k: cell(v) for k, v in w.items()}
    # JSON array and JSON lines: the row dicts (counts or reason)
    for lines in (False, True):
        buf = io.StringIO()
        assert write_json(blocks, names, buf, lines=lines) == len(want)
        text = buf.getvalue()
        data = [json.loads(x) for x in text.splitlines()] if lines else json.loads(text)
        assert data == [
            {k: v for k, v in w.items() if v is not None or k in names}
            | ({} if w["valid"] else {"reason": w["reason"]})
            for w in want
        ]
        if not lines:
            assert text.startswith("[") and text.endswith("]\n")
    # Parquet: typed columns, counts null where invalid
    import pyarrow.parquet as pq

    path = tmp_path / "out.parquet"
    kinds = column_kinds({k: res.sweep.columns[k].tolist() for k in names})
    assert write_parquet(blocks, kinds, path) == len(want)
    assert pq.read_table(path).to_pylist() == want


@settings(max_examples=8)
@given(
    nl=st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True),
    dl=st.lists(st.sampled_from([4, 6, 8, 12, 16]), min_size=1, max_size=3, unique=True),
    qk=st.lists(st.sampled_from([None, 4, 8, 6]), min_size=1, max_size=2, unique=True),
)
def test_writers_give_back_columns(nl: list[int], dl: list[int], qk: list[Any]) -> None:
    import tempfile

    res = _result({"num_latents": nl, "d_latents": dl, "qk_channels": qk})
    with tempfile.TemporaryDirectory() as tmp:
        _check_all_formats(res, Path(tmp))


def test_writers_with_list_axis_and_a_row_subset(tmp_path: Path) -> None:
    res = _result(
        {"image_size": parse_values("16x64,32x32,48x48"), "num_latents": [4, 8]},
        model=LEARNED,
        cfg=LEARNED_CFG,
    )
    assert res.valid.tolist() == [True, True, True, True, False, False]
    _check_all_formats(res, tmp_path)
    _check_all_formats(res, tmp_path, rows=np.array([5, 0, 3], dtype=np.int64))


def test_json_on_stdout_is_one_array_and_csv_cells_match_row() -> None:
    result = invoke("sweep", TINY, "--vary", "num_latents=1:3", "--vary", "d_latents=4,6")
    assert result.exit_code == 0
    out = invoke(
        "sweep", TINY, "--vary", "num_latents=1:3", "--vary", "d_latents=4,6", "-f", "json"
    )
    res = _result({"num_latents": [1, 2, 3], "d_latents": [4, 6]})
    assert json.loads(out.stdout) == res.rows()


# --- files: atomic, formats by suffix, parquet needs a path and pyarrow -----------------


def test_output_file_by_suffix_and_summary_on_stderr(tmp_path: Path) -> None:
    for suffix in (".csv", ".json", ".jsonl", ".parquet"):
        path = tmp_path / f"out{suffix}"
        result = invoke("sweep", TINY, "--vary", "num_latents=1:4", "-o", str(path))
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert f"wrote 4 rows (4 valid) to {path}" in result.stderr
        assert path.stat().st_size > 0
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_parquet_needs_an_output_path() -> None:
    result = invoke("sweep", TINY, "--vary", "num_latents=1:4", "-f", "parquet")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --format parquet writes a binary file: give --output PATH (e.g. -o sweep.parquet)"
    )
    assert result.stdout == ""


def test_parquet_without_pyarrow_exits_2_with_the_install_command(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # find_spec -> None, import fails
    out = tmp_path / "s.parquet"
    result = invoke("sweep", TINY, "--vary", "num_latents=1:4", "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --format parquet needs pyarrow, which is not installed; from the repository "
        "run pip install -c constraints.txt -e '.[parquet]'"
    )
    assert not out.exists()


def test_output_refusals(tmp_path: Path) -> None:
    r = invoke("sweep", TINY, "--vary", "num_latents=1:2", "-o", str(tmp_path / "x.txt"))
    assert r.exit_code == 2 and "unknown file type '.txt'" in r.stderr
    r = invoke(
        "sweep", TINY, "--vary", "num_latents=1:2", "-f", "table", "-o", str(tmp_path / "x.csv")
    )
    assert r.exit_code == 2 and "the table format is for the terminal" in r.stderr
    r = invoke(
        "sweep", TINY, "--vary", "num_latents=1:2", "-f", "csv", "-o", str(tmp_path / "x.json")
    )
    assert r.exit_code == 2 and "unknown file type '.json'" in r.stderr
    r = invoke("sweep", TINY, "--vary", "num_latents=1:2", "-o", str(tmp_path / "no" / "x.csv"))
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_a_failed_write_leaves_the_existing_file_intact(tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "sweep.csv"
    out.write_text("precious\n")
    real = sweep_io.evaluate
    calls = [0]

    def flaky(sw: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:  # the second block: rows of the first are already in the temp file
            raise OSError(28, "No space left on device")
        return real(sw, **kw)

    monkeypatch.setattr(sweep_io, "evaluate", flaky)
    monkeypatch.setattr(sweep_io, "BLOCK_ROWS", 3)
    for target in (out, tmp_path / "sweep.parquet"):
        calls[0] = 0
        result = invoke("sweep", TINY, "--vary", "num_latents=1:10", "-o", str(target))
        assert result.exit_code == 2
        assert "No space left on device" in result.stderr
        assert "the existing file (if any) is unchanged" in result.stderr
    assert out.read_text() == "precious\n"
    assert not (tmp_path / "sweep.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv"]  # no temp file left


# --- list axes ---------------------------------------------------------------------------


def test_parse_values_list_forms() -> None:
    assert parse_values("224x224,384X384") == [(224, 224), (384, 384)]
    assert parse_values("1x16x224x224") == [(1, 16, 224, 224)]
    assert parse_values("[[224, 224], [384, 384]]") == [(224, 224), (384, 384)]
    assert parse_values('[64, null, "kv"]') == [64, None, "kv"]
    with pytest.raises(ValueError, match="not a JSON array"):
        parse_values("[1, 2")
    r = invoke("sweep", TINY, "--vary", "num_latents=[1,")
    assert r.exit_code == 2 and "--vary 'num_latents=[1,': '[1,' is not a JSON array" in r.stderr


def test_image_size_list_axis_on_the_learned_classifier_has_validate_s_reason() -> None:
    from perceiver_calc.workload import check_workload

    res = _result({"image_size": parse_values("16x64,32x32,48x48,0x0")}, LEARNED, LEARNED_CFG)
    assert res.valid.tolist() == [True, True, False, False]
    resolved = pc.resolve(pc.load_config(LEARNED_CFG), LEARNED)
    errors = [
        f
        for f in check_workload(resolved, Workload(image_size=(48, 48), mode="training"))
        if f.severity == "error"
    ]
    assert res.reason(2) == "; ".join(str(f) for f in errors)
    assert res.reason(3) == (
        "invalid workload: image_size.0 (0): Input should be greater than or equal to 1; "
        "image_size.1 (0): Input should be greater than or equal to 1"
    )
    for i in range(4):
        assert "validation error" not in (res.reason(i) or "")
    # and from the CLI, with the AxB form
    r = invoke(
        "sweep",
        "examples/vision-perceiver-learned.json",
        "--vary",
        "image_size=224x224,200x200",
        "-f",
        "jsonl",
    )
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["valid"] for x in rows] == [True, False]
    assert "must equal image_size²" in rows[1]["reason"]


@pytest.mark.parametrize(
    ("path", "field", "spec"),
    [
        ("examples/optical-flow-perceiver.json", "train_size", "368x496,184x248"),
        ("examples/multimodal-perceiver.json", "output_shape", "1x16x224x224,1x8x224x224"),
    ],
)
def test_list_valued_config_fields_are_axes(path: str, field: str, spec: str) -> None:
    sw = grid(pc.load_config(path), {field: parse_values(spec)}, workload=TRAIN)
    res = evaluate(sw)
    scalar = evaluate_scalar(sw)
    assert all(r["valid"] for r in scalar)
    for i, r in enumerate(scalar):
        assert {k: int(res.counts[k][i]) for k in COUNTS} == {k: r[k] for k in COUNTS}
    # the two values give two different models (the axis is not ignored)
    assert res.counts["forward_flops"][0] != res.counts["forward_flops"][1]


# --- fit and the Pareto front on arrays ---------------------------------------------------


def _fit_rowwise(res: Any, max_flops: int) -> tuple[list[int], list[int]]:
    """The old path: one row dict per row, dominance checked pairwise."""
    rows = res.rows()
    within = [i for i, r in enumerate(rows) if r["valid"] and r["training_flops"] <= max_flops]
    front = []
    for i in within:
        a = rows[i]
        dominated = any(
            rows[j]["params"] >= a["params"]
            and rows[j]["training_flops"] <= a["training_flops"]
            and (
                rows[j]["params"] > a["params"]
                or rows[j]["training_flops"] < a["training_flops"]
                or j < i  # ties keep the first
            )
            for j in within
            if j != i
        )
        if not dominated:
            front.append(i)
    front.sort(key=lambda i: (rows[i]["training_flops"], -rows[i]["params"], i))
    return within, front


def test_fit_on_arrays_equals_the_rowwise_result() -> None:
    res = _result(
        {
            "num_latents": [1, 2, 4, 8],
            "d_latents": [4, 6, 8, 16, 32],
            "num_self_attends_per_block": [1, 2, 3],
            "batch_size": [1, 2],
        }
    )
    budget = int(np.median(res.counts["training_flops"][res.valid]))
    found = fit(res, max_flops=budget)
    within, front = _fit_rowwise(res, budget)
    assert found.within == within
    assert found.pareto == front
    assert 1 < len(found.pareto) < len(found.within)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=40))
def test_pareto_front_matches_pairwise_dominance(points: list[tuple[int, int]]) -> None:
    mx = np.array([p[0] for p in points], dtype=np.int64)
    mn = np.array([p[1] for p in points], dtype=np.int64)
    got = pareto_front(mx, mn)
    want = []
    for i, (a, b) in enumerate(points):
        if not any(
            (c >= a and d <= b and ((c, d) != (a, b) or j < i))
            for j, (c, d) in enumerate(points)
            if j != i
        ):
            want.append(i)
    assert sorted(got) == want
    assert [mn[i] for i in got] == sorted(mn[i] for i in got)


def test_pareto_front_of_a_million_points_takes_seconds() -> None:
    import time

    rng = np.random.default_rng(0)
    mx = rng.integers(0, 10**12, 10**6)
    mn = rng.integers(0, 10**12, 10**6)
    t = time.perf_counter()
    front = pareto_front(mx, mn)
    assert time.perf_counter() - t < 5
    assert all(mx[a] < mx[b] for a, b in itertools.pairwise(front))


def test_fit_cli_converts_only_the_front(monkeypatch: Any) -> None:
    from perceiver_calc.sweep import SweepResult

    def no_rows(self: Any) -> Any:
        raise AssertionError("fit must not convert every row")

    monkeypatch.setattr(SweepResult, "rows", no_rows)
    r = invoke(
        "fit", TINY, "--vary", "num_latents=1:40", "--vary", "d_latents=4,8,16", "-f", "jsonl"
    )
    assert r.exit_code == 0, r.output
    assert 0 < len(r.stdout.splitlines()) < 120


@pytest.mark.parametrize("merge_rows", [1 << 16, 3])
def test_fit_block_by_block_equals_the_whole_grid(monkeypatch: Any, merge_rows: int) -> None:
    """fit streams the grid in blocks and keeps each block's front (merged when they pile
    up): its front is the whole grid's, row for row and in order, ties (num_labels does not
    change a MaskedLM's counts) kept at their first row in grid order."""
    import perceiver_calc.cli_plan as cli_plan

    monkeypatch.setattr(sweep_io, "BLOCK_ROWS", 7)
    monkeypatch.setattr(cli_plan, "MERGE_ROWS", merge_rows)
    axes = {
        "num_latents": [1, 2, 4, 8, 3],
        "num_labels": [2, 3],
        "d_latents": [4, 6, 8, 16, 32],
        "num_self_attends_per_block": [1, 2, 3],
    }
    res = evaluate(grid(pc.load_config(TINY), axes, workload=TRAIN))
    budget = int(np.median(res.counts["training_flops"][res.valid]))
    want = fit(res, max_flops=budget)
    vary = [f"--vary={k}={','.join(map(str, v))}" for k, v in axes.items()]
    out = invoke("fit", TINY, *vary, "--max-flops", str(budget), "-f", "json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got == [res.row(i) for i in want.pareto]
    table = invoke("fit", TINY, *vary, "--max-flops", str(budget))
    assert f"{len(want.within):,} of {len(res):,} configs within budget" in table.stdout


def test_plot_rows_kept_while_streaming_are_the_whole_grid_s(monkeypatch: Any) -> None:
    """--plot keeps, block by block, the rows the plot draws (first 8 combinations of the
    other axes for every value of the first) and the front: the same rows as the whole grid."""
    import perceiver_calc.cli_plan as cli_plan

    monkeypatch.setattr(sweep_io, "BLOCK_ROWS", 5)
    axes = {
        "num_latents": [1, 2, 4],
        "d_latents": [4, 8, 16, 6],
        "num_self_attends_per_block": [1, 2, 3],
    }
    res = evaluate(grid(pc.load_config(TINY), axes, workload=TRAIN))
    budgets = {"max_params": None, "max_flops": None, "max_memory": None, "flops": "training_flops"}
    keep = cli_plan._Collect(axes, True, budgets)
    for block in evaluate_blocks(pc.load_config(TINY), axes, workload=TRAIN):
        keep.see(block)
    rows, _ = keep.front()
    shown, where = keep.plotted(rows)
    per = 4 * 3
    expect = sorted(
        {*(i for i in range(len(res)) if i % per < cli_plan.PLOT_SERIES), *rows.tolist()}
    )
    assert shown is not None
    assert [shown.sweep.row(j) for j in range(len(shown))] == [res.sweep.row(i) for i in expect]
    assert [expect[j] for j in where] == rows.tolist() == fit(res).pareto
    assert shown.counts["params"].tolist() == res.counts["params"][expect].tolist()


# --- bounded memory -------------------------------------------------------------------------


_CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"


@pytest.mark.skipif(not _CI, reason="10^6 rows (about a minute): ci profile only")
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_million_rows_stream_in_bounded_memory(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"s.{fmt}"
    cmd = [
        sys.executable,
        "-c",
        # VmHWM (this process's own peak, KiB), not ru_maxrss: Linux folds the peak of the
        # memory the child was forked (vforked) from into ru_maxrss at exec, so under pytest it
        # reports the test process's own peak (945,376 KiB seen in .ci/run).
        "import re, sys; from perceiver_calc.cli import main; sys.argv[0] = 'pc'\n"
        "try:\n    main()\nfinally:\n"
        "    status = open('/proc/self/status').read()\n"
        "    print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr)",
        "sweep",
        "docs/tutorial-base.json",
        *("--vary", "d_latents=64:2048:64", "--vary", "num_latents=32:1024:32"),
        *("--vary", "num_self_attends_per_block=2:32:2", "--vary", "batch_size=1:64"),
        *("--seq-len", "2048", "--dtype", "mixed-bf16", "-o", str(out)),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1,048,576 rows" in proc.stderr
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    assert rss_kib * 1024 < 500 * 2**20, rss_kib


def test_evaluate_blocks_is_exported() -> None:
    assert pc.evaluate_blocks is evaluate_blocks
