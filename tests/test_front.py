"""The front door: one set of workload flags on every command that takes a workload, with the
README's promises checked against the commands' own --help."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from perceiver_calc.choices import Dtype, Mode, Optimizer
from perceiver_calc.cli import app
from perceiver_calc.cli_options import WORKLOAD_OPTIONS, WorkloadOptions, workload_options
from perceiver_calc.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
MULTIMODAL = ROOT / "examples" / "multimodal-perceiver.json"
LANGUAGE = ROOT / "examples" / "language-perceiver.json"
runner = CliRunner()


WORKLOAD_COMMANDS = ("report", "sweep", "fit", "compare", "plan", "check", "bench")


def click_exceptions() -> type[Exception]:
    """The exception a refused option value raises (typer vendors click: looked up, not
    imported by name)."""
    cmd = typer.main.get_command(app).commands["report"]  # type: ignore[attr-defined]
    try:
        cmd.make_context("report", ["examples/tiny.json", "--dtype", "fp8"])
    except Exception as err:
        return type(err)
    raise AssertionError("--dtype fp8 parsed")


def options_of(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in [*param.opts, *param.secondary_opts]}


def test_choices_are_the_workload_literals() -> None:
    # the group's --dtype/--mode/--optimizer take Workload's very Literal types
    for name, literal in (("dtype", Dtype), ("mode", Mode), ("optimizer", Optimizer)):
        assert Workload.model_fields[name].annotation is literal
        assert WORKLOAD_OPTIONS[name].type is literal
        # and every command that takes a workload parses exactly those choices
        flag = "--" + name
        for command in WORKLOAD_COMMANDS:
            for choice in get_args(literal):
                _dry_parse(command, [flag, choice])
            with pytest.raises(click_exceptions()):
                _dry_parse(command, [flag, "fp8"])


def test_the_option_table_is_the_workload_fields() -> None:
    assert list(WORKLOAD_OPTIONS) == list(Workload.model_fields)
    for name, spec in WORKLOAD_OPTIONS.items():
        assert spec.default == Workload.model_fields[name].default, name


def _sample(flag: str, value: str | None) -> list[list[str]]:
    """The argument lists that give ``flag`` the value(s) README names for it."""
    placeholders = {
        "HxW": "64x64",
        "N": "100",
        "BYTES": "1000000000",
        "CLASS": "PerceiverForMaskedLM",
        "REF": "main",
        "out.png": "out.png",
    }
    if value is None:
        flags = ("--strict", "--checkpointing", "--no-checkpointing")
        return [[flag]] if flag in flags else [[flag, "2"]]
    if value.startswith("FIELD="):
        return [[flag, "num_latents=8"]]
    return [
        [flag, v] for v in value.replace("\\|", "|").split("|") for v in [placeholders.get(v, v)]
    ]


def _dry_parse(command: str, args: list[str]) -> None:
    """Parse (and type-convert) ``args`` as ``command`` would, without running it."""
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    required = ["examples/tiny.json"]
    if command in ("sweep", "fit") and "--vary" not in args:
        required += ["--vary", "num_latents=8"]
    with cmd.make_context(command, [*required, *args]):
        pass


def test_every_workload_flag_the_readme_lists_parses_on_every_command_it_lists() -> None:
    readme = (ROOT / "README.md").read_text()
    para = readme[readme.index("Workload flags (") :].split("\n\n")[0]
    commands = re.match(r"Workload flags \(([^)]*)\)", para)
    assert commands is not None
    listed = commands[1].split(", ")
    assert set(listed) == set(WORKLOAD_COMMANDS)
    # the paragraph's last sentence is about plan's --samples/--device, not workload flags
    flags = re.findall(r"`(--[a-z-]+)(?: ([^`]+))?`", para.split("`plan --samples")[0])
    # every workload option, each once (a boolean's --no- form besides)
    names = [f for f, _ in flags if f != "--no-checkpointing"]
    assert sorted(names) == sorted("--" + n.replace("_", "-") for n in Workload.model_fields)
    for command in listed:
        for flag, value in flags:
            assert flag in options_of(command), (command, flag)
            for args in _sample(flag, value or None):
                _dry_parse(command, args)  # a refused value raises click's BadParameter


def test_every_flag_in_the_readme_commands_table_parses() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| command | what it does |") :].split("\n\n")[0]
    rows = table.splitlines()[2:]
    assert len(rows) == 9
    checked = 0
    for row in rows:
        command = re.match(r"\| `perceiver-calc (\w+)", row)
        assert command is not None, row
        have = options_of(command[1])
        for flag, value in re.findall(r"(--[a-z-]+)(?: ([^` ]+))?", row):
            if flag == "--vary" and value == "...":
                value = "FIELD=V"
            if value and value.startswith("--"):
                value = ""
            assert flag in have, (command[1], flag)
            for args in _sample(flag, value or None):
                _dry_parse(command[1], args)
                checked += 1
    assert checked >= 20


def test_revision_parses_where_the_readme_says() -> None:
    readme = (ROOT / "README.md").read_text()
    where = re.search(r"`--revision REF` on ([a-z/]+)\)", readme)
    assert where is not None
    for command in where[1].split("/"):
        _dry_parse(command, ["--revision", "main"])


def test_a_workload_flag_at_its_default_makes_the_input_the_users(tmp_path: Path) -> None:
    # optical flow decodes H·W queries: chunk_size_feed_forward 512 divides the latents (2048)
    # but not 368·496 = 182,528, so the default input fails transformers' chunking.
    config = json.loads((ROOT / "examples" / "optical-flow-perceiver.json").read_text())
    config["chunk_size_feed_forward"] = 512
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(config))
    default = runner.invoke(app, ["report", str(path), "--format", "json"])
    assert default.exit_code == 0  # the default input: a warning, parameters still reported
    assert "FLOPs and memory need a valid input" in json.dumps(
        json.loads(default.stdout)["findings"]
    )
    chosen = runner.invoke(app, ["report", str(path), "--batch-size", "1"])
    assert chosen.exit_code == 2  # given, even at its default value: the user's input
    assert "must be a multiple of chunk_size_feed_forward (512)" in chosen.stderr


def test_workload_options_give_the_command_defaults_and_the_fields_set() -> None:
    seen: list[Workload] = []
    probe = typer.Typer()

    @probe.command()
    @workload_options(omit=("checkpointing",), mode="training")
    def cmd(workload: WorkloadOptions, tag: str = "") -> None:
        seen.append(workload.build())

    assert runner.invoke(probe, []).exit_code == 0
    assert runner.invoke(probe, ["--batch-size", "1", "--dtype", "bf16"]).exit_code == 0
    bad = runner.invoke(probe, ["--checkpointing"])
    assert bad.exit_code == 2 and "No such option" in bad.output
    assert [w.mode for w in seen] == ["training", "training"]
    assert [w.model_fields_set for w in seen] == [{"mode"}, {"mode", "batch_size", "dtype"}]
    assert seen[1].dtype == "bf16"


@pytest.mark.parametrize(
    "command",
    [["report"], ["sweep", "--vary", "num_latents=784"], ["fit", "--vary", "num_latents=784"]],
)
def test_multimodal_flags_reach_the_workload(command: list[str]) -> None:
    args = [command[0], str(MULTIMODAL), *command[1:], "--format", "json"]
    flags = [
        "--num-frames",
        "8",
        "--audio-samples",
        "15360",
        "--subsampled-image-points",
        "100",
        "--subsampled-audio-points",
        "7",
    ]
    small = runner.invoke(app, args + flags)
    full = runner.invoke(app, args)
    assert small.exit_code == 0 and full.exit_code == 0, small.output + full.output
    if command[0] == "report":
        wl = json.loads(small.stdout)["workload"]
        assert (wl["num_frames"], wl["audio_samples"]) == (8, 15360)
        assert (wl["subsampled_image_points"], wl["subsampled_audio_points"]) == (100, 7)
    assert small.stdout != full.stdout


def test_plan_takes_the_multimodal_flags() -> None:
    base = ["plan", str(MULTIMODAL), "--gpus", "2", "--format", "json"]
    full = json.loads(runner.invoke(app, base).stdout)
    small = json.loads(runner.invoke(app, [*base, "--subsampled-image-points", "100"]).stdout)
    assert small != full


def test_plan_samples_without_device_is_exit_2() -> None:
    result = runner.invoke(app, ["plan", str(LANGUAGE), "--samples", "1000"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --samples needs --device: the time to train comes from its peak FLOP/s"
    )


def test_plan_takes_mode_training_and_picks_checkpointing_rows() -> None:
    base = ["plan", str(LANGUAGE), "--gpus", "2", "--device", "h100-sxm", "--samples", "1000"]

    def plan(*extra: str) -> Any:
        result = runner.invoke(app, [*base, *extra, "--format", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    both = plan()
    assert both["checkpointing"] is None
    assert [m["checkpointing"] for m in both["memory"]] == [False] * 5 + [True] * 5
    assert plan("--mode", "training") == both
    for flag, ckpt in (("--checkpointing", True), ("--no-checkpointing", False)):
        one = plan(flag)
        assert one["checkpointing"] is ckpt
        assert one["memory"] == [m for m in both["memory"] if m["checkpointing"] is ckpt]
        # the step times are the plan's own, both kept
        assert one["step_seconds"] == both["step_seconds"]
    table = runner.invoke(app, [*base, "--checkpointing"]).stdout
    assert "(with checkpointing)" in table and " no " not in table


def test_plan_refuses_inference_with_exit_2() -> None:
    result = runner.invoke(app, ["plan", str(LANGUAGE), "--mode", "inference"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --mode inference: plan plans training (memory per GPU under each sharding "
        "strategy, step time); for inference use `perceiver-calc report --mode inference`"
    )


def test_compare_and_fit_in_inference_mode_read_the_inference_counts() -> None:
    import perceiver_calc as pc
    from perceiver_calc.plan import fit
    from perceiver_calc.sweep import evaluate, grid

    tiny = ROOT / "examples" / "tiny.json"
    out = runner.invoke(
        app, ["compare", str(tiny), str(LANGUAGE), "--mode", "inference", "-f", "json"]
    )
    assert out.exit_code == 0, out.output
    memory = json.loads(out.stdout)["counts"]["memory_bytes"]
    inference = Workload(mode="inference")
    assert memory == [
        pc.count_memory(pc.resolve(pc.load_config(p)), inference).inference_peak_bytes
        for p in (tiny, LANGUAGE)
    ]

    base = ROOT / "docs" / "tutorial-base.json"
    axes = {"d_latents": [128, 256, 512], "num_latents": [32, 64, 128]}
    vary = [f"--vary={k}={','.join(map(str, v))}" for k, v in axes.items()]
    res = evaluate(
        grid(pc.load_config(base), axes, workload=Workload(seq_len=256, mode="inference"))
    )
    budget = int(np.median(res.counts["forward_flops"]))
    args = ["fit", str(base), *vary, "--seq-len", "256", "--max-flops", str(budget), "-f", "json"]
    got = runner.invoke(app, [*args, "--mode", "inference"])
    assert got.exit_code == 0, got.output
    rows = json.loads(got.stdout)
    want = fit(res, max_flops=budget, flops="forward_flops")
    assert [(r["d_latents"], r["num_latents"]) for r in rows] == [
        (res.sweep.row(i)["d_latents"], res.sweep.row(i)["num_latents"]) for i in want.pareto
    ]
    assert all(r["forward_flops"] <= budget < r["training_flops"] for r in rows)
