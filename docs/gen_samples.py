"""Regenerate the command outputs shown in README.md and docs/tutorial.md by running them, so
they cannot drift from the program.

python docs/gen_samples.py          # rewrite the ```console blocks' outputs
python docs/gen_samples.py --check  # exit 1 if any is out of date (tests/test_docs.py)

A ```console block holds ``$ COMMAND`` lines (a trailing `` \\`` continues one on the next
line), each followed by its output, which this script writes. Commands: ``perceiver-calc ARGS``
(run in-process, as a pipe sees it: stdout and stderr together, rich's 160 columns) and
``echo $?`` (the previous command's exit status). A ``# {...}`` comment after a command is a
config made up for the example: that JSON is written to the command's first ``*.json``
argument.

Each document runs in a fresh temporary folder holding a copy of ``examples/`` and of the
tutorial's base config; its ```python blocks are executed too, in order with the console
blocks (one namespace per document), so a script may write a config that a later command
reads, and a block that stops working fails the check.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "tutorial.md")
BLOCK = re.compile(r"^```(console|python)\n(.*?)^```$", re.M | re.S)
COMMENT = re.compile(r"\s+#\s+(\{.*\})\s*$")


def _setup(workdir: Path) -> None:
    shutil.copytree(ROOT / "examples", workdir / "examples")
    (workdir / "docs" / "figures").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "tutorial-base.json", workdir / "docs" / "tutorial-base.json")


class _Runner:
    """Runs one document's commands and scripts in a scratch folder."""

    def __init__(self) -> None:
        from typer.testing import CliRunner

        from perceiver_calc.cli import app

        self.app = app
        self.cli = CliRunner()
        self.status = 0
        self.namespace: dict[str, object] = {"__name__": "__docs__"}

    def command(self, text: str) -> str:
        """The output of one ``$`` command (its text without the ``$ ``)."""
        line = " ".join(part.rstrip("\\").strip() for part in text.splitlines())
        m = COMMENT.search(line)
        if m:
            line = line[: m.start()]
        args = shlex.split(line)
        if args == ["echo", "$?"]:
            return f"{self.status}\n"
        if args[:1] != ["perceiver-calc"]:
            raise SystemExit(f"docs/gen_samples.py: cannot run {text!r}")
        if m:
            target = next(a for a in args if a.endswith(".json"))
            Path(target).write_text(json.dumps(json.loads(m[1])))
        env = {"COLUMNS": None, "NO_COLOR": "1", "TERM": "dumb"}
        result = self.cli.invoke(self.app, args[1:], env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        self.status = result.exit_code
        out = "\n".join(line.rstrip() for line in result.output.splitlines())
        return out + "\n" if out else ""

    def script(self, code: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "<docs python block>", "exec"), self.namespace)


def _console(runner: _Runner, body: str) -> str:
    """A console block's body with every command's output regenerated."""
    out: list[str] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1  # an old output line
            continue
        cmd = [lines[i]]
        while cmd[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd.append(lines[i])
        i += 1
        out += cmd
        text = "\n".join(cmd)[2:]
        out.append(runner.command(text).rstrip("\n"))
    return "\n".join(out) + "\n"


def render(path: Path) -> str:
    """The document with every console block's outputs regenerated."""
    return run(path)[0]


def run(path: Path) -> tuple[str, dict[str, object]]:
    """The regenerated document, and the namespace its Python blocks left."""
    text = path.read_text()
    old = Path.cwd()
    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory() as tmp:
        _setup(Path(tmp))
        os.chdir(tmp)
        try:
            runner = _Runner()
            parts: list[str] = []
            last = 0
            for m in BLOCK.finditer(text):
                kind, body = m[1], m[2]
                if kind == "python":
                    runner.script(body)
                    continue
                parts += [text[last : m.start(2)], _console(runner, body)]
                last = m.end(2)
            parts.append(text[last:])
        finally:
            os.chdir(old)
    return "".join(parts), runner.namespace


def main() -> None:
    check = "--check" in sys.argv
    stale = []
    for path in DOCUMENTS:
        old, new = path.read_text(), render(path)
        if old == new:
            continue
        if check:
            stale.append(path)
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), str(path), "regenerated", lineterm="", n=1
            )
            print("\n".join(list(diff)[:60]))
        else:
            path.write_text(new)
            print(f"wrote {path}")
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"{names} out of date: run python docs/gen_samples.py")
        sys.exit(1)


if __name__ == "__main__":
    main()
