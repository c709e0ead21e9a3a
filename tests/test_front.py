"""The front door: one set of workload flags on every command that takes a workload, with the
README's promises checked against the commands' own --help."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest
import typer
from typer.testing import CliRunner

from perceiver_calc.choices import Dtype, Mode, Optimizer
from perceiver_calc.cli import app
from perceiver_calc.cli_options import (
    WORKLOAD_OPTIONS,
    BatchOpt,
    DtypeChoice,
    ModeChoice,
    OptimizerChoice,
    WorkloadOptions,
    set_by_user,
    workload_options,
)
from perceiver_calc.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
MULTIMODAL = ROOT / "examples" / "multimodal-perceiver.json"
LANGUAGE = ROOT / "examples" / "language-perceiver.json"
runner = CliRunner()


def options_of(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in param.opts}


def test_choices_are_the_workload_literals() -> None:
    # the group's --dtype/--mode/--optimizer take Workload's very Literal types
    for name, literal in (("dtype", Dtype), ("mode", Mode), ("optimizer", Optimizer)):
        assert Workload.model_fields[name].annotation is literal
        assert WORKLOAD_OPTIONS[name].type is literal
    # the enums that check/bench still list one by one
    assert [c.value for c in DtypeChoice] == list(get_args(Dtype))
    assert [c.value for c in ModeChoice] == list(get_args(Mode))
    assert [c.value for c in OptimizerChoice] == list(get_args(Optimizer))


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
        return [[flag]] if flag in ("--strict", "--checkpointing") else [[flag, "2"]]
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
    assert set(listed) == {"report", "sweep", "fit", "compare", "plan", "check", "bench"}
    # the paragraph's last sentence is about plan's --samples/--device, not workload flags
    flags = re.findall(r"`(--[a-z-]+)(?: ([^`]+))?`", para.split("`plan --samples")[0])
    names = [f for f, _ in flags]
    # every workload option, each once
    assert sorted(names) == sorted("--" + n.replace("_", "-") for n in Workload.model_fields)
    exceptions = {"--mode": {"fit", "compare", "plan"}, "--checkpointing": {"plan"}}
    for command in listed:
        have = options_of(command)
        for flag, value in flags:
            if command in exceptions.get(flag, set()):
                assert flag not in have, (command, flag)
                continue
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


def test_set_by_user_counts_a_flag_given_at_its_default() -> None:
    seen: list[set[str]] = []
    probe = typer.Typer()

    @probe.command()
    def cmd(ctx: typer.Context, batch_size: BatchOpt = 1) -> None:
        seen.append(set_by_user(ctx))

    assert runner.invoke(probe, []).exit_code == 0
    assert runner.invoke(probe, ["--batch-size", "1"]).exit_code == 0
    assert seen == [set(), {"batch_size"}]
