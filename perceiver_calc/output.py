"""Safe output files: checked before any work, written whole or not at all.

Every file the program writes (``--plot``) goes through :func:`check_output_path` before the
command does its work, and through :func:`replace_atomically` when written: the content goes to
a temporary file in the target's own folder (same filesystem), which is renamed over the
target only once complete (``os.replace`` is atomic on POSIX). A full disk, a crash or a
refusal therefore leaves a pre-existing file byte-identical.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from perceiver_calc.errors import InputError

__all__ = ["PLOT_SUFFIXES", "check_output_path", "check_plot_extra", "replace_atomically"]

PLOT_SUFFIXES: tuple[str, ...] = (".png", ".svg", ".pdf")
"""Formats matplotlib's Agg backend writes that the plots are meant for."""


def check_output_path(path: Path, suffixes: Iterable[str], what: str = "output") -> None:
    """Raise :class:`InputError` unless ``path`` can be written: a known suffix, not a folder,
    its folder exists and is writable."""
    allowed = tuple(suffixes)
    if path.suffix.lower() not in allowed:
        raise InputError(
            f"{what} {str(path)!r}: unknown file type {path.suffix or '(no extension)'!r}; "
            f"name it with one of {', '.join(allowed)}"
        )
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder; give a file name inside it")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{what} {str(path)!r}: folder {str(folder)!r} does not exist; create it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {str(path)!r}: folder {str(folder)!r} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {str(path)!r} exists and is read-only")


def check_plot_extra() -> None:
    """Plots need matplotlib, an optional extra (README's first set-up command skips it)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(
            "--plot needs matplotlib, which is not installed; from the repository run "
            "pip install -c constraints.txt -e '.[plot]'"
        )


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was; the error
    is raised as :class:`InputError` when it is the filesystem's (disk full, ...).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if path.exists():
            # Keep the permissions of the file being replaced (mkstemp makes it 0600).
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"cannot write {str(path)!r}: {err.strerror or err}; the existing file (if any) "
            "is unchanged"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
