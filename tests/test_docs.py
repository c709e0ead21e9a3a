"""Docs that cannot drift: README's and the tutorial's command outputs are the program's
(docs/gen_samples.py regenerates them), the tutorial's Python blocks run, and its Python and
shell paths give the same numbers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "gen_samples.py"


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_samples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_and_tutorial_outputs_are_current() -> None:
    """Regenerate them with `python docs/gen_samples.py` when this fails."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_stale_output_is_rewritten(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    stale = readme.replace("parameters: 201,108,230", "parameters: 1", 1)
    assert stale != readme
    path = tmp_path / "README.md"
    path.write_text(stale)
    assert _gen().render(path) == readme
    # and the made-up bad config's exit status is the program's
    assert "$ echo $?\n2\n" in readme


def test_the_tutorial_python_and_shell_plans_agree() -> None:
    text, ns = _gen().run(ROOT / "docs" / "tutorial.md")
    plan: Any = ns["plan"]
    shell = text[text.index("$ perceiver-calc plan chosen.json") :].split("```")[0]
    assert f"{plan.params:,} parameters, 8 GPUs, batch 8/GPU" in shell
    for m in plan.memory:
        row = f"{m.strategy:>9}  {'yes' if m.checkpointing else ' no':>4}"
        line = next(x for x in shell.splitlines() if x.startswith(row))
        assert line.split()[-2] == f"{m.total_bytes / 2**30:.2f}", line
    assert f"step: {plan.step_seconds * 1e3:.1f} ms" in shell
    assert f"{plan.train_seconds / 3600:.2f} h" in shell
    # the fit from the shell found the Pareto front the script found
    found: Any = ns["found"]
    assert f"{len(found.within)} of 40 configs within budget" in text
