"""The common commands without typer: ``report``, ``explain`` and ``validate`` on a local file.

Importing typer (and the click it vendors) costs about as much as everything else a
``report --format json`` run does besides pydantic (docs/benchmarks/cold-start.md). For the
command lines users type most, :func:`run` parses the arguments itself and produces the output
with the same code the typer commands use (:func:`build`, :func:`check`, the renderers), so
that nothing but typer's own import is skipped.

It handles a strict subset of what typer accepts, and only the successful runs of it:

* one of the three commands, one positional PATH that exists on disk (no hub id: that may
  download), options from :data:`_SPECS` each given at most once, as ``--name value``,
  ``--name=value`` or ``-f value``, with values it can read exactly as click would (ASCII
  digits for an int, one of the choices verbatim, text not starting with ``-``);
* output that ``typer.echo`` would write unchanged (ASCII, no escape character: click strips
  ANSI codes when the output is not a terminal and re-encodes a misconfigured stream).

Left to typer as well: ``--image-size`` (its parser lives in cli_options, which imports typer)
and ``report --convention`` (rarely used; its extra output is typer's code alone).

Anything else, and any run that fails (an invalid config, a bad workload, a bug), returns
``False`` before a byte is written: :func:`perceiver_calc.cli.main` then runs the typer app
on the same arguments, which gives its usual message and exit status. tests/test_cli_fast.py
checks that both paths print the same and exit the same, and that :data:`_SPECS` matches the
typer commands' options (names, types, choices, defaults).

This module imports nothing heavy at import time (tests/test_import_budget.py).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from perceiver_calc.choices import DTYPES, MODES, OPTIMIZERS

if TYPE_CHECKING:
    from perceiver_calc.report import Report
    from perceiver_calc.resolve import ResolvedModel
    from perceiver_calc.workload import Workload

__all__ = ["build", "check", "explain_json", "run", "validate_lines"]


# --------------------------------------------------------------------------------------------
# The commands' work, shared with the typer commands (perceiver_calc.cli_app)


def build(
    path: Path,
    model: str | None,
    strict: bool,
    workload: Callable[[], Workload] | None = None,
    revision: str | None = None,
) -> Report:
    """The report of ``report`` and ``explain``; raises the library's errors. ``workload``
    builds the Workload (after the config is validated: a bad config is reported first)."""
    from perceiver_calc.hub import locate
    from perceiver_calc.report import build_report
    from perceiver_calc.resolve import validate as validate_config

    resolved = validate_config(locate(path, revision), model, strict=strict)
    wl = workload() if workload is not None else None
    return build_report(
        resolved,
        source=str(path),
        workload=wl,
        # The user chose an input when they gave any workload option, even at its default
        # value: the Workload's fields set (a command without defaults of its own, as report,
        # sets only what the user gave). A workload transformers would fail on is then an
        # error, not a warning.
        workload_explicit=wl is not None and bool(wl.model_fields_set),
    )


def check(
    path: Path, model: str | None, strict: bool, revision: str | None
) -> tuple[ResolvedModel, int]:
    """``validate``'s work: the resolved model and its parameter count. No report is built:
    the findings are the resolved model's (a report without a workload adds none), and the
    FLOP and memory modules are never imported."""
    from perceiver_calc.hub import locate
    from perceiver_calc.params import count_params
    from perceiver_calc.resolve import validate as validate_config

    resolved = validate_config(locate(path, revision), model, strict=strict)
    return resolved, count_params(resolved).total


def validate_lines(path: Path, resolved: ResolvedModel, total: int) -> list[str]:
    """``validate``'s output: plain lines, no rich (one line per finding, a terminal wraps
    them, and nothing in a path or a rule is read as markup)."""
    lines = [f"{path}: valid {resolved.model} ({total:,} parameters)"]
    lines += [f"  {f.severity}: {f}" for f in resolved.findings]
    return lines


def explain_json(rep: Report) -> str:
    import json

    from perceiver_calc.report import report_data

    data = report_data(rep, include=frozenset({"model", "dimensions", "findings"}))
    # ensure_ascii=False: as pydantic's model_dump_json wrote it before.
    return json.dumps(data, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Options: the subset of the typer commands' options read here

Kind = Literal["str", "int", "flag", "choice"]


class _Spec:
    """One option: a plain class, not a dataclass (whose generated methods cost import time)."""

    __slots__ = ("choices", "default", "dest", "flag_value", "kind")

    def __init__(
        self,
        dest: str,
        kind: Kind,
        default: Any,
        choices: tuple[str, ...] = (),
        *,
        flag_value: bool = True,
    ) -> None:
        self.dest = dest
        """The command's parameter name (for a workload option, the Workload field)."""
        self.kind = kind
        self.default = default
        self.choices = choices
        self.flag_value = flag_value
        """For a flag: the value its name sets (``--no-checkpointing`` sets False)."""


