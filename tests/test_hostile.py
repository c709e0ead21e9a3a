"""Hostile input and safe output: every refusal is exit 2 with a message naming the input, nothing
blocks, and a file the user already has is byte-identical after every failing run.

Each case of issue 12 that this suite covers is a pinned test; the property test at the end
mutates a valid config and checks the CLI's contract (exit 0 or 2, never a traceback). The
fuzz suite at the issue's scale (10,000 library mutants, 500 CLI runs with an existing
``--plot`` file checked after each failing run) is tests/test_fuzz.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import perceiver_calc as pc
from perceiver_calc.cli import app
from perceiver_calc.errors import InputError, PerceiverCalcError
from perceiver_calc.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.json"
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def refused(result: Any, *needles: str) -> None:
    """Exit 2, no traceback, and every needle in the message."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


# --- inputs ------------------------------------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    start = time.monotonic()
    # A subprocess: a blocking open would hang the test process itself.
    proc = subprocess.run(
        [sys.executable, "-m", "perceiver_calc.cli", "validate", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode == 2, proc.stderr
    assert "is a FIFO (named pipe); give a config.json file" in proc.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_files_are_refused(device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"{device} not on this system")
    refused(run("validate", device), f"{device}: is a device; give a config.json file")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    # A valid config followed by a 17 MiB value under an unknown key.
    big.write_text(json.dumps({"d_model": 768, "padding": "x" * (17 * 2**20)}))
    refused(run("validate", str(big)), "over the 16,777,216-byte limit for a config")


def test_symlink_loop_says_so(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    refused(run("validate", str(a)), "too many levels of symbolic links")


def test_name_too_long_is_exit_2(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 300 + ".json")
    refused(run("validate", str(long)), "file name too long", "(")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    refused(run("validate", str(tmp_path / "nope.json")), "nope.json: cannot read: no such file")


def test_folder_without_config(tmp_path: Path) -> None:
    refused(run("validate", str(tmp_path)), "folder has no config.json")


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(run("validate", str(deep)), "JSON nested deeper than 64 levels")


def test_number_of_5000_digits(tmp_path: Path) -> None:
    p = tmp_path / "digits.json"
    p.write_text('{"d_model": ' + "9" * 5000 + "}")
    refused(run("validate", str(p)), "a number with 5000 digits (limit 100)")


def test_image_size_with_4300_digits() -> None:
    result = run("report", str(TINY), "--image-size", "9" * 4400)
    refused(result, "error: --image-size '999", "(4,400 characters)", "expected HxW")
    assert "----" not in result.output and len(result.output) < 300  # not echoed in full


class _Hostile:
    """A value whose repr and int conversion fail, as a library caller might pass."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __int__(self) -> int:
        raise RuntimeError("int")

    def __hash__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("data", "error", "needle"),
    [
        ({"d_model": 10**5000}, pc.ConfigError, "d_model (<int of about 5,001 digits>)"),
        ({"train_size": [-(10**5000)]}, pc.ConfigError, "<negative int of about 5,001 digits>"),
        ({"image_size": [10**5000]}, pc.ConfigError, "image_size"),
        ({"d_model": _Hostile()}, pc.ConfigError, "d_model (<_Hostile that cannot be shown>)"),
        ({"id2label": {_Hostile(): "a"}}, pc.ConfigError, "id2label keys must be whole numbers"),
        ({10**5000: 1}, pc.InputError, "config keys must be strings; got the int key <int of"),
        ({_Hostile(): 1}, pc.InputError, "config keys must be strings"),
    ],
)
def test_python_values_json_cannot_hold(data: dict[Any, Any], error: type, needle: str) -> None:
    """A dict given to the library may hold what no JSON file can (ints over Python's 4,300-digit
    str limit, objects whose repr raises): still only the documented errors, with a message."""
    with pytest.raises(error) as info:
        pc.validate(data)
    assert needle in str(info.value)


def test_unknown_and_legacy_keys_with_huge_ints_are_warnings() -> None:
    resolved = pc.validate(json.loads(TINY.read_text()) | {"seq_len": 10**5000, "x": 10**5000})
    shown = {f.code: f.rule for f in resolved.findings}
    assert "<int of about 5,001 digits>" in shown["legacy_key"]
    assert "<int of about 5,001 digits>" in shown["unknown_key"]


def test_workload_with_a_huge_int_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"image_size.0 \(<int of about 5,001 digits>\)"):
        Workload(image_size=(10**5000, 1))
    with pytest.raises(InputError, match="batch_size"):
        Workload(batch_size=_Hostile())  # type: ignore[arg-type]


def test_duplicate_keys_warn_and_strict_refuses(tmp_path: Path) -> None:
    p = tmp_path / "dup.json"
    p.write_text('{"d_model": 768, "d_model": 760}')
    ok = run("validate", str(p))
    assert ok.exit_code == 0
    assert "d_model is given more than once in the JSON object; the last value is used" in (
        ok.output
    )
    refused(run("validate", "--strict", str(p)), "d_model is given more than once")


def test_id2label_with_an_infinite_key_is_a_config_error() -> None:
    with pytest.raises(pc.ConfigError, match="id2label keys must be whole numbers"):
        pc.load_config({"id2label": {float("inf"): "a"}})


# --- markup ------------------------------------------------------------------------------------


def test_markup_in_paths_prints_literally(tmp_path: Path) -> None:
    (tmp_path / "a[").mkdir()
    odd = tmp_path / "a[" / "b]c.json"
    odd.write_text(TINY.read_text())
    result = run("validate", str(odd))
    assert result.exit_code == 0, result.output
    assert "a[/b]c.json: valid" in result.output
    exp = tmp_path / "[exp]"
    exp.mkdir()
    (exp / "config.json").write_text(TINY.read_text())
    result = run("validate", str(exp / "config.json"))
    assert "[exp]/config.json: valid" in result.output


def test_markup_in_keys_prints_literally(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"[bold]x[/bold]": 1, "[/]": 2}))
    result = run("report", str(p))
    assert result.exit_code == 0, result.output
    assert "[bold]x[/bold] (1) is not a PerceiverConfig field" in result.output
    assert "[/] (2)" in result.output


# --- output files ------------------------------------------------------------------------------


@pytest.fixture
def existing_plot(tmp_path: Path) -> Path:
    p = tmp_path / "plot.png"
    p.write_bytes(b"the user's own plot")
    return p


def test_plot_all_invalid_leaves_the_file(existing_plot: Path) -> None:
    before = existing_plot.read_bytes()
    result = run("sweep", str(TINY), "--vary", "d_latents=7,9", "--plot", str(existing_plot))
    refused(result, "no valid config to plot; the file is unchanged")
    assert existing_plot.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("out", "unknown file type '(no extension)'"),
        ("out.xyz", "unknown file type '.xyz'"),
        ("missing/out.png", "does not exist; create it"),
    ],
)
def test_plot_path_checked_before_any_work(tmp_path: Path, name: str, message: str) -> None:
    result = run("sweep", str(TINY), "--vary", "d_latents=8,16", "--plot", str(tmp_path / name))
    refused(result, message)
    # Checked first: no table was printed before the refusal.
    assert "configs" not in result.stdout
    assert not (tmp_path / "out.png").exists()


def test_plot_into_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "x.png"
    folder.mkdir()
    refused(run("sweep", str(TINY), "--vary", "d_latents=8", "--plot", str(folder)), "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_plot_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        result = run("sweep", str(TINY), "--vary", "d_latents=8", "--plot", str(ro / "p.png"))
        refused(result, "is not writable")
    finally:
        ro.chmod(0o700)


def test_plot_written_atomically(existing_plot: Path) -> None:
    result = run("sweep", str(TINY), "--vary", "d_latents=8,16", "--plot", str(existing_plot))
    assert result.exit_code == 0, result.output
    assert existing_plot.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in existing_plot.parent.iterdir()] == ["plot.png"]  # no temp left


def test_failed_write_leaves_the_file(existing_plot: Path) -> None:
    from perceiver_calc.output import replace_atomically

    before = existing_plot.read_bytes()

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="No space left on device; the existing file"):
        replace_atomically(existing_plot, boom)
    assert existing_plot.read_bytes() == before
    assert [p.name for p in existing_plot.parent.iterdir()] == ["plot.png"]


def test_plot_extra_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    result = run("sweep", str(TINY), "--vary", "d_latents=8", "--plot", str(tmp_path / "p.png"))
    refused(result, "--plot needs matplotlib", "pip install -c constraints.txt -e '.[plot]'")


# --- loose values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("plan", str(TINY), "--samples", "-1000", "--device", "h100-sxm"),
        ("plan", str(TINY), "--gpus", "0"),
        ("plan", str(TINY), "--mfu", "nan"),
        ("plan", str(TINY), "--mfu", "1.5"),
        ("plan", str(TINY), "--format", "bogus"),
        ("compare", str(TINY), str(TINY), "--format", "bogus"),
        ("bench", str(TINY), "--peak-flops", "nan"),
        ("bench", str(TINY), "--peak-flops", "inf"),
        ("bench", str(TINY), "--peak-flops", "-1"),
    ],
)
def test_loose_values_are_refused(args: tuple[str, ...]) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_empty_model_name_is_refused() -> None:
    refused(run("report", str(TINY), "--model", ""), "--model names ''")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": True}, "batch_size (True): Input should be a valid integer"),
        ({"batch_size": "8"}, "batch_size ('8'): Input should be a valid integer"),
        ({"checkpointing": "yes"}, "checkpointing ('yes'): Input should be a valid boolean"),
        ({"seq_len": 0}, "seq_len (0): Input should be greater than or equal to 1"),
        ({"dtype": "fp64"}, "dtype ('fp64')"),
    ],
)
def test_workload_is_strict(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as err:
        Workload(**fields)
    assert message in str(err.value)


# --- the contract, on mutants ------------------------------------------------------------------

_BASE = json.loads(TINY.read_text())
_FIELDS = [*_BASE, "qk_channels", "v_channels", "id2label", "num_labels", "image_size", "x"]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(-3, 300), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=3),
)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, min_size=1, max_size=4))
def test_mutated_configs_exit_0_or_2(tmp_path: Path, mutations: dict[str, Any]) -> None:
    p = tmp_path / "m.json"
    p.write_text(json.dumps(_BASE | mutations))
    for args in (("report", str(p), "--format", "json"), ("validate", str(p))):
        start = time.monotonic()
        result = runner.invoke(app, list(args))
        assert result.exit_code in (0, 2), (mutations, result.output)
        assert "Traceback" not in result.output
        assert time.monotonic() - start < 5
    # The library raises only its documented exceptions on the same input.
    with contextlib.suppress(PerceiverCalcError):
        pc.count_params(pc.validate(_BASE | mutations))


# --- check/bench under the process's own memory limit --------------------------------------


def test_host_memory_limit_reads_rlimit_as() -> None:
    """Under ``ulimit -v`` the binding limit is RLIMIT_AS, not MemAvailable (a subprocess: the
    limit is set for it alone)."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30));"
        "from perceiver_calc.hostmem import host_memory_limit; b, s = host_memory_limit();"
        "print(b, s)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    free, source = proc.stdout.split(" ", 1)
    assert int(free) < 3 * 2**30
    assert source.startswith("ulimit -v (RLIMIT_AS 3,221,225,472 bytes)")


def test_bench_refuses_a_model_over_the_address_space_limit(tmp_path: Path) -> None:
    """A 3.5 GiB model under a 3 GB ``ulimit -v``: refused with exit 2 before it is built."""
    pytest.importorskip("torch")
    cfg = tmp_path / "big.json"
    cfg.write_text(json.dumps({"d_latents": 2048, "num_self_attends_per_block": 20}))
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9));"
        "from perceiver_calc.cli import main; sys.argv = ['perceiver-calc', 'bench', sys.argv[1],"
        "'--device', 'cpu']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to materialise the model" in proc.stderr
    assert "ulimit -v (RLIMIT_AS 3,000,000,000 bytes)" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- config-side containers are immutable, huge values are not echoed ---------------------------


def test_config_containers_are_deeply_immutable() -> None:
    data = {
        "id2label": {"0": "a", "1": "b"},
        "task_specific_params": {"t": [1]},
        "x": [1, {"y": 2}],
    }
    config = pc.load_config(data)
    with pytest.raises(TypeError):
        config.id2label[2] = "c"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.base_keys["t"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.unknown_keys["x"].append(2)
    with pytest.raises(TypeError):
        config.unknown_keys["x"][1]["y"] = 3
    assert config.id2label == {0: "a", 1: "b"}  # still equal to the dict it was given as
    assert hash(config) == hash(pc.load_config(data))  # hashable now: usable as a cache key
    # dumps are plain dicts and lists again: JSON and transformers see what was given
    dumped = config.model_dump()
    assert dumped["unknown_keys"] == {"x": [1, {"y": 2}]} and type(dumped["id2label"]) is dict
    assert json.loads(config.model_dump_json())["base_keys"] == {"task_specific_params": {"t": [1]}}
    # the warning shows the value as written, not as frozen
    (finding,) = [f for f in pc.resolve(config).findings if f.code == "unknown_key"]
    assert finding.rule.startswith("x ([1, {'y': 2}])") and finding.values == {"x": [1, {"y": 2}]}


def test_huge_unknown_value_is_not_echoed_in_full(tmp_path: Path) -> None:
    p = tmp_path / "big.json"
    p.write_text(json.dumps(json.loads(TINY.read_text()) | {"zz": "y" * 2_000_000}))
    result = run("report", str(p), "--format", "json")
    assert result.exit_code == 0
    assert len(result.stdout) < 50_000  # the value is 2 MB
    (finding,) = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "unknown_key"]
    assert finding["values"]["zz"].startswith("'yyy") and finding["values"]["zz"].endswith("...")
    assert len(finding["values"]["zz"]) == 200


def test_results_are_read_only() -> None:
    """Issue 12: a planning script cannot corrupt a result (or a cached one) by assigning into
    it: the per-module maps and a finding's values are read-only views."""
    config = pc.load_config(json.loads(TINY.read_text()))
    resolved = pc.resolve(config)
    workload = pc.Workload(mode="training")
    maps = [
        pc.count_params(resolved).by_module,
        pc.count_flops(resolved, workload).by_module,
        pc.count_memory(resolved, workload).by_module,
    ]
    with pytest.raises(pc.ConfigError) as err:
        pc.resolve(pc.load_config({"d_latents": 7}))
    maps += [f.values for f in err.value.findings]
    for mapping in maps:
        key = next(iter(mapping))
        with pytest.raises(TypeError):
            mapping[key] = 0  # type: ignore[index]
    given = {"d_latents": 7}
    finding = err.value.findings[0]
    copy = dataclasses.replace(finding, values=given)
    given["d_latents"] = 8  # the caller's dict is copied, not wrapped
    assert copy.values == {"d_latents": 7}
