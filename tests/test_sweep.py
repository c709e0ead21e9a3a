"""The vectorised sweep against the scalar path: same validity, same reasons, same counts."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import perceiver_calc as pc
import perceiver_calc.sweep as sweep_module
from perceiver_calc.sweep import (
    COUNTS,
    Sweep,
    clear_fit_cache,
    evaluate,
    evaluate_scalar,
    grid,
    parse_values,
)
from perceiver_calc.workload import Workload
from tests.strategies import valid_config

SWEEPABLE = (
    "num_latents",
    "d_latents",
    "num_blocks",
    "num_self_attends_per_block",
    "num_self_attention_heads",
    "num_cross_attention_heads",
    "qk_channels",
    "self_attention_widening_factor",
    "cross_attention_widening_factor",
    "batch_size",
)


def assert_same(sweep_result: Any) -> None:
    scalar = evaluate_scalar(sweep_result.sweep)
    for i, row in enumerate(scalar):
        assert bool(sweep_result.valid[i]) == row["valid"], (i, row, sweep_result.reason(i))
        if row["valid"]:
            got = {k: int(sweep_result.counts[k][i]) for k in COUNTS}
            assert got == {k: row[k] for k in COUNTS}, i
        else:
            assert sweep_result.reason(i) == row["reason"]
        assert sweep_result.reason_code(i) == row["reason_code"], (i, row)


@st.composite
def sweeps(draw: st.DrawFn) -> Any:
    model = draw(st.sampled_from(pc.MODEL_CLASSES))
    cfg = draw(valid_config(model))
    fields = draw(st.lists(st.sampled_from(SWEEPABLE), min_size=1, max_size=3, unique=True))
    axes: dict[str, list[Any]] = {}
    for f in fields:
        base = cfg.get(f) or 4
        # up to 5 values: more than the 3 fit nodes, so the polynomial claim is exercised
        values = draw(st.lists(st.integers(1, 3 * base + 4), min_size=1, max_size=5, unique=True))
        if f == "qk_channels" and draw(st.booleans()):
            values.append(None)
        axes[f] = values
    mode = draw(st.sampled_from(["inference", "training"]))
    ckpt = draw(st.booleans())
    sw = grid(cfg, axes, model=model, workload=Workload(mode=mode, checkpointing=ckpt))
    if draw(st.booleans()):
        return sw
    # Rows out of grid order, some dropped, some repeated: the gather path and the distinct
    # values computed by evaluate (grid's are not there).
    order = draw(st.lists(st.integers(0, len(sw) - 1), min_size=1, max_size=2 * len(sw)))
    return Sweep(
        base=sw.base,
        model=sw.model,
        workload=sw.workload,
        columns={k: v[order] for k, v in sw.columns.items()},
        device=sw.device,
    )


@given(sweeps())
def test_vectorised_equals_scalar(sw: Any) -> None:
    clear_fit_cache()
    res = evaluate(sw)
    assert_same(res)
    again = evaluate(sw)  # fits from the cache: same answer
    assert again.valid.tolist() == res.valid.tolist()
    assert all(again.counts[k].tolist() == res.counts[k].tolist() for k in COUNTS)


def test_scattered_rows_equal_scalar() -> None:
    """Rows with few repeated values (not a grid), one far beyond torch's limits."""
    rng = np.random.default_rng(0)
    base = pc.load_config("docs/tutorial-base.json")
    n = 40
    columns: dict[str, Any] = {
        "d_latents": rng.integers(1, 200, n) * 8,
        "num_latents": rng.integers(1, 2000, n),
        "batch_size": rng.integers(1, 1000, n),
    }
    columns["num_latents"][-1] = 2**30  # scores of 2**80 bytes: invalid, not wrapped
    columns["batch_size"][-1] = 2**20
    sw = Sweep(
        base=base,
        model="PerceiverForMaskedLM",
        workload=Workload(mode="training"),
        columns={k: np.asarray(v, dtype=np.int64) for k, v in columns.items()},
    )
    res = evaluate(sw)
    assert res.scalar_rows == 0
    last = evaluate_scalar(sw, [n - 1])[0]
    assert not last["valid"] and not res.valid[-1]
    assert res.reason(n - 1) == last["reason"] and "activation" in last["reason"]
    scalar = evaluate_scalar(sw, range(n - 1))
    for i, row in enumerate(scalar):
        assert bool(res.valid[i]) and row["valid"]
        assert {k: int(res.counts[k][i]) for k in COUNTS} == {k: row[k] for k in COUNTS}