_FORMATS = ("table", "json", "markdown")
_COMMON: dict[str, _Spec] = {
    "--model": _Spec("model", "str", None),
    "--strict": _Spec("strict", "flag", False),
    "--revision": _Spec("revision", "str", None),
}
_FORMAT: dict[str, _Spec] = {
    "--format": _Spec("format", "choice", "table", _FORMATS),
    "-f": _Spec("format", "choice", "table", _FORMATS),
}
# perceiver_calc.cli_options.WORKLOAD_OPTIONS, in its order, less --image-size (left to typer:
# its parser lives in cli_options). That table is not read here: cli_options builds typer's
# options at import. The choices are Workload's own (perceiver_calc.choices, typing only);
# tests/test_cli_fast.py checks names, kinds, choices and defaults against WORKLOAD_OPTIONS
# and against typer's parameters.
WORKLOAD: dict[str, _Spec] = {
    "--batch-size": _Spec("batch_size", "int", 1),
    "--seq-len": _Spec("seq_len", "int", None),
    "--num-frames": _Spec("num_frames", "int", None),
    "--audio-samples": _Spec("audio_samples", "int", None),
    "--subsampled-image-points": _Spec("subsampled_image_points", "int", None),
    "--subsampled-audio-points": _Spec("subsampled_audio_points", "int", None),
    "--dtype": _Spec("dtype", "choice", "fp32", DTYPES),
    "--mode": _Spec("mode", "choice", "inference", MODES),
    "--optimizer": _Spec("optimizer", "choice", "adamw", OPTIMIZERS),
    "--checkpointing": _Spec("checkpointing", "flag", False),
    "--no-checkpointing": _Spec("checkpointing", "flag", False, flag_value=False),
}
_SPECS: dict[str, dict[str, _Spec]] = {
    "report": {**_COMMON, **_FORMAT, **WORKLOAD},
    "explain": {**_COMMON, **_FORMAT},
    "validate": dict(_COMMON),
}


def _value(spec: _Spec, text: str) -> Any:
    """``text`` as click converts it for this option; None when not read here."""
    if spec.kind == "int":
        # click: int(text), which also takes " 8", "+8", "8_0" and other scripts' digits
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None
    if spec.kind == "choice":
        return text if text in spec.choices else None  # click.Choice, case-sensitive
    # text: click takes the next argument whatever it is; "--model --strict" is left to it
    return None if text.startswith("-") else text


