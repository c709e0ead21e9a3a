"""Fuzz suite for issue 12: hostile configs, workloads and command lines.

Three properties, sized by the hypothesis profile (``HYPOTHESIS_PROFILE``, tests/conftest.py):

===============================  ========  ========
property                         dev       ci
===============================  ========  ========
library mutants                  300       10,000
CLI runs in-process (CliRunner)  40        500
CLI runs in real subprocesses    3         12
===============================  ========  ========

* library: a mutated config (dict input, so Python values JSON cannot hold are included: ints
  of thousands of digits, inf/nan, bytes, tuples, non-string keys, deep nesting) and a hostile
  workload go through ``load_config``, ``resolve``, ``Workload(...)``, ``check_workload`` and
  ``count_params/flops/memory``; only :class:`~perceiver_calc.errors.PerceiverCalcError` may
  escape, each input within a time bound.
* CLI: a mutated config.json and hostile option values (markup, 5,000-digit numbers, nan,
  negatives, empty strings, unknown formats) on every torch-free command, with ``--plot`` at a
  file that exists: exit 0 or 2, no traceback, bounded time, and after every failing run the
  existing file is byte-identical.

Each test prints one line with its counts (tried / rejected / accepted) and run time
(``pytest -s`` or the terminal summary shows it), for the closing note of the issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import perceiver_calc as pc
from perceiver_calc.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CI = os.environ.get("HYPOTHESIS_PROFILE", "dev") == "ci"
N_LIBRARY = 10_000 if CI else 300
N_CLI = 500 if CI else 40
N_SUBPROCESS = 12 if CI else 3
# Per input: generous for 2 shared CPU cores; a layer walk over 2**31 layers would take hours.
LIBRARY_SECONDS = 5.0
CLI_SECONDS = 20.0

_BASES = {
    name: json.loads((EXAMPLES / f"{name}.json").read_text())
    for name in (
        "tiny",
        "language-perceiver",
        "vision-perceiver-conv",
        "optical-flow-perceiver",
        "multimodal-perceiver",
    )
}
_FIELDS = sorted(
    {k for base in _BASES.values() for k in base}
    | {
        "qk_channels",
        "v_channels",
        "id2label",
        "num_labels",
        "image_size",
        "train_size",
        "output_shape",
        "problem_type",
        "decoder_num_heads",
        "fourier_max_resolution",
        "chunk_size_feed_forward",
        "seq_len",  # a legacy key
        "hidden_dropout_prob",
        "torch_dtype",
        "[bold]x[/bold]",
        "unknown",
    }
)

_HUGE = st.integers(min_value=300, max_value=5_000).map(lambda k: 10**k)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 4097),
    st.integers(-(2**70), 2**70),
    _HUGE,
    _HUGE.map(lambda n: -n),
    st.floats(),  # nan, inf, -0.0, subnormals
    st.sampled_from(["", "8", "1e3", "gelu", "[red]x[/red]", "[/x]", "\ud800", "kv", "q"]),
    st.text(max_size=6),
    st.binary(max_size=4),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(-2, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)
_DEEP = st.integers(1, 400).map(lambda n: _nest(n))


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Whole-number fields, tweaked to other whole numbers: most of these mutants pass the type
# checks and exercise resolve (heads dividing widths, ...) and the counting code ...
_INT_FIELDS = [
    "num_latents",
    "d_latents",
    "d_model",
    "num_blocks",
    "num_self_attends_per_block",
    "num_self_attention_heads",
    "num_cross_attention_heads",
    "qk_channels",
    "v_channels",
    "self_attention_widening_factor",
    "cross_attention_widening_factor",
    "vocab_size",
    "max_position_embeddings",
    "image_size",
    "num_frames",
    "samples_per_patch",
    "num_labels",
    "decoder_num_heads",
    "chunk_size_feed_forward",
]
_INTS = st.one_of(
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from([1, 2, 4, 8, 16, 32]),
    st.sampled_from([0, 96, 128, 256, 2**31 - 1, 2**31, 2**40, -1]),
)
_TWEAKS = st.dictionaries(st.sampled_from(_INT_FIELDS), _INTS, max_size=4)
# ... and, in about one mutant of four, hostile values under any key.
_HOSTILE = st.dictionaries(
    st.one_of(st.sampled_from(_FIELDS), st.text(max_size=4)),
    st.one_of(_VALUES, _DEEP),
    min_size=1,
    max_size=3,
)
_MUTATIONS = st.tuples(_TWEAKS, st.one_of(st.just({}), st.just({}), st.just({}), _HOSTILE)).map(
    lambda t: t[0] | t[1]
)
_MODELS = st.one_of(st.none(), st.sampled_from([*pc.MODEL_CLASSES, "", "Bogus", "[b]x"]))
_WORKLOAD = st.dictionaries(
    st.sampled_from(
        [
            "batch_size",
            "seq_len",
            "image_size",
            "num_frames",
            "audio_samples",
            "subsampled_image_points",
            "subsampled_audio_points",
            "dtype",
            "mode",
            "optimizer",
            "checkpointing",
            "bogus",
        ]
    ),
    st.one_of(
        st.integers(1, 64),
        st.tuples(st.integers(1, 300), st.integers(1, 300)),
        st.sampled_from(["fp32", "bf16", "mixed-bf16", "training", "inference", "adam", "sgd"]),
        st.booleans(),
        _SCALARS,
        st.tuples(st.integers(-2, 600), st.integers(-2, 600)),
    ),
    max_size=3,
)


def _report(capsys: pytest.CaptureFixture[str], name: str, counts: Counter[str], t0: float) -> None:
    why = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(counts.items()) if ":" in k)
    plots = f", {counts['plots written']} plots written" if counts["plots written"] else ""
    line = (
        f"[fuzz] {name}: tried {counts['tried']}, rejected {counts['rejected']}, "
        f"accepted {counts['accepted']}{plots}, {time.monotonic() - t0:.1f} s"
        + (f" (rejected by: {why})" if why else "")
    )
    with capsys.disabled():
        print(line)


@pytest.fixture
def tally(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()
    t0 = time.monotonic()
    yield counts
    _report(capsys, request.node.name, counts, t0)


# --- library ---------------------------------------------------------------------------------


@settings(
    max_examples=N_LIBRARY,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    base=st.sampled_from(sorted(_BASES)),
    mutations=_MUTATIONS,
    drop=st.lists(st.sampled_from(_FIELDS), max_size=2),
    # one mutant in ten gets a key JSON cannot hold
    odd_key=st.integers(0, 9).flatmap(
        lambda i: st.one_of(_HUGE, st.integers(), st.binary(max_size=2)) if i == 0 else st.none()
    ),
    model=_MODELS,
    workload=_WORKLOAD,
)
def test_library_raises_only_documented_errors(
    tally: Counter[str],
    base: str,
    mutations: dict[Any, Any],
    drop: list[str],
    odd_key: Any,
    model: str | None,
    workload: dict[str, Any],
) -> None:
    data: dict[Any, Any] = {k: v for k, v in _BASES[base].items() if k not in drop}
    data |= mutations
    if odd_key is not None:
        data[odd_key] = 1  # a key JSON cannot hold
    tally["tried"] += 1
    start = time.monotonic()
    stage = "load_config"
    try:
        config = pc.load_config(data)
        stage = "resolve"
        resolved = pc.resolve(config, model)
        stage = "count_params"
        pc.count_params(resolved)
        stage = "Workload"
        wl = pc.Workload(**workload)
        stage = "check_workload"
        if any(f.severity == "error" for f in pc.check_workload(resolved, wl)):
            tally["rejected"] += 1
            tally["rejected:workload for this model"] += 1
            return
        stage = "count_flops"
        pc.count_flops(resolved, wl)
        stage = "count_memory"
        pc.count_memory(resolved, wl)
    except pc.PerceiverCalcError as err:
        tally["rejected"] += 1
        tally[f"rejected:{stage}"] += 1
        assert str(err)  # a message, always
        assert len(str(err)) < 20_000, (stage, len(str(err)))  # no value echoed in full
    else:
        tally["accepted"] += 1
    finally:
        elapsed = time.monotonic() - start
        assert elapsed < LIBRARY_SECONDS, (stage, elapsed)


# --- CLI ---------------------------------------------------------------------------------------

_OPTION_VALUES = st.sampled_from(
    [
        "1",
        "2",
        "4",
        "16",
        "32",
        "8x8",
        "fp32",
        "bf16",
        "table",
        "json",
        "",
        "0",
        "-1",
        "-1000",
        "1",
        "2",
        "8",
        "nan",
        "inf",
        "-inf",
        "1e309",
        "9" * 5000,
        "[bold]x[/bold]",
        "a[/b]c",
        "16x16",
        "0x0",
        "224x",
        "\u00d7",
        "bogus",
        "json",
        "csv",
        "markdown",
        "table",
    ]
)
_OPTIONS = {
    "report": ["--format", "--batch-size", "--seq-len", "--image-size", "--model", "--dtype"],
    "explain": ["--format", "--model"],
    "validate": ["--model"],
    "sweep": ["--format", "--batch-size", "--seq-len", "--model", "--dtype"],
    "fit": ["--format", "--max-params", "--max-flops", "--max-memory", "--batch-size"],
    "compare": ["--format", "--batch-size", "--model"],
    "plan": ["--format", "--gpus", "--mfu", "--samples", "--device", "--batch-size"],
}
_VARY = st.sampled_from(
    [
        "d_model=16,32",
        "num_latents=4:12:4",
        "d_model=16,32",
        "d_latents=32:96:32",
        "num_blocks=1,2",
        "d_model=3,5",  # every row invalid with 2 heads
        "d_model=-1,0",
        "bogus=1,2",
        "d_model=",
        "d_model=1:" + "9" * 5000,
        "[b]x[/b]=1",
        "d_model",
    ]
)
# Options with values every command that has them accepts (for tiny.json).
_GOOD = [
    ("--format", "json"),
    ("--format", "table"),
    ("--batch-size", "2"),
    ("--seq-len", "32"),
    ("--dtype", "bf16"),
    ("--gpus", "2"),
    ("--max-params", "100000"),
]
_PLOT_COMMANDS = ("sweep", "fit")
_runner = CliRunner()


def _write_config(tmp: Path, mutations: dict[str, Any]) -> Path:
    p = tmp / "config.json"
    try:
        text = json.dumps(_BASES["tiny"] | mutations)
    except (TypeError, ValueError):  # a value JSON cannot hold: the base config
        text = json.dumps(_BASES["tiny"])
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


_JSON_MUTATIONS = st.dictionaries(
    st.sampled_from(_FIELDS),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 300),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["", "gelu", "[red]x", "kv"]),
        st.lists(st.integers(0, 300), max_size=3),
        st.dictionaries(st.sampled_from(["0", "1", "x"]), st.text(max_size=3), max_size=2),
    ),
    max_size=3,
)


@settings(
    max_examples=N_CLI,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(sorted(_OPTIONS)),
    mutations=_JSON_MUTATIONS,
    options=st.lists(
        st.one_of(st.tuples(st.integers(0, 9), _OPTION_VALUES), st.sampled_from(_GOOD)),
        max_size=3,
    ),
    vary=_VARY,
    plot_name=st.sampled_from(["keep.png", "keep.svg", "keep", "keep.xyz", "missing/k.png"]),
    with_plot=st.booleans(),
)
def test_cli_exits_0_or_2_and_keeps_existing_files(
    tally: Counter[str],
    tmp_path_factory: pytest.TempPathFactory,
    command: str,
    mutations: dict[str, Any],
    options: list[tuple[int, str]],
    vary: str,
    plot_name: str,
    with_plot: bool,
) -> None:
    tmp = tmp_path_factory.mktemp("cli")
    path = _write_config(tmp, mutations)
    keep = {name: tmp / name for name in ("keep.png", "keep.svg", "keep", "keep.xyz")}
    for name, p in keep.items():
        p.write_bytes(b"existing " + name.encode())
    args = [command, str(path)]
    if command == "compare":
        args.append(str(path))
    if command in ("sweep", "fit"):
        args += ["--vary", vary]
    names = _OPTIONS[command]
    for i, value in options:
        name = names[i % len(names)] if isinstance(i, int) else i
        if name in names:
            args += [name, value]
    if with_plot and command in _PLOT_COMMANDS:
        args += ["--plot", str(tmp / plot_name)]
    tally["tried"] += 1
    start = time.monotonic()
    result = _runner.invoke(app, args, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "100"})
    elapsed = time.monotonic() - start
    out = result.output
    assert result.exit_code in (0, 2), (args, out, result.exception)
    assert "Traceback" not in out and "internal error" not in out, (args, out)
    assert elapsed < CLI_SECONDS, (args, elapsed)
    if result.exit_code == 0:
        tally["accepted"] += 1
    else:
        tally["rejected"] += 1
        tally[f"rejected:{command}"] += 1
        assert out.strip(), args  # a refusal says why
    plotted = with_plot and command in _PLOT_COMMANDS and result.exit_code == 0
    for name, p in keep.items():
        if plotted and plot_name == name:  # replaced by a complete plot
            head = p.read_bytes()[:200]
            assert head.startswith(b"\x89PNG") or b"<svg" in head or b"<?xml" in head, head
            tally["plots written"] += 1
        else:
            assert p.read_bytes() == b"existing " + name.encode(), (args, name, out)
    assert not [q for q in tmp.iterdir() if q.name.startswith(".")], "temporary file left"


@settings(
    max_examples=N_SUBPROCESS,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(["report", "validate", "explain", "sweep"]),
    mutations=_JSON_MUTATIONS,
    value=st.one_of(st.just("PerceiverForMaskedLM"), _OPTION_VALUES),
)
def test_real_processes_exit_0_or_2(
    tally: Counter[str],
    tmp_path_factory: pytest.TempPathFactory,
    command: str,
    mutations: dict[str, Any],
    value: str,
) -> None:
    """The console script itself (real stdout/stderr encodings, no CliRunner): same contract."""
    tmp = tmp_path_factory.mktemp("proc")
    path = _write_config(tmp, mutations)
    keep = tmp / "keep.png"
    keep.write_bytes(b"existing")
    args = [command, str(path)]
    if command == "sweep":
        args += ["--vary", "d_model=3,5", "--plot", str(keep)]  # every row invalid
    args += ["--model" if command != "sweep" else "--batch-size", value]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    tally["tried"] += 1
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", "from perceiver_calc.cli import main; main()", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - start < 60
    assert proc.returncode in (0, 2), (args, proc.stderr)
    assert "Traceback" not in proc.stderr, (args, proc.stderr)
    assert keep.read_bytes() == b"existing"
    tally["accepted" if proc.returncode == 0 else "rejected"] += 1
