"""The vectorised sweep against the scalar path: same validity, same reasons, same counts."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import perceiver_calc as pc
from perceiver_calc.sweep import COUNTS, evaluate, evaluate_scalar, grid, parse_values
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
    return grid(cfg, axes, model=model, workload=Workload(mode=mode, checkpointing=ckpt))


@given(sweeps())
def test_vectorised_equals_scalar(sw: Any) -> None:
    assert_same(evaluate(sw))


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
    assert scalar[last]["valid"] and max(scalar[last][k] for k in COUNTS) > 2**63 - 1


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
