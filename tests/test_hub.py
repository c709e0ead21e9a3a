"""PATH as a Hugging Face model id, a hub cache folder or a snapshot folder (perceiver_calc/hub.py).

Every test builds the cache layout huggingface_hub writes (models--org--name/refs/<ref> holding a
commit hash, snapshots/<hash>/config.json) and runs with HF_HUB_OFFLINE=1: no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from perceiver_calc.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "language-perceiver.json"
MAIN = "a" * 40
OTHER = "b" * 40
runner = CliRunner()


def make_cache(hub: Path, repo: str = "deepmind/language-perceiver") -> Path:
    """A cache with refs/main -> the example, refs/small -> the example with 2 latent blocks."""
    folder = hub / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    base = json.loads(EXAMPLE.read_text())
    for ref, commit, cfg in [
        ("main", MAIN, base),
        ("small", OTHER, base | {"num_self_attends_per_block": 2}),
    ]:
        (folder / "refs" / ref).write_text(commit)
        snap = folder / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(json.dumps(cfg))
    return folder


def total(*args: str) -> Any:
    result = runner.invoke(app, ["report", *args, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["params"]["total"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    make_cache(cache)
    return cache


def test_hub_id_reads_the_cache_at_main_and_at_a_revision(hub: Path) -> None:
    full = total(str(EXAMPLE))
    assert total("deepmind/language-perceiver") == full == 201_108_230
    small = total("deepmind/language-perceiver", "--revision", "small")
    assert small < full
    assert total("deepmind/language-perceiver", "--revision", OTHER) == small


def test_hf_home_is_used_without_hf_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_cache(tmp_path / "home" / "hub")
    assert total("deepmind/language-perceiver") == 201_108_230


def test_cache_folder_and_snapshot_folder_as_path(hub: Path) -> None:
    folder = hub / "models--deepmind--language-perceiver"
    assert total(str(folder)) == 201_108_230
    assert total(str(folder), "--revision", "small") < 201_108_230
    assert total(str(folder / "snapshots" / MAIN)) == 201_108_230


def test_cache_folder_without_the_revision_is_exit_2(hub: Path) -> None:
    folder = hub / "models--deepmind--language-perceiver"
    result = runner.invoke(app, ["report", str(folder), "--revision", "v9"])
    assert result.exit_code == 2
    assert "no snapshot for revision 'v9' (refs: main, small)" in result.stderr


def test_offline_and_not_cached_is_exit_2(hub: Path) -> None:
    result = runner.invoke(app, ["report", "deepmind/other-perceiver"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: deepmind/other-perceiver: no such file, and not in the Hugging Face cache ("
    )
    assert "while HF_HUB_OFFLINE is set" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_existing_local_path_wins_over_the_id(hub: Path, tmp_path: Path) -> None:
    local = tmp_path / "deepmind" / "language-perceiver"
    local.mkdir(parents=True)
    cfg = json.loads(EXAMPLE.read_text()) | {"num_self_attends_per_block": 1}
    (local / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "local.json").write_text(json.dumps(cfg))
    assert total("deepmind/language-perceiver") == total("local.json") < 201_108_230


def test_every_command_taking_a_path_accepts_an_id(hub: Path) -> None:
    for args in (
        ["validate", "deepmind/language-perceiver"],
        ["explain", "deepmind/language-perceiver", "--revision", "small"],
        ["compare", "deepmind/language-perceiver", str(EXAMPLE)],
        ["plan", "deepmind/language-perceiver", "--gpus", "2"],
        ["sweep", "deepmind/language-perceiver", "--vary", "num_latents=64,128"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)


def test_missing_huggingface_hub_is_exit_2_with_the_install_line(tmp_path: Path) -> None:
    # Online, not cached, huggingface_hub absent: the import fails before any network use.
    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        "from perceiver_calc.cli import main; sys.argv = ['perceiver-calc', 'report', 'org/name']\n"
        "main()\n"
    )
    env = {"HF_HUB_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: org/name: no such file; to read it as a Hugging Face model id install "
        "huggingface_hub: pip install -c constraints.txt -e '.[hub]' (from a clone of "
        "perceiver-calc)"
    )


def test_report_path_does_not_import_huggingface_hub(hub: Path) -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom perceiver_calc.cli import app\n"
        "r = CliRunner().invoke(app, ['report', 'deepmind/language-perceiver'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'huggingface_hub', 'transformers', 'torch'}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.strip() == "[]"
