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

from perceiver_calc.cli import app
from perceiver_calc.cli_options import (
    BatchOpt,
    DtypeChoice,
    ModeChoice,
    OptimizerChoice,
    set_by_user,
)
from perceiver_calc.workload import Dtype, Mode, Optimizer

ROOT = Path(__file__).resolve().parents[1]
MULTIMODAL = ROOT / "examples" / "multimodal-perceiver.json"
LANGUAGE = ROOT / "examples" / "language-perceiver.json"
runner = CliRunner()


def options_of(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt for param in cmd.params for opt in param.opts}


def test_choices_are_the_workload_literals() -> None:
    assert [c.value for c in DtypeChoice] == list(get_args(Dtype))
    assert [c.value for c in ModeChoice] == list(get_args(Mode))
    assert [c.value for c in OptimizerChoice] == list(get_args(Optimizer))


def test_every_workload_flag_the_readme_lists_is_on_every_command_it_lists() -> None:
    readme = (ROOT / "README.md").read_text()
    para = readme[readme.index("Workload flags (") :].split("\n\n")[0]
    commands = re.match(r"Workload flags \(([^)]*)\)", para)
    assert commands is not None
    listed = commands[1].split(", ")
    assert listed == ["report", "sweep", "fit", "plan", "check", "bench"]
    # the paragraph's last sentence is about plan's --samples/--device, not workload flags
    flags = re.findall(r"`(--[a-z-]+)", para.split("`plan --samples")[0])
    assert "--subsampled-image-points" in flags and "--num-frames" in flags
    exceptions = {"--mode": {"fit", "plan"}, "--checkpointing": {"plan"}}
    for command in listed:
        have = options_of(command)
        for flag in flags:
            if command in exceptions.get(flag, set()):
                assert flag not in have, (command, flag)
            else:
                assert flag in have, (command, flag)


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