def test_progress_advances_within_a_group(monkeypatch: Any) -> None:
    monkeypatch.setattr(sweep_module, "BLOCK_ROWS", 30)
    sw = grid(
        pc.load_config("docs/tutorial-base.json"),
        {"d_latents": [256, 512, 768, 1024], "num_latents": list(range(8, 121, 8))},
        workload=Workload(mode="training"),
    )
    calls: list[tuple[int, int]] = []
    res = evaluate(sw, progress=lambda done, total: calls.append((done, total)))
    assert res.groups == 1 and res.scalar_rows == 0
    done = [d for d, _ in calls]
    # blocks of whole d_latents values (15 rows each), about BLOCK_ROWS rows: 2 values a block
    assert len(calls) == 2 and done == sorted(done)
    assert done[-1] == len(sw) and {t for _, t in calls} == {len(sw)}


def test_wide_range_fits_polynomial_without_fallback() -> None:
    base = pc.load_config("examples/language-perceiver.json")
    sw = grid(
        base,
        {
            "d_latents": list(range(256, 2049, 128)),
            "num_latents": list(range(64, 1025, 64)),
            "num_self_attends_per_block": [4, 8, 12, 16, 26],
            "batch_size": [1, 4, 16],
        },
        workload=Workload(seq_len=2048),
    )
    res = evaluate(sw)
    assert res.scalar_rows == 0
    rows = np.flatnonzero(res.valid)
    pick = rows[np.linspace(0, len(rows) - 1, 40).astype(int)].tolist()
    for i, row in zip(pick, evaluate_scalar(sw, pick), strict=True):
        assert row["valid"]
        assert {k: int(res.counts[k][i]) for k in COUNTS} == {k: row[k] for k in COUNTS}


def test_overflow_is_reported_not_wrapped() -> None:
    sw = grid(
        {"d_latents": 8, "num_self_attention_heads": 1, "num_cross_attention_heads": 1},
        {"num_latents": [8, 2**30], "batch_size": [1, 2**20]},
    )
    res = evaluate(sw)
    scalar = evaluate_scalar(sw)
    assert bool(res.valid[0]) and scalar[0]["valid"]
    last = len(sw) - 1
    assert not res.valid[last]
    assert "overflow" in (res.reason(last) or "")
    # The scalar path refuses the same row: its activations' bytes overflow int64, which torch
    # cannot allocate (perceiver_calc.parity.activation_bytes_findings).
    assert not scalar[last]["valid"]


def test_invalid_points_keep_their_reason() -> None:
    sw = grid({}, {"d_latents": [1280, 100], "num_latents": [8, 16]})
    res = evaluate(sw)
    assert res.valid.tolist() == [True, True, False, False]
    assert "d_latents (100) must be divisible by num_self_attention_heads (8)" in (
        res.reason(2) or ""
    )
    assert_same(res)


def test_row_equals_single_config_counts() -> None:
    base = pc.load_config("examples/language-perceiver.json")
    sw = grid(base, {"num_latents": [128, 256]}, workload=Workload(seq_len=512))
    res = evaluate(sw)
    cfg = base.model_copy(update={"num_latents": 128})
    assert int(res.counts["params"][0]) == pc.count_params(pc.resolve(cfg)).total


def test_parse_values() -> None:
    assert parse_values("64:256:64") == [64, 128, 192, 256]
    assert parse_values("1,null,true,kv") == [1, None, True, "kv"]


# --- scale and output (issue 11, partial) --------------------------------------------------


