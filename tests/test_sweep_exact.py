"""The sweep is the scalar path over arrays: validity, reason text and counts equal
``evaluate_scalar`` (load_config -> resolve -> check_workload -> counts, row by row) on large
grids over axes that change validity, and on issue 11's cases.

Each property evaluates a whole grid vectorised (10^4+ rows in the "ci" profile) and compares
it with the scalar path on the grid's first and last rows plus a random sample (every row
when the grid is small): the scalar path costs about a millisecond a row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perceiver_calc as pc
from perceiver_calc.sweep import COUNTS, SweepResult, evaluate, evaluate_scalar, grid
from perceiver_calc.workload import Workload
from tests.strategies import valid_config

ROOT = Path(__file__).resolve().parents[1]

CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
ROWS = 12_000 if CI else 1_500
"""Target grid size per example."""
CHECKED = 400 if CI else 120
"""Rows compared with the scalar path per example (besides the first and the last)."""

# Axes of every kind: widths and heads (divisibility), lengths against positions, chunking,
# layer counts with 0 (structure), labels (1 = regression loss), workload sizes, hardcoded
# overrides, multimodal sizes (integer divisions), the learned classifier's image size.
AXES: dict[str, tuple[int, int]] = {
    "d_model": (1, 48),
    "d_latents": (1, 48),
    "num_latents": (1, 24),
    "num_self_attention_heads": (1, 6),
    "num_cross_attention_heads": (1, 6),
    "qk_channels": (1, 32),
    "v_channels": (1, 32),
    "num_blocks": (0, 3),
    "num_self_attends_per_block": (0, 3),
    "self_attention_widening_factor": (1, 4),
    "cross_attention_widening_factor": (1, 4),
    "chunk_size_feed_forward": (0, 6),
    "max_position_embeddings": (1, 40),
    "vocab_size": (1, 300),
    "num_labels": (1, 5),
    "decoder_num_heads": (1, 4),
    "decoder_qk_channels": (1, 32),
    "decoder_v_channels": (1, 32),
    "preprocessor_out_channels": (1, 80),
    "fourier_num_bands": (1, 70),
    "samples_per_patch": (1, 40),
    "audio_samples_per_frame": (1, 4000),
    "num_frames": (1, 20),
    "output_num_channels": (1, 16),
    "_label_trainable_num_channels": (1, 600),
    "batch_size": (1, 6),
    "seq_len": (1, 40),
    "image_size": (1, 80),
    "subsampled_image_points": (1, 3000),
    "subsampled_audio_points": (1, 40),
}


def check_rows(res: SweepResult, rows: list[int]) -> None:
    for i, row in zip(rows, evaluate_scalar(res.sweep, rows), strict=True):
        assert bool(res.valid[i]) == row["valid"], (i, res.sweep.row(i), row, res.reason(i))
        # the vectorised code (from the rules' masks) is the scalar path's
        assert res.reason_code(i) == row["reason_code"], (i, res.sweep.row(i))
        if row["valid"]:
            got = {k: int(res.counts[k][i]) for k in COUNTS}
            assert got == {k: row[k] for k in COUNTS}, (i, res.sweep.row(i))
            assert res.reason(i) is None
        else:
            assert res.reason(i) == row["reason"], (i, res.sweep.row(i))


def sample(res: SweepResult, k: int, seed: int) -> list[int]:
    n = len(res)
    if n <= k + 2:
        return list(range(n))
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, size=k, replace=False).tolist()
    # and some of each kind: valid and invalid rows
    for want in (True, False):
        where = np.flatnonzero(res.valid == want)
        if len(where):
            picks += rng.choice(where, size=min(len(where), k // 4), replace=False).tolist()
    return sorted({0, n - 1, *picks})


@st.composite
def big_grids(draw: st.DrawFn) -> Any:
    model = draw(st.sampled_from(pc.MODEL_CLASSES))
    cfg = draw(valid_config(model))
    names = draw(st.lists(st.sampled_from(sorted(AXES)), min_size=2, max_size=3, unique=True))
    per_axis = max(2, round(ROWS ** (1 / len(names))))
    axes: dict[str, list[Any]] = {}
    for name in names:
        lo, hi = AXES[name]
        k = min(per_axis, hi - lo + 1)
        values = draw(st.lists(st.integers(lo, hi), min_size=k, max_size=k, unique=True))
        axes[name] = values
    mode = draw(st.sampled_from(["inference", "training"]))
    wl = Workload(
        mode=mode,
        checkpointing=draw(st.booleans()),
        dtype=draw(st.sampled_from(["fp32", "bf16", "mixed-fp16"])),
        batch_size=draw(st.integers(1, 3)),
    )
    return grid(cfg, axes, model=model, workload=wl), draw(st.integers(0, 2**31))


@settings(max_examples=12 if CI else 6)
@given(big_grids())
def test_large_grids_equal_scalar(case: Any) -> None:
    sw, seed = case
    res = evaluate(sw)
    check_rows(res, sample(res, CHECKED, seed))


def test_masked_lm_positions_against_seq_len() -> None:
    """Issue 11: max_position_embeddings 64, d_latents 60 (8 heads: invalid) first, then
    multiples of 8, x seq_len 1..128: every seq_len > 64 row is invalid (IndexError in
    transformers); the probing sweep called 4,416 of them valid."""
    cfg = pc.load_config(
        {
            "max_position_embeddings": 64,
            "d_latents": 64,
            "num_latents": 16,
            "d_model": 64,
            "num_self_attends_per_block": 2,
        }
    )
    res = evaluate(grid(cfg, {"d_latents": [60, *range(8, 553, 8)], "seq_len": range(1, 129)}))
    seq = res.sweep.columns["seq_len"]
    d = res.sweep.columns["d_latents"]
    assert not res.valid[seq > 64].any()
    assert res.valid.tolist() == ((seq <= 64) & (d % 8 == 0)).tolist()
    edges = np.flatnonzero(np.isin(seq, [1, 63, 64, 65, 128]) & np.isin(d, [60, 8, 552]))
    check_rows(res, sorted({*edges.tolist(), *sample(res, 60, 1)}))


def test_inference_peak_over_vocab_size() -> None:
    """Issue 11: the inference peak is a max() of working sets, not a polynomial: over
    vocab_size 1..149,999 every row equals the scalar path (8,751 were up to 2.9% low)."""
    base = pc.load_config("examples/language-perceiver.json")
    res = evaluate(grid(base, {"vocab_size": range(1, 150_000)}))
    assert res.valid.all()
    peak = res.counts["memory_bytes"]
    # where the peak switches from the encoder's working set to the logits', and a sample
    jumps = np.flatnonzero(np.diff(np.diff(peak)) != 0)
    rows = {0, len(res) - 1, *jumps[:20].tolist(), *(jumps[:20] + 1).tolist()}
    rows |= set(sample(res, 80, 2))
    assert jumps.size, "the peak switches from one module's working set to another's"
    check_rows(res, sorted(rows))


def test_multimodal_integer_divisions() -> None:
    """Issue 11: the multimodal defaults floor (num_frames * audio_samples_per_frame //
    samples_per_patch // 128): large audio_samples_per_frame, every row as the scalar path."""
    base = pc.load_config(
        {
            "architectures": ["PerceiverForMultimodalAutoencoding"],
            "d_latents": 32,
            "num_latents": 8,
            "num_self_attends_per_block": 1,
            "num_frames": 2,
            "image_size": 16,
            "output_shape": [1, 2, 16, 16],
            "output_num_channels": 8,
            "_label_trainable_num_channels": 16,
        }
    )
    spf = [1, 7, 16, 127, 128, 129, 1920, 4095, 65_536, 1_000_003, 2**24 + 1, 2**30]
    res = evaluate(grid(base, {"audio_samples_per_frame": spf, "samples_per_patch": [1, 3, 16]}))
    check_rows(res, list(range(len(res))))
    assert res.valid.any() and not res.valid.all()


def test_small_and_huge_values_on_one_axis() -> None:
    """Issue 11: an axis spanning small and huge values must not make the small rows report
    an overflow; the huge rows are what the scalar path says (exact Python ints beyond
    int64, or invalid with its reason)."""
    base = pc.load_config("docs/tutorial-base.json")
    res = evaluate(
        grid(
            base,
            {"num_blocks": [1, 2, 2**20, 2**31 - 1], "batch_size": [1, 8, 2**16]},
        ),
        # training FLOPs of 2**31 blocks are beyond int64: exact, not dropped
    )
    check_rows(res, list(range(len(res))))
    assert res.valid[:2].all()
    big = [i for i in range(len(res)) if res.valid[i] and res.counts["training_flops"][i] >= 2**63]
    assert big, "some valid rows count beyond int64"
    assert res.scalar_rows >= len(big)


def test_learned_classifier_image_size_axis() -> None:
    """Issue 11: ``--vary image_size`` on the learned-position classifier: the square input
    must have image_size² pixels; other rows fail with validate's text (not pydantic's)."""
    base = pc.load_config(
        {
            "architectures": ["PerceiverForImageClassificationLearned"],
            "image_size": 8,
            "d_latents": 16,
            "num_latents": 4,
            "num_self_attends_per_block": 1,
        }
    )
    res = evaluate(grid(base, {"image_size": [4, 7, 8, 9, 16], "batch_size": [1, 2]}))
    check_rows(res, list(range(len(res))))
    assert res.valid.tolist() == [s == 8 for s in [4, 7, 8, 9, 16] for _ in (1, 2)]
    assert "image_size²" in (res.reason(0) or "")


def test_chunk_size_against_latents_and_heads_against_widths() -> None:
    base = pc.load_config("docs/tutorial-base.json")
    res = evaluate(
        grid(
            base,
            {
                "chunk_size_feed_forward": [0, 1, 3, 4, 7],
                "num_latents": [1, 4, 6, 12, 28],
                "num_self_attention_heads": [1, 3, 8, 16],
                "d_latents": [48, 64, 96],
            },
        )
    )
    check_rows(res, list(range(len(res))))
    assert res.valid.any() and not res.valid.all()


def test_range_errors_at_both_ends_and_in_several_columns() -> None:
    """Out-of-range values below and above the valid interval of an integer column (found by
    bisection), and rows with two bad columns (the scalar path's combined text)."""
    base = pc.load_config("docs/tutorial-base.json")
    res = evaluate(
        grid(
            base,
            {
                "num_latents": [-3, 0, 1, 2, 5, 64, 2**40],
                "num_blocks": [-1, 0, 1, 2],
                "batch_size": [0, 1, 2**31, 2**31 - 1],
            },
        )
    )
    check_rows(res, list(range(len(res))))
    assert res.valid.any()


def test_fixed_value_beyond_int64_with_a_swept_axis() -> None:
    """A base whose fixed counts pass int64 (a Python int in the formulas) with a swept
    field: those rows are the scalar path's, exactly."""
    base = pc.load_config(
        {
            "num_blocks": 2**31 - 1,
            "num_self_attends_per_block": 2**20,
            "d_latents": 64,
            "num_latents": 64,
            "d_model": 64,
            "max_position_embeddings": 64,
        }
    )
    res = evaluate(grid(base, {"batch_size": [1, 2, 3], "num_latents": [8, 64]}))
    check_rows(res, list(range(len(res))))


FULL_ROWS = 14_400 if CI else 768
"""Rows of the every-row test (the scalar path costs about 0.3-1 ms a row)."""


def test_every_row_of_a_large_grid_equals_scalar() -> None:
    """Not a sample: every row's validity, counts, text and code against the scalar path, on
    a grid over axes that change validity in several ways at once (divisibility of widths by
    heads, chunking of the latents, positions against seq_len, a range error), whose first
    row is invalid (d_latents 12 with 8 heads, chunk 3, seq_len 0)."""
    per = 10 if CI else 4
    axes: dict[str, list[Any]] = {
        "d_latents": [12, 16, 24, 64, 96, 160, 256, 640, 1280, 1288][:per],
        "num_self_attention_heads": [8, 1, 3, 4, 16][: 5 if CI else 4],
        "chunk_size_feed_forward": [3, 0, 8, 64],
        "seq_len": [0, 1, 64, 2048, 2049, 4096],
        "num_latents": [256, 96, 192, 7][: 4 if CI else 2],
        "batch_size": [1, 3, 2][: 3 if CI else 1],
    }
    # language-perceiver with qk_channels / v_channels unset (they follow d_latents)
    base = pc.load_config(ROOT / "docs" / "tutorial-base.json")
    res = evaluate(grid(base, axes, workload=Workload(mode="training")))
    n = len(res)
    assert n == FULL_ROWS and not res.valid[0]
    assert 0 < int(res.valid.sum()) < n
    check_rows(res, list(range(n)))
    # the codes from the masks, without the scalar path: all present
    codes = res.with_reason_codes().columns()["reason"]
    assert all(
        (c is None) == bool(v) for c, v in zip(codes.tolist(), res.valid.tolist(), strict=True)
    )


def test_sweep_cli_reasons_codes(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from perceiver_calc.cli import app

    args = [
        "sweep",
        str(ROOT / "examples" / "language-perceiver.json"),
        "--vary",
        "d_latents=12,16,1280",
        "--vary",
        "num_self_attention_heads=8,3",
        "--format",
        "json",
    ]
    runner = CliRunner()
    text = runner.invoke(app, args)
    codes = runner.invoke(app, [*args, "--reasons", "codes"])
    assert text.exit_code == 0 and codes.exit_code == 0, text.output + codes.output
    t_rows, c_rows = json.loads(text.stdout), json.loads(codes.stdout)
    res = evaluate(
        grid(
            pc.load_config(ROOT / "examples" / "language-perceiver.json"),
            {"d_latents": [12, 16, 1280], "num_self_attention_heads": [8, 3]},
            workload=Workload(mode="training"),
        )
    )
    assert [r.get("reason") for r in t_rows] == [res.reason(i) for i in range(len(res))]
    assert [r.get("reason") for r in c_rows] == [res.reason_code(i) for i in range(len(res))]
    # d_latents 12 with 8 heads: both attentions' divisibility and the self-attention width
    assert (
        c_rows[0]["reason"]
        == evaluate_scalar(res.sweep, [0])[0]["reason_code"]
        == (
            "d_latents_divisible_by_num_cross_attention_heads,"
            "d_latents_divisible_by_num_self_attention_heads,self_attention_width"
        )
    )
    bad = runner.invoke(app, [*args, "--reasons", "both"])
    assert bad.exit_code == 2


def test_config_image_size_is_an_axis_apart_from_the_input_images() -> None:
    """``config.image_size`` sweeps the learned classifier's config field (its position
    embeddings, image_size² of them); ``image_size`` (or ``workload.image_size``) the input
    images. Every row equals the scalar path, params follow the config field only."""
    base = pc.load_config(ROOT / "examples" / "vision-perceiver-learned.json")
    res = evaluate(
        grid(
            base, {"config.image_size": [0, 8, 16, 32], "image_size": [16, 32]}, workload=Workload()
        )
    )
    check_rows(res, list(range(len(res))))
    rows = res.rows()
    assert not rows[0]["valid"]  # image_size 0
    by = {(r["config.image_size"], r["image_size"]): r for r in rows}
    # the input must match the config's grid (learned positions): 16 on 16, 32 on 32 only
    assert [k for k, r in by.items() if r["valid"]] == [(16, 16), (32, 32)]
    assert by[32, 32]["params"] - by[16, 16]["params"] == (32 * 32 - 16 * 16) * 256
    same = evaluate(grid(base, {"workload.image_size": [16, 32]}, workload=Workload()))
    plain = evaluate(grid(base, {"image_size": [16, 32]}, workload=Workload()))
    assert same.reason(0) == plain.reason(0) and same.reason_code(1) == plain.reason_code(1)


def test_prefixed_axis_names_are_checked() -> None:
    base = pc.load_config(ROOT / "examples" / "vision-perceiver-learned.json")
    with pytest.raises(ValueError, match=r"--vary config.batch_size: not a PerceiverConfig field"):
        grid(base, {"config.batch_size": [1]})
    with pytest.raises(ValueError, match=r"--vary workload.d_latents: not a workload field"):
        grid(base, {"workload.d_latents": [1]})
    with pytest.raises(ValueError, match="already an axis"):
        grid(base, {"image_size": [8], "workload.image_size": [16]})


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_codes_of_magnitude_rules_follow_the_scalar_paths_order(mode: str) -> None:
    """The tensor-size rules (tensor_bytes_too_large in resolve, activation_bytes_too_large in
    check_workload, decided in float64) are asked by the scalar path only when no earlier rule
    of their step failed; the sweep asks them for every row and must drop them there (a row
    with seq_len > max_position_embeddings and huge activations is seq_len_too_long alone)."""
    axes: dict[str, list[Any]] = {
        "vocab_size": [262, 2**31 - 1],
        "d_model": [768, 2**31 - 2**10],
        "chunk_size_feed_forward": [0, 1, 3, 5],
        "num_latents": [16, 2**16],
        "batch_size": [1, 2**30],
        "seq_len": [2, 4096],
    }
    base = pc.load_config(ROOT / "docs" / "tutorial-base.json")
    sw = grid(base, axes, model="PerceiverForSequenceClassification", workload=Workload(mode=mode))
    res = evaluate(sw)
    check_rows(res, list(range(len(res))))
    seen = {res.reason_code(i) for i in range(len(res))} - {None}
    codes = {c for s in seen for c in s.split(",")}
    assert {"tensor_bytes_too_large", "activation_bytes_too_large", "seq_len_too_long"} <= codes
    assert "chunk_size_feed_forward" in codes


# Axes whose values are not all integers: each value (or STRUCTURAL side) is a structure
# group of its own, evaluated as a sub-grid (``_evaluate_grid``); a bad value (step 1) too.
OTHER_AXES: list[tuple[str, list[Any]]] = [
    ("use_query_residual", [True, False]),
    ("qk_channels", [None, 8, 16, 0]),
    ("hidden_act", ["gelu", "relu", "not-an-activation"]),
    ("num_blocks", [0, 1, 2]),
    ("num_self_attends_per_block", [-1, 0, 2]),
    ("num_labels", [1, 2, 3]),
    ("dtype", ["fp32", "bf16"]),
    ("mode", ["inference", "training"]),
    ("checkpointing", [False, True]),
    ("seq_len", [None, 1, 64]),
    # lists of integers: each length a group, the items int64 arrays (a tuple of them)
    ("train_size", [[8, 8], [16, 12], [4], [6, 10, 2], [12, 4], []]),
    ("output_shape", [[1, 16, 4, 4], [1, 8, 8, 8], [1, 2, 3], [2, 4, 6, 8], []]),
    ("image_size", [[16, 16], [24, 32], [8, 8, 8], None, [4, 36]]),
    ("config.image_size", [8, [8, 8], 16, [12, 6], [4]]),
    ("fourier_max_resolution", [None, [16, 16], [32, 8], [5]]),
]


def _row_codes(res: SweepResult) -> list[Any]:
    return [res.codes[c] if c >= 0 else int(c) for c in res.code_index.tolist()]


@st.composite
def mixed_grids(draw: st.DrawFn) -> Any:
    """A grid of 2 integer axes and 1-2 axes of OTHER_AXES, in a random order."""
    model = draw(st.sampled_from(pc.MODEL_CLASSES))
    cfg = draw(valid_config(model))
    others = draw(st.lists(st.sampled_from(OTHER_AXES), min_size=1, max_size=2, unique_by=str))
    taken = {name for name, _ in others}
    ints = draw(
        st.lists(st.sampled_from(sorted(set(AXES) - taken)), min_size=2, max_size=2, unique=True)
    )
    per_axis = max(2, round((ROWS // 6) ** 0.5))
    axes: list[tuple[str, list[Any]]] = list(others)
    for name in ints:
        lo, hi = AXES[name]
        k = min(per_axis, hi - lo + 1)
        axes.append(
            (name, draw(st.lists(st.integers(lo, hi), min_size=k, max_size=k, unique=True)))
        )
    axes = draw(st.permutations(axes))
    return grid(cfg, dict(axes), model=model), draw(st.integers(0, 2**31))


@settings(max_examples=10 if CI else 5)
@given(mixed_grids())
def test_grids_with_non_integer_and_structural_axes_equal_scalar(case: Any) -> None:
    """Each structure group of a grid evaluated as a sub-grid of its own equals the rows
    evaluated as a flat list (every row) and the scalar path (a sample)."""
    sw, seed = case
    res = evaluate(sw)
    flat = evaluate(sw.with_columns(dict(sw.columns)))  # not a grid: blocks of rows
    assert res.groups == flat.groups
    assert np.array_equal(res.valid, flat.valid)
    for k in COUNTS:
        assert np.array_equal(res.counts[k], flat.counts[k]), k
    assert _row_codes(res) == _row_codes(flat)
    check_rows(res, sample(res, CHECKED, seed))


HUGE = {
    "num_self_attends_per_block": [1, 2**20, 2**31 - 1],
    "num_blocks": [1, 2**16, 2**31 - 1],
    "num_latents": [8, 2**24, 2**31 - 1],
    "d_latents": [16, 2**24, 2**31 - 8],
    "batch_size": [1, 2**20, 2**31 - 1],
    "seq_len": [1, 2**16, 2**31 - 1],
    "vocab_size": [2, 2**28, 2**31 - 1],
}
"""Values whose counts pass int64 (or come near it): those rows run over object arrays of
Python ints (``_exact_rows``), some with rules that refuse them (a tensor too large)."""


@settings(max_examples=8 if CI else 4)
@given(
    st.lists(st.sampled_from(sorted(HUGE)), min_size=2, max_size=3, unique=True),
    st.sampled_from(["inference", "training"]),
    st.sampled_from(pc.MODEL_CLASSES),
)
def test_rows_beyond_int64_equal_scalar_on_every_row(
    names: list[str], mode: str, model: str
) -> None:
    """Every row of a grid mixing small and huge values: validity, code, text and exact
    counts (Python ints beyond int64) equal the scalar path's."""
    base = pc.load_config(
        {
            "d_model": 16,
            "d_latents": 16,
            "num_latents": 8,
            "num_self_attention_heads": 1,
            "num_cross_attention_heads": 1,
            "max_position_embeddings": 2**31 - 1,
        }
    )
    sw = grid(base, {k: HUGE[k] for k in names}, model=model, workload=Workload(mode=mode))
    res = evaluate(sw)
    check_rows(res, list(range(len(res))))


LIST_FIELDS = [
    "train_size",
    "output_shape",
    "config.image_size",
    "image_size",
    "fourier_max_resolution",
]
HOSTILE_LISTS: list[Any] = [[8, 8], [8, "a"], [], [1, 2, 3], [4], None, 8, "x", [0, 8], [2**40, 2]]


@pytest.mark.parametrize("name", LIST_FIELDS)
def test_list_axes_with_hostile_values_equal_scalar(name: str) -> None:
    """Every row, every class: lists of every length (an empty one crashed the sweep: the
    workload step read the height of an empty train_size, which the scalar path never
    reaches once resolve refuses it), strings in a list, a bare integer or string, None,
    zeros and items beyond int64."""
    base = pc.load_config(
        {"num_cross_attention_heads": 1, "num_self_attention_heads": 1, "num_latents": 32}
    )
    for model in pc.MODEL_CLASSES:
        res = evaluate(grid(base, {name: HOSTILE_LISTS, "d_latents": [64, 63]}, model=model))
        check_rows(res, list(range(len(res))))


HOSTILE_VALUES: list[Any] = [
    None, 0, -1, 1, 2, 7, 64, 2**31 - 1, 2**40, 2**70, True, "x",
    [], [1], [2, 2], [3, 4, 5, 6], 1.5, 0.1,
]  # fmt: skip
"""Every kind of value, for every field: most are refused by the field's type or range (step
1), some only by a rule across fields, some beyond int64."""


def _axis_names() -> list[str]:
    from perceiver_calc.config import PerceiverConfig
    from perceiver_calc.sweep import SHARED_NAMES, WORKLOAD_FIELDS

    internal = {"base_keys", "unknown_keys", "duplicate_keys"}
    config = sorted({f.alias or k for k, f in PerceiverConfig.model_fields.items()} - internal)
    return [f"config.{k}" if k in SHARED_NAMES else k for k in config] + sorted(
        f"workload.{k}" if k in SHARED_NAMES else k for k in WORKLOAD_FIELDS
    )


@pytest.mark.parametrize("name", _axis_names())
def test_every_field_as_an_axis_of_hostile_values_equals_scalar(name: str) -> None:
    """Each config field (transformers' keys) and workload flag as an axis of every kind of
    value, crossed with a width that the heads do and do not divide, for every class: every
    row equals the scalar path (this found an empty train_size crashing the sweep, an int
    dropout probability evaluated as an array, and codes listing tensor_bytes_too_large
    where tensor_too_large alone is the scalar path's)."""
    base = pc.load_config(
        {"num_cross_attention_heads": 1, "num_self_attention_heads": 1, "num_latents": 32}
    )
    for model in pc.MODEL_CLASSES if CI else pc.MODEL_CLASSES[::3]:
        res = evaluate(grid(base, {name: HOSTILE_VALUES, "d_latents": [64, 63]}, model=model))
        check_rows(res, list(range(len(res))))


def test_an_aliased_field_is_an_axis_by_transformers_name_only() -> None:
    base = pc.load_config("docs/tutorial-base.json")
    with pytest.raises(ValueError) as err:
        grid(base, {"label_trainable_num_channels": [8, 16]})
    assert str(err.value) == (
        "--vary label_trainable_num_channels: transformers' name for this field is "
        "_label_trainable_num_channels (a config key spelt otherwise is not read)"
    )
    small = pc.load_config({"num_cross_attention_heads": 1, "num_self_attention_heads": 1})
    model = "PerceiverForMultimodalAutoencoding"
    res = evaluate(grid(small, {"_label_trainable_num_channels": [8, 2000]}, model=model))
    check_rows(res, [0, 1])
    assert res.valid.all() and res.counts["params"][0] != res.counts["params"][1]


def test_reason_text_of_equal_values_of_different_types() -> None:
    """True == 1 in Python: the text of a row refused for several columns (asked of the scalar
    path when read, cached by the row's values) is the row's own, not an equal row's."""
    base = pc.load_config("docs/tutorial-base.json")
    sw = grid(base, {"id2label": [True, 1, 1.0], "samples_per_patch": [2**70]})
    res = evaluate(sw)
    check_rows(res, list(range(len(res))))
    assert "id2label (True)" in (res.reason(0) or "")
    assert "id2label (1)" in (res.reason(1) or "")


@st.composite
def hostile_grids(draw: st.DrawFn) -> Any:
    names = draw(st.lists(st.sampled_from(_axis_names()), min_size=2, max_size=3, unique=True))
    axes: dict[str, list[Any]] = {}
    for name in names:
        pool = st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(0, 600))
        axes[name] = draw(st.lists(pool, min_size=1, max_size=5))
    base = draw(
        st.sampled_from(
            [
                {"num_cross_attention_heads": 1, "num_self_attention_heads": 1, "num_latents": 32},
                {},
                json.loads((ROOT / "docs" / "tutorial-base.json").read_text()),
            ]
        )
    )
    model = draw(st.sampled_from(pc.MODEL_CLASSES))
    wl = Workload(mode=draw(st.sampled_from(["inference", "training"])))
    return pc.load_config(base), axes, model, wl


@settings(max_examples=60 if CI else 15, deadline=None)
@given(hostile_grids())
def test_grids_of_hostile_values_on_any_fields_equal_scalar(case: Any) -> None:
    """2-3 fields drawn from every config field and workload flag, each over values of every
    kind (types, ranges, lists, beyond int64, repeats): every row equals the scalar path."""
    base, axes, model, wl = case
    try:
        sw = grid(base, axes, model=model, workload=wl)
    except ValueError as err:  # two spellings of one field (config.x and x)
        assert "already an axis" in str(err)
        return
    res = evaluate(sw)
    check_rows(res, list(range(len(res))))
