"""The typer-free path of the common commands (perceiver_calc.cli_fast) against the typer app.

The contract: for any argument list, cli_fast either writes nothing and hands over (the typer
app then runs as always), or writes exactly what the typer app writes, and exits 0 as it does.
Checked on generated command lines (valid and invalid options, configs that pass and fail,
output that click would rewrite), in-process and as real processes; and its option table is
checked against the typer commands' own parameters so that the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from perceiver_calc import cli_fast
from perceiver_calc.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "language-perceiver.json"
runner = CliRunner()


def _configs(tmp: Path) -> dict[str, Path]:
    base = json.loads(EXAMPLE.read_text())
    paths = {
        "valid": EXAMPLE,
        "invalid": tmp / "invalid.json",
        "malformed": tmp / "malformed.json",
        "labels": tmp / "labels.json",  # non-ASCII text in the markdown output
        "escape": tmp / "escape.json",  # an escape character in a key: click strips ANSI codes
        "folder": tmp / "folder",
        "missing": tmp / "missing.json",
        "unknown": tmp / "unknown.json",  # a warning in validate's output
        "accent": tmp / "modèle.json",  # non-ASCII in validate's and markdown's output
    }
    paths["invalid"].write_text(json.dumps(base | {"qk_channels": 100}))
    paths["malformed"].write_text("{")
    paths["labels"].write_text(
        json.dumps(
            base
            | {"architectures": ["PerceiverForSequenceClassification"]}
            | {"id2label": {"0": "négatif", "1": "positif"}}
        )
    )
    paths["escape"].write_text(json.dumps(base | {"\x1b[31mred": 1}))
    paths["folder"].mkdir()
    (paths["folder"] / "config.json").write_text(EXAMPLE.read_text())
    paths["unknown"].write_text(json.dumps(base | {"num_latnets": 3}))
    paths["accent"].write_text(EXAMPLE.read_text())
    return paths


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _configs(tmp_path_factory.mktemp("fast"))


# Option tokens, valid and not: each is a group of arguments given together.
_TOKENS: list[list[str]] = [
    ["--format", "json"],
    ["-f", "json"],
    ["-f", "markdown"],
    ["--format=markdown"],
    ["--format", "table"],
    ["-fjson"],
    ["--format", "JSON"],
    ["--format"],
    ["--strict"],
    ["--strict=1"],
    ["--model", "PerceiverForMaskedLM"],
    ["--model", "PerceiverModel"],
    ["--model=PerceiverForSequenceClassification"],
    ["--model", "Nope"],
    ["--model", "--strict"],
    ["--model="],
    ["--revision", "main"],
    ["--batch-size", "2"],
    ["--batch-size", "0"],
    ["--batch-size", "+2"],
    ["--batch-size", "007"],
    ["--batch-size", "-1"],
    ["--batch-size", "9" * 30],
    ["--seq-len", "512"],
    ["--seq-len", "4096"],
    ["--num-frames", "2"],
    ["--audio-samples", "3"],
    ["--subsampled-image-points", "5"],
    ["--subsampled-audio-points", "7"],
    ["--dtype", "bf16"],
    ["--dtype", "mixed-fp16"],
    ["--dtype", "BF16"],
    ["--mode", "training"],
    ["--optimizer", "sgd"],
    ["--checkpointing"],
    ["--no-checkpointing"],
    ["--image-size", "64"],
    ["--convention", "paper"],
    ["--convention", "flopcounter"],
    ["--help"],
    ["--"],
    ["-"],
    ["extra.json"],
    ["--no-such-option"],
]


def _typer(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout


def _fast(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[bool, str]:
    capsys.readouterr()
    handled = cli_fast.run(args)
    out, err = capsys.readouterr()
    assert err == "", err  # the fast path never writes to stderr
    return handled, out


def _check_same(args: list[str], capsys: pytest.CaptureFixture[str]) -> bool:
    handled, out = _fast(args, capsys)
    code, expected = _typer(args)
    if handled:
        assert code == 0, (args, code)
        assert out == expected, args
    else:
        assert out == "", args  # handing over: nothing written
    return handled


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    command=st.sampled_from(["report", "explain", "validate"]),
    config=st.sampled_from(
        [
            "valid",
            "valid",
            "invalid",
            "malformed",
            "labels",
            "escape",
            "folder",
            "missing",
            "accent",
        ]
    ),
    tokens=st.lists(st.sampled_from(_TOKENS), max_size=4),
    path_first=st.booleans(),
)
def test_fast_path_prints_what_typer_prints_or_hands_over(
    configs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    command: str,
    config: str,
    tokens: list[list[str]],
    path_first: bool,
) -> None:
    opts = [arg for group in tokens for arg in group]
    path = [str(configs[config])]
    _check_same([command, *(path + opts if path_first else opts + path)], capsys)


@pytest.mark.parametrize(
    "args",
    [
        ["report", "{valid}", "--format", "json"],
        ["report", "{valid}", "-f", "json", "--batch-size", "8", "--mode", "training"],
        ["report", "--dtype", "mixed-bf16", "{valid}", "--checkpointing", "-f", "markdown"],
        ["report", "{valid}"],
        ["report", "{folder}", "--model=PerceiverModel", "--seq-len", "64"],
        ["explain", "{valid}", "-f", "json"],
        ["explain", "{valid}", "--format", "markdown"],
        ["explain", "{valid}"],
        ["validate", "{valid}"],
        ["validate", "{unknown}"],
        ["validate", "{valid}", "--model", "PerceiverForSequenceClassification", "--strict"],
    ],
)
def test_the_common_command_lines_take_the_fast_path(
    configs: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    args = [a.format(**{k: str(v) for k, v in configs.items()}) for a in args]
    assert _check_same(args, capsys), f"{args} was handed to typer"


@pytest.mark.parametrize(
    "args",
    [
        ["report", "{invalid}", "-f", "json"],  # exit 2 and its message: typer's path
        ["report", "{malformed}"],
        ["report", "{missing}", "-f", "json"],
        ["report", "{valid}", "--batch-size", "0"],
        ["validate", "{accent}"],  # non-ASCII: click may re-encode it
        ["report", "{accent}", "-f", "markdown"],
        ["validate", "{escape}"],  # click strips escape sequences off a non-terminal
        ["report", "{valid}", "--image-size", "64"],
        ["report", "{valid}", "--convention", "macs"],  # typer's code alone prints it
        ["report", "{valid}", "-f", "json", "--convention", "flopcounter"],
        ["report", "{valid}", "-f", "json", "-f", "json"],
        ["validate", "{valid}", "--help"],
        ["sweep", "{valid}", "--vary", "num_latents=64,128"],
        [],
    ],
)
def test_everything_else_is_handed_over_silently(
    configs: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    args = [a.format(**{k: str(v) for k, v in configs.items()}) for a in args]
    assert not _check_same(args, capsys)


def _click_params(command: str) -> dict[str, Any]:
    import typer.main

    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


@pytest.mark.parametrize("command", sorted(cli_fast._SPECS))
def test_option_table_matches_the_typer_commands(command: str) -> None:
    """Every option cli_fast reads is the typer command's: same names, kind, choices and
    default, no callback or environment variable that cli_fast would skip."""
    params = _click_params(command)
    specs = cli_fast._SPECS[command]
    arguments = [p for p in params.values() if p.param_type_name == "argument"]
    assert [p.name for p in arguments] == ["path"]
    for name, spec in specs.items():
        param = params[spec.dest]
        assert name in param.opts + param.secondary_opts, (name, param.opts)
        assert param.callback is None and param.envvar is None and not param.multiple
        assert param.nargs == 1 and not param.required
        default = param.default.value if hasattr(param.default, "value") else param.default
        assert default == spec.default, (name, default, spec.default)
        # typer converts each value by its annotation (typer._coercion.TypeDescriptor)
        desc = param.type_descriptor
        if spec.kind == "flag":
            assert param.is_flag and desc.annotation is bool
            if param.secondary_opts:  # --checkpointing/--no-checkpointing
                assert spec.flag_value is (name in param.opts)
        elif spec.kind == "int":
            assert desc.annotation is int, (name, desc.annotation)
            assert not desc.is_ranged
        elif spec.kind == "choice":
            # an Enum (--format) or a Literal (the workload choices, perceiver_calc.choices)
            got = tuple(getattr(c, "value", c) for c in desc.choices)
            assert got == spec.choices, (name, got)
            assert desc.case_sensitive
        else:
            assert desc.annotation is str and not desc.is_choice, (name, desc.annotation)
    # Options cli_fast does not read are left to typer: say which, so that a new one is seen.
    read = {spec.dest for spec in specs.values()}
    left = {p.name for p in params.values() if p.param_type_name == "option"} - read
    expected = {"report": {"image_size", "convention"}}.get(command, set())
    assert left == expected, left


def test_workload_table_is_cli_options_table() -> None:
    """cli_fast.WORKLOAD is cli_options.WORKLOAD_OPTIONS (less --image-size): same fields in
    the same order, same defaults, same choices, flags for the bool one."""
    from typing import get_args

    from perceiver_calc.cli_options import WORKLOAD_OPTIONS

    fast = {spec.dest: spec for name, spec in cli_fast.WORKLOAD.items() if spec.flag_value}
    assert list(fast) == [n for n in WORKLOAD_OPTIONS if n != "image_size"]
    for name, spec in fast.items():
        opt = WORKLOAD_OPTIONS[name]
        assert spec.default == opt.default, name
        kind = "flag" if opt.type is bool else "int" if opt.type in (int, int | None) else "choice"
        assert spec.kind == kind, (name, spec.kind, opt.type)
        if kind == "choice":
            assert spec.choices == get_args(opt.type), name


@pytest.mark.parametrize(
    "given",
    [{}, {"batch_size": 1}, {"mode": "training", "dtype": "bf16", "checkpointing": False}],
)
def test_fast_workload_is_the_typer_commands(given: dict[str, Any]) -> None:
    """The fast path builds the Workload report's WorkloadOptions.build() builds from the
    same options given, with the same fields set (which says whether the user chose one)."""
    from types import MappingProxyType

    from perceiver_calc.cli_options import WorkloadOptions

    fast = cli_fast._workload(given)
    typer_side = WorkloadOptions(given=MappingProxyType(given), defaults={}).build()
    assert fast == typer_side
    assert fast.model_fields_set == typer_side.model_fields_set == set(given)


def _proc(args: list[str], fast: bool, **kw: Any) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from perceiver_calc.cli import main; "
        f"sys.argv = ['perceiver-calc', *sys.argv[1:]]; main(fast={fast})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], text=True, env=env, cwd=ROOT, **kw, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ["report", "examples/language-perceiver.json", "-f", "json"],
        ["validate", "examples/language-perceiver.json"],
        ["report", "examples/language-perceiver.json", "--format", "markdown"],
    ],
)
def test_real_processes_same_bytes_and_exit(args: list[str]) -> None:
    fast = _proc(args, True, capture_output=True)
    slow = _proc(args, False, capture_output=True)
    assert (fast.returncode, fast.stdout, fast.stderr) == (0, slow.stdout, slow.stderr)
    assert slow.returncode == 0


def test_a_closed_pipe_ends_both_paths_alike() -> None:
    """`perceiver-calc report ... | head -c0`: exit 1, nothing on stderr, on both paths."""
    results = []
    for fast in (True, False):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; time.sleep(1.5); "
                "from perceiver_calc.cli import main; "
                "sys.argv = ['perceiver-calc', 'report', sys.argv[1], '-f', 'json']; "
                f"main(fast={fast})",
                str(EXAMPLE),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the child writes anything
        err = proc.stderr.read().decode()
        results.append((proc.wait(timeout=60), err))
    assert results[0] == results[1] == (1, ""), results