def test_grid_over_the_limit_is_refused_up_front(monkeypatch: Any) -> None:
    import pytest

    monkeypatch.setattr(sweep_module, "MAX_ROWS", 1000)
    with pytest.raises(ValueError, match=r"1,001 rows .*limit is 1,000"):
        grid({}, {"num_latents": list(range(1, 1002))})
    # the CLI: exit 2, the size on stderr, before any row is built
    from typer.testing import CliRunner

    from perceiver_calc.cli import app

    result = CliRunner().invoke(
        app, ["sweep", "examples/tiny.json", "--vary", "num_latents=1:1001"]
    )
    assert result.exit_code == 2
    assert "1,001 rows" in result.stderr and not result.stdout


def test_csv_is_streamed_clean_and_progress_goes_to_stderr() -> None:
    import csv
    import io

    from typer.testing import CliRunner

    from perceiver_calc.cli import app

    # 2,500 rows: over the progress-bar threshold (2,000)
    args = [
        "sweep",
        "examples/tiny.json",
        "--vary",
        "num_latents=1:50",
        "--vary",
        "d_latents=8:400:8",
    ]
    result = CliRunner().invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(lines), "no blank line in the CSV"
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 50 * 50
    res = evaluate(
        grid(
            pc.load_config("examples/tiny.json"),
            {"num_latents": list(range(1, 51)), "d_latents": list(range(8, 401, 8))},
        )
    )
    for i in (0, 1, 777, 2499):
        want = res.row(i)
        assert rows[i]["valid"] == str(want["valid"])
        if want["valid"]:
            assert int(rows[i]["params"]) == want["params"]
        else:
            assert rows[i]["reason"] == want["reason"]


def test_table_shows_a_bounded_summary() -> None:
    from typer.testing import CliRunner

    from perceiver_calc.cli import app

    result = CliRunner().invoke(
        app, ["sweep", "examples/tiny.json", "--vary", "num_latents=1:3000"]
    )
    assert result.exit_code == 0, result.output
    assert "first 50 of 3,000 valid rows shown; --format csv or json gives all" in result.stdout
    assert len(result.stdout.splitlines()) < 80


def test_columns_and_rows_agree() -> None:
    cfg = pc.load_config("examples/tiny.json")
    res = evaluate(grid(cfg, {"num_self_attention_heads": [1, 3, 4], "d_latents": [6, 8, 12]}))
    cols = res.columns()
    rows = res.rows()
    assert set(cols) == {"num_self_attention_heads", "d_latents", "valid", *COUNTS, "reason"}
    for i, row in enumerate(rows):
        assert bool(cols["valid"][i]) == row["valid"]
        assert cols["reason"][i] == row.get("reason")
        for k in COUNTS:
            assert int(cols[k][i]) == row.get(k, 0)
    df = res.to_pandas()
    assert list(df["params"]) == [int(v) for v in cols["params"]]


def test_image_size_axis_on_the_learned_classifier_has_validate_s_reason() -> None:
    """``--vary image_size=N`` is the workload's N x N input; on the learned classifier only
    image_size x image_size inputs are valid, with the reason ``report --image-size`` gives
    (not pydantic's raw "1 validation error for Workload")."""
    from perceiver_calc.workload import check_workload

    cfg = pc.load_config({"image_size": 32, "d_latents": 64, "num_latents": 16})
    model = "PerceiverForImageClassificationLearned"
    res = evaluate(grid(cfg, {"image_size": [16, 32, 48]}, model=model))
    assert res.valid.tolist() == [False, True, False]
    resolved = pc.resolve(cfg, model)
    for i, side in ((0, 16), (2, 48)):
        errors = [
            f
            for f in check_workload(resolved, Workload(image_size=(side, side)))
            if f.severity == "error"
        ]
        assert res.reason(i) == "; ".join(str(f) for f in errors)
        assert "validation error" not in (res.reason(i) or "")
    assert_same(res)


def test_planning_api_is_exported() -> None:
    for name in ("grid", "evaluate", "fit", "pareto_front", "compare", "training_plan"):
        assert callable(getattr(pc, name)), name
    assert pc.SweepResult is sweep_module.SweepResult