def parse(argv: list[str]) -> tuple[str, Path, dict[str, Any], set[str]] | None:
    """``(command, path, parameters, options given)``, or None when typer should read ``argv``."""
    if not argv or argv[0] not in _SPECS:
        return None
    command, specs = argv[0], _SPECS[argv[0]]
    values: dict[str, Any] = {}
    positional: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if arg == "-":
                return None
            positional.append(arg)
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = specs.get(name)
        if spec is None or spec.dest in values:  # unknown (or --help), or given twice
            return None
        if spec.kind == "flag":
            if eq:
                return None  # click: "option does not take a value"
            values[spec.dest] = spec.flag_value
            continue
        if eq:
            text = inline
        elif i < len(argv):
            text = argv[i]
            i += 1
        else:
            return None  # click: "option requires an argument"
        value = _value(spec, text)
        if value is None:
            return None
        values[spec.dest] = value
    if len(positional) != 1:
        return None
    given = set(values)
    for spec in specs.values():
        values.setdefault(spec.dest, spec.default)
    return command, Path(positional[0]), values, given


# --------------------------------------------------------------------------------------------
# Running


def _plain(text: str) -> bool:
    """True when ``typer.echo`` writes ``text`` as it is, whatever the stream (see module doc)."""
    return text.isascii() and "\x1b" not in text


def _write(text: str) -> None:
    """``typer.echo(text, nl=False)``, for text that :func:`_plain` passed; a closed pipe ends
    the run as typer ends it (exit 1, and no error when Python flushes the stream at exit)."""
    try:
        if text:
            sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as err:
        if err.errno == errno.EPIPE:
            _pacify_and_exit()
        raise


class _Pacified:
    """click's PacifyFlushWrapper: swallow EPIPE when the interpreter flushes at exit."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as err:
            if err.errno != errno.EPIPE:
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)


def _pacify_and_exit() -> None:
    sys.stdout = _Pacified(sys.stdout)
    sys.stderr = _Pacified(sys.stderr)
    sys.exit(1)


def _workload(given: dict[str, Any]) -> Workload:
    """What ``report``'s ``WorkloadOptions.build()`` builds (cli_options.make_workload) from the
    workload options given: only those set, so that ``model_fields_set`` says what the user
    chose (the values are already Workload's: ints, the Literal choices, bools)."""
    from perceiver_calc.workload import Workload

    return Workload(**given)


def _prepare(
    command: str, path: Path, v: dict[str, Any], given: set[str]
) -> Callable[[], None] | None:
    """Do the command's work; return what prints its output, or None (fall back to typer)."""
    if command == "validate":
        resolved, total = check(path, v["model"], v["strict"], v["revision"])
        text = "".join(line + "\n" for line in validate_lines(path, resolved, total))
        return (lambda: _write(text)) if _plain(text) else None

    from perceiver_calc import report as r

    if command == "report":
        fields = {s.dest for s in WORKLOAD.values()}
        chosen = {k: v[k] for k in given & fields}
        rep = build(path, v["model"], v["strict"], lambda: _workload(chosen), v["revision"])
    else:
        rep = build(path, v["model"], v["strict"], revision=v["revision"])
    if v["format"] == "table":

        def table() -> None:
            from perceiver_calc.console import stdout

            try:
                (r.render_table if command == "report" else r.render_explain)(rep, stdout())
            except OSError as err:
                if err.errno == errno.EPIPE:
                    _pacify_and_exit()
                raise

        return table
    if v["format"] == "json":
        text = (r.render_json(rep) if command == "report" else explain_json(rep)) + "\n"
    else:
        text = (r.render_markdown if command == "report" else r.render_explain_markdown)(rep)
    return (lambda: _write(text)) if _plain(text) else None


def run(argv: list[str]) -> bool:
    """Run ``argv`` (the arguments after the program name) if this module handles it; False
    (nothing written) when typer should."""
    if sys.stdout is None or any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return False  # no stdout (pythonw), or a shell-completion request
    parsed = parse(argv)
    if parsed is None:
        return False
    command, path, values, given = parsed
    try:
        if not path.exists():
            return False  # a hub id, or a missing file (typer's message)
        emit = _prepare(command, path, values, given)
    except Exception:
        # Bad input (exit 2 with its message) or a bug (exit 1): typer's path says which,
        # exactly as it always has.
        return False
    if emit is None:
        return False
    emit()
    return True
